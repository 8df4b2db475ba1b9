import Foundation

/// The producer side: jobs in, atomically with their dedup and dropped sessions.
extension JobQueue {

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
        // With replicas_ack, 202 means the jobs are on that many replicas too: a failover cannot lose them.
        let reply =
            settings.replicasAck > 0
            ? try await redis.evaluateReplicated(
                QueueScripts.enqueue, arguments: args, replicas: settings.replicasAck, timeout: settings.replicasAckTimeout)
            : try await redis.evaluate(QueueScripts.enqueue, arguments: args)
        guard let items = reply.strings, let tag = items.first else {
            throw .unexpectedReply(command: "enqueue", reply: "\(reply)")
        }
        let ids = Array(items.dropFirst()).filter { $0 != "-" }
        return tag == "duplicate" ? .duplicate(ids) : .queued(ids)
    }

}
