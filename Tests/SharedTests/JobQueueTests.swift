import Foundation
import TestSupport
import Testing

@testable import Shared

/// Queue transitions against a real redis-server.
@Suite(.timeLimit(.minutes(5))) struct JobQueueTests {
    static func settings() -> QueueSettings {
        var s = QueueSettings()
        s.leaseDuration = .milliseconds(400)
        s.reserveBlockTimeout = .milliseconds(100)
        s.retry = RetryPolicy(maxAttempts: 3, base: .milliseconds(50), maximum: .milliseconds(200), jitter: 0.5)
        s.retention = .seconds(3600)
        return s
    }

    static func job(_ agent: String = "dev", repo: String = "acme/widgets", number: Int = 1, _ extra: [(String, String)] = []) -> NewJob {
        NewJob(
            agent: agent, session: SessionKey(agent: agent, repository: repo, number: number),
            fields: [("forge", "forgejo"), ("event", "issue_comment"), ("repo", repo), ("number", String(number)), ("prompt", "hi")] + extra)
    }

    let server: RedisServer
    let queue: JobQueue
    let keys = KeySchema()

    init() throws {
        server = try RedisServer()
        queue = JobQueue(redis: server.client(), settings: Self.settings())
    }

    @Test func enqueueWritesRecordAndQueueAtomically() async throws {
        let j = Self.job()
        let result = try await queue.enqueue([j], delivery: (forge: "forgejo", id: "d-1"))
        #expect(result == .queued([j.id]))
        let record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "queued")
        #expect(record["agent"] == "dev")
        #expect(record["session"] == "dev:acme/widgets:1")
        #expect(record["attempts"] == "0")
        #expect(record["max_attempts"] == "3")
        #expect(record["prompt"] == "hi")
        #expect(Timestamp.parse(record["created_at"] ?? "") != nil)
        #expect(try await queue.redis.send("LRANGE", keys.queue("dev"), "0", "-1").strings == [j.id])
        #expect(try await queue.redis.send("GET", keys.delivery(forge: "forgejo", id: "d-1")).string == j.id)
    }

    /// The scripts' `key` table names exactly the keys `KeySchema` does, for a plain and a braced prefix.
    @Test(arguments: ["hooks", "{team-a}:hooks"]) func scriptKeyTableMatchesKeySchema(prefix: String) async throws {
        let schema = KeySchema(prefix: prefix)
        let expected = [
            schema.queue("dev"), schema.job("j1"), schema.sessions, schema.dead, schema.processing("w1"), schema.lease("w1"),
            schema.worker("w1"), schema.workers, schema.delayed, schema.pending("dev:o/r:1"), schema.sequence, schema.log("j1"),
            schema.sessionsUsed, schema.transcript("dev:o/r:1"), schema.jobIndex, schema.waiting("dev"), schema.sessionCounts,
            schema.statsMinute("29000000"), schema.statsHour("480000"), schema.feedback("dev"), schema.spendDay("20000"),
        ]
        let script = RedisScript(
            name: "key-table",
            source: KeySchema.luaKeyTable + """

                return {key.queue('dev'), key.job('j1'), key.sessions, key.dead, key.processing('w1'), key.lease('w1'),
                  key.worker('w1'), key.workers, key.delayed, key.pending('dev:o/r:1'), key.sequence, key.log('j1'),
                  key.sessionsUsed, key.transcript('dev:o/r:1'), key.jobIndex, key.waiting('dev'), key.sessionCounts,
                  key.statsMinute('29000000'), key.statsHour('480000'), key.feedback('dev'), key.spendDay('20000')}
                """)
        #expect(try await queue.redis.evaluate(script, arguments: [prefix]).strings == expected)
    }

    /// Every recorded run's own cost is added to its UTC day, per agent and per agent and repository; failed attempts
    /// cost money too; a run without a cost, or a late write by a worker that lost the job, adds nothing.
    @Test func runsCostsAddUpPerDayAgentAndRepository() async throws {
        let consumer = queue.makeConsumer(worker: "w1")
        for (agent, repo, cost, outcome) in [
            ("dev", "acme/widgets", "0.25", JobQueue.Outcome.succeeded), ("dev", "acme/shop", "0.5", .failed(error: "x", retryable: true)),
            ("dev", "acme/widgets", "", .succeeded), ("boss", "acme/widgets", "0.125", .succeeded),
        ] {
            let j = Self.job(agent, repo: repo, number: Int.random(in: 1...1_000_000))
            _ = try await queue.enqueue([j])
            let reserved = try #require(try await consumer.reserve(agents: [agent], home: agent))
            _ = try await queue.finish(reserved, worker: "w1", outcome: outcome, fields: [("cost_usd", cost)])
        }
        // A worker that lost its job writes nothing, its cost included.
        let late = Self.job("dev", repo: "acme/late", number: 7)
        _ = try await queue.enqueue([late])
        let stale = try #require(try await consumer.reserve(agents: ["dev"], home: "dev"))
        _ = try await queue.finish(stale, worker: "other-worker", outcome: .succeeded, fields: [("cost_usd", "9")])

        let days = try await queue.spend(days: 3)
        #expect(days.count == 3)
        // Added up over the days (a run at midnight UTC lands on the next one).
        let summary = SpendSummary(days)
        #expect(summary.agents.map(\.agent) == ["dev", "boss"] && summary.agents.map(\.total) == [0.75, 0.125], "\(summary.agents)")
        #expect(summary.agents.map(\.runs) == [2, 1] && summary.agents[0].week == 0.75)
        #expect(
            summary.repos.map(\.key) == [
                SpendDay.Repo(agent: "dev", repo: "acme/shop"), SpendDay.Repo(agent: "dev", repo: "acme/widgets"),
                SpendDay.Repo(agent: "boss", repo: "acme/widgets"),
            ])
        #expect(summary.repos.map(\.value) == [0.5, 0.25, 0.125])
        let day = Int(Date().timeIntervalSince1970) / 86400
        #expect(try await queue.redis.send("TTL", keys.spendDay(String(day))).int ?? 0 > 300 * 86400)
    }

    /// Near `maxmemory`, what agents fill is refused so the queue keeps its headroom: a large transcript leaves only a
    /// `skipped` record (another host then starts fresh), a log batch is counted on the job, and the job still finishes.
    @Test func agentDataIsRefusedIntoTheHeadroomAndTheQueueGoesOn() async throws {
        let small = try RedisServer(extraArguments: ["--maxmemory", "64mb", "--maxmemory-policy", "noeviction", "--enable-debug-command", "yes"])
        defer { small.stop() }
        var settings = Self.settings()
        settings.redisHeadroom = 0.5
        let queue = JobQueue(redis: small.client(), settings: settings)
        // The guard is off at 0.
        #expect(QueueSettings().redisHeadroom == 0.2)
        let j = Self.job()
        _ = try await queue.enqueue([j])
        let reserved = try #require(try await queue.makeConsumer(worker: "w").reserve(agents: ["dev"], home: "dev"))
        let fence = JobQueue.Fence(reserved, worker: "w")
        let session = j.session.description
        // To 2 MiB below the guard's line (32 MiB of 64), with other data in small keys (no large command buffers).
        let info = try await queue.redis.send("INFO", "memory").string ?? ""
        let used = Int(info.firstMatch(of: /used_memory:(\d+)/)?.1 ?? "") ?? 0
        try await queue.redis.send("DEBUG", "POPULATE", String(max(0, (30 << 20) - used) / 1200), "filler", "1000")
        #expect(try await queue.storeTranscript(session, fields: ["session_id", "s1"], data: Array("small".utf8), ttl: 60, fence: fence) == .stored)
        let big = [UInt8](repeating: 120, count: 4 << 20)
        #expect(try await queue.storeTranscript(session, fields: ["session_id", "s1"], data: big, ttl: 60, fence: fence) == .overBudget)
        let record = try await queue.redis.send("HGETALL", keys.transcript(session)).hash ?? [:]
        #expect(record["data"] == nil && record["skipped"]?.contains("near its maxmemory") == true && record["session_id"] == "s1", "\(record.keys)")
        #expect(try await queue.appendLog(fence, lines: [String(repeating: "l", count: 4 << 20)]) == .overBudget)
        #expect(try await queue.job(j.id)?["log_refused"] == "1")
        #expect(try await queue.finish(reserved, worker: "w", outcome: .succeeded) == .succeeded)
    }

    @Test func redisMemorySettingsGetAdvice() {
        let settings = QueueSettings()
        #expect(settings.memoryAdvice(maxmemory: 1 << 30, policy: "noeviction").isEmpty)
        #expect(settings.memoryAdvice(maxmemory: 0, policy: "noeviction").first?.hasPrefix("Redis has no maxmemory") == true)
        #expect(settings.memoryAdvice(maxmemory: 1 << 30, policy: "allkeys-lru").first?.contains("set maxmemory-policy noeviction") == true)
        let tight = settings.memoryAdvice(maxmemory: 256 << 20, policy: "noeviction")
        #expect(tight.count == 1 && tight[0].contains("room for 6 session(s) at their caps"), "\(tight)")
    }

    @Test func redeliveryCreatesNothing() async throws {
        let first = Self.job()
        #expect(try await queue.enqueue([first], delivery: (forge: "github", id: "abc")) == .queued([first.id]))
        let again = Self.job()
        #expect(try await queue.enqueue([again], delivery: (forge: "github", id: "abc")) == .duplicate([first.id]))
        #expect(try await queue.job(again.id) == nil)
        #expect(try await queue.redis.send("LLEN", keys.queue("dev")).int == 1)
        // The same delivery id from another forge is another delivery.
        #expect(try await queue.enqueue([again], delivery: (forge: "gitea", id: "abc")) == .queued([again.id]))
    }

    @Test func reserveSucceedAndRetention() async throws {
        let j = Self.job()
        _ = try await queue.enqueue([j])
        let consumer = queue.makeConsumer(worker: "w1")
        let reserved = try #require(try await consumer.reserve(agents: ["dev"], home: "dev"))
        #expect(reserved.id == j.id && reserved.attempt == 1 && reserved["prompt"] == "hi")
        var record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "running" && record["worker"] == "w1" && record["attempts"] == "1")
        #expect(try await queue.redis.send("LRANGE", keys.processing("w1"), "0", "-1").strings == [j.id])
        #expect(try await queue.redis.send("LLEN", keys.queue("dev")).int == 0)

        let result = try await queue.finish(reserved, worker: "w1", outcome: .succeeded, sessionID: "sess-1", fields: [("exit_code", "0")])
        #expect(result == .succeeded)
        record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "succeeded" && record["exit_code"] == "0" && record["session_id"] == "sess-1")
        #expect(try await queue.sessionID(for: "dev:acme/widgets:1") == "sess-1")
        #expect(try await queue.redis.send("LLEN", keys.processing("w1")).int == 0)
        let ttl = try await queue.redis.send("TTL", keys.job(j.id)).int ?? -1
        #expect(ttl > 3500 && ttl <= 3600)
        #expect(try await queue.redis.send("EXISTS", keys.pending("dev:acme/widgets:1")).int == 0)
    }

    @Test func failuresRetryWithBackoffThenDie() async throws {
        let j = Self.job()
        _ = try await queue.enqueue([j])
        let consumer = queue.makeConsumer(worker: "w1")
        var attempts: [Int] = []
        var delays: [Double] = []
        while true {
            let started = Date()
            guard let reserved = try await consumer.reserve(agents: ["dev"], home: "dev") else {
                try await queue.promoteDue()
                continue
            }
            if let last = delays.popLast() { delays.append(Date().timeIntervalSince(started) + last) }
            attempts.append(reserved.attempt)
            let finishedAt = Date()
            let result = try await queue.finish(
                reserved, worker: "w1", outcome: .failed(error: "boom \(reserved.attempt)", retryable: true), now: finishedAt)
            if case .retryScheduled(let at) = result {
                let record = try #require(try await queue.job(j.id))
                #expect(record["status"] == "failed" && record["error"] == "boom \(reserved.attempt)")
                #expect(try await queue.redis.send("ZSCORE", keys.delayed, j.id).string != nil)
                let wait = at.timeIntervalSince(finishedAt)
                // base 50 ms × 2^(n−1), jitter down to half, cap 200 ms
                let nominal = min(0.05 * pow(2, Double(reserved.attempt - 1)), 0.2)
                #expect(wait <= nominal + 0.001 && wait >= nominal / 2 - 0.001, "attempt \(reserved.attempt): waited \(wait)")
                // Not promoted before it is due (judged at the moment it failed, not by a wall clock a slow run
                // could carry past the due time).
                #expect(try await queue.promoteDue(now: finishedAt) == 0)
                continue
            }
            #expect(result == .dead)
            break
        }
        #expect(attempts == [1, 2, 3])
        let record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "dead" && record["error"] == "boom 3")
        #expect(try await queue.redis.send("LRANGE", keys.dead, "0", "-1").strings == [j.id])
        #expect(try await queue.redis.send("ZCARD", keys.delayed).int == 0)
    }

    @Test func notRetryableGoesStraightToDead() async throws {
        let j = Self.job()
        _ = try await queue.enqueue([j])
        let reserved = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(try await queue.finish(reserved, worker: "w", outcome: .failed(error: "bad prompt", retryable: false)) == .dead)
    }

    @Test func vanishedConsumerIsRecoveredAndJobCompletedExactlyOnce() async throws {
        var settings = Self.settings()
        // Long enough that a loaded machine cannot expire it before the "alive" check (2 s did, under load); the
        // lease then runs out on demand below.
        settings.leaseDuration = .seconds(30)
        let queue = JobQueue(redis: self.queue.redis, settings: settings)
        let j = Self.job()
        _ = try await queue.enqueue([j])
        // Worker A takes the job, heartbeats, then vanishes (no more heartbeats).
        let a = try #require(try await queue.makeConsumer(worker: "A").reserve(agents: ["dev"], home: "dev"))
        try await queue.heartbeat(worker: "A", info: ["host": "a"])
        // While A's lease is alive, recovery leaves it alone.
        #expect(try await queue.recoverExpired().isEmpty)
        // A's lease runs out (as it does once A stops heartbeating).
        #expect(try await queue.redis.send("PEXPIRE", keys.lease("A"), "1").int == 1)
        try await Task.sleep(for: .milliseconds(50))
        let recovered = try await queue.recoverExpired()
        #expect(recovered == [.init(worker: "A", jobID: j.id, outcome: "requeued")])
        #expect(try await queue.redis.send("ZSCORE", keys.workers, "A") == .null)
        var record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "queued" && (record["error"] ?? "").contains("worker A stopped"))

        // Worker B completes it.
        try await queue.heartbeat(worker: "B", info: [:])
        let b = try #require(try await queue.makeConsumer(worker: "B").reserve(agents: ["dev"], home: "dev"))
        #expect(b.id == j.id && b.attempt == 2)
        #expect(try await queue.finish(b, worker: "B", outcome: .succeeded, sessionID: "from-B") == .succeeded)
        // A comes back from the dead and tries to write its result: refused, nothing overwritten.
        let late = try await queue.finish(a, worker: "A", outcome: .failed(error: "late", retryable: true), sessionID: "from-A")
        #expect(late == .lost(currentStatus: "succeeded", currentWorker: "B"))
        record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "succeeded" && record["session_id"] == "from-B")
        #expect(try await queue.sessionID(for: j.session.description) == "from-B")
        #expect(try await queue.redis.send("ZCARD", keys.delayed).int == 0)
    }

    @Test func recoveryOfLastAttemptBuriesTheJob() async throws {
        let j = Self.job("dev", number: 2, [("max_attempts", "1")])
        _ = try await queue.enqueue([j])
        _ = try #require(try await queue.reserveAny(worker: "gone", agents: ["dev"]))
        try await queue.redis.send("ZADD", keys.workers, "0", "gone")
        #expect(try await queue.recoverExpired() == [.init(worker: "gone", jobID: j.id, outcome: "dead")])
        #expect(try await queue.job(j.id)?["status"] == "dead")
        #expect(try await queue.redis.send("LRANGE", keys.dead, "0", "-1").strings == [j.id])
    }

    @Test func restartingWorkerReclaimsItsOwnJobs() async throws {
        let j = Self.job()
        _ = try await queue.enqueue([j])
        try await queue.heartbeat(worker: "stable", info: [:])
        _ = try #require(try await queue.reserveAny(worker: "stable", agents: ["dev"]))
        // Same name, new process, lease still alive: it must not wait for its own lease to expire.
        let recovered = try await queue.recoverExpired(forcing: "stable")
        #expect(recovered.map(\.jobID) == [j.id])
        #expect(try await queue.job(j.id)?["status"] == "queued")
    }

    @Test func requeueGivesADeadJobFreshAttemptsAndRefusesOthers() async throws {
        let dead = Self.job(number: 30)
        let waitingBehind = Self.job(number: 30)
        _ = try await queue.enqueue([dead])
        let r = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(try await queue.finish(r, worker: "w", outcome: .failed(error: "x", retryable: false)) == .dead)
        _ = try await queue.enqueue([waitingBehind])
        #expect(try await queue.requeue(waitingBehind.id) == .refused(status: "queued"))
        #expect(try await queue.requeue("no-such-job") == .missing)

        #expect(try await queue.requeue(dead.id) == .queued(agent: "dev"))
        let record = try #require(try await queue.job(dead.id))
        #expect(record["status"] == "queued" && record["attempts"] == "0" && record["requeued_at"] != nil)
        #expect(try await queue.redis.send("LLEN", keys.dead).int == 0)
        #expect(try await queue.redis.send("TTL", keys.job(dead.id)).int == -1, "a re-queued record must not expire")
        // It takes a new place at the end of its session: the job enqueued after it died runs first.
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"])?.id == waitingBehind.id)
    }

    /// Reproduced deadlock: J1 fails (retry pending), J2 of the same session parks behind it, the operator re-queues
    /// J1. J1 must keep its place, run, and hand the session to J2.
    @Test func requeueOfAFailedJobKeepsItsPlaceAndTheSessionDrains() async throws {
        let j1 = Self.job(number: 31)
        let j2 = Self.job(number: 31)
        _ = try await queue.enqueue([j1])
        _ = try await queue.enqueue([j2])
        let r1 = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(try await queue.finish(r1, worker: "w", outcome: .failed(error: "x", retryable: true)) != .dead)
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"]) == nil)  // J2 parks behind the failed J1
        #expect(try await queue.job(j2.id)?["status"] == "waiting")
        #expect(try await queue.requeue(j1.id) == .queued(agent: "dev"))
        let again = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(again.id == j1.id, "the re-queued job must run first, not park behind its successor")
        _ = try await queue.finish(again, worker: "w", outcome: .succeeded)
        let next = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(next.id == j2.id)
        _ = try await queue.finish(next, worker: "w", outcome: .succeeded)
        #expect(try await queue.redis.send("EXISTS", keys.pending(j1.session.description)).int == 0, "the session did not drain")
    }

    /// A holder whose record vanished (deleted by hand) must not block its session: the parked successor runs.
    @Test func aVanishedHolderDoesNotBlockItsSession() async throws {
        // While it runs: finish of the vanished record hands the session on.
        let a1 = Self.job(number: 32)
        let a2 = Self.job(number: 32)
        _ = try await queue.enqueue([a1])
        _ = try await queue.enqueue([a2])
        let r1 = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"]) == nil)
        try await queue.redis.send("DEL", keys.job(a1.id))
        #expect(try await queue.finish(r1, worker: "w", outcome: .succeeded) == .lost(currentStatus: "", currentWorker: ""))
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"])?.id == a2.id)

        // Parked behind a failed job whose record is then deleted: the maintenance sweep repairs the session.
        let b1 = Self.job(number: 33)
        let b2 = Self.job(number: 33)
        _ = try await queue.enqueue([b1])
        _ = try await queue.enqueue([b2])
        let rb = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(rb.id == b1.id)
        _ = try await queue.finish(rb, worker: "w", outcome: .failed(error: "x", retryable: true))
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"]) == nil)
        try await queue.redis.send("DEL", keys.job(b1.id))
        try await queue.sweep()
        #expect(try await queue.job(b2.id)?["status"] == "queued")
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"])?.id == b2.id)

        // A queued successor claimed after its holder vanished does not park behind the ghost.
        let c1 = Self.job(number: 34)
        let c2 = Self.job(number: 34)
        _ = try await queue.enqueue([c1, c2])
        try await queue.redis.send("DEL", keys.job(c1.id))
        try await queue.redis.send("LREM", keys.queue("dev"), "0", c1.id)
        #expect(try await queue.reserveAny(worker: "w", agents: ["dev"])?.id == c2.id)
    }

    /// Purge deletes only finished records, checked in the same step, and never leaves a session blocked.
    @Test func purgeIsAtomicWithTheSessionOrder() async throws {
        let done = Self.job(number: 35)
        let pending = Self.job(number: 36)
        _ = try await queue.enqueue([done, pending])
        let r = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(r.id == done.id)
        _ = try await queue.finish(r, worker: "w", outcome: .succeeded)
        #expect(try await queue.purgeFinished(includeDead: true) == 1)
        let purgedRecord = try await queue.job(done.id)
        let keptRecord = try await queue.job(pending.id)
        #expect(purgedRecord == nil && keptRecord != nil)
    }

    /// After a job is recovered from a worker whose lease lapsed and runs elsewhere, every write the stale worker
    /// still makes about it is refused in the same script that checks it.
    @Test func aStaleWorkersWritesAreFenced() async throws {
        let j = Self.job(number: 40)
        _ = try await queue.enqueue([j])
        let first = try #require(try await queue.reserveAny(worker: "stale", agents: ["dev"]))
        let stale = JobQueue.Fence(first, worker: "stale")
        #expect(try await queue.annotate(stale, [("host", "a")]))
        try await queue.recoverExpired(forcing: "stale")
        let second = try #require(try await queue.reserveAny(worker: "fresh", agents: ["dev"]))
        let fresh = JobQueue.Fence(second, worker: "fresh")
        #expect(second.attempt == 2)
        try await queue.redis.send("HSET", keys.sessions, j.session.description, "11111111-1111-1111-1111-111111111111")
        #expect(
            try await queue.storeTranscript(j.session.description, fields: ["session_id", "new"], data: Array("new".utf8), ttl: 60, fence: fresh)
                == .stored)

        #expect(try await queue.annotate(stale, [("host", "b")]) == false)
        #expect(try await queue.appendLog(stale, lines: ["stale line"]) == .notHeld)
        #expect(try await queue.dropStaleSession(j.session.description, fence: stale) == false)
        #expect(
            try await queue.storeTranscript(j.session.description, fields: ["session_id", "old"], data: Array("old".utf8), ttl: 60, fence: stale)
                == .notHeld)
        #expect(try await queue.lostJobs(worker: "stale", held: [(j.id, 1)]) == [j.id])
        #expect(try await queue.lostJobs(worker: "fresh", held: [(j.id, 2)]).isEmpty)

        let record = try #require(try await queue.job(j.id))
        #expect(record["host"] == "a" && record["worker"] == "fresh")
        #expect(try await queue.redis.send("LLEN", keys.log(j.id)).int == 0)
        #expect(try await queue.sessionID(for: j.session.description) == "11111111-1111-1111-1111-111111111111")
        #expect(try await queue.redis.send("HGET", keys.transcript(j.session.description), "data").string == "new")
        #expect(try await queue.appendLog(fresh, lines: ["fresh line"]) == .stored)
        #expect(try await queue.redis.send("LRANGE", keys.log(j.id), "0", "-1").strings == ["fresh line"])
    }

    /// The heartbeat's check: a job this attempt just finished is not "lost"; one recovered (re-queued with the same
    /// worker and attempt fields still on it) or gone is.
    @Test func lostJobsTellsRecoveredFromJustFinished() async throws {
        let done = Self.job(number: 44)
        let recovered = Self.job(number: 45)
        _ = try await queue.enqueue([done, recovered])
        let r1 = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        let r2 = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        _ = try await queue.finish(r1, worker: "w", outcome: .succeeded)
        try await queue.recoverExpired(forcing: "w")
        let lost = try await queue.lostJobs(worker: "w", held: [(r1.id, r1.attempt), (r2.id, r2.attempt), ("gone", 1)])
        #expect(lost == [r2.id, "gone"])
    }

    /// Ids a live worker lists but does not run — the reply to its BLMOVE or claim was lost — are given back, and a
    /// worker never deregisters with ids still listed.
    @Test func strandedIdsOfALiveWorkerAreGivenBack() async throws {
        let queuedOne = Self.job(number: 41)
        let runningOne = Self.job(number: 42)
        let listedAtStop = Self.job(number: 43)
        _ = try await queue.enqueue([queuedOne, runningOne, listedAtStop])
        // A BLMOVE whose reply never arrived: the id sits in processing:w, still queued.
        try await queue.redis.send("LMOVE", keys.queue("dev"), keys.processing("w"), "RIGHT", "LEFT")
        // A claim whose reply never arrived: running as w, attempt 1, but no slot runs it.
        let claimed = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(claimed.id == runningOne.id)
        let given = try await queue.releaseStranded(worker: "w", ids: [queuedOne.id, runningOne.id])
        #expect(given.map(\.id) == [queuedOne.id, runningOne.id] && given.allSatisfy { $0.outcome == "requeued" })
        #expect(try await queue.processing(worker: "w").isEmpty)
        #expect(try await queue.job(runningOne.id)?["status"] == "queued")
        // Graceful stop with an id still listed: it goes back before the worker disappears.
        try await queue.heartbeat(worker: "w", info: [:])
        try await queue.redis.send("LMOVE", keys.queue("dev"), keys.processing("w"), "RIGHT", "LEFT")
        #expect(try await queue.processing(worker: "w").count == 1)
        try await queue.deregister(worker: "w")
        #expect(try await queue.processing(worker: "w").isEmpty)
        #expect(try await queue.redis.send("LLEN", keys.queue("dev")).int == 3)
    }

    @Test func releaseGivesTheJobBackWithoutCountingTheAttempt() async throws {
        let j = Self.job()
        _ = try await queue.enqueue([j])
        let r = try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        #expect(try await queue.release(r, worker: "w", reason: "worker shutting down"))
        let record = try #require(try await queue.job(j.id))
        #expect(record["status"] == "queued" && record["attempts"] == "0")
        #expect(try await queue.redis.send("LRANGE", keys.queue("dev"), "0", "-1").strings == [j.id])
        #expect(try await queue.release(r, worker: "w", reason: "again") == false)
    }

    @Test func laterJobOfABusySessionWaitsAndIsHandedOn() async throws {
        let first = Self.job(number: 7)
        let second = Self.job(number: 7)
        let other = Self.job(number: 8)
        _ = try await queue.enqueue([first])
        _ = try await queue.enqueue([second])
        _ = try await queue.enqueue([other])
        let r1 = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        #expect(r1.id == first.id)
        // The second job of session 7 is parked; the job of session 8 runs meanwhile.
        let r2 = try #require(try await queue.reserveAny(worker: "w2", agents: ["dev"]))
        #expect(r2.id == other.id)
        #expect(try await queue.job(second.id)?["status"] == "waiting")
        #expect(try await queue.job(second.id)?["waiting_for"] == first.id)
        #expect(try await queue.redis.send("LLEN", keys.queue("dev")).int == 0)
        #expect(try await queue.redis.send("LLEN", keys.processing("w2")).int == 1)
        // When the first ends, the second goes back on the queue and runs next.
        _ = try await queue.finish(r1, worker: "w1", outcome: .succeeded, sessionID: "s7")
        #expect(try await queue.job(second.id)?["status"] == "queued")
        let r3 = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        #expect(r3.id == second.id)
    }

    @Test func waitingJobsSurviveTheHoldersDeath() async throws {
        let first = Self.job(number: 9)
        let second = Self.job(number: 9)
        _ = try await queue.enqueue([first])
        _ = try await queue.enqueue([second])
        try await queue.heartbeat(worker: "doomed", info: [:])
        _ = try #require(try await queue.reserveAny(worker: "doomed", agents: ["dev"]))
        #expect(try await queue.reserveAny(worker: "other", agents: ["dev"]) == nil)  // second parks
        try await Task.sleep(for: .milliseconds(500))
        try await queue.recoverExpired()
        let again = try #require(try await queue.reserveAny(worker: "other", agents: ["dev"]))
        #expect(again.id == first.id)
        _ = try await queue.finish(again, worker: "other", outcome: .succeeded)
        let next = try #require(try await queue.reserveAny(worker: "other", agents: ["dev"]))
        #expect(next.id == second.id)
    }

    @Test func sessionDropsAndIdleSweep() async throws {
        try await queue.redis.send("HSET", keys.sessions, "dev:a/b:1", "old", "dev:a/b:2", "fresh")
        let now = Date()
        try await queue.redis.send("ZADD", keys.sessionsUsed, String(Timestamp.milliseconds(now) - 40 * 24 * 3600 * 1000), "dev:a/b:1")
        try await queue.redis.send("ZADD", keys.sessionsUsed, String(Timestamp.milliseconds(now)), "dev:a/b:2")
        #expect(try await queue.sweep(now: now) == ["dev:a/b:1"])
        #expect(try await queue.sessionID(for: "dev:a/b:1") == nil)
        #expect(try await queue.sessionID(for: "dev:a/b:2") == "fresh")
        // Closing an issue drops its sessions atomically with the delivery record.
        _ = try await queue.enqueue([], delivery: (forge: "gitea", id: "close-1"), dropSessions: ["dev:a/b:2"])
        #expect(try await queue.sessionID(for: "dev:a/b:2") == nil)
    }

    @Test func perSessionOrderUnderConcurrency() async throws {
        // 8 consumers, 200 jobs over 10 sessions (two agents): within a session one at a time, in enqueue order;
        // different sessions overlap.
        var expected: [String: [String]] = [:]
        for i in 0..<200 {
            let agent = i % 2 == 0 ? "dev" : "boss"
            let j = Self.job(agent, number: i % 10)
            expected[j.session.description, default: []].append(j.id)
            _ = try await queue.enqueue([j])
        }
        let log = RunLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<8 {
                let consumer = queue.makeConsumer(worker: "c\(c)")
                let queue = self.queue
                group.addTask {
                    while await log.count < 200 {
                        guard let job = try await consumer.reserve(agents: ["dev", "boss"], home: c % 2 == 0 ? "dev" : "boss") else { continue }
                        let start = ContinuousClock.now
                        try await Task.sleep(for: .microseconds(Int.random(in: 200...3000)))
                        await log.record(session: job.session, id: job.id, start: start, end: ContinuousClock.now)
                        _ = try await queue.finish(job, worker: "c\(c)", outcome: .succeeded)
                    }
                    consumer.close()
                }
            }
            try await group.waitForAll()
        }
        let runs = await log.runs
        #expect(runs.count == 200)
        var overlapAcrossSessions = false
        for (session, ids) in expected {
            let mine = runs.filter { $0.session == session }.sorted { $0.start < $1.start }
            #expect(mine.map(\.id) == ids, "session \(session) ran out of order")
            for (a, b) in zip(mine, mine.dropFirst()) { #expect(a.end <= b.start, "session \(session) overlapped") }
        }
        for a in runs {
            if runs.contains(where: { $0.session != a.session && $0.start < a.end && a.start < $0.end }) { overlapAcrossSessions = true; break }
        }
        #expect(overlapAcrossSessions)
        #expect(try await queue.redis.send("KEYS", "hooks:pending:*").array?.isEmpty == true)
    }
}

actor RunLog {
    struct Run { let session: String; let id: String; let start: ContinuousClock.Instant; let end: ContinuousClock.Instant }
    var runs: [Run] = []
    var count: Int { runs.count }
    func record(session: String, id: String, start: ContinuousClock.Instant, end: ContinuousClock.Instant) {
        runs.append(Run(session: session, id: id, start: start, end: end))
    }
}
