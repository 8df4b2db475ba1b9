import Foundation

/// The reliable job queue on Redis: every transition is one atomic script (see `QueueScripts`).
///
/// Thread-safe; share one per process. Blocking reserves need a dedicated client per consumer (`makeConsumer`).
public struct JobQueue: Sendable {
    public let redis: RedisClient
    public let keys: KeySchema
    public let settings: QueueSettings

    public init(redis: RedisClient, keys: KeySchema = KeySchema(), settings: QueueSettings = QueueSettings()) {
        self.redis = redis
        self.keys = keys
        self.settings = settings
    }

    // MARK: Producer side

    public enum EnqueueResult: Sendable, Equatable {
        /// The jobs are in Redis (ids in order).
        case queued([String])
        /// The delivery was accepted before; these are the jobs it created then.
        case duplicate([String])
    }

    /// Atomically: dedups `delivery` (if given), creates every job record, puts each id on its agent's queue, and
    /// drops `dropSessions` from the sessions hash — all or nothing, in one round trip.
    public func enqueue(
        _ jobs: [NewJob],
        delivery: (forge: String, id: String)? = nil,
        dropSessions: [String] = [],
        now: Date = Date()
    ) async throws(RedisError) -> EnqueueResult {
        var args: [String] = [
            keys.prefix,
            delivery.map { keys.delivery(forge: $0.forge, id: $0.id) } ?? "",
            String(max(1, Int(settings.dedupTTL.seconds))),
            String(Timestamp.milliseconds(now)),
            String(jobs.count),
            String(dropSessions.count),
        ]
        let created = Timestamp.iso(now)
        for job in jobs {
            var fields = job.fields
            fields.append(("created_at", created))
            if !fields.contains(where: { $0.0 == "max_attempts" }) { fields.append(("max_attempts", String(settings.retry.maxAttempts))) }
            args += [job.id, job.agent, job.session.description, String(fields.count)]
            for (k, v) in fields { args += [k, v] }
        }
        args += dropSessions
        let reply = try await redis.evaluate(QueueScripts.enqueue, arguments: args)
        guard let items = reply.strings, let tag = items.first else {
            throw .unexpectedReply(command: "enqueue", reply: "\(reply)")
        }
        let ids = Array(items.dropFirst()).filter { $0 != "-" }
        return tag == "duplicate" ? .duplicate(ids) : .queued(ids)
    }

    // MARK: Worker side

    /// A blocking consumer: one dedicated connection, for one worker slot.
    public func makeConsumer(worker: String, name: String? = nil) -> QueueConsumer {
        QueueConsumer(queue: self, worker: worker, redis: redis.makeDedicated(name: name ?? "redis-\(worker)"))
    }

    public enum ClaimResult: Sendable {
        case running(ReservedJob)
        /// Parked behind an earlier job of the same session.
        case waiting(id: String, behind: String)
        /// The id no longer refers to a queued job (expired record, or a stale duplicate); dropped.
        case skipped(id: String)
    }

    /// Claims a job id this worker has moved into its processing list.
    public func claim(_ id: String, worker: String, now: Date = Date()) async throws(RedisError) -> ClaimResult {
        let reply = try await redis.evaluate(QueueScripts.claimOne, arguments: [keys.prefix, worker, id, Timestamp.iso(now)])
        return try Self.parseClaim(reply)
    }

    /// Non-blocking: takes the first claimable job from `agents`' queues, in that order.
    public func reserveAny(worker: String, agents: [String], now: Date = Date()) async throws(RedisError) -> ReservedJob? {
        if agents.isEmpty { return nil }
        let reply = try await redis.evaluate(QueueScripts.reserveAny, arguments: [keys.prefix, worker, Timestamp.iso(now)] + agents)
        if reply.array?.isEmpty ?? true { return nil }
        if case .running(let job) = try Self.parseClaim(reply) { return job }
        return nil
    }

    static func parseClaim(_ reply: RedisReply) throws(RedisError) -> ClaimResult {
        guard let items = reply.array, items.count >= 2, let tag = items[0].string, let id = items[1].string else {
            throw .unexpectedReply(command: "claim", reply: "\(reply)")
        }
        switch tag {
        case "running":
            let fields = items.count > 2 ? items[2].hash ?? [:] : [:]
            return .running(ReservedJob(id: id, attempt: Int(fields["attempts"] ?? "") ?? 1, fields: fields))
        case "waiting":
            return .waiting(id: id, behind: items.count > 2 ? items[2].string ?? "" : "")
        default:
            return .skipped(id: id)
        }
    }

    /// How an attempt ended.
    public enum Outcome: Sendable {
        case succeeded
        /// Failed; retried with back-off while attempts remain, unless `retryable` is false.
        case failed(error: String, retryable: Bool)
    }

    public enum FinishResult: Sendable, Equatable {
        case succeeded
        case retryScheduled(at: Date)
        case dead
        /// The worker no longer held this attempt (its lease expired and the job was recovered): nothing was written.
        case lost(currentStatus: String, currentWorker: String)
    }

    /// Records the end of an attempt: outcome fields, the session id the run reported, and the next state
    /// (succeeded / retry scheduled / dead). Writes nothing if this worker no longer holds the attempt.
    public func finish(
        _ job: ReservedJob,
        worker: String,
        outcome: Outcome,
        sessionID: String? = nil,
        fields: [(String, String)] = [],
        now: Date = Date()
    ) async throws(RedisError) -> FinishResult {
        var fields = fields
        let tag: String
        var due = now
        switch outcome {
        case .succeeded:
            tag = "succeeded"
        case .failed(let error, let retryable):
            fields.append(("error", error))
            if retryable && settings.retry.shouldRetry(afterAttempt: job.attempt, maxAttempts: job.maxAttempts) {
                tag = "retry"
                due = now.addingTimeInterval(settings.retry.delay(afterAttempt: job.attempt).seconds)
            } else {
                tag = "dead"
            }
        }
        var args = [
            keys.prefix, worker, job.id, String(job.attempt), tag,
            String(Timestamp.milliseconds(now)), Timestamp.iso(now),
            String(max(1, Int(settings.retention.seconds))), String(Int(settings.deadRetention.seconds)),
            String(Timestamp.milliseconds(due)), sessionID ?? "", job.session, String(fields.count),
        ]
        for (k, v) in fields { args += [k, v] }
        let reply = try await redis.evaluate(QueueScripts.finish, arguments: args)
        guard let items = reply.strings, let first = items.first else { throw .unexpectedReply(command: "finish", reply: "\(reply)") }
        if first == "lost" { return .lost(currentStatus: items[safe: 1] ?? "", currentWorker: items[safe: 2] ?? "") }
        switch items[safe: 1] {
        case "succeeded": return .succeeded
        case "failed": return .retryScheduled(at: due)
        default: return .dead
        }
    }

    /// Gives a running job back without counting the attempt: to the front of its queue (graceful shutdown), or after
    /// `delay` through the delayed set (status stays `queued`). Returns false if this worker no longer held it.
    @discardableResult
    public func release(_ job: ReservedJob, worker: String, reason: String, delay: Duration? = nil, now: Date = Date()) async throws(RedisError)
        -> Bool
    {
        let due = delay.map { String(Timestamp.milliseconds(now) + Int64($0.seconds * 1000)) } ?? ""
        let reply = try await redis.evaluate(
            QueueScripts.release, arguments: [keys.prefix, worker, job.id, String(job.attempt), reason, job.session, due])
        return reply.strings?.first == "ok"
    }

    /// Renews the worker's lease and publishes what it is; call every `settings.heartbeatInterval`.
    public func heartbeat(worker: String, info: [String: String], now: Date = Date()) async throws(RedisError) {
        var hset = RedisCommand("HSET", keys.worker(worker), "heartbeat_at", Timestamp.iso(now))
        for (k, v) in info.sorted(by: { $0.key < $1.key }) { hset.append(contentsOf: [k, v]) }
        let leaseMs = String(Int(settings.leaseDuration.seconds * 1000))
        let replies = try await redis.pipeline([
            RedisCommand("SET", keys.lease(worker), Timestamp.iso(now), "PX", leaseMs),
            RedisCommand("ZADD", keys.workers, String(Timestamp.milliseconds(now)), worker),
            hset,
            RedisCommand("PEXPIRE", keys.worker(worker), String(Int(settings.leaseDuration.seconds * 1000) * 10)),
        ])
        if let error = replies.first(where: { if case .error = $0 { true } else { false } }), case .error(let m) = error { throw .server(m) }
    }

    /// Whether a worker holds a lease (it heartbeated within `settings.leaseDuration`).
    public func isAlive(worker: String) async throws(RedisError) -> Bool {
        try await redis.send("EXISTS", keys.lease(worker)).int == 1
    }

    /// The ids listed in a worker's processing list.
    public func processing(worker: String) async throws(RedisError) -> [String] {
        try await redis.send("LRANGE", keys.processing(worker), "0", "-1").strings ?? []
    }

    /// Gives back `ids` from `worker`'s processing list that it does not run (see `QueueScripts.releaseStranded`).
    /// Returns (id, outcome) for each id that was still listed.
    public func releaseStranded(worker: String, ids: [String], now: Date = Date()) async throws(RedisError) -> [(id: String, outcome: String)] {
        if ids.isEmpty { return [] }
        let reply = try await redis.evaluate(
            QueueScripts.releaseStranded,
            arguments: [keys.prefix, worker, Timestamp.iso(now), String(Int(settings.deadRetention.seconds)), String(settings.retry.maxAttempts)]
                + ids)
        let flat = reply.strings ?? []
        return stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) }
    }

    /// Removes the worker's lease and registration (graceful stop). Anything still in its processing list is given
    /// back first — with the default `<host>-<pid>` worker id nobody would ever recover it.
    public func deregister(worker: String) async throws(RedisError) {
        _ = try await releaseStranded(worker: worker, ids: try await processing(worker: worker))
        _ = try await redis.pipeline([
            RedisCommand("DEL", keys.lease(worker), keys.worker(worker)),
            RedisCommand("ZREM", keys.workers, worker),
        ])
    }

    public struct Recovered: Sendable, Equatable {
        public let worker: String
        public let jobID: String
        /// `requeued` or `dead`.
        public let outcome: String
    }

    /// Requeues the jobs of every worker whose lease has expired (attempts already counted; a job out of attempts
    /// goes dead). `forcing` also recovers that worker's jobs regardless of its lease: a worker restarting under a
    /// stable name reclaims what its previous life left behind. Atomic: concurrent recoveries never interleave.
    @discardableResult
    public func recoverExpired(forcing worker: String? = nil, now: Date = Date()) async throws(RedisError) -> [Recovered] {
        let reply = try await redis.evaluate(
            QueueScripts.recover,
            arguments: [
                keys.prefix, Timestamp.iso(now), String(Timestamp.milliseconds(now)),
                String(Int(settings.deadRetention.seconds)), String(settings.retry.maxAttempts), worker ?? "",
            ])
        let items = reply.strings ?? []
        return stride(from: 0, to: items.count - 2, by: 3).map { Recovered(worker: items[$0], jobID: items[$0 + 1], outcome: items[$0 + 2]) }
    }

    public enum RequeueResult: Sendable, Equatable {
        case queued(agent: String)
        /// Only dead or failed jobs can be re-queued; this one is in another state.
        case refused(status: String)
        case missing
    }

    /// Puts a dead or failed job back on its queue with fresh attempts (operator action).
    public func requeue(_ id: String, now: Date = Date()) async throws(RedisError) -> RequeueResult {
        let reply = try await redis.evaluate(QueueScripts.requeue, arguments: [keys.prefix, id, Timestamp.iso(now)]).strings ?? []
        switch reply.first {
        case "queued": return .queued(agent: reply[safe: 1] ?? "")
        case "refused": return .refused(status: reply[safe: 1] ?? "")
        default: return .missing
        }
    }

    /// Moves due retries back onto their queues; returns how many.
    @discardableResult
    public func promoteDue(now: Date = Date(), limit: Int = 100) async throws(RedisError) -> Int {
        try await redis.evaluate(QueueScripts.promote, arguments: [keys.prefix, String(Timestamp.milliseconds(now)), String(limit)]).int ?? 0
    }

    /// Housekeeping that keeps Redis bounded: trims the job index and the dead list of expired records, and drops
    /// sessions idle longer than `settings.sessionIdle`. Returns the dropped session keys.
    @discardableResult
    public func sweep(now: Date = Date()) async throws(RedisError) -> [String] {
        let nowMs = Timestamp.milliseconds(now)
        let horizon = nowMs - Int64(max(settings.retention.seconds, settings.deadRetention.seconds) * 1000)
        var commands = [RedisCommand("ZREMRANGEBYSCORE", keys.jobIndex, "-inf", String(horizon))]
        var idle: [String] = []
        if settings.sessionIdle > .zero {
            let cutoff = nowMs - Int64(settings.sessionIdle.seconds * 1000)
            idle = try await redis.send("ZRANGEBYSCORE", keys.sessionsUsed, "-inf", String(cutoff), "LIMIT", "0", "1000").strings ?? []
            if !idle.isEmpty {
                commands.append(RedisCommand(["HDEL", keys.sessions] + idle))
                commands.append(RedisCommand(["ZREM", keys.sessionsUsed] + idle))
                commands.append(RedisCommand(["DEL"] + idle.map(keys.transcript)))
            }
        }
        _ = try await redis.pipeline(commands)
        try await repairSessions()
        // Dead ids whose record expired are dropped from the dead list (oldest are at the tail).
        let tail = try await redis.send("LRANGE", keys.dead, "-100", "-1").strings ?? []
        if !tail.isEmpty {
            let exists = try await redis.pipeline(tail.map { RedisCommand("EXISTS", keys.job($0)) })
            let gone = zip(tail, exists).filter { $0.1.int == 0 }.map(\.0)
            if !gone.isEmpty { _ = try await redis.pipeline(gone.map { RedisCommand("LREM", keys.dead, "1", $0) }) }
        }
        return idle
    }

    /// Hands on every session whose lowest pending job's record is gone — deleted by hand, or lost with Redis data —
    /// so the jobs parked behind it run. Scans the `pending:*` keys (one SCAN pass); each repair is one script.
    /// Returns how many sessions were looked at.
    @discardableResult
    public func repairSessions() async throws(RedisError) -> Int {
        var cursor = "0"
        var sessions: [String] = []
        let pattern = keys.pendingPattern
        repeat {
            let reply = try await redis.send("SCAN", cursor, "MATCH", pattern, "COUNT", "1000").array ?? []
            cursor = reply.first?.string ?? "0"
            sessions += (reply.dropFirst().first?.strings ?? []).map { String($0.dropFirst(keys.pending("").count)) }
        } while cursor != "0"
        guard !sessions.isEmpty else { return 0 }
        let lows = try await redis.pipeline(sessions.map { RedisCommand("ZRANGE", keys.pending($0), "0", "0") })
        let candidates = zip(sessions, lows).compactMap { session, low in low.strings?.first.map { (session, $0) } }
        let exists = try await redis.pipeline(candidates.map { RedisCommand("EXISTS", keys.job($0.1)) })
        for ((session, _), present) in zip(candidates, exists) where present.int == 0 {
            _ = try await redis.evaluate(QueueScripts.wakeSession, arguments: [keys.prefix, session])
        }
        return sessions.count
    }

    /// Deletes finished job records (succeeded; with `includeDead` also dead ones) and their logs. Each record's status
    /// is checked in the same atomic step as its deletion. Returns how many records were deleted.
    public func purgeFinished(includeDead: Bool) async throws(RedisError) -> Int {
        let ids = try await redis.send("ZRANGE", keys.jobIndex, "0", "-1").strings ?? []
        var purged = 0
        for start in stride(from: 0, to: ids.count, by: 500) {
            let chunk = Array(ids[start..<min(start + 500, ids.count)])
            purged += try await redis.evaluate(QueueScripts.purge, arguments: [keys.prefix, includeDead ? "1" : "0"] + chunk).int ?? 0
        }
        return purged
    }

    // MARK: Sessions and logs

    /// The agent CLI session id stored for a session, if any.
    public func sessionID(for session: String) async throws(RedisError) -> String? {
        let reply = try await redis.send("HGET", keys.sessions, session)
        return reply.isNull ? nil : reply.string
    }

    /// Drops a stored session id (stale, or its issue closed). Returns whether one was stored.
    @discardableResult
    public func dropSession(_ session: String) async throws(RedisError) -> Bool {
        let replies = try await redis.pipeline([
            RedisCommand("HDEL", keys.sessions, session), RedisCommand("ZREM", keys.sessionsUsed, session),
            RedisCommand("DEL", keys.transcript(session)),
        ])
        return replies[0].int == 1
    }

    /// Who may write about a running job: the worker that holds it, for the attempt it runs. Every write a run makes
    /// about its job or session is checked against this in the same script, so a worker that lost its lease (the job
    /// recovered and re-run elsewhere) cannot overwrite the new owner's log, fields, transcript or session.
    public struct Fence: Sendable, Equatable {
        public let jobID: String
        public let worker: String
        public let attempt: Int
        public init(jobID: String, worker: String, attempt: Int) {
            self.jobID = jobID
            self.worker = worker
            self.attempt = attempt
        }
        public init(_ job: ReservedJob, worker: String) { self.init(jobID: job.id, worker: worker, attempt: job.attempt) }
        var arguments: [String] { [worker, jobID, String(attempt)] }
    }

    /// Appends lines to a job's capped log, if `fence` still holds. Returns false when it does not (nothing written).
    @discardableResult
    public func appendLog(_ fence: Fence, lines: [String]) async throws(RedisError) -> Bool {
        if lines.isEmpty { return true }
        let ttl = String(max(1, Int(settings.deadRetention.seconds > 0 ? settings.deadRetention.seconds : settings.retention.seconds)))
        let reply = try await redis.evaluate(
            QueueScripts.appendLog, arguments: [keys.prefix] + fence.arguments + [String(settings.logMaxLines), ttl] + lines)
        return reply.int == 1
    }

    /// Sets fields on a running job's record (progress notes, warnings), if `fence` still holds.
    @discardableResult
    public func annotate(_ fence: Fence, _ fields: [(String, String)]) async throws(RedisError) -> Bool {
        if fields.isEmpty { return true }
        let reply = try await redis.evaluate(QueueScripts.annotate, arguments: [keys.prefix] + fence.arguments + fields.flatMap { [$0.0, $0.1] })
        return reply.int == 1
    }

    /// Drops a session id the agent CLI did not know, if `fence` still holds (a stale worker must not delete the id
    /// the job's new owner just stored).
    @discardableResult
    public func dropStaleSession(_ session: String, fence: Fence) async throws(RedisError) -> Bool {
        try await redis.evaluate(QueueScripts.dropStaleSession, arguments: [keys.prefix] + fence.arguments + [session]).int == 1
    }

    /// Replaces the shipped transcript of `session` with `fields`, expiring after `ttl` seconds, if `fence` still holds.
    @discardableResult
    /// `fields` are field/value pairs; `data`, when given, is stored as the binary-safe value of the field `data`.
    public func storeTranscript(_ session: String, fields: [String], data: [UInt8]?, ttl: Int, fence: Fence) async throws(RedisError) -> Bool {
        let reply = try await redis.evaluate(
            QueueScripts.storeTranscript,
            arguments: [keys.prefix] + fence.arguments + [session, String(ttl)] + fields + (data == nil ? [] : ["data"]),
            binaryArguments: data.map { [$0] } ?? [])
        return reply.int == 1
    }

    /// Which of `held` (job, attempt) no longer name `worker` as running them: their runs must stop.
    public func lostJobs(worker: String, held: [(id: String, attempt: Int)]) async throws(RedisError) -> [String] {
        if held.isEmpty { return [] }
        let reply = try await redis.evaluate(QueueScripts.lostJobs, arguments: [keys.prefix, worker] + held.flatMap { [$0.id, String($0.attempt)] })
        return reply.strings ?? []
    }

    /// The whole record of a job, or nil if there is none.
    public func job(_ id: String) async throws(RedisError) -> [String: String]? {
        let fields = try await redis.send("HGETALL", keys.job(id)).hash ?? [:]
        return fields.isEmpty ? nil : fields
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
