/// Names of every Redis key the system uses, all documented in docs/redis-keys.md (the queue, job, sessions and
/// processing keys are the contract operators and other tools rely on). A prefix written with braces (`{hooks}`) keeps every key in one Redis Cluster slot.
public struct KeySchema: Sendable, Equatable {
    public let prefix: String

    public init(prefix: String = "hooks") {
        self.prefix = prefix
    }

    /// list — ids of pending jobs for an agent (producer LPUSH, workers take from the right).
    public func queue(_ agent: String) -> String { "\(prefix):queue:\(agent)" }
    /// hash — one job record.
    public func job(_ id: String) -> String { "\(prefix):job:\(id)" }
    /// hash — session key (`agent:owner/repo:number`) → agent CLI session id.
    public var sessions: String { "\(prefix):sessions" }
    /// list — ids of jobs that exhausted their retries.
    public var dead: String { "\(prefix):dead" }

    /// list — job ids a worker has reserved and not yet finished.
    public func processing(_ worker: String) -> String { "\(prefix):processing:\(worker)" }
    /// string with a TTL — present while the worker is alive; renewed by its heartbeat.
    public func lease(_ worker: String) -> String { "\(prefix):lease:\(worker)" }
    /// hash — what a worker is (host, pid, agents, slots, started_at, heartbeat_at).
    public func worker(_ worker: String) -> String { "\(prefix):worker:\(worker)" }
    /// zset — worker id → last heartbeat (ms since epoch): every worker that may hold jobs.
    public var workers: String { "\(prefix):workers" }
    /// zset — job id → due time (ms) of a retry waiting for its back-off.
    public var delayed: String { "\(prefix):delayed" }
    /// zset — job id → enqueue sequence, for each session with unfinished jobs; the lowest may run.
    public func pending(_ session: String) -> String { "\(prefix):pending:\(session)" }
    /// A SCAN/KEYS pattern matching every `pending:*` key (glob characters in the prefix escaped); the session is what
    /// follows its last character but the `*`.
    public var pendingPattern: String {
        let escaped = prefix.map { "*?[]\\".contains($0) ? "\\\($0)" : String($0) }.joined()
        return "\(escaped):pending:*"
    }
    /// string — global enqueue sequence (orders jobs within a session).
    public var sequence: String { "\(prefix):seq" }
    /// string with a TTL — a delivery id already accepted → its job ids (dedup).
    public func delivery(forge: String, id: String) -> String { "\(prefix):delivery:\(forge):\(id)" }
    /// list — the agent's output lines of one job (capped, expires with the job).
    public func log(_ id: String) -> String { "\(prefix):log:\(id)" }
    /// zset — session key → last time (ms) a run used it, for dropping idle sessions.
    public var sessionsUsed: String { "\(prefix):sessions:used" }
    /// hash — the latest transcript of a session, so another host can resume it: `session_id cwd project bytes sha256
    /// host updated_at` and `data` (the JSONL text), or `skipped` when it was over the size cap. Expires with the session.
    public func transcript(_ session: String) -> String { "\(prefix):transcript:\(session)" }
    /// zset — job id → creation time (ms): the index `jobs` listings read; trimmed with retention.
    public var jobIndex: String { "\(prefix):jobs" }
}
