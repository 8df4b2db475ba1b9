import ArgumentParser
import Foundation
import Shared

/// Fills a scratch Redis with a realistic history through the queue's own scripts (enqueue, reserve, finish), so
/// the dashboard can be measured against it: most jobs succeeded with a session, some failed and wait for a retry,
/// some dead, the rest queued.
struct DashboardSeed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed", abstract: "Fill a scratch Redis with jobs and sessions for the dashboard benchmark (scripts/bench-dashboard.sh).")

    @Option(help: "Redis URL of a scratch Redis.") var redis = "redis://127.0.0.1:6379"
    @Option(help: "Key prefix.") var prefix = "hooks"
    @Option(help: "Number of jobs.") var jobs = 100_000
    @Option(help: "Distinct sessions (issue/PR threads), spread over the agents.") var sessions = 10_000
    @Option(help: "Agents, comma-separated.") var agents = "boss,dev,reviewer"
    @Option(help: "Concurrent clients.") var concurrency = 16
    @Option(help: "Idle workers left registered (with a one-hour lease), as the overview would list them.") var workers = 0

    func run() async throws {
        let client = RedisClient(configuration: try RedisConfiguration(url: redis), connections: 4)
        defer { client.shutdown() }
        var settings = QueueSettings()
        settings.retry = RetryPolicy(maxAttempts: 3, base: .seconds(3600), maximum: .seconds(7200), jitter: 0)
        settings.retention = .seconds(7 * 86400)
        settings.deadRetention = .seconds(7 * 86400)
        let queue = JobQueue(redis: client, keys: KeySchema(prefix: prefix), settings: settings)
        let names = agents.split(separator: ",").map(String.init)
        let worker = "seed-\(UUID().uuidString.prefix(6).lowercased())"
        try await queue.heartbeat(worker: worker, info: ["host": "seed", "agents": agents, "slots": String(concurrency)])
        let start = ContinuousClock.now
        let total = jobs
        let perAgent = max(1, sessions / names.count)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    var i = lane
                    while i < total {
                        let agent = names[i % names.count]
                        let thread = (i / names.count) % perAgent
                        let repo = "acme/repo-\(thread % 97)"
                        let job = NewJob(
                            agent: agent, session: SessionKey(agent: agent, repository: repo, number: thread + 1),
                            fields: [
                                ("forge", "forgejo"), ("event", "issue_comment"), ("action", "created"), ("repo", repo),
                                ("number", String(thread + 1)), ("title", "Seeded issue \(thread + 1)"),
                                ("url", "https://forge.example/\(repo)/issues/\(thread + 1)"), ("prompt", "seeded job \(i)"),
                            ])
                        _ = try await queue.enqueue([job])
                        // 95% run now (one at a time per session, so reserve takes whichever is claimable).
                        if i % 20 != 0, let reserved = try await queue.reserveAny(worker: worker, agents: [agent]) {
                            let outcome: JobQueue.Outcome
                            switch i % 50 {
                            case 1: outcome = .failed(error: "seeded failure", retryable: true)
                            case 2: outcome = .failed(error: "seeded dead job", retryable: false)
                            default: outcome = .succeeded
                            }
                            _ = try await queue.finish(
                                reserved, worker: worker, outcome: outcome, sessionID: UUID().uuidString.lowercased(),
                                fields: [("cost_usd", "0.0123"), ("num_turns", "4"), ("duration_ms", "61000")])
                        }
                        i += concurrency
                        if lane == 0 && i % 10_000 < concurrency { print("  \(i) / \(total) jobs") }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await queue.deregister(worker: worker)
        var lasting = settings
        lasting.leaseDuration = .seconds(3600)
        let registry = JobQueue(redis: client, keys: KeySchema(prefix: prefix), settings: lasting)
        for n in 0..<workers {
            try await registry.heartbeat(worker: "seed-w\(n + 1)", info: ["host": "seed-host", "agents": agents, "slots": "4", "pid": "0"])
        }
        let overview = try await queue.overview(agents: names)
        print(
            "seeded \(jobs) jobs in \(start.duration(to: .now)): sessions \(overview.sessionsTotal), dead \(overview.deadTotal), "
                + "delayed \(overview.delayedTotal), queued \(overview.agents.map(\.queued).reduce(0, +)), indexed \(try await queue.indexedJobCount())"
        )
    }
}
