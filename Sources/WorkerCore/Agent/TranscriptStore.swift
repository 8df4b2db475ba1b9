import Crypto
import Foundation
import Shared

/// Ships sessions through Redis so a session resumes on whichever Docker host takes its next job.
///
/// After a run, the transcript (`<state_dir>/projects/<project folder>/<id>.jsonl`) is stored as plain text in
/// `hooks:transcript:<session>` (capped at `transcriptMaxBytes`, expiring with the session), and with it the session's
/// other files the CLI needs to resume it elsewhere — its folder `<project folder>/<id>/` (saved tool outputs in
/// `tool-results/`, subagents' transcripts in `subagents/`) and the project's `memory/` — as `file:<path>` fields, each
/// within `sessionFileMaxBytes`, all within `sessionFilesMaxBytes`. Before a resume, a host whose copy is missing or
/// behind writes the stored ones into its own `projects/`. An identical local copy (a shared filesystem, or the same
/// host) is left alone.
package struct TranscriptStore: Sendable {
    let queue: JobQueue

    package init(queue: JobQueue) { self.queue = queue }

    /// Claude Code's project folder name for a cwd, exactly as the CLI makes it: every UTF-16 code unit outside
    /// `[A-Za-z0-9]` becomes `-`; a name over 200 characters is cut to 200, then `-` and the base-36 absolute value of
    /// the Java-style 32-bit hash of the original path (checked against the real CLI in the real-CLI tests).
    static func projectFolder(forCwd cwd: String) -> String {
        let units = Array(cwd.utf16)
        let sanitized = String(
            decoding: units.map { u -> UInt8 in
                (u >= 0x30 && u <= 0x39) || (u >= 0x41 && u <= 0x5A) || (u >= 0x61 && u <= 0x7A) ? UInt8(u) : UInt8(ascii: "-")
            }, as: UTF8.self)
        guard sanitized.utf8.count > maxFolderLength else { return sanitized }
        var hash: Int32 = 0
        for unit in units { hash = (hash &<< 5) &- hash &+ Int32(unit) }
        let magnitude = hash == Int32.min ? UInt32(1) << 31 : UInt32(abs(hash))
        return String(sanitized.prefix(maxFolderLength)) + "-" + String(magnitude, radix: 36)
    }

    static let maxFolderLength = 200

    package static func localPath(_ agent: AgentSettings, cwd: String, sessionID: String) -> String {
        "\(agent.stateDir)/projects/\(projectFolder(forCwd: cwd))/\(sessionID).jsonl"
    }

    /// The project folder below `projects/`, opened without following links (created and owned by the agent when
    /// `create`); nil when it does not exist and `create` is false.
    static func projectDirectory(_ agent: AgentSettings, cwd: String, create: Bool) throws -> DirectoryHandle? {
        let projects = try DirectoryHandle.openTrusted(agent.stateDir).subdirectory("projects")
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
        /// Shipped: the transcript's bytes, how many other files went with it, and what was left out (and why).
        case saved(bytes: Int, files: Int, skipped: [String])
        case unchanged
        case noTranscript
        case overCap(bytes: Int)
        case disabled
        /// This worker no longer holds the job: nothing was written.
        case notHeld
        /// Redis is near its `maxmemory`: not stored (a `skipped` record says so), to keep the queue's headroom.
        case overBudget(bytes: Int)
    }

    /// One of a session's other files, by its path below the project folder (`<id>/tool-results/x.txt`, `memory/…`).
    struct SessionFile: Equatable, Sendable {
        let path: String
        let bytes: [UInt8]
    }

    /// A name the worker ships and writes back: what the CLI uses (letters, digits, `.`, `_`, `-`), not `.`/`..`.
    static func isShippableName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && name != "." && name != ".." && !name.hasPrefix(".forge-hooks-")
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
                    || c == UInt8(ascii: "-")
            }
    }

    /// The session's other files below `folder` (its project folder): everything in `<sessionID>/` and `memory/`, at
    /// most 4 levels deep, regular UTF-8 files only, each within `perFile`, all within `total` and `maxCount`. Never
    /// follows a link, never blocks on a FIFO, never reads more than a cap allows, and never looks at more than
    /// `maxEntries` entries or opens a file the byte budget cannot take (the agent decides how many there are, and
    /// this runs after its run, outside its timeout and CPU limit). Returns them and what was left out (the first 20,
    /// then a count).
    static func collectFiles(
        in folder: DirectoryHandle, sessionID: String, perFile: Int, total: Int, maxCount: Int, maxEntries: Int = 2000
    ) -> (files: [SessionFile], skipped: [String]) {
        var files: [SessionFile] = []
        var skipped: [String] = []
        var skippedMore = 0
        var used = 0
        var visited = 0
        func skip(_ why: String) {
            if skipped.count < 20 { skipped.append(why) } else { skippedMore += 1 }
        }
        func walk(_ directory: DirectoryHandle, _ prefix: String, depth: Int) {
            for name in directory.entries(limit: maxEntries - visited + 1).sorted() {
                visited += 1
                if visited > maxEntries {
                    skip("\(prefix): more than \(maxEntries) entries in the session's folders; the rest not looked at")
                    return
                }
                let path = prefix + "/" + name
                guard isShippableName(name) else {
                    if !name.hasPrefix(".forge-hooks-") { skip("\(path): name not shipped") }
                    continue
                }
                switch directory.entryKind(name) {
                case .directory:
                    guard depth < 4, let sub = try? directory.subdirectory(name) else {
                        skip("\(path): too deep or unreadable")
                        continue
                    }
                    walk(sub, path, depth: depth + 1)
                    if visited > maxEntries { return }
                case .regularFile:
                    // Decided from its size before it is opened: a file the budget cannot take is never read.
                    let size = directory.regularFileSize(name) ?? 0
                    if files.count >= maxCount {
                        skip("\(path): over \(maxCount) files")
                    } else if size > perFile {
                        skip("\(path): \(size) bytes, over queue.session_file_max_bytes (\(perFile))")
                    } else if used + size > total {
                        skip("\(path): \(size) bytes, over queue.session_files_max_bytes (\(total)) with the rest")
                    } else {
                        switch try? directory.readRegularFile(name, maxBytes: min(perFile, total - used)) {
                        case .contents(let bytes):
                            guard String(validating: bytes, as: UTF8.self) != nil else {
                                skip("\(path): not UTF-8 text")
                                continue
                            }
                            used += bytes.count
                            files.append(SessionFile(path: path, bytes: bytes))
                        case .tooLarge(let bytes): skip("\(path): grew to \(bytes) bytes while read, over its budget")
                        default: skip("\(path): unreadable")
                        }
                    }
                case let kind?: skip("\(path): \(kind.rawValue), not shipped")
                case nil: break
                }
            }
        }
        for top in [sessionID, "memory"] where folder.entryKind(top) == .directory && visited <= maxEntries {
            if let sub = try? folder.subdirectory(top) { walk(sub, top, depth: 1) }
        }
        if skippedMore > 0 { skipped.append("… and \(skippedMore) more") }
        return (files, skipped)
    }

    /// The manifest stored beside the files: `[{"path":…,"bytes":…,"sha256":…}]`, in path order.
    static func manifest(_ files: [SessionFile]) -> String {
        let entries = files.map { ["path": $0.path, "bytes": $0.bytes.count, "sha256": sha256($0.bytes)] as [String: Any] }
        let data = (try? JSONSerialization.data(withJSONObject: entries, options: [.sortedKeys])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Stores the session's transcript and its other files after a run.
    /// - Throws: `AgentPathError` when the transcript or its folder is a link, FIFO or other non-regular file (nothing
    ///   is read or shipped then), or a Redis error.
    package func save(session: String, sessionID: String, agent: AgentSettings, cwd: String, host: String, fence: JobQueue.Fence) async throws
        -> SaveResult
    {
        let settings = queue.settings
        let cap = settings.transcriptMaxBytes
        if cap == 0 { return .disabled }
        let (local, collected) = try await Offload.run { () throws -> (DirectoryHandle.ReadResult, (files: [SessionFile], skipped: [String])) in
            let local = try Self.readLocal(agent, cwd: cwd, sessionID: sessionID, maxBytes: cap)
            guard case .contents = local, let folder = try Self.projectDirectory(agent, cwd: cwd, create: false) else { return (local, ([], [])) }
            return (
                local,
                Self.collectFiles(
                    in: folder, sessionID: sessionID, perFile: settings.sessionFileMaxBytes, total: settings.sessionFilesMaxBytes,
                    maxCount: QueueSettings.sessionFilesMaxCount)
            )
        }
        let ttl = max(60, Int(settings.sessionIdle.seconds > 0 ? settings.sessionIdle.seconds : 30 * 86400))
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
            guard try await queue.storeTranscript(session, fields: meta(bytes) + skipped, data: nil, ttl: ttl, fence: fence) != .notHeld else {
                return .notHeld
            }
            return .overCap(bytes: bytes)
        case .contents(let bytes): data = bytes
        }
        let sha = Self.sha256(data)
        let manifest = Self.manifest(collected.files)
        let bundle = Self.sha256(Array((sha + "\n" + manifest + "\n" + collected.skipped.joined(separator: "\n")).utf8))
        if try await queue.refreshTranscript(session, bundleSHA256: bundle, ttl: ttl) { return .unchanged }
        var fields = meta(data.count) + ["sha256", sha, "bundle_sha256", bundle, "files", manifest, "file_count", String(collected.files.count)]
        if !collected.skipped.isEmpty {
            fields += ["files_skipped", collected.skipped.prefix(20).joined(separator: "\n")]
        }
        switch try await queue.storeTranscript(
            session, fields: fields, data: data, files: collected.files.map { ($0.path, $0.bytes) }, ttl: ttl, fence: fence)
        {
        case .notHeld: return .notHeld
        case .overBudget: return .overBudget(bytes: data.count + collected.files.reduce(0) { $0 + $1.bytes.count })
        case .stored: break
        }
        return .saved(bytes: data.count, files: collected.files.count, skipped: collected.skipped)
    }

    package enum RestoreResult: Equatable, Sendable {
        /// The transcript (`bytes`, 0 when the local one was current) and `files` of the session's other files written.
        case restored(bytes: Int, files: Int)
        /// The local copy is identical or ahead.
        case localIsCurrent
        /// No transcript stored for this session id.
        case notStored
        /// It was over the cap when saved; only the host that ran it has it.
        case skipped(reason: String)
    }

    /// Makes the local transcript and the session's other files at least as recent as the stored ones, before
    /// `--resume <sessionID>`.
    package func restore(session: String, sessionID: String, agent: AgentSettings, cwd: String) async throws -> RestoreResult {
        guard let stored = try await queue.transcriptInfo(session), stored.sessionID == sessionID else { return .notStored }
        if let reason = stored.skipped { return .skipped(reason: reason) }
        guard let storedSHA = stored.sha256 else { return .notStored }
        let storedBytes = stored.bytes
        let cap = max(storedBytes, queue.settings.transcriptMaxBytes)
        // A local copy the worker refuses to read (a link, a FIFO…) is replaced below: renameat swaps the entry itself.
        let local = try? await Offload.run { try Self.readLocal(agent, cwd: cwd, sessionID: sessionID, maxBytes: cap) }
        var written = 0
        switch local {
        case .contents(let bytes) where Self.sha256(bytes) == storedSHA: break
        // This host has a longer transcript of its own (it ran a later turn that was not shipped): leave it all.
        case .contents(let bytes) where bytes.count >= storedBytes: return .localIsCurrent
        case .tooLarge: return .localIsCurrent
        default:
            guard let data = try await queue.transcriptData(session) else { return .notStored }
            try await Offload.run { try Self.writeOwned(data, agent: agent, cwd: cwd, sessionID: sessionID) }
            written = data.count
        }
        let files = try await restoreFiles(session: session, sessionID: sessionID, agent: agent, cwd: cwd)
        return written == 0 && files == 0 ? .localIsCurrent : .restored(bytes: written, files: files)
    }

    /// Writes the shipped files this host lacks (missing, or of another size). Returns how many were written.
    func restoreFiles(session: String, sessionID: String, agent: AgentSettings, cwd: String) async throws -> Int {
        guard let text = try await queue.sessionFileManifest(session),
            let entries = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]], !entries.isEmpty
        else { return 0 }
        let wanted = entries.compactMap { entry -> (path: String, bytes: Int)? in
            guard let path = entry["path"] as? String, let bytes = (entry["bytes"] as? NSNumber)?.intValue else { return nil }
            let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 2, parts.count <= 5, parts[0] == sessionID || parts[0] == "memory", parts.allSatisfy(Self.isShippableName) else {
                return nil
            }
            return (path, bytes)
        }
        let missing = try await Offload.run { () throws -> [String] in
            guard let folder = try Self.projectDirectory(agent, cwd: cwd, create: true) else { return [] }
            return wanted.filter { want in
                let parts = want.path.split(separator: "/").map(String.init)
                guard let directory = try? folder.descend(Array(parts.dropLast())) else { return true }
                return directory.regularFileSize(parts.last!) != want.bytes
            }.map(\.path)
        }
        if missing.isEmpty { return 0 }
        let contents = try await queue.sessionFiles(session, paths: missing)
        return try await Offload.run { () throws -> Int in
            guard let folder = try Self.projectDirectory(agent, cwd: cwd, create: true) else { return 0 }
            let owner = (uid: agent.uid, gid: agent.gid)
            var count = 0
            for path in missing {
                guard let bytes = contents[path] else { continue }
                let parts = path.split(separator: "/").map(String.init)
                let directory = try folder.descend(Array(parts.dropLast()), create: 0o750, owner: owner)
                try directory.writeFileAtomically(parts.last!, bytes: bytes, mode: 0o600, owner: owner)
                count += 1
            }
            return count
        }
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
