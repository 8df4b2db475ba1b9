import Foundation

/// Leases, recovery of dead workers' jobs, retries, sweeps, repair, purge.
extension JobQueue {
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
        try await redis.send("ZREMRANGEBYSCORE", keys.jobIndex, "-inf", String(horizon))
        var idle: [String] = []
        if settings.sessionIdle > .zero {
            let cutoff = String(nowMs - Int64(settings.sessionIdle.seconds * 1000))
            let candidates = try await redis.send("ZRANGEBYSCORE", keys.sessionsUsed, "-inf", cutoff, "LIMIT", "0", "1000").strings ?? []
            if !candidates.isEmpty {
                // The script looks at each one's last use again: one used since the listing stays.
                idle = try await redis.evaluate(QueueScripts.dropSessions, arguments: [keys.prefix, cutoff] + candidates).strings ?? []
            }
        }
        try await repairSessions()
        try await recountSessionsIfMissing()
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
}
