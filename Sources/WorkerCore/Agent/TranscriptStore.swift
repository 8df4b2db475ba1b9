import Crypto
import Foundation
import Shared

/// Ships session transcripts through Redis so a session resumes on whichever Docker host takes its next job.
///
/// After a run, the transcript (`<credentials>/projects/<encoded cwd>/<id>.jsonl`) is stored as plain text in
/// `hooks:transcript:<session>` (capped at `transcriptMaxBytes`, expiring with the session). Before a resume, a host
/// whose copy is missing or behind writes the stored one into its own `projects/`. An identical local copy (a shared
/// filesystem, or the same host) is left alone.
package struct TranscriptStore: Sendable {
    let queue: JobQueue

    package init(queue: JobQueue) { self.queue = queue }

    /// Claude Code's project folder name: the absolute cwd with every character outside [A-Za-z0-9] replaced by '-'.
    static func projectFolder(forCwd cwd: String) -> String {
        String(cwd.unicodeScalars.map { ($0.isASCII && CharacterSet.alphanumerics.contains($0)) ? Character($0) : "-" })
    }

    package static func localPath(_ agent: AgentSettings, cwd: String, sessionID: String) -> String {
        "\(agent.credentialsDir)/projects/\(projectFolder(forCwd: cwd))/\(sessionID).jsonl"
    }

    /// The project folder below `projects/`, opened without following links (created and owned by the agent when
    /// `create`); nil when it does not exist and `create` is false.
    static func projectDirectory(_ agent: AgentSettings, cwd: String, create: Bool) throws -> DirectoryHandle? {
        let projects = try DirectoryHandle.openTrusted(agent.credentialsDir).subdirectory("projects")
        do {
            return try projects.subdirectory(projectFolder(forCwd: cwd), create: create ? 0o750 : nil, owner: create ? (agent.uid, agent.gid) : nil)
        } catch  where error.problem == .missing {
            return nil
        }
    }

    /// The transcript's bytes if it is a regular file within `maxBytes`: never follows a link, never blocks on a FIFO,
    /// never reads more than `maxBytes + 1` bytes.
    static func readLocal(_ agent: AgentSettings, cwd: String, sessionID: String, maxBytes: Int) throws -> DirectoryHandle.ReadResult {
        guard AgentSessionID.isValid(sessionID) else {
            throw WorkerError("session id '\(sessionID.prefix(80))' is not a UUID; not used as a file name")
        }
        guard let folder = try projectDirectory(agent, cwd: cwd, create: false) else { return .missing }
        return try folder.readRegularFile("\(sessionID).jsonl", maxBytes: maxBytes)
    }

    package enum SaveResult: Equatable, Sendable {
        case saved(bytes: Int)
        case unchanged
        case noTranscript
        case overCap(bytes: Int)
        case disabled
        /// This worker no longer holds the job: nothing was written.
        case notHeld
    }

    /// Stores the session's transcript after a run.
    /// - Throws: `AgentPathError` when the transcript or its folder is a link, FIFO or other non-regular file (nothing
    ///   is read or shipped then), or a Redis error.
    package func save(session: String, sessionID: String, agent: AgentSettings, cwd: String, host: String, fence: JobQueue.Fence) async throws
        -> SaveResult
    {
        let cap = queue.settings.transcriptMaxBytes
        if cap == 0 { return .disabled }
        let local = try await Offload.run { try Self.readLocal(agent, cwd: cwd, sessionID: sessionID, maxBytes: cap) }
        let ttl = max(60, Int(queue.settings.sessionIdle.seconds > 0 ? queue.settings.sessionIdle.seconds : 30 * 86400))
        func meta(_ bytes: Int) -> [String] {
            [
                "session_id", sessionID, "cwd", cwd, "project", Self.projectFolder(forCwd: cwd), "bytes", String(bytes), "host", host,
                "updated_at", Timestamp.iso(),
            ]
        }
        let data: [UInt8]
        switch local {
        case .missing: return .noTranscript
        case .tooLarge(let bytes):
            let skipped = ["skipped", "transcript is \(bytes) bytes, over queue.transcript_max_bytes (\(cap))"]
            guard try await queue.storeTranscript(session, fields: meta(bytes) + skipped, data: nil, ttl: ttl, fence: fence) else { return .notHeld }
            return .overCap(bytes: bytes)
        case .contents(let bytes): data = bytes
        }
        let sha = Self.sha256(data)
        if try await queue.refreshTranscript(session, sha256: sha, ttl: ttl) { return .unchanged }
        guard try await queue.storeTranscript(session, fields: meta(data.count) + ["sha256", sha], data: data, ttl: ttl, fence: fence) else {
            return .notHeld
        }
        return .saved(bytes: data.count)
    }

    package enum RestoreResult: Equatable, Sendable {
        case restored(bytes: Int)
        /// The local copy is identical or ahead.
        case localIsCurrent
        /// No transcript stored for this session id.
        case notStored
        /// It was over the cap when saved; only the host that ran it has it.
        case skipped(reason: String)
    }

    /// Makes the local transcript at least as recent as the stored one, before `--resume <sessionID>`.
    package func restore(session: String, sessionID: String, agent: AgentSettings, cwd: String) async throws -> RestoreResult {
        guard let stored = try await queue.transcriptInfo(session), stored.sessionID == sessionID else { return .notStored }
        if let reason = stored.skipped { return .skipped(reason: reason) }
        guard let storedSHA = stored.sha256 else { return .notStored }
        let storedBytes = stored.bytes
        let cap = max(storedBytes, queue.settings.transcriptMaxBytes)
        // A local copy the worker refuses to read (a link, a FIFO…) is replaced below: renameat swaps the entry itself.
        let local = try? await Offload.run { try Self.readLocal(agent, cwd: cwd, sessionID: sessionID, maxBytes: cap) }
        switch local {
        case .contents(let bytes) where Self.sha256(bytes) == storedSHA || bytes.count >= storedBytes: return .localIsCurrent
        case .tooLarge: return .localIsCurrent
        default: break
        }
        guard let data = try await queue.transcriptData(session) else { return .notStored }
        try await Offload.run { try Self.writeOwned(data, agent: agent, cwd: cwd, sessionID: sessionID) }
        return .restored(bytes: data.count)
    }

    /// Writes the transcript atomically (temp file + `renameat`) into the project folder, both owned by the agent,
    /// without following any link the agent may have put there.
    package static func writeOwned(_ data: [UInt8], agent: AgentSettings, cwd: String, sessionID: String) throws {
        guard AgentSessionID.isValid(sessionID) else {
            throw WorkerError("session id '\(sessionID.prefix(80))' is not a UUID; not used as a file name")
        }
        guard let folder = try projectDirectory(agent, cwd: cwd, create: true) else { return }
        try folder.writeFileAtomically("\(sessionID).jsonl", bytes: data, owner: (agent.uid, agent.gid))
    }

    static func sha256(_ data: [UInt8]) -> String {
        SHA256.hash(data: data).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}
