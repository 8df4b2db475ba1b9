/// Queue timing and retention. Defaults suit production; tests shorten them.
public struct QueueSettings: Sendable, Equatable {
    /// A worker's lease lives this long without a heartbeat; then its jobs are recovered.
    public var leaseDuration: Duration = .seconds(30)
    /// How often a worker renews its lease (well under `leaseDuration`).
    public var heartbeatInterval: Duration = .seconds(10)
    /// How often workers look for due retries.
    public var promoteInterval: Duration = .milliseconds(500)
    /// How often workers look for expired leases.
    public var recoveryInterval: Duration = .seconds(5)
    /// Server-side timeout of one BLMOVE; bounds how long shutdown waits for an idle slot.
    public var reserveBlockTimeout: Duration = .seconds(1)
    public var retry: RetryPolicy = .exponentialJitter
    /// Finished (succeeded) job records and their logs expire after this long.
    public var retention: Duration = .seconds(7 * 24 * 3600)
    /// Dead job records expire after this long (0 = never), so they stay inspectable and re-queueable meanwhile.
    public var deadRetention: Duration = .seconds(30 * 24 * 3600)
    /// A delivery id is remembered this long for dedup.
    public var dedupTTL: Duration = .seconds(7 * 24 * 3600)
    /// At most this many output lines are kept per job log.
    public var logMaxLines: Int = 2000
    /// At most this many bytes of agent output are stored per job log; later output is counted, not stored.
    public var logMaxBytes: Int = 2 << 20
    /// Sessions unused for this long are dropped (0 = never).
    public var sessionIdle: Duration = .seconds(30 * 24 * 3600)
    /// Session transcripts up to this size are shipped through Redis so any host can resume (0 = never ship).
    public var transcriptMaxBytes: Int = 16 << 20
    /// The session's other files (saved tool outputs, subagents' transcripts, the project's memory) are shipped with it
    /// when each is at most this size…
    public var sessionFileMaxBytes: Int = 4 << 20
    /// …and all of them together at most this size (at most `sessionFilesMaxCount` files); the rest is named in a warning.
    public var sessionFilesMaxBytes: Int = 16 << 20
    public static let sessionFilesMaxCount = 500
    /// The producer confirms a webhook (202) only once this many replicas have its jobs (`WAIT`); 0 = once the master
    /// has them. A write only the master had can be lost when a replica is promoted.
    public var replicasAck: Int = 0
    /// How long the producer waits for those replicas before answering 503.
    public var replicasAckTimeout: Duration = .milliseconds(500)

    public init() {}
}
