import Crypto
import Foundation
import Shared

/// Ships session transcripts through Redis so a session resumes on whichever Docker host takes its next job.
///
/// After a run, the transcript (`<credentials>/projects/<encoded cwd>/<id>.jsonl`) is stored as plain text in
/// `hooks:transcript:<session>` (capped at `transcriptMaxBytes`, expiring with the session). Before a resume, a host
/// whose copy is missing or behind writes the stored one into its own `projects/`. An identical local copy (a shared
/// filesystem, or the same host) is left alone.
struct TranscriptStore: Sendable {
    let queue: JobQueue

    /// Claude Code's project folder name: the absolute cwd with every character outside [A-Za-z0-9] replaced by '-'.
    static func projectFolder(forCwd cwd: String) -> String {
        String(cwd.unicodeScalars.map { ($0.isASCII && CharacterSet.alphanumerics.contains($0)) ? Character($0) : "-" })
    }

    static func localPath(_ agent: AgentSettings, cwd: String, sessionID: String) -> String {
        "\(agent.credentialsDir)/projects/\(projectFolder(forCwd: cwd))/\(sessionID).jsonl"
    }

    enum SaveResult: Equatable, Sendable {
        case saved(bytes: Int)
        case unchanged
        case noTranscript
        case overCap(bytes: Int)
        case disabled
    }

    /// Stores the session's transcript after a run.
    func save(session: String, sessionID: String, agent: AgentSettings, cwd: String, host: String) async throws -> SaveResult {
        let cap = queue.settings.transcriptMaxBytes
        if cap == 0 { return .disabled }
        let path = Self.localPath(agent, cwd: cwd, sessionID: sessionID)
        guard let data = FileManager.default.contents(atPath: path) else { return .noTranscript }
        let key = queue.keys.transcript(session)
        let ttl = String(max(60, Int(queue.settings.sessionIdle.seconds > 0 ? queue.settings.sessionIdle.seconds : 30 * 86400)))
        let meta: [String] = [
            "session_id", sessionID, "cwd", cwd, "project", Self.projectFolder(forCwd: cwd), "bytes", String(data.count), "host", host,
            "updated_at", Timestamp.iso(),
        ]
        if data.count > cap {
            _ = try await queue.redis.transaction([
                RedisCommand("DEL", key),
                RedisCommand(["HSET", key] + meta + ["skipped", "transcript is \(data.count) bytes, over queue.transcript_max_bytes (\(cap))"]),
                RedisCommand("EXPIRE", key, ttl),
            ])
            return .overCap(bytes: data.count)
        }
        let sha = Self.sha256(data)
        if try await queue.redis.send("HGET", key, "sha256").string == sha {
            try await queue.redis.send("EXPIRE", key, ttl)
            return .unchanged
        }
        var hset = RedisCommand(["HSET", key] + meta + ["sha256", sha])
        hset.append("data")
        hset.append(bytes: Array(data))
        _ = try await queue.redis.transaction([RedisCommand("DEL", key), hset, RedisCommand("EXPIRE", key, ttl)])
        return .saved(bytes: data.count)
    }

    enum RestoreResult: Equatable, Sendable {
        case restored(bytes: Int)
        /// The local copy is identical or ahead.
        case localIsCurrent
        /// No transcript stored for this session id.
        case notStored
        /// It was over the cap when saved; only the host that ran it has it.
        case skipped(reason: String)
    }

    /// Makes the local transcript at least as recent as the stored one, before `--resume <sessionID>`.
    func restore(session: String, sessionID: String, agent: AgentSettings, cwd: String) async throws -> RestoreResult {
        let key = queue.keys.transcript(session)
        let meta = try await queue.redis.send("HMGET", key, "session_id", "sha256", "bytes", "skipped").array ?? []
        guard meta.count == 4, meta[0].string == sessionID else { return .notStored }
        if let reason = meta[3].string, !reason.isEmpty { return .skipped(reason: reason) }
        guard let storedSHA = meta[1].string, let storedBytes = meta[2].int else { return .notStored }
        let path = Self.localPath(agent, cwd: cwd, sessionID: sessionID)
        if let local = FileManager.default.contents(atPath: path) {
            if Self.sha256(local) == storedSHA || local.count >= storedBytes { return .localIsCurrent }
        }
        guard let data = try await queue.redis.send("HGET", key, "data").bytes else { return .notStored }
        try Self.writeOwned(Data(data), to: path, agent: agent)
        return .restored(bytes: data.count)
    }

    /// Writes atomically (temp file + rename) with the project folder and file owned by the agent uid:gid.
    static func writeOwned(_ data: Data, to path: String, agent: AgentSettings) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: folder) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            _ = chown(folder, agent.uid, agent.gid)
        }
        let temp = folder + "/.\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: temp, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw WorkerError("cannot write \(temp)")
        }
        _ = chown(temp, agent.uid, agent.gid)
        guard rename(temp, path) == 0 else {
            unlink(temp)
            throw WorkerError("cannot move the restored transcript to \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}
