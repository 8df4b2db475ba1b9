import Foundation

/// Sessions, and every write a run makes about its job or session (fenced by worker and attempt).
extension JobQueue {

    /// The agent CLI session id stored for a session, if any.
    public func sessionID(for session: String) async throws(RedisError) -> String? {
        let reply = try await redis.send("HGET", keys.sessions, session)
        return reply.isNull ? nil : reply.string
    }

    /// Drops a stored session id (stale, or its issue closed). Returns whether one was stored.
    @discardableResult
    public func dropSession(_ session: String) async throws(RedisError) -> Bool {
        let dropped = try await redis.evaluate(QueueScripts.dropSessions, arguments: [keys.prefix, "", session]).strings ?? []
        return !dropped.isEmpty
    }

    /// Recounts the sessions per agent that the dashboard shows (`sessions:count`) from `sessions`. Returns the total.
    @discardableResult
    public func recountSessions() async throws(RedisError) -> Int {
        try await redis.evaluate(QueueScripts.recountSessions, arguments: [keys.prefix]).int ?? 0
    }

    /// Recounts sessions when there are sessions but no counter yet (the first start after an upgrade).
    public func recountSessionsIfMissing() async throws(RedisError) {
        let replies = try await redis.pipeline([RedisCommand("EXISTS", keys.sessionCounts), RedisCommand("HLEN", keys.sessions)])
        if replies[0].int == 0 && (replies[1].int ?? 0) > 0 { try await recountSessions() }
    }

    /// Who may write about a running job: the worker that holds it, for the attempt it runs. Every write a run makes
    /// about its job or session is checked against this in the same script, so a worker that lost its lease (the job
    /// recovered and re-run elsewhere) cannot overwrite the new owner's log, fields, transcript or session.
    public struct Fence: Sendable, Equatable {
        public let jobID: String
        public let worker: String
        public let attempt: Int
        public init(jobID: String, worker: String, attempt: Int) {
            self.jobID = jobID
            self.worker = worker
            self.attempt = attempt
        }
        public init(_ job: ReservedJob, worker: String) { self.init(jobID: job.id, worker: worker, attempt: job.attempt) }
        var arguments: [String] { [worker, jobID, String(attempt)] }
    }

    /// Appends lines to a job's capped log, if `fence` still holds. Returns false when it does not (nothing written).
    @discardableResult
    public func appendLog(_ fence: Fence, lines: [String]) async throws(RedisError) -> StoreResult {
        if lines.isEmpty { return .stored }
        let ttl = String(max(1, Int(settings.deadRetention.seconds > 0 ? settings.deadRetention.seconds : settings.retention.seconds)))
        let reply = try await redis.evaluate(
            QueueScripts.appendLog,
            arguments: [keys.prefix] + fence.arguments + [String(settings.logMaxLines), ttl, String(settings.redisHeadroom)] + lines)
        return StoreResult(reply)
    }

    /// What a fenced write of agent data (a log batch, a transcript) did.
    public enum StoreResult: Sendable, Equatable {
        case stored
        /// This worker no longer holds the job: nothing was written.
        case notHeld
        /// Redis is near its `maxmemory`: refused, to keep `queue.redis_headroom` for leases, claims and results.
        case overBudget

        init(_ reply: RedisReply) {
            switch reply.int {
            case 1: self = .stored
            case 2: self = .overBudget
            default: self = .notHeld
            }
        }
    }

    /// Sets fields on a running job's record (progress notes, warnings), if `fence` still holds.
    @discardableResult
    public func annotate(_ fence: Fence, _ fields: [(String, String)]) async throws(RedisError) -> Bool {
        if fields.isEmpty { return true }
        let reply = try await redis.evaluate(QueueScripts.annotate, arguments: [keys.prefix] + fence.arguments + fields.flatMap { [$0.0, $0.1] })
        return reply.int == 1
    }

    /// Drops a session id the agent CLI did not know, if `fence` still holds (a stale worker must not delete the id
    /// the job's new owner just stored).
    @discardableResult
    public func dropStaleSession(_ session: String, fence: Fence) async throws(RedisError) -> Bool {
        try await redis.evaluate(QueueScripts.dropStaleSession, arguments: [keys.prefix] + fence.arguments + [session]).int == 1
    }

    /// Replaces the shipped transcript of `session` with `fields`, expiring after `ttl` seconds, if `fence` still holds.
    /// `fields` are field/value pairs; `data`, when given, is stored as the binary-safe value of the field `data`, and
    /// each of `files` as the field `file:<path>` (the session's other files: saved tool outputs, subagents…).
    @discardableResult
    public func storeTranscript(
        _ session: String, fields: [String], data: [UInt8]?, files: [(path: String, bytes: [UInt8])] = [], ttl: Int, fence: Fence
    ) async throws(RedisError) -> StoreResult {
        var binary: [[UInt8]] = []
        if let data { binary += [Array("data".utf8), data] }
        for file in files { binary += [Array((Self.sessionFilePrefix + file.path).utf8), file.bytes] }
        let reply = try await redis.evaluate(
            QueueScripts.storeTranscript,
            arguments: [keys.prefix] + fence.arguments + [session, String(ttl), String(settings.redisHeadroom)] + fields,
            binaryArguments: binary)
        return StoreResult(reply)
    }

    /// The field prefix of a session's shipped files in `hooks:transcript:<session>`.
    public static let sessionFilePrefix = "file:"

    /// Which of `held` (job, attempt) no longer name `worker` as running them: their runs must stop.
    public func lostJobs(worker: String, held: [(id: String, attempt: Int)]) async throws(RedisError) -> [String] {
        if held.isEmpty { return [] }
        let reply = try await redis.evaluate(QueueScripts.lostJobs, arguments: [keys.prefix, worker] + held.flatMap { [$0.id, String($0.attempt)] })
        return reply.strings ?? []
    }

}
