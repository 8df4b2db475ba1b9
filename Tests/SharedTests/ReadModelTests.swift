import Foundation
import TestSupport
import Testing

@testable import Shared

/// The counters and read models the dashboard uses, kept by the queue scripts, against a real redis-server.
@Suite(.timeLimit(.minutes(5))) struct ReadModelTests {
    let server: RedisServer
    let queue: JobQueue

    init() throws {
        server = try RedisServer()
        var settings = QueueSettings()
        settings.retry = RetryPolicy(maxAttempts: 2, base: .seconds(3600), maximum: .seconds(3600), jitter: 0)
        settings.logMaxLines = 10
        queue = JobQueue(redis: server.client(), settings: settings)
    }

    func enqueue(_ agent: String, number: Int) async throws -> String {
        let job = NewJob(
            agent: agent, session: SessionKey(agent: agent, repository: "acme/shop", number: number),
            fields: [("repo", "acme/shop"), ("number", String(number)), ("prompt", "p")])
        _ = try await queue.enqueue([job])
        return job.id
    }

    @Test func overviewCountsEveryStatePerAgent() async throws {
        // dev: one running, one waiting behind it, one queued on another session, one failed (delayed), one dead.
        _ = try await enqueue("dev", number: 1)
        let parked = try await enqueue("dev", number: 1)
        let running = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        #expect(try await queue.reserveAny(worker: "w1", agents: ["dev"]) == nil, "the second job of session 1 is parked")
        #expect(try await queue.record(parked)?.status == .waiting)
        _ = try await enqueue("dev", number: 2)
        let failing = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        #expect(try await queue.finish(failing, worker: "w1", outcome: .failed(error: "x", retryable: true), sessionID: "s2") != .dead)
        _ = try await enqueue("dev", number: 3)
        let dying = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        #expect(try await queue.finish(dying, worker: "w1", outcome: .failed(error: "x", retryable: false)) == .dead)
        _ = try await enqueue("dev", number: 4)
        _ = try await enqueue("boss", number: 1)
        try await queue.heartbeat(worker: "w1", info: ["host": "h", "agents": "dev", "slots": "2"])

        var overview = try await queue.overview(agents: ["boss", "dev"])
        let dev = overview.agents[1]
        #expect(dev.queued == 1 && dev.running == 1 && dev.waiting == 1 && dev.delayed == 1 && dev.dead == 1 && dev.sessions == 1)
        #expect(overview.agents[0].queued == 1 && overview.agents[0].running == 0)
        #expect(overview.delayedTotal == 1 && overview.deadTotal == 1 && overview.sessionsTotal == 1 && !overview.sampled)

        // The holder finishes: the parked job is woken (no longer waiting), and the session is counted once.
        #expect(try await queue.finish(running, worker: "w1", outcome: .succeeded, sessionID: "s1") == .succeeded)
        overview = try await queue.overview(agents: ["dev"])
        #expect(overview.agents[0].waiting == 0 && overview.agents[0].queued == 2 && overview.agents[0].sessions == 2)
        #expect(try await queue.dropSession("dev:acme/shop:1"))
        #expect(!(try await queue.dropSession("dev:acme/shop:1")), "a second drop counts nothing")
        #expect(try await queue.overview(agents: ["dev"]).agents[0].sessions == 1)
    }

    /// Jobs whose forge feedback is not posted yet, per agent, in the overview and in `counts` (hooksctl status).
    @Test func feedbackNotPostedYetIsCountedPerAgent() async throws {
        let job = NewJob(
            agent: "dev", session: SessionKey(agent: "dev", repository: "acme/shop", number: 9),
            fields: [("repo", "acme/shop"), ("number", "9"), ("prompt", "p"), ("forge", "forgejo"), ("feedback", "reaction=eyes;comment=1")])
        _ = try await queue.enqueue([job])
        _ = try await enqueue("dev", number: 10)  // no feedback asked: never counted
        #expect(try await queue.overview(agents: ["boss", "dev"]).agents.map(\.feedback) == [0, 0], "nothing to post before a job starts")
        _ = try await queue.reserveAny(worker: "w1", agents: ["dev"])
        _ = try await queue.reserveAny(worker: "w1", agents: ["dev"])
        #expect(try await queue.overview(agents: ["boss", "dev"]).agents.map(\.feedback) == [0, 1])
        #expect(try await queue.counts(agents: ["boss", "dev"]).feedback == ["boss": 0, "dev": 1])
        let claim = try #require(try await queue.claimFeedback(agent: "dev", worker: "w1", hold: .seconds(60), limit: 8).first)
        #expect(try await queue.overview(agents: ["dev"]).agents[0].feedback == 1, "being posted still counts")
        _ = try await queue.settleFeedback(claim, agent: "dev", worker: "w1", .posted(fields: []))
        #expect(try await queue.overview(agents: ["dev"]).agents[0].feedback == 0)
        #expect(try await queue.counts(agents: ["dev"]).feedback == ["dev": 0])
    }

    @Test func sessionCountsAreRebuiltWhenMissing() async throws {
        for n in 1...3 {
            _ = try await enqueue(n == 3 ? "boss" : "dev", number: n)
            let job = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev", "boss"]))
            _ = try await queue.finish(job, worker: "w1", outcome: .succeeded, sessionID: "s\(n)")
        }
        try await queue.redis.send("DEL", queue.keys.sessionCounts)  // as after an upgrade
        #expect(try await queue.overview(agents: ["dev"]).agents[0].sessions == 0)
        try await queue.sweep()
        let counts = try await queue.overview(agents: ["boss", "dev"]).agents.map(\.sessions)
        #expect(counts == [1, 2])
    }

    @Test func idleSweepKeepsASessionUsedSinceItWasListed() async throws {
        _ = try await enqueue("dev", number: 1)
        let job = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        _ = try await queue.finish(job, worker: "w1", outcome: .succeeded, sessionID: "s1", now: Date(timeIntervalSince1970: 1_000))
        // Listed as idle with a cutoff before its last use: the script looks again and keeps it.
        let kept = try await queue.redis.evaluate(QueueScripts.dropSessions, arguments: [queue.keys.prefix, "999999", "dev:acme/shop:1"])
        #expect(kept.strings == [])
        let dropped = try await queue.redis.evaluate(QueueScripts.dropSessions, arguments: [queue.keys.prefix, "1000000", "dev:acme/shop:1"])
        #expect(dropped.strings == ["dev:acme/shop:1"])
        #expect(try await queue.overview(agents: ["dev"]).agents[0].sessions == 0)
    }

    @Test func finishedAttemptsAreCountedPerMinuteAndHour() async throws {
        for outcome in [JobQueue.Outcome.succeeded, .succeeded, .failed(error: "x", retryable: true), .failed(error: "x", retryable: false)] {
            _ = try await enqueue("dev", number: Int.random(in: 1...1_000_000))
            let job = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
            _ = try await queue.finish(job, worker: "w1", outcome: outcome)
        }
        // A loaded run may cross a minute (or hour) boundary between the finishes: count over the whole series.
        let minutes = try #require(try await queue.finishedPerMinute(agents: ["dev", "boss"])["dev"])
        #expect(minutes.count == 60)
        #expect(minutes.reduce(0) { $0 + $1.succeeded } == 2 && minutes.reduce(0) { $0 + $1.failed } == 2)
        #expect(minutes.dropLast(2).allSatisfy { $0.succeeded == 0 && $0.failed == 0 })
        let hours = try #require(try await queue.finishedPerHour(agents: ["dev"])["dev"])
        #expect(hours.count == 24 && hours.reduce(0) { $0 + $1.succeeded } == 2)
        #expect(try await queue.finishedPerMinute(agents: ["boss"])["boss"]?.allSatisfy { $0.succeeded == 0 } == true)
        let counted = try #require(minutes.last { $0.succeeded + $0.failed > 0 })
        let ttl = try await queue.redis.send("TTL", queue.keys.statsMinute(String(Int(counted.start.timeIntervalSince1970) / 60))).int ?? 0
        #expect(ttl > 3000 && ttl <= 7200)
    }

    @Test func logReaderKnowsWhatTheCappedLogDropped() async throws {
        let id = try await enqueue("dev", number: 1)
        let job = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        let fence = JobQueue.Fence(jobID: id, worker: "w1", attempt: job.attempt)
        try await queue.appendLog(fence, lines: (1...4).map { "line \($0)" })
        var read = try await queue.logLines(id, after: 0)
        #expect(read.lines == ["line 1", "line 2", "line 3", "line 4"] && read.total == 4 && read.missed == 0)
        // 15 more: the log keeps 10; a reader that saw 4 missed 5.
        try await queue.appendLog(fence, lines: (5...19).map { "line \($0)" })
        read = try await queue.logLines(id, after: 4)
        #expect(read.missed == 5 && read.lines.first == "line 10" && read.lines.last == "line 19" && read.total == 19)
        #expect(try await queue.logLines(id, after: 19).lines.isEmpty)
    }

    @Test func sessionsPageByLastUseWithACursor() async throws {
        for n in 1...7 {
            _ = try await enqueue("dev", number: n)
            let job = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
            // Two share a last-use time: the cursor must still show each once.
            _ = try await queue.finish(
                job, worker: "w1", outcome: .succeeded, sessionID: "s\(n)", now: Date(timeIntervalSince1970: Double(1000 + min(n, 6))))
        }
        var seen: [String] = []
        var cursor: JobCursor?
        repeat {
            let page = try await queue.sessions(after: cursor, limit: 3)
            seen += page.sessions.map(\.key)
            cursor = page.next
        } while cursor != nil
        #expect(seen.count == 7 && Set(seen).count == 7)
        #expect(seen.first == "dev:acme/shop:7" || seen.first == "dev:acme/shop:6")
        #expect(try await queue.session("dev:acme/shop:3")?.sessionID == "s3")
        #expect(try await queue.session("dev:acme/shop:99") == nil)
    }

    @Test func containerReportsRoundTripAndForgetOldHosts() async throws {
        let now = Date()
        try await queue.redis.send("HSET", queue.keys.containers, "h9/dev", "{\"from\": \"a newer version\"}")
        try await queue.reportContainers([
            ContainerReport(
                host: "h0", agent: "dev", state: .matches, containerID: "def", differences: [], worker: "w0",
                checkedAt: now.addingTimeInterval(-8 * 86400))
        ])
        #expect(try await queue.redis.send("HLEN", queue.keys.containers).int == 1, "the week-old report is forgotten by the writer")
        try await queue.reportContainers([
            ContainerReport(host: "h1", agent: "dev", state: .drifted, containerID: "abc", differences: ["image"], worker: "w1", checkedAt: now)
        ])
        let reports = try await queue.containerReports()
        #expect(reports.count == 1 && reports[0].host == "h1" && reports[0].state == .drifted && reports[0].differences == ["image"])
        #expect(try await queue.redis.send("HLEN", queue.keys.containers).int == 2, "a report it cannot read is left alone")
    }

    @Test func jobCursorParsesItsOwnText() {
        let cursor = JobCursor(score: 1_800_000_000_123, id: "0mx-abc")
        #expect(JobCursor(cursor.description) == cursor)
        #expect(JobCursor("nope") == nil && JobCursor("12-") == nil && JobCursor("x-1") == nil)
    }
}
