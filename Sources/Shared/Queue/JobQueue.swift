import Foundation

/// The reliable job queue on Redis: every transition is one atomic script (see `QueueScripts`). The only owner of
/// the key schema and the record fields: `+Enqueue` (producer), `+Reserve` (reserve, claim, finish, release),
/// `+Maintenance` (leases, recovery, retries, sweeps), `+Sessions` (sessions, fenced run writes, transcripts),
/// `+Inspection` (typed reads for operators and dashboards).
///
/// Thread-safe; share one per process. Blocking reserves need a dedicated client per consumer (`makeConsumer`).
public struct JobQueue: Sendable {
    /// Only the queue core talks to Redis about jobs, workers and sessions: callers use the typed methods.
    let redis: RedisClient
    public let keys: KeySchema
    public let settings: QueueSettings

    public init(redis: RedisClient, keys: KeySchema = KeySchema(), settings: QueueSettings = QueueSettings()) {
        self.redis = redis
        self.keys = keys
        self.settings = settings
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
