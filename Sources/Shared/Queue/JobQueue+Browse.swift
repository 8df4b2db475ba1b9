import Foundation

/// Which jobs a listing shows; empty fields match anything.
public struct JobFilter: Sendable, Equatable {
    public var status: JobStatus?
    public var agent = ""
    /// `owner/name`.
    public var repo = ""
    public var session = ""

    public init(status: JobStatus? = nil, agent: String = "", repo: String = "", session: String = "") {
        self.status = status
        self.agent = agent
        self.repo = repo
        self.session = session
    }

    public var isEmpty: Bool { status == nil && agent.isEmpty && repo.isEmpty && session.isEmpty }

    func matches(_ record: JobRecord) -> Bool {
        (status == nil || record.status == status) && (agent.isEmpty || record.agent == agent)
            && (repo.isEmpty || record["repo"] == repo) && (session.isEmpty || record.session == session)
    }
}

/// A place in the job index (newest first): the creation time and id of the last job shown. Stable while jobs are
/// added, unlike an offset.
public struct JobCursor: Sendable, Equatable, CustomStringConvertible {
    public let score: Int64
    public let id: String

    public init(score: Int64, id: String) {
        self.score = score
        self.id = id
    }

    /// Parses `description` (`<ms>-<id>`); nil for anything else.
    public init?(_ text: String) {
        guard let dash = text.firstIndex(of: "-"), let score = Int64(text[..<dash]) else { return nil }
        let id = String(text[text.index(after: dash)...])
        guard !id.isEmpty else { return nil }
        self.init(score: score, id: id)
    }

    public var description: String { "\(score)-\(id)" }
}

/// One page of a job listing.
public struct JobPage: Sendable {
    public let jobs: [JobRecord]
    /// Where the next page starts; nil at the end of the index.
    public let next: JobCursor?
    /// Index entries looked at for this page (a narrow filter may look at `examineLimit` and find few).
    public let examined: Int
}

/// One page of sessions, most recently used first.
public struct SessionPage: Sendable {
    public let sessions: [SessionInfo]
    /// The last-used time (ms) and key to continue after; nil at the end.
    public let next: JobCursor?
}

extension JobQueue {
    /// The fields job listings show.
    public static let listingFields = [
        "status", "agent", "session", "repo", "number", "event", "action", "forge", "attempts", "created_at", "started_at", "finished_at",
        "worker", "title", "error",
    ]

    static let filterFields = ["status", "agent", "repo", "session"]

    /// Jobs newest first after `cursor` that match `filter`: at most `limit`, looking at no more than `examineLimit`
    /// index entries (so a filter that matches nothing costs a bounded amount).
    public func jobs(
        matching filter: JobFilter, after cursor: JobCursor?, limit: Int, examineLimit: Int = 5000
    ) async throws(RedisError) -> JobPage {
        var found: [JobRecord] = []
        var examined = 0
        var position = cursor
        let chunk = filter.isEmpty ? limit : 500
        while examined < examineLimit {
            let (entries, reachedEnd) = try await indexEntries(after: position, count: min(chunk, examineLimit - examined))
            // Without a filter every entry is a row; with one, the four fields it can name are read for each entry,
            // and the full row only for the matches.
            var matches: [JobCursor] = []
            var stop = false
            if filter.isEmpty {
                matches = Array(entries.prefix(limit - found.count))
                examined += matches.count
                position = matches.last ?? position
                stop = found.count + matches.count == limit
            } else {
                for (entry, record) in zip(entries, try await optionalRecords(entries.map(\.id), fields: Self.filterFields)) {
                    examined += 1
                    position = entry
                    guard let record, filter.matches(record) else { continue }  // no record: expired since it was indexed
                    matches.append(entry)
                    if found.count + matches.count == limit {
                        stop = true
                        break
                    }
                }
            }
            found += try await records(matches.map(\.id), fields: Self.listingFields)
            if stop {
                let last = position == entries.last && reachedEnd
                return JobPage(jobs: found, next: last ? nil : position, examined: examined)
            }
            if reachedEnd { return JobPage(jobs: found, next: nil, examined: examined) }
        }
        return JobPage(jobs: found, next: position, examined: examined)
    }

    /// Up to `count` job index entries after `cursor`, newest first, and whether the index ends with them.
    private func indexEntries(after cursor: JobCursor?, count: Int) async throws(RedisError) -> ([JobCursor], Bool) {
        let max = cursor.map { String($0.score) } ?? "+inf"
        var offset = 0
        while true {
            let flat =
                try await redis.send("ZREVRANGEBYSCORE", keys.jobIndex, max, "-inf", "WITHSCORES", "LIMIT", String(offset), String(count))
                .strings ?? []
            let batch = stride(from: 0, to: flat.count - 1, by: 2).map { JobCursor(score: Timestamp.score(flat[$0 + 1]) ?? 0, id: flat[$0]) }
            offset += batch.count
            // Entries with the cursor's own score at or before it (ties are listed in reverse id order) were shown.
            let fresh = batch.filter { entry in cursor.map { entry.score != $0.score || entry.id < $0.id } ?? true }
            if !fresh.isEmpty || batch.count < count { return (fresh, batch.count < count) }
        }
    }

    /// Ids on the dead list, newest first, `count` from `offset`, and the list's length.
    public func deadJobs(offset: Int, count: Int) async throws(RedisError) -> (records: [JobRecord], total: Int) {
        let (offset, count) = (min(max(0, offset), 1 << 40), min(max(1, count), 10_000))
        let replies = try await redis.pipeline([
            RedisCommand("LRANGE", keys.dead, String(offset), String(offset + count - 1)), RedisCommand("LLEN", keys.dead),
        ])
        return (try await records(replies[0].strings ?? [], fields: Self.listingFields + ["retry_at"]), replies[1].int ?? 0)
    }

    /// Jobs in the delayed set (failed attempts waiting for their retry, deferrals), soonest first, and the set's size.
    public func delayedJobs(offset: Int, count: Int) async throws(RedisError) -> (records: [JobRecord], total: Int) {
        let (offset, count) = (min(max(0, offset), 1 << 40), min(max(1, count), 10_000))
        let replies = try await redis.pipeline([
            RedisCommand("ZRANGE", keys.delayed, String(offset), String(offset + count - 1)), RedisCommand("ZCARD", keys.delayed),
        ])
        return (try await records(replies[0].strings ?? [], fields: Self.listingFields + ["retry_at", "note"]), replies[1].int ?? 0)
    }

    /// Jobs parked behind an earlier job of their session, for `agent`.
    public func waitingJobs(agent: String, count: Int) async throws(RedisError) -> [JobRecord] {
        let ids = try await redis.send("ZRANGE", keys.waiting(agent), "0", String(count - 1)).strings ?? []
        return try await records(ids, fields: Self.listingFields + ["waiting_for"])
    }

    /// `fields` of each job in `ids` (records gone are left out), in the order given.
    public func records(_ ids: [String], fields: [String]) async throws(RedisError) -> [JobRecord] {
        try await optionalRecords(ids, fields: fields).compactMap { $0 }
    }

    /// One entry per id: nil where the record is gone.
    func optionalRecords(_ ids: [String], fields: [String]) async throws(RedisError) -> [JobRecord?] {
        guard !ids.isEmpty else { return [] }
        let replies = try await redis.pipeline(ids.map { RedisCommand(["HMGET", keys.job($0)] + fields) })
        return zip(ids, replies).map { id, reply in
            var values: [String: String] = [:]
            for (name, value) in zip(fields, reply.array ?? []) { if let v = value.string { values[name] = v } }
            return values["status"] == nil ? nil : JobRecord(id: id, fields: values)
        }
    }

    /// Sessions most recently used first, after `cursor` (its `score` is the last-used ms, `id` the session key).
    public func sessions(after cursor: JobCursor?, limit: Int) async throws(RedisError) -> SessionPage {
        let max = cursor.map { String($0.score) } ?? "+inf"
        var keysAndScores: [(String, Int64)] = []
        var offset = 0
        while keysAndScores.count <= limit {  // one more than shown tells whether there is a next page
            let flat =
                try await redis.send("ZREVRANGEBYSCORE", keys.sessionsUsed, max, "-inf", "WITHSCORES", "LIMIT", String(offset), String(limit + 1))
                .strings ?? []
            let batch = stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], Timestamp.score(flat[$0 + 1]) ?? 0) }
            offset += batch.count
            keysAndScores += batch.filter { key, score in cursor.map { score != $0.score || key < $0.id } ?? true }
            if batch.count < limit + 1 { break }
        }
        let hasMore = keysAndScores.count > limit
        keysAndScores = Array(keysAndScores.prefix(limit))
        var commands: [RedisCommand] = []
        for (key, _) in keysAndScores {
            commands.append(RedisCommand("HGET", keys.sessions, key))
            commands.append(transcriptFields(key))
        }
        let replies = try await redis.pipeline(commands)
        var sessions: [SessionInfo] = []
        for (index, (key, score)) in keysAndScores.enumerated() {
            guard let id = replies[2 * index].string else { continue }
            sessions.append(
                SessionInfo(
                    key: key, sessionID: id, lastUsed: Date(timeIntervalSince1970: Double(score) / 1000),
                    transcript: Self.transcript(replies[2 * index + 1])))
        }
        let next = hasMore ? keysAndScores.last.map { JobCursor(score: $0.1, id: $0.0) } : nil
        return SessionPage(sessions: sessions, next: next)
    }

    /// One session, or nil when none is stored under `key`.
    public func session(_ key: String) async throws(RedisError) -> SessionInfo? {
        let replies = try await redis.pipeline([
            RedisCommand("HGET", keys.sessions, key), RedisCommand("ZSCORE", keys.sessionsUsed, key),
            transcriptFields(key),
        ])
        guard let id = replies[0].string else { return nil }
        let used = Timestamp.date(score: replies[1].string)
        return SessionInfo(key: key, sessionID: id, lastUsed: used, transcript: Self.transcript(replies[2]))
    }

    /// The output lines of a job appended after the first `seen`, and how many were ever appended (`log_lines`). Lines
    /// trimmed off the capped log before they were read are skipped (`missed`).
    public func logLines(_ id: String, after seen: Int) async throws(RedisError) -> (lines: [String], total: Int, missed: Int) {
        let replies = try await redis.pipeline([RedisCommand("HGET", keys.job(id), "log_lines"), RedisCommand("LLEN", keys.log(id))])
        let length = replies[1].int ?? 0
        let total = max(Int(replies[0].string ?? "") ?? length, length)
        let new = total - seen
        guard new > 0 else { return ([], total, 0) }
        let available = min(new, length)
        let lines = try await redis.send("LRANGE", keys.log(id), String(-available), "-1").strings ?? []
        return (lines, seen + (new - available) + lines.count, new - available)
    }
}
