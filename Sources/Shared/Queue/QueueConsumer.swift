import Foundation

/// One worker slot's way into the queue: a dedicated connection for BLMOVE.
public struct QueueConsumer: Sendable {
    public let queue: JobQueue
    public let worker: String
    let redis: RedisClient

    init(queue: JobQueue, worker: String, redis: RedisClient) {
        self.queue = queue
        self.worker = worker
        self.redis = redis
    }

    /// Reserves the next runnable job. First tries every queue in `agents` without blocking (so a backlog on any
    /// agent is served), then blocks with BLMOVE on `home`'s queue for up to `settings.reserveBlockTimeout`.
    /// Returns nil when nothing was runnable in that time; call again.
    public func reserve(agents: [String], home: String) async throws(RedisError) -> ReservedJob? {
        if let job = try await queue.reserveAny(worker: worker, agents: agents) { return job }
        let keys = queue.keys
        let timeout = queue.settings.reserveBlockTimeout
        let reply = try await redis.blocking(
            RedisCommand("BLMOVE", keys.queue(home), keys.processing(worker), "RIGHT", "LEFT", String(format: "%.3f", timeout.seconds)),
            timeout: timeout)
        guard let id = reply.string else { return nil }
        switch try await queue.claim(id, worker: worker) {
        case .running(let job): return job
        case .waiting, .skipped: return nil
        }
    }

    /// Closes the dedicated connection.
    public func close() { redis.shutdown() }
}
