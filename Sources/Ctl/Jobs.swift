import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct JobCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "job", abstract: "One job: every field and the tail of its output.")
        @OptionGroup var connection: Connection
        @Argument(help: "Job id.") var id: String
        @Option(help: "Log lines to show.") var tail = 20
        @Flag(help: "Stream the output of a running job until it ends.") var follow = false
        @Flag(help: "JSON output.") var json = false

        func run() async throws {
            try await withRedis(connection) { redis, keys in
                let fields = try await redis.send("HGETALL", keys.job(id)).hash ?? [:]
                guard !fields.isEmpty else {
                    FileHandle.standardError.write(
                        Data("error: no job '\(id)' in Redis (finished jobs expire after queue.retention; try `hooksctl jobs`)\n".utf8))
                    throw ExitCode(1)
                }
                let log = try await redis.send("LRANGE", keys.log(id), String(-tail), "-1").strings ?? []
                if json {
                    try printJSON(["job": fields, "log": log])
                    return
                }
                for key in fields.keys.sorted() where key != "prompt" {
                    print("\(TerminalText.safe(key).padding(toLength: 16, withPad: " ", startingAt: 0)) \(TerminalText.safe(fields[key]!))")
                }
                let prompt = TerminalText.safe(fields["prompt"] ?? "", keepNewlines: true)
                print("prompt           \(prompt.replacingOccurrences(of: "\n", with: "\n                 "))")
                print("--- log (\(keys.log(id))) ---")
                log.forEach { print(TerminalText.safe($0)) }
                guard follow else { return }
                var seen = try await redis.send("LLEN", keys.log(id)).int ?? 0
                while true {
                    let status = try await redis.send("HGET", keys.job(id), "status").string ?? ""
                    let length = try await redis.send("LLEN", keys.log(id)).int ?? 0
                    if length > seen {
                        (try await redis.send("LRANGE", keys.log(id), String(seen), "-1").strings ?? []).forEach { print(TerminalText.safe($0)) }
                        seen = length
                    }
                    if !["running", "queued", "waiting"].contains(status) {
                        print("--- job \(TerminalText.safe(status)) ---")
                        return
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
        }
    }

    struct Jobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Recent jobs, newest first.")
        @OptionGroup var connection: Connection
        @Option(help: "Only this status (queued, waiting, running, succeeded, failed, dead).") var status: String?
        @Option(help: "Only this agent.") var agent: String?
        @Option(help: "Only this repository (owner/name).") var repo: String?
        @Option(help: "At most this many.") var limit = 30
        @Flag(help: "JSON output.") var json = false

        func validate() throws {
            if let status, JobStatus(rawValue: status) == nil {
                throw ValidationError("unknown --status '\(status)' (\(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
        }

        func run() async throws {
            try await withRedis(connection) { redis, keys in
                var rows: [[String: String]] = []
                var offset = 0
                while rows.count < limit {
                    let ids = try await redis.send("ZREVRANGE", keys.jobIndex, String(offset), String(offset + 199)).strings ?? []
                    if ids.isEmpty { break }
                    offset += ids.count
                    let names = ["agent", "status", "repo", "number", "event", "attempts", "created_at", "error"]
                    let replies = try await redis.pipeline(ids.map { RedisCommand(["HMGET", keys.job($0)] + names) })
                    for (id, reply) in zip(ids, replies) {
                        let values = reply.array?.map { $0.string } ?? []
                        guard values.count == names.count, values[1] != nil else { continue }
                        var row = ["id": id]
                        for (k, v) in zip(names, values) { row[k] = v ?? "" }
                        if let status, row["status"] != status { continue }
                        if let agent, row["agent"] != agent { continue }
                        if let repo, row["repo"] != repo { continue }
                        rows.append(row)
                        if rows.count == limit { break }
                    }
                }
                if json { return try printJSON(rows) }
                printTable(
                    ["id", "agent", "status", "repo#number", "event", "attempts", "age", "error"],
                    rows.map {
                        [
                            $0["id"]!, $0["agent"]!, $0["status"]!, "\($0["repo"]!)#\($0["number"]!)", $0["event"]!, $0["attempts"]!,
                            age($0["created_at"]),
                            String(($0["error"] ?? "").prefix(60)),
                        ]
                    })
            }
        }
    }
}
