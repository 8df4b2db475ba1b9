import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stored agent sessions (session key → CLI session id).")
        @OptionGroup var connection: Connection
        @Option(help: "Only this agent.") var agent: String?
        @Option(help: "Only this repository (owner/name).") var repo: String?
        @Flag(help: "JSON output.") var json = false

        func run() async throws {
            try await withRedis(connection) { redis, keys in
                let all = try await redis.send("HGETALL", keys.sessions).hash ?? [:]
                var rows: [[String: String]] = []
                for (key, id) in all.sorted(by: { $0.key < $1.key }) {
                    guard let parsed = try? SessionKey(parsing: key) else { continue }
                    if let agent, parsed.agent != agent { continue }
                    if let repo, parsed.repository != repo { continue }
                    let used = try await redis.send("ZSCORE", keys.sessionsUsed, key).string.flatMap(Double.init)
                    let t = try await redis.send("HMGET", keys.transcript(key), "bytes", "host", "skipped").strings ?? []
                    rows.append([
                        "session": key, "session_id": id,
                        "last_used": used.map { humanDuration(Date().timeIntervalSince1970 - $0 / 1000) + " ago" } ?? "-",
                        "transcript": t.count == 3 && !t[0].isEmpty ? (t[2].isEmpty ? "\(t[0]) bytes from \(t[1])" : "not shipped (over cap)") : "-",
                    ])
                }
                if json { return try printJSON(rows) }
                printTable(
                    ["session", "session id", "last used", "transcript in Redis"],
                    rows.map { [$0["session"]!, $0["session_id"]!, $0["last_used"]!, $0["transcript"]!] })
            }
        }
    }

    struct SessionCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "session", abstract: "One session.", subcommands: [Drop.self])

        struct Drop: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Forget a session: the next job of that issue starts a fresh conversation.")
            @OptionGroup var connection: Connection
            @Argument(help: "Session key: agent:owner/repo:number") var key: String

            func run() async throws {
                do {
                    _ = try SessionKey(parsing: key)
                } catch {
                    throw ValidationError("\(error)")
                }
                try await withRedis(connection) { redis, keys in
                    let queue = JobQueue(redis: redis, keys: keys)
                    if try await queue.dropSession(key) {
                        print("dropped \(TerminalText.safe(key))")
                    } else {
                        FileHandle.standardError.write(Data("error: no session '\(key)' (see `hooksctl sessions`)\n".utf8))
                        throw ExitCode(1)
                    }
                }
            }
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead (or failed, waiting for retry) jobs back on their queue with fresh attempts.")
        @OptionGroup var connection: Connection
        @Argument(help: "Job ids.") var ids: [String] = []
        @Flag(help: "Every job on the dead list.") var dead = false

        func validate() throws {
            if ids.isEmpty && !dead { throw ValidationError("name job ids, or --dead for every dead job") }
        }

        func run() async throws {
            try await withRedis(connection) { redis, keys in
                var targets = ids
                if dead { targets += try await redis.send("LRANGE", keys.dead, "0", "-1").strings ?? [] }
                var failures = 0
                for id in targets {
                    switch try await JobQueue(redis: redis, keys: keys).requeue(id) {
                    case .queued(let agent): print("\(id): re-queued on \(keys.queue(agent))")
                    case .refused(let status):
                        failures += 1
                        print("\(id): not re-queued: it is \(status) (only dead or failed jobs can be)")
                    case .missing:
                        failures += 1
                        print("\(id): no such job")
                    }
                }
                if targets.isEmpty { print("nothing to re-queue") }
                if failures > 0 { throw ExitCode(1) }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete finished job records (succeeded; with --dead also dead ones) and their logs now.")
        @OptionGroup var connection: Connection
        @Flag(help: "Also delete dead jobs and empty the dead list.") var dead = false

        func run() async throws {
            try await withRedis(connection) { redis, keys in
                // In the queue core: each record's status is checked in the same step as its deletion.
                let purged = try await JobQueue(redis: redis, keys: keys, settings: QueueSettings()).purgeFinished(includeDead: dead)
                print("purged \(purged) finished job record(s)")
            }
        }
    }
}
