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
            try await withQueue(connection) { queue in
                guard let record = try await queue.record(id) else {
                    FileHandle.standardError.write(
                        Data("error: no job '\(id)' in Redis (finished jobs expire after queue.retention; try `hooksctl jobs`)\n".utf8))
                    throw ExitCode(1)
                }
                let fields = record.fields
                let log = try await queue.log(id, from: -tail)
                if json {
                    try printJSON(["job": fields, "log": log])
                    return
                }
                for key in fields.keys.sorted() where key != "prompt" {
                    print("\(TerminalText.safe(key).padding(toLength: 16, withPad: " ", startingAt: 0)) \(TerminalText.safe(fields[key]!))")
                }
                let prompt = TerminalText.safe(fields["prompt"] ?? "", keepNewlines: true)
                print("prompt           \(prompt.replacingOccurrences(of: "\n", with: "\n                 "))")
                print("--- log (\(queue.keys.log(id))) ---")
                log.forEach { print(TerminalText.safe($0)) }
                guard follow else { return }
                var seen = try await queue.logLength(id)
                while true {
                    let status = try await queue.record(id)?.status
                    let length = try await queue.logLength(id)
                    if length > seen {
                        try await queue.log(id, from: seen).forEach { print(TerminalText.safe($0)) }
                        seen = length
                    }
                    if ![JobStatus.running, .queued, .waiting].contains(status) {
                        print("--- job \(TerminalText.safe(status?.rawValue ?? "gone")) ---")
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
            try await withQueue(connection) { queue in
                var rows: [[String: String]] = []
                var offset = 0
                let names = ["agent", "status", "repo", "number", "event", "attempts", "created_at", "error"]
                // Newest first; jobs enqueued meanwhile shift the index, so its length is read each page.
                while rows.count < limit, try await offset < queue.indexedJobCount() {
                    let page = try await queue.recentJobs(offset: offset, count: 200, fields: names)
                    offset += 200
                    for job in page {
                        if let status, job.status?.rawValue != status { continue }
                        if let agent, job.agent != agent { continue }
                        if let repo, job["repo"] != repo { continue }
                        var row = ["id": job.id]
                        for name in names { row[name] = job[name] ?? "" }
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
