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
    /// The share of Redis' `maxmemory` kept free for the queue's own writes (leases, claims, releases, results): agent
    /// logs and transcripts are refused once used memory would reach `maxmemory × (1 − this)`. 0 = no guard.
    public var redisHeadroom: Double = 0.2
    /// The producer confirms a webhook (202) only once this many replicas have its jobs (`WAIT`); 0 = once the master
    /// has them. A write only the master had can be lost when a replica is promoted.
    public var replicasAck: Int = 0
    /// How long the producer waits for those replicas before answering 503.
    public var replicasAckTimeout: Duration = .milliseconds(500)

    public init() {}

    /// What an operator should hear about Redis' `maxmemory` and policy (empty when they suit these settings):
    /// without a limit the headroom guard is off; an evicting policy drops queued jobs and leases; and the room left
    /// outside the headroom should hold a fair number of sessions at their caps.
    public func memoryAdvice(maxmemory: Int64, policy: String) -> [String] {
        var advice: [String] = []
        if maxmemory <= 0 {
            advice.append(
                "Redis has no maxmemory: agents' logs and transcripts can grow until the host runs out of memory, and queue.redis_headroom "
                    + "cannot keep room for leases; set maxmemory (e.g. 1gb) with maxmemory-policy noeviction")
        } else {
            let perSession = Int64(transcriptMaxBytes + sessionFilesMaxBytes + logMaxBytes)
            let room = Int64(Double(maxmemory) * (1 - redisHeadroom))
            if redisHeadroom > 0, perSession > 0, room / perSession < 20 {
                advice.append(
                    "Redis maxmemory \(maxmemory) bytes leaves \(room) bytes for agent data (queue.redis_headroom \(redisHeadroom)): room for "
                        + "\(room / perSession) session(s) at their caps (transcript + files + one log: \(perSession) bytes); raise maxmemory or "
                        + "lower queue.transcript_max_bytes, session_files_max_bytes, log_max_bytes")
            }
        }
        if !policy.isEmpty, policy != "noeviction" {
            advice.append(
                "Redis maxmemory-policy is \(policy): a full Redis would evict queued jobs, leases and sessions; set maxmemory-policy noeviction")
        }
        return advice
    }
}
