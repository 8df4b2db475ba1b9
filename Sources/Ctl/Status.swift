import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queues, running jobs, delayed and dead counts, live workers.")
        @OptionGroup var connection: Connection
        @Flag(help: "JSON output for scripts.") var json = false

        func run() async throws {
            try await withRedis(connection) { redis, keys in
                // Agents: those with a queue key, those workers serve, and those the config names.
                var agents = Set(try await redis.scanKeys(matching: keys.queue("*")).map { String($0.dropFirst(keys.queue("").count)) })
                let workers = try await redis.send("ZRANGE", keys.workers, "0", "-1", "WITHSCORES").strings ?? []
                var workerRows: [[String: Any]] = []
                var running: [[String: Any]] = []
                var i = 0
                while i + 1 < workers.count {
                    let id = workers[i]
                    let lastMs = Double(workers[i + 1]) ?? 0
                    i += 2
                    let info = try await redis.send("HGETALL", keys.worker(id)).hash ?? [:]
                    let leaseMs = try await redis.send("PTTL", keys.lease(id)).int ?? -2
                    (info["agents"] ?? "").split(separator: ",").forEach { agents.insert(String($0)) }
                    let held = try await redis.send("LRANGE", keys.processing(id), "0", "-1").strings ?? []
                    workerRows.append([
                        "worker": id, "host": info["host"] ?? "", "alive": leaseMs > 0,
                        "heartbeat_age_s": Int(Date().timeIntervalSince1970 - lastMs / 1000),
                        "lease_ms": leaseMs, "slots": info["slots"] ?? "", "agents": info["agents"] ?? "", "jobs": held.count,
                    ])
                    for job in held {
                        let f = try await redis.send("HMGET", keys.job(job), "agent", "session", "started_at", "status", "attempts").strings ?? []
                        guard f.count == 5, f[3] == "running" else { continue }
                        running.append([
                            "job": job, "agent": f[0], "session": f[1], "started_at": f[2], "age": age(f[2]), "attempt": f[4], "worker": id,
                        ])
                    }
                }
                if let config = connection.config, let loaded = try? AppConfig.load(path: config, resolveSecrets: false) {
                    loaded.agents.keys.forEach { agents.insert($0) }
                }
                var queueRows: [[String: Any]] = []
                for agent in agents.sorted() {
                    let depth = try await redis.send("LLEN", keys.queue(agent)).int ?? 0
                    queueRows.append(["agent": agent, "queued": depth, "running": running.filter { $0["agent"] as? String == agent }.count])
                }
                let delayed = try await redis.send("ZCARD", keys.delayed).int ?? 0
                let dead = try await redis.send("LLEN", keys.dead).int ?? 0
                let sessions = try await redis.send("HLEN", keys.sessions).int ?? 0
                if json {
                    try printJSON([
                        "queues": queueRows, "running": running, "delayed": delayed, "dead": dead, "sessions": sessions, "workers": workerRows,
                    ])
                    return
                }
                print("QUEUES")
                printTable(["agent", "queued", "running"], queueRows.map { ["\($0["agent"]!)", "\($0["queued"]!)", "\($0["running"]!)"] })
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
