import Foundation

/// A job's record as stored (`hooks:job:<id>`), with typed access to the fields callers decide on.
public struct JobRecord: Sendable, Equatable {
    public let id: String
    /// Every field, as stored (strings).
    public let fields: [String: String]

    public init(id: String, fields: [String: String]) {
        self.id = id
        self.fields = fields
    }

    public subscript(_ field: String) -> String? { fields[field] }
    /// Nil for a value this version does not know (written by hand or by a newer version).
    public var status: JobStatus? { fields["status"].flatMap(JobStatus.init(rawValue:)) }
    public var agent: String { fields["agent"] ?? "" }
    public var session: String { fields["session"] ?? "" }
    public var attempts: Int { Int(fields["attempts"] ?? "") ?? 0 }
    public var worker: String? { fields["worker"] }
    public var createdAt: Date? { fields["created_at"].flatMap(Timestamp.parse) }
    public var startedAt: Date? { fields["started_at"].flatMap(Timestamp.parse) }
}

/// A registered worker (`hooks:workers`, `hooks:worker:<id>`, its lease and processing list).
public struct WorkerInfo: Sendable, Equatable {
    public let id: String
    public let host: String
    public let agents: [String]
    public let slots: String
    /// Its last heartbeat (the `hooks:workers` score).
    public let lastHeartbeat: Date
    /// What is left of its lease; nil when it lapsed.
    public let leaseRemaining: Duration?
    /// Ids in its processing list.
    public let held: [String]
    public var alive: Bool { leaseRemaining != nil }
}

/// A stored agent session (`hooks:sessions`, `hooks:sessions:used`, `hooks:transcript:<session>`).
public struct SessionInfo: Sendable, Equatable {
    public let key: String
    public let sessionID: String
    public let lastUsed: Date?
    /// The shipped transcript: its size and the host that shipped it, or why it was not shipped; nil when none.
    public let transcript: TranscriptInfo?
}

public struct TranscriptInfo: Sendable, Equatable {
    public let sessionID: String
    public let bytes: Int
    public let host: String
    public let sha256: String?
    /// Why it was not shipped (over the cap); nil when it was.
    public let skipped: String?
}

/// Counts across the queue: what `hooksctl status` shows.
public struct QueueCounts: Sendable, Equatable {
    /// Queued ids per agent.
    public let queued: [String: Int]
    /// Jobs per agent whose forge feedback is not posted yet (due, being posted, or waiting to retry).
    public let feedback: [String: Int]
    public let delayed: Int
    public let dead: Int
    public let sessions: Int
}

extension JobQueue {
    /// Answers when Redis does (readiness checks).
    public func ping() async throws(RedisError) { try await redis.ping() }

    /// The whole record of a job, or nil if there is none.
    public func job(_ id: String) async throws(RedisError) -> [String: String]? {
        try await record(id)?.fields
    }

    /// A job's record, or nil if there is none (never existed, expired, purged).
    public func record(_ id: String) async throws(RedisError) -> JobRecord? {
        let fields = try await redis.send("HGETALL", keys.job(id)).hash ?? [:]
        return fields.isEmpty ? nil : JobRecord(id: id, fields: fields)
    }

    /// A job's status and current run marker (`run`: nil when the field is absent), or nil when there is no record.
    /// Two fields, not the record: the orphan reaper asks this for every run on the host, every recovery interval.
    public func runState(_ id: String) async throws(RedisError) -> (status: JobStatus?, run: String?)? {
        let values = try await redis.send("HMGET", keys.job(id), "status", "run").array ?? []
        guard values.count == 2, let status = values[0].string else { return nil }
        return (JobStatus(rawValue: status), values[1].string)
    }

    /// Jobs newest first from the job index, `count` from `offset`; records gone meanwhile are left out. Only
    /// `fields` are read (all when empty).
    public func recentJobs(offset: Int, count: Int, fields: [String] = []) async throws(RedisError) -> [JobRecord] {
        let ids = try await redis.send("ZREVRANGE", keys.jobIndex, String(offset), String(offset + count - 1)).strings ?? []
        if !fields.isEmpty { return try await records(ids, fields: fields) }
        if ids.isEmpty { return [] }
        let replies = try await redis.pipeline(ids.map { RedisCommand("HGETALL", keys.job($0)) })
        return zip(ids, replies).compactMap { id, reply in
            let values = reply.hash ?? [:]
            return values["status"] == nil ? nil : JobRecord(id: id, fields: values)
        }
    }

    /// How many jobs the job index lists (records may have expired since).
    public func indexedJobCount() async throws(RedisError) -> Int {
        try await redis.send("ZCARD", keys.jobIndex).int ?? 0
    }

    /// How many lines a job's log holds.
    public func logLength(_ id: String) async throws(RedisError) -> Int {
        try await redis.send("LLEN", keys.log(id)).int ?? 0
    }

    /// Log lines of a job from index `from` (negative: from the end) to the end.
    public func log(_ id: String, from: Int) async throws(RedisError) -> [String] {
        try await redis.send("LRANGE", keys.log(id), String(from), "-1").strings ?? []
    }

    /// Every registered worker, oldest heartbeat first.
    public func workers(now: Date = Date()) async throws(RedisError) -> [WorkerInfo] {
        let flat = try await redis.send("ZRANGE", keys.workers, "0", "-1", "WITHSCORES").strings ?? []
        let entries = stride(from: 0, to: flat.count - 1, by: 2).map { (id: flat[$0], score: flat[$0 + 1]) }
        guard !entries.isEmpty else { return [] }
        // One round trip for all of them.
        let replies = try await redis.pipeline(
            entries.flatMap { entry in
                [
                    RedisCommand("HGETALL", keys.worker(entry.id)), RedisCommand("PTTL", keys.lease(entry.id)),
                    RedisCommand("LRANGE", keys.processing(entry.id), "0", "-1"),
                ]
            })
        return entries.enumerated().map { index, entry in
            let info = replies[3 * index].hash ?? [:]
            let leaseMs = replies[3 * index + 1].int ?? -2
            return WorkerInfo(
                id: entry.id, host: info["host"] ?? "", agents: (info["agents"] ?? "").split(separator: ",").map(String.init),
                slots: info["slots"] ?? "", lastHeartbeat: Timestamp.date(score: entry.score) ?? Date(timeIntervalSince1970: 0),
                leaseRemaining: leaseMs > 0 ? .milliseconds(leaseMs) : nil, held: replies[3 * index + 2].strings ?? [])
        }
    }

    /// Agents that have a queue key now.
    public func agentsWithQueues() async throws(RedisError) -> [String] {
        try await redis.scanKeys(matching: keys.queue("*")).map { String($0.dropFirst(keys.queue("").count)) }
    }

    /// Queue depths of `agents`, and the delayed, dead and session counts.
    public func counts(agents: [String]) async throws(RedisError) -> QueueCounts {
        let replies = try await redis.pipeline(
            agents.map { RedisCommand("LLEN", keys.queue($0)) } + agents.map { RedisCommand("ZCARD", keys.feedback($0)) } + [
                RedisCommand("ZCARD", keys.delayed), RedisCommand("LLEN", keys.dead), RedisCommand("HLEN", keys.sessions),
            ])
        let depths = Dictionary(uniqueKeysWithValues: zip(agents, replies).map { ($0, $1.int ?? 0) })
        let feedback = Dictionary(uniqueKeysWithValues: zip(agents, replies.dropFirst(agents.count)).map { ($0, $1.int ?? 0) })
        let rest = replies.suffix(3).map { $0.int ?? 0 }
        return QueueCounts(queued: depths, feedback: feedback, delayed: rest[0], dead: rest[1], sessions: rest[2])
    }

    /// Ids on the dead list, newest first.
    public func deadJobIDs() async throws(RedisError) -> [String] {
        try await redis.send("LRANGE", keys.dead, "0", "-1").strings ?? []
    }

    /// Every stored session, by key (three round trips, whatever their number).
    public func sessions() async throws(RedisError) -> [SessionInfo] {
        let all = try await redis.send("HGETALL", keys.sessions).hash ?? [:]
        let sorted = all.sorted { $0.key < $1.key }
        guard !sorted.isEmpty else { return [] }
        let used = try await redis.pipeline(sorted.map { RedisCommand("ZSCORE", keys.sessionsUsed, $0.key) })
        let transcripts = try await redis.pipeline(sorted.map { transcriptFields($0.key) })
        return sorted.enumerated().map { index, entry in
            SessionInfo(
                key: entry.key, sessionID: entry.value, lastUsed: Timestamp.date(score: used[index].string),
                transcript: Self.transcript(transcripts[index]))
        }
    }

    /// What is stored about a session's shipped transcript (not the data), or nil.
    public func transcriptInfo(_ session: String) async throws(RedisError) -> TranscriptInfo? {
        Self.transcript(try await redis.send(transcriptFields(session)))
    }

    func transcriptFields(_ session: String) -> RedisCommand {
        RedisCommand("HMGET", keys.transcript(session), "session_id", "bytes", "host", "sha256", "skipped")
    }

    /// Decodes `transcriptFields`' reply.
    static func transcript(_ reply: RedisReply) -> TranscriptInfo? {
        let t = reply.array ?? []
        guard t.count == 5, let sessionID = t[0].string, let bytes = t[1].string.flatMap(Int.init) else { return nil }
        let skipped = t[4].string.flatMap { $0.isEmpty ? nil : $0 }
        return TranscriptInfo(sessionID: sessionID, bytes: bytes, host: t[2].string ?? "", sha256: t[3].string, skipped: skipped)
    }

    /// The shipped transcript's bytes, or nil.
    public func transcriptData(_ session: String) async throws(RedisError) -> [UInt8]? {
        try await redis.send("HGET", keys.transcript(session), "data").bytes
    }

    /// The shipped files of a session (`file:<path>` fields), by path.
    public func sessionFiles(_ session: String, paths: [String]) async throws(RedisError) -> [String: [UInt8]] {
        if paths.isEmpty { return [:] }
        let reply = try await redis.send(RedisCommand(["HMGET", keys.transcript(session)] + paths.map { Self.sessionFilePrefix + $0 }))
        var out: [String: [UInt8]] = [:]
        for (path, value) in zip(paths, reply.array ?? []) { if let bytes = value.bytes { out[path] = bytes } }
        return out
    }

    /// The manifest of a session's shipped files (`files`: JSON list of `{path, bytes, sha256}`), or empty.
    public func sessionFileManifest(_ session: String) async throws(RedisError) -> String? {
        try await redis.send("HGET", keys.transcript(session), "files").string
    }

    /// Keeps a shipped session for another `ttl` seconds if it is still the one whose transcript and files hash to
    /// `bundleSHA256`. Returns whether it was.
    public func refreshTranscript(_ session: String, bundleSHA256: String, ttl: Int) async throws(RedisError) -> Bool {
        guard try await redis.send("HGET", keys.transcript(session), "bundle_sha256").string == bundleSHA256 else { return false }
        try await redis.send("EXPIRE", keys.transcript(session), String(ttl))
        return true
    }
}
