/// Names of every Redis key the system uses (the queue scripts get them through `luaKeyTable`), all documented in docs/redis-keys.md (the queue, job, sessions and
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

    // Read models for the dashboard, kept by the queue scripts so no page has to scan.

    /// zset — job id → enqueue sequence, for each agent's jobs parked as `waiting` behind an earlier job of their session.
    public func waiting(_ agent: String) -> String { "\(prefix):waiting:\(agent)" }
    /// hash — agent → number of its sessions in `sessions` (rebuilt by the workers' sweep when missing).
    public var sessionCounts: String { "\(prefix):sessions:count" }
    /// hash with a 2 h TTL — `<agent>:<succeeded|failed|dead>` → attempts that ended so in that minute (unix minute).
    public func statsMinute(_ minute: String) -> String { "\(prefix):stats:m:\(minute)" }
    /// hash with an 8 day TTL — the same per hour (unix hour).
    public func statsHour(_ hour: String) -> String { "\(prefix):stats:h:\(hour)" }
    /// hash with a 400 day TTL — what the agents' runs cost on one UTC day (unix day): `repo:<agent>:<owner/repo>` →
    /// micro-dollars (an agent's total is the sum of its fields), `runs:<agent>` → runs that reported a cost. Kept by the finish
    /// script.
    public func spendDay(_ day: String) -> String { "\(prefix):spend:d:\(day)" }
    /// hash — `<host>/<agent>` → JSON: that agent's container on that Docker host as its workers last saw it.
    public var containers: String { "\(prefix):containers" }

    /// zset — job id → when (ms) its forge feedback (reaction, status comment) is due to be posted; the agent's
    /// workers drain it. A job stays listed, with a later score, while a worker posts it or waits to retry.
    public func feedback(_ agent: String) -> String { "\(prefix):feedback:\(agent)" }
}

extension KeySchema {
    /// Lua for the queue scripts: `local p = ARGV[1]` and a table `key` with one entry per key above (`key.job(id)`,
    /// `key.dead`, …), generated by calling the functions above with stand-in values, so the scripts hold no second
    /// copy of the names.
    static let luaKeyTable: String = {
        let prefixMark = "\u{1}"
        let argumentMark = "\u{2}"
        let schema = KeySchema(prefix: prefixMark)
        let entries: [(String, String)] = [
            ("queue", schema.queue(argumentMark)), ("job", schema.job(argumentMark)), ("sessions", schema.sessions),
            ("dead", schema.dead), ("processing", schema.processing(argumentMark)), ("lease", schema.lease(argumentMark)),
            ("worker", schema.worker(argumentMark)), ("workers", schema.workers), ("delayed", schema.delayed),
            ("pending", schema.pending(argumentMark)), ("sequence", schema.sequence), ("log", schema.log(argumentMark)),
            ("sessionsUsed", schema.sessionsUsed), ("transcript", schema.transcript(argumentMark)),
            ("jobIndex", schema.jobIndex), ("waiting", schema.waiting(argumentMark)), ("sessionCounts", schema.sessionCounts),
            ("statsMinute", schema.statsMinute(argumentMark)), ("statsHour", schema.statsHour(argumentMark)),
            ("spendDay", schema.spendDay(argumentMark)),
            ("feedback", schema.feedback(argumentMark)),
        ]
        var lines = ["local p = ARGV[1]", "local key = {}"]
        for (name, template) in entries {
            let expression = luaConcatenation(template, prefix: prefixMark, argument: argumentMark)
            if template.contains(argumentMark) {
                lines.append("function key.\(name)(x) return \(expression) end")
            } else {
                lines.append("key.\(name) = \(expression)")
            }
        }
        return lines.joined(separator: "\n")
    }()

    /// `"\u{1}:queue:\u{2}"` → `p .. ':queue:' .. x`.
    private static func luaConcatenation(_ template: String, prefix: String, argument: String) -> String {
        var parts: [String] = []
        var literal = ""
        for character in template {
            let marker = String(character)
            guard marker == prefix || marker == argument else {
                precondition(character != "'" && character != "\\", "key names are plain text")
                literal.append(character)
                continue
            }
            if !literal.isEmpty { parts.append("'\(literal)'") }
            literal = ""
            parts.append(marker == prefix ? "p" : "x")
        }
        if !literal.isEmpty { parts.append("'\(literal)'") }
        return parts.joined(separator: " .. ")
    }
}
