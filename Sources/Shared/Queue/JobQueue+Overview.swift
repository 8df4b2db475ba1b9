import Foundation

/// What the dashboard's overview shows of one agent. Every figure is read in O(agents + slots + `sampleLimit`):
/// queue lengths and counters the scripts keep, never a scan of the job records.
public struct AgentCounts: Sendable, Equatable {
    public let agent: String
    public var queued = 0
    public var running = 0
    /// Parked behind an earlier job of their session.
    public var waiting = 0
    /// Failed attempts waiting for their retry, and deferred jobs.
    public var delayed = 0
    public var dead = 0
    public var sessions = 0
    /// Jobs whose forge feedback is not posted yet (due, being posted, or waiting to retry).
    public var feedback = 0

    public init(agent: String) { self.agent = agent }
}

/// The overview's counts, with the totals that per-agent figures were sampled from.
public struct Overview: Sendable, Equatable {
    public var agents: [AgentCounts]
    public var delayedTotal: Int
    public var deadTotal: Int
    public var sessionsTotal: Int
    /// True when `delayed` or `dead` per agent were counted from the newest `sampleLimit` entries only.
    public var sampled: Bool
}

/// Attempts that ended in one bucket (a minute or an hour).
public struct FinishedBucket: Sendable, Equatable {
    public let start: Date
    public var succeeded = 0
    /// Failed attempts (retried) and jobs that went dead.
    public var failed = 0

    public init(start: Date, succeeded: Int = 0, failed: Int = 0) {
        self.start = start
        self.succeeded = succeeded
        self.failed = failed
    }
}

/// An agent's container on one Docker host, as that host's workers last saw it.
public struct ContainerReport: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable { case matches, drifted, missing, unknown }
    public var host: String
    public var agent: String
    public var state: State
    public var containerID: String
    /// What differs from the spec (drifted), or why it could not be inspected (unknown).
    public var differences: [String]
    public var worker: String
    public var checkedAt: Date

    public init(
        host: String, agent: String, state: State, containerID: String, differences: [String], worker: String, checkedAt: Date
    ) {
        self.host = host
        self.agent = agent
        self.state = state
        self.containerID = containerID
        self.differences = differences
        self.worker = worker
        self.checkedAt = checkedAt
    }
}

/// What agents spent on one UTC day: per agent, per agent and repository, and how many runs reported a cost.
public struct SpendDay: Sendable, Equatable {
    public struct Repo: Sendable, Hashable {
        public let agent: String
        public let repo: String
    }

    public let day: Date
    public var agents: [String: Double] = [:]
    public var repos: [Repo: Double] = [:]
    public var runs: [String: Int] = [:]

    public init(day: Date) { self.day = day }
}

/// Spend added up from per-day records: per agent on the newest day (today), over the 7 days up to it and over all of
/// them, and per repository, most first.
public struct SpendSummary: Sendable {
    public struct Agent: Sendable {
        public let agent: String
        public var today = 0.0
        public var week = 0.0
        public var total = 0.0
        public var runs = 0
    }

    public var agents: [Agent] = []
    public var repos: [(key: SpendDay.Repo, value: Double)] = []

    public init(_ days: [SpendDay]) {
        var byAgent: [String: Agent] = [:]
        var byRepo: [SpendDay.Repo: Double] = [:]
        let number = { (day: SpendDay) in Int(day.day.timeIntervalSince1970.rounded(.down)) / 86400 }
        let last = days.map(number).max() ?? 0
        for day in days {
            let fromEnd = last - number(day)
            for (agent, usd) in day.agents {
                var row = byAgent[agent] ?? Agent(agent: agent)
                row.total += usd
                if fromEnd < 7 { row.week += usd }
                if fromEnd == 0 { row.today += usd }
                row.runs += day.runs[agent] ?? 0
                byAgent[agent] = row
            }
            for (repo, usd) in day.repos { byRepo[repo, default: 0] += usd }
        }
        agents = byAgent.values.sorted { $0.total != $1.total ? $0.total > $1.total : $0.agent < $1.agent }
        repos = byRepo.sorted { $0.value != $1.value ? $0.value > $1.value : ($0.key.agent, $0.key.repo) < ($1.key.agent, $1.key.repo) }
    }
}

extension JobQueue {
    /// Per-agent counts for `agents`. Delayed and dead entries are attributed to agents from the newest
    /// `sampleLimit` entries of each (the totals are exact).
    public func overview(agents: [String], sampleLimit: Int = 1000) async throws(RedisError) -> Overview {
        let reply = try await redis.evaluate(QueueScripts.overviewCounts, arguments: [keys.prefix, String(max(1, sampleLimit))] + agents)
        let numbers = (reply.array ?? []).map { $0.int ?? 0 }
        let width = QueueScripts.overviewColumns
        guard numbers.count == agents.count * width + 4 else { throw .unexpectedReply(command: "overview-counts", reply: "\(reply)") }
        let counts = agents.enumerated().map { index, agent in
            var c = AgentCounts(agent: agent)
            let row = numbers[(index * width)..<(index * width + width)].map { $0 }
            (c.queued, c.waiting, c.running, c.delayed, c.dead, c.sessions) = (row[0], row[1], row[2], row[3], row[4], max(0, row[5]))
            c.feedback = row[6]
            return c
        }
        let totals = numbers.suffix(4).map { $0 }
        return Overview(agents: counts, delayedTotal: totals[0], deadTotal: totals[1], sessionsTotal: totals[2], sampled: totals[3] == 1)
    }

    /// Attempts ended per minute over the `minutes` up to `now` (oldest first), per agent.
    public func finishedPerMinute(agents: [String], minutes: Int = 60, now: Date = Date()) async throws(RedisError) -> [String: [FinishedBucket]] {
        try await finished(agents: agents, buckets: minutes, width: 60, now: now, key: keys.statsMinute)
    }

    /// Attempts ended per hour over the `hours` up to `now` (oldest first), per agent.
    public func finishedPerHour(agents: [String], hours: Int = 24, now: Date = Date()) async throws(RedisError) -> [String: [FinishedBucket]] {
        try await finished(agents: agents, buckets: hours, width: 3600, now: now, key: keys.statsHour)
    }

    private func finished(
        agents: [String], buckets: Int, width: Int, now: Date, key: (String) -> String
    ) async throws(RedisError) -> [String: [FinishedBucket]] {
        let last = Int(now.timeIntervalSince1970) / width
        let numbers = Array((last - buckets + 1)...last)
        let replies = try await redis.pipeline(numbers.map { RedisCommand("HGETALL", key(String($0))) })
        var result: [String: [FinishedBucket]] = [:]
        for agent in agents {
            result[agent] = zip(numbers, replies).map { number, reply in
                let hash = reply.hash ?? [:]
                func count(_ outcome: String) -> Int { Int(hash["\(agent):\(outcome)"] ?? "") ?? 0 }
                return FinishedBucket(
                    start: Date(timeIntervalSince1970: TimeInterval(number * width)), succeeded: count("succeeded"),
                    failed: count("failed") + count("dead"))
            }
        }
        return result
    }

    /// What the agents' runs cost per UTC day over the `days` up to `now` (oldest first), from `hooks:spend:d:<day>`.
    public func spend(days: Int, now: Date = Date()) async throws(RedisError) -> [SpendDay] {
        let last = Int(now.timeIntervalSince1970) / 86400
        let numbers = Array((last - max(1, days) + 1)...last)
        let replies = try await redis.pipeline(numbers.map { RedisCommand("HGETALL", keys.spendDay(String($0))) })
        return zip(numbers, replies).map { number, reply in
            var day = SpendDay(day: Date(timeIntervalSince1970: TimeInterval(number * 86400)))
            for (field, value) in reply.hash ?? [:] {
                if field.hasPrefix("repo:"), let micro = Double(value) {
                    let usd = micro / 1_000_000
                    let rest = field.dropFirst(5)
                    guard let colon = rest.firstIndex(of: ":") else { continue }
                    let agent = String(rest[..<colon])
                    day.repos[SpendDay.Repo(agent: agent, repo: String(rest[rest.index(after: colon)...])), default: 0] += usd
                    day.agents[agent, default: 0] += usd
                } else if field.hasPrefix("runs:"), let runs = Int(value) {
                    day.runs[String(field.dropFirst(5))] = runs
                }
            }
            return day
        }
    }

    /// Publishes what a worker saw of its host's containers (replacing earlier reports of the same host and agents).
    public func reportContainers(_ reports: [ContainerReport]) async throws(RedisError) {
        guard !reports.isEmpty else { return }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        var command = RedisCommand("HSET", keys.containers)
        for report in reports {
            guard let json = try? encoder.encode(report) else { continue }
            command.append(contentsOf: ["\(report.host)/\(report.agent)", String(decoding: json, as: UTF8.self)])
        }
        try await redis.send(command)
        // Reports of hosts gone for good (no worker has looked for a week) are forgotten here, by a writer.
        let forgotten = try await containerReportFields().filter { _, report in
            report.map { Date().timeIntervalSince($0.checkedAt) > 7 * 86400 } ?? false
        }.map(\.key)
        if !forgotten.isEmpty { try await redis.send(["HDEL", keys.containers] + forgotten) }
    }

    /// Every container report, by host then agent (reports this version cannot read are left out, and left alone).
    public func containerReports() async throws(RedisError) -> [ContainerReport] {
        try await containerReportFields().values.compactMap { $0 }.sorted { ($0.host, $0.agent) < ($1.host, $1.agent) }
    }

    private func containerReportFields() async throws(RedisError) -> [String: ContainerReport?] {
        let all = try await redis.send("HGETALL", keys.containers).hash ?? [:]
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return all.mapValues { try? decoder.decode(ContainerReport.self, from: Data($0.utf8)) }
    }
}
