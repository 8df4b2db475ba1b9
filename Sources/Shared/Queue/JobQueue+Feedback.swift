import Foundation

/// Forge feedback's bookkeeping: which jobs' status comments are due, and what was posted. The queue scripts mark a
/// job due at every state change (`feedbackDue`); a worker of its agent claims it, posts, and settles it.
extension JobQueue {
    /// A job whose feedback this worker now holds: its record as it was when claimed.
    public struct FeedbackClaim: Sendable {
        public let id: String
        public let fields: [String: String]
        /// The state counter the record had: settling with it unlists the job only if no newer state came.
        public var version: String { fields["feedback_v"] ?? "" }
        /// The claim's token: settling with it proves the hold was not taken over meanwhile.
        public var token: String { fields["feedback_until"] ?? "" }
        /// Failed tries of the state it holds.
        public var tries: Int { Int(fields["feedback_tries"] ?? "") ?? 0 }
        public subscript(_ field: String) -> String? { fields[field] }
    }

    /// How an attempt to post ended.
    public enum FeedbackSettlement: Sendable {
        /// Posted; `fields` are written on the job (`feedback_comment`, `feedback_reacted`).
        case posted(fields: [(String, String)])
        /// Failed in a way that may pass (rate limit, 5xx, timeout): due again after `delay`, up to `maxTries`.
        case retry(error: String, delay: Duration, maxTries: Int, fields: [(String, String)])
        /// Rate limited: due again after `delay`, no try counted.
        case wait(error: String, delay: Duration, fields: [(String, String)])
        /// Not attempted (the hold was nearly over): due again at once, for any worker.
        case release
        /// Failed for good (bad token, no access, deleted issue): unlisted, the error kept in `feedback_error`.
        case giveUp(error: String, fields: [(String, String)])

        /// What was done before it ended, to write on the job.
        public var fields: [(String, String)] {
            switch self {
            case .posted(let fields), .retry(_, _, _, let fields), .wait(_, _, let fields), .giveUp(_, let fields): fields
            case .release: []
            }
        }
    }

    /// Claims up to `limit` jobs of `agent` whose feedback is due, each held for `hold` by `worker`.
    public func claimFeedback(agent: String, worker: String, hold: Duration, limit: Int) async throws(RedisError) -> [FeedbackClaim] {
        let reply = try await redis.evaluate(
            QueueScripts.claimFeedback,
            arguments: [keys.prefix, agent, worker, String(Int(hold.seconds * 1000)), String(limit)])
        guard let items = reply.array else { throw .unexpectedReply(command: "feedback-claim", reply: "\(reply)") }
        return stride(from: 0, to: items.count - 1, by: 2).compactMap { i in
            guard let id = items[i].string, let fields = items[i + 1].hash else { return nil }
            return FeedbackClaim(id: id, fields: fields)
        }
    }

    /// Ends the hold on `claim`; returns the script's verdict (`done`, `again`, `later`, `gave_up`, `gone`, or `lost`
    /// when the hold had ended and another worker took it over).
    @discardableResult
    public func settleFeedback(_ claim: FeedbackClaim, agent: String, worker: String, _ settlement: FeedbackSettlement) async throws(RedisError)
        -> String
    {
        let (outcome, error, delay, maxTries, fields): (String, String, Duration, Int, [(String, String)])
        switch settlement {
        case .posted(let f): (outcome, error, delay, maxTries, fields) = ("ok", "", .zero, 0, f)
        case .retry(let e, let d, let m, let f): (outcome, error, delay, maxTries, fields) = ("retry", e, d, m, f)
        case .wait(let e, let d, let f): (outcome, error, delay, maxTries, fields) = ("wait", e, d, 0, f)
        case .giveUp(let e, let f): (outcome, error, delay, maxTries, fields) = ("give_up", e, .zero, 0, f)
        case .release: (outcome, error, delay, maxTries, fields) = ("release", "", .zero, 0, [])
        }
        var arguments = [
            keys.prefix, claim.id, agent, worker, claim.version, outcome, String(Int(delay.seconds * 1000)), String(maxTries), error,
            claim.token, String(fields.count),
        ]
        for (k, v) in fields { arguments.append(contentsOf: [k, v]) }
        return try await redis.evaluate(QueueScripts.settleFeedback, arguments: arguments).string ?? ""
    }

    /// Unlists feedback of jobs whose record is gone (maintenance); returns how many.
    @discardableResult
    public func pruneFeedback(agents: [String], limit: Int = 1000) async throws(RedisError) -> Int {
        if agents.isEmpty { return 0 }
        return try await redis.evaluate(QueueScripts.pruneFeedback, arguments: [keys.prefix, String(limit)] + agents).int ?? 0
    }

    /// How many jobs' feedback is listed for `agent` (due now or later): for status pages and tests.
    public func feedbackBacklog(agent: String) async throws(RedisError) -> Int {
        try await redis.send("ZCARD", keys.feedback(agent)).int ?? 0
    }
}
