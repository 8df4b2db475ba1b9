import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queues, running jobs, delayed and dead counts, live workers.")
        @OptionGroup var connection: Connection
        @Flag(help: "JSON output for scripts.") var json = false

        func run() async throws {
            try await withQueue(connection) { queue in
                // Agents: those with a queue key, those workers serve, and those the config names.
                var agents = Set(try await queue.agentsWithQueues())
                var workerRows: [[String: Any]] = []
                var running: [[String: Any]] = []
                for worker in try await queue.workers() {
                    worker.agents.forEach { agents.insert($0) }
                    workerRows.append([
                        "worker": worker.id, "host": worker.host, "alive": worker.alive,
                        "heartbeat_age_s": Int(Date().timeIntervalSince(worker.lastHeartbeat)),
                        "lease_ms": worker.leaseRemaining.map {
                            Int($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000)
                        } ?? -2,
                        "slots": worker.slots, "agents": worker.agents.joined(separator: ","), "jobs": worker.held.count,
                    ])
                    for id in worker.held {
                        guard let job = try await queue.record(id), job.status == .running else { continue }
                        running.append([
                            "job": id, "agent": job.agent, "session": job.session, "started_at": job["started_at"] ?? "",
                            "age": age(job["started_at"]),
                            "attempt": String(job.attempts), "worker": worker.id,
                        ])
                    }
                }
                if let config = connection.config, let loaded = try? AppConfig.load(path: config, resolveSecrets: false) {
                    loaded.agents.keys.forEach { agents.insert($0) }
                }
                let counts = try await queue.counts(agents: agents.sorted())
                let queueRows: [[String: Any]] = agents.sorted().map { agent in
                    [
                        "agent": agent, "queued": counts.queued[agent] ?? 0, "running": running.filter { $0["agent"] as? String == agent }.count,
                        "feedback_pending": counts.feedback[agent] ?? 0,
                    ]
                }
                let (delayed, dead, sessions) = (counts.delayed, counts.dead, counts.sessions)
                if json {
                    try printJSON([
                        "queues": queueRows, "running": running, "delayed": delayed, "dead": dead, "sessions": sessions, "workers": workerRows,
                    ])
                    return
                }
                print("QUEUES")
                printTable(
                    ["agent", "queued", "running", "feedback"],
                    queueRows.map { ["\($0["agent"]!)", "\($0["queued"]!)", "\($0["running"]!)", "\($0["feedback_pending"]!)"] })
                print("\ndelayed retries: \(delayed)   dead: \(dead)   sessions: \(sessions)\n")
                print("RUNNING")
                printTable(
                    ["job", "agent", "session", "attempt", "age", "worker"],
                    running.map {
                        ["\($0["job"]!)", "\($0["agent"]!)", "\($0["session"]!)", "\($0["attempt"]!)", "\($0["age"]!)", "\($0["worker"]!)"]
                    })
                print("\nWORKERS")
                printTable(
                    ["worker", "host", "alive", "heartbeat", "slots", "agents", "jobs"],
                    workerRows.map {
                        [
                            "\($0["worker"]!)", "\($0["host"]!)", ($0["alive"] as? Bool ?? false) ? "yes" : "NO (lease expired)",
                            humanDuration(Double($0["heartbeat_age_s"] as? Int ?? 0)) + " ago", "\($0["slots"]!)", "\($0["agents"]!)",
                            "\($0["jobs"]!)",
                        ]
                    })
            }
        }
    }
}
