import Foundation

/// A worker slot's side: claim, reserve, finish, release.
extension JobQueue {

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
        let reply = try await claimReplicated(QueueScripts.claimOne, arguments: [keys.prefix, worker, id, Timestamp.iso(now)], worker: worker)
        return try Self.parseClaim(reply)
    }

    /// Non-blocking: takes the first claimable job from `agents`' queues, in that order.
    public func reserveAny(worker: String, agents: [String], now: Date = Date()) async throws(RedisError) -> ReservedJob? {
        if agents.isEmpty { return nil }
        let reply = try await claimReplicated(QueueScripts.reserveAny, arguments: [keys.prefix, worker, Timestamp.iso(now)] + agents, worker: worker)
        if reply.array?.isEmpty ?? true { return nil }
        if case .running(let job) = try Self.parseClaim(reply) { return job }
        return nil
    }

    /// Runs a claiming script. With `replicasAck` set, a job is handed to its agent only once that many replicas have
    /// the claim — and with it, replication being one ordered stream, the end of the session's previous job. Else a
    /// failover could lose both: the previous job would run again after this one had run, out of the session's order.
    /// A claim the replicas did not confirm in time is given back (attempt not counted) and the error thrown.
    private func claimReplicated(_ script: RedisScript, arguments: [String], worker: String) async throws(RedisError) -> RedisReply {
        guard settings.replicasAck > 0 else { return try await redis.evaluate(script, arguments: arguments) }
        // WAIT only after a claim: an empty poll must not hold a pooled connection for the timeout.
        let (reply, acknowledged) = try await redis.evaluateAndWait(
            script, arguments: arguments, replicas: settings.replicasAck, timeout: settings.replicasAckTimeout
        ) { reply in reply.array?.first?.string == "running" }
        guard acknowledged < settings.replicasAck, case .running(let job) = try Self.parseClaim(reply) else { return reply }
        // Back in a couple of seconds through the delayed set, not to the front of the queue (every idle slot would
        // take it again at once); no deferral counted, nothing posted to the forge.
        let reason = "the claim was not confirmed by \(settings.replicasAck) replica(s) in time; re-queued"
        var delay = Duration.milliseconds(200)
        for _ in 1...5 {
            if (try? await release(job, worker: worker, reason: reason, delay: .seconds(2), deferral: false)) != nil { break }
            try? await Task.sleep(for: delay)
            delay *= 2
        }
        throw .notReplicated(acknowledged: acknowledged, wanted: settings.replicasAck)
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
    /// `delay` through the delayed set (status stays `queued`). A delayed release counts as a deferral (a newer
    /// worker's container spec sent it back) unless `deferral` is false. Returns false if this worker no longer held it.
    @discardableResult
    public func release(
        _ job: ReservedJob, worker: String, reason: String, delay: Duration? = nil, deferral: Bool = true, now: Date = Date()
    ) async throws(RedisError) -> Bool {
        let due = delay.map { String(Timestamp.milliseconds(now) + Int64($0.seconds * 1000)) } ?? ""
        let reply = try await redis.evaluate(
            QueueScripts.release,
            arguments: [keys.prefix, worker, job.id, String(job.attempt), reason, job.session, due, deferral ? "1" : "0"])
        return reply.strings?.first == "ok"
    }
}
