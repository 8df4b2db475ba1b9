import Foundation
import Shared

/// Host-side directories an agent's container binds: created before the container so Docker never creates them
/// root-owned, and repaired when they are. Also the smoke check that verifies them.
package enum AgentEnvironment {
    package struct Problem: Sendable, CustomStringConvertible {
        let path: String
        let issue: String
        let fix: String
        package var description: String { "\(path): \(issue) — fix: \(fix)" }
    }

    /// Creates (or repairs) an agent's host directories (see docs/worker.md, "Agent directories"):
    /// - `credentials_dir`, the operator's, read-only in the container at `/etc/claude-code`: created `root:<gid>` 0750
    ///   when missing, never chowned when it exists; its `run/` (the worker's prompt files) is `root:<gid>` 0750.
    /// - `state_dir`, the CLI's config dir (`CLAUDE_CONFIG_DIR`), read-write: owned by the agent, with `projects/` and
    ///   `session-env/`. From the layout before it, `<credentials_dir>/projects` and `session-env` are moved in and an
    ///   OAuth login's `.credentials.json` is copied in, once.
    /// - `work_dir`, read-write at `/work`: owned by the agent.
    ///
    /// The operator's roots are created by path (symlinks in them allowed); everything below them is opened from the
    /// parent's descriptor without following links, and every chown goes through a descriptor, so a link an agent
    /// placed can never redirect root's chown. Returns what was changed.
    /// - Throws: when a directory cannot be created or chowned, or is a link or a file.
    @discardableResult
    package static func sync(_ agent: AgentSettings) throws -> [String] {
        var changes: [String] = []
        let owner = (uid: agent.uid, gid: agent.gid)
        for root in [agent.credentialsDir, agent.workDir] {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: root, isDirectory: &isDir) {
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
                changes.append("created \(root)")
                if root == agent.credentialsDir { try DirectoryHandle.openTrusted(root).chownIfNeeded((0, agent.gid)) }
            } else if !isDir.boolValue {
                throw WorkerError("\(root) exists but is not a directory; move it away and run `Worker agent-env sync`")
            }
        }
        let work = try DirectoryHandle.openTrusted(agent.workDir)
        if try work.chownIfNeeded(owner) { changes.append("chowned \(agent.workDir) to \(agent.user)") }

        let credentials = try DirectoryHandle.openTrusted(agent.credentialsDir)
        // Older versions gave the credentials dir to the agent; it is the operator's (and read-only in the container).
        var st = stat()
        if fstat(credentials.fd, &st) == 0, st.st_uid == agent.uid, agent.uid != 0, try credentials.chownIfNeeded((0, agent.gid)) {
            changes.append("chowned \(agent.credentialsDir) to root:\(agent.gid) (it is yours, read-only to the agent)")
        }
        let runExisted = credentials.entryKind(AgentSettings.promptFolder) != nil
        let run = try credentials.subdirectory(AgentSettings.promptFolder, create: 0o750)
        if !runExisted { changes.append("created \(run.path)") }
        if try run.chownIfNeeded((0, agent.gid)) { changes.append("chowned \(run.path) to root:\(agent.gid) (the agent must not write it)") }
        if fchmod(run.fd, 0o750) != 0 { throw WorkerError("cannot chmod \(run.path): \(String(cString: strerror(errno)))") }
        let swept = sweepPrompts(run, olderThan: agent.timeout + .seconds(600))
        if swept > 0 { changes.append("removed \(swept) prompt file(s) in \(run.path) left by runs that ended without their worker") }

        let state = try stateDirectory(agent, changes: &changes)
        for name in ["projects", "session-env"] {
            // The layout before state_dir kept these in the credentials dir: move them over once, same file system.
            if state.entryKind(name) == nil, credentials.entryKind(name) == .directory {
                if renameat(credentials.fd, name, state.fd, name) == 0 {
                    changes.append("moved \(agent.credentialsDir)/\(name) to \(agent.stateDir)/\(name)")
                } else {
                    changes.append(
                        "could not move \(agent.credentialsDir)/\(name) into \(agent.stateDir) (\(String(cString: strerror(errno)))); "
                            + "sessions resume from the transcripts shipped through Redis")
                }
            }
            // The agent owns the state dir: it can have put a link or a file here. Nothing is followed; the entry is
            // moved aside (for the operator to look at) and a directory made, so one run cannot stop every later job.
            if let kind = state.entryKind(name), kind != .directory {
                let aside = "\(name).refused-\(Int(Date().timeIntervalSince1970))-\(UUID().uuidString.prefix(8).lowercased())"
                guard renameat(state.fd, name, state.fd, aside) == 0 else {
                    throw AgentPathError(path: agent.stateDir + "/" + name, problem: .unexpectedType(kind, expected: .directory))
                }
                changes.append("moved \(kind.rawValue) at \(agent.stateDir)/\(name) aside to \(aside): the agent put it there; inspect it")
            }
            let existed = state.entryKind(name) != nil
            let sub = try state.subdirectory(name, create: 0o750)
            if !existed { changes.append("created \(sub.path)") }
            if try sub.chownIfNeeded(owner) { changes.append("chowned \(sub.path) to \(agent.user)") }
        }
        // An OAuth login kept with the old layout: the CLI refreshes and saves it where it can write.
        // Only a login the agent could read where it was (never one the operator kept to root).
        let login = ".credentials.json"
        var loginStat = stat()
        if state.entryKind(login) == nil, credentials.entryKind(login) == .regularFile,
            fstatat(credentials.fd, login, &loginStat, AT_SYMLINK_NOFOLLOW) == 0,
            allows(loginStat, agent, owner: S_IRUSR, group: S_IRGRP, other: S_IROTH),
            case .contents(let bytes) = try credentials.readRegularFile(login, maxBytes: 1 << 20)
        {
            try state.writeFileAtomically(login, bytes: bytes, mode: 0o600, owner: owner)
            changes.append("copied \(agent.credentialsDir)/\(login) into \(agent.stateDir) (the CLI saves refreshed tokens there)")
        }
        return changes
    }

    /// Removes prompt files (`*.prompt`) older than `age`: a run lives at most its timeout, so these were left by a worker
    /// killed mid-run (a worker removes its run's file when the run ends). Returns how many.
    static func sweepPrompts(_ run: DirectoryHandle, olderThan age: Duration, now: Date = Date()) -> Int {
        let cutoff = now.timeIntervalSince1970 - age.seconds
        var removed = 0
        for name in run.entries() where name.hasSuffix(".prompt") || name.hasPrefix(".forge-hooks-") {
            var st = stat()
            guard fstatat(run.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG,
                Double(st.st_mtim.tv_sec) < cutoff
            else { continue }
            if unlinkat(run.fd, name, 0) == 0 { removed += 1 }
        }
        return removed
    }

    /// The state dir, created and owned by the agent: by path when the operator placed it elsewhere, below the
    /// credentials dir's descriptor (no link followed) when it sits there, as by default.
    private static func stateDirectory(_ agent: AgentSettings, changes: inout [String]) throws -> DirectoryHandle {
        let owner = (uid: agent.uid, gid: agent.gid)
        let inside = agent.stateDir.hasPrefix(agent.credentialsDir + "/")
        let handle: DirectoryHandle
        if inside {
            let components = agent.stateDir.dropFirst(agent.credentialsDir.count + 1).split(separator: "/").map(String.init)
            let existed = FileManager.default.fileExists(atPath: agent.stateDir)
            handle = try DirectoryHandle.openTrusted(agent.credentialsDir).descend(components, create: 0o750)
            if !existed { changes.append("created \(agent.stateDir)") }
        } else {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: agent.stateDir, isDirectory: &isDir) {
                try FileManager.default.createDirectory(
                    atPath: agent.stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
                changes.append("created \(agent.stateDir)")
            } else if !isDir.boolValue {
                throw WorkerError("\(agent.stateDir) exists but is not a directory; move it away and run `Worker agent-env sync`")
            }
            handle = try DirectoryHandle.openTrusted(agent.stateDir)
        }
        if try handle.chownIfNeeded(owner) { changes.append("chowned \(agent.stateDir) to \(agent.user)") }
        return handle
    }

    /// Whether the mode bits of `st` give the agent's uid or gid (or anyone) the owner/group/other permission asked.
    static func allows(_ st: stat, _ agent: AgentSettings, owner: mode_t, group: mode_t, other: mode_t) -> Bool {
        (st.st_uid == agent.uid && st.st_mode & owner != 0) || (st.st_gid == agent.gid && st.st_mode & group != 0) || st.st_mode & other != 0
    }

    /// Verifies what `sync` would create, without changing anything.
    package static func check(_ agent: AgentSettings) -> [Problem] {
        var problems: [Problem] = []
        let fix = "run `Worker agent-env sync --config <file>`"
        let run = agent.credentialsDir + "/" + AgentSettings.promptFolder
        for path in [agent.credentialsDir, run, agent.stateDir, agent.stateDir + "/projects", agent.stateDir + "/session-env", agent.workDir] {
            var st = stat()
            // The operator's roots may be symlinks; below them the agent could have planted one, which must show up.
            let operatorRoot = path == agent.credentialsDir || path == agent.workDir || path == agent.stateDir
            guard (operatorRoot ? stat(path, &st) : lstat(path, &st)) == 0 else {
                problems.append(Problem(path: path, issue: "does not exist", fix: fix))
                continue
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                problems.append(Problem(path: path, issue: "is not a directory", fix: "move it away, then \(fix)"))
                continue
            }
            let writable = allows(st, agent, owner: S_IWUSR, group: S_IWGRP, other: S_IWOTH)
            let readable = allows(st, agent, owner: S_IRUSR, group: S_IRGRP, other: S_IROTH)
            if path == run {
                if st.st_uid != 0 || st.st_mode & (S_IWGRP | S_IWOTH) != 0 {
                    problems.append(Problem(path: path, issue: "must be root's and not group/other-writable (it holds the prompts)", fix: fix))
                }
                if !readable { problems.append(Problem(path: path, issue: "not readable by the agent (\(agent.user))", fix: fix)) }
            } else if path == agent.credentialsDir {
                if !readable {
                    problems.append(
                        Problem(path: path, issue: "not readable by the agent (\(agent.user))", fix: "chgrp \(agent.gid) \(path); chmod g+rx \(path)")
                    )
                }
                if st.st_uid == agent.uid {
                    problems.append(Problem(path: path, issue: "owned by the agent's uid (it is yours: managed settings, prompts)", fix: fix))
                }
            } else if !writable {
                problems.append(Problem(path: path, issue: "not writable by the agent (\(agent.user); owner \(st.st_uid):\(st.st_gid))", fix: fix))
            }
        }
        return problems
    }

    /// Notes on the credentials dir that are not errors: files the CLI would not read where they are.
    package static func layoutNotes(_ agent: AgentSettings) -> [String] {
        var notes: [String] = []
        let fm = FileManager.default
        if fm.fileExists(atPath: agent.credentialsDir + "/settings.json") {
            notes.append(
                "\(agent.credentialsDir)/settings.json is not read: the directory is mounted at \(AgentSettings.policyMount), where the CLI "
                    + "reads managed-settings.json (rename it; managed settings cannot be overridden by the agent)")
        }
        if fm.fileExists(atPath: agent.credentialsDir + "/.credentials.json") && !fm.fileExists(atPath: agent.stateDir + "/.credentials.json") {
            notes.append("\(agent.credentialsDir)/.credentials.json is not used: run `Worker agent-env sync` to copy the login into state_dir")
        }
        if !fm.fileExists(atPath: agent.stateDir + "/.credentials.json") && agent.environment["ANTHROPIC_API_KEY"] == nil
            && agent.environment["CLAUDE_CODE_OAUTH_TOKEN"] == nil && agent.environment["ANTHROPIC_AUTH_TOKEN"] == nil
            && !fm.fileExists(atPath: agent.credentialsDir + "/managed-settings.json")
        {
            notes.append(
                "no credentials found: set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in the agent's env, an apiKeyHelper in "
                    + "\(agent.credentialsDir)/managed-settings.json, or log in once so \(agent.stateDir)/.credentials.json exists")
        }
        return notes
    }

    /// The session's working directory on the host (`<work_dir>/<owner>/<repo>/<number>`), created and owned by the
    /// agent, and its path inside the container. Repository names are checked so a path cannot escape the work dir.
    ///
    /// Each level is created and opened below the work dir's descriptor without following links: the agent owns them
    /// all and may have replaced one with a symlink to a host directory; that fails the job naming the path, and root's
    /// chown never reaches anything outside.
    package static func sessionDirectory(_ agent: AgentSettings, repository: String, number: Int) throws -> (host: String, container: String) {
        let components = try sessionComponents(repository: repository, number: number)
        let directory = try DirectoryHandle.openTrusted(agent.workDir).descend(components, create: 0o750, owner: (agent.uid, agent.gid))
        return (directory.path, agent.workMount + "/" + components.joined(separator: "/"))
    }

    /// `[owner, repo, number]`, each a safe single path component.
    static func sessionComponents(repository: String, number: Int) throws -> [String] {
        let parts = repository.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, parts.allSatisfy({ $0.range(of: "^[A-Za-z0-9_.-]+$", options: .regularExpression) != nil && $0 != "." && $0 != ".." })
        else { throw WorkerError("repository '\(repository)' is not a safe owner/name") }
        guard number > 0 else { throw WorkerError("issue number \(number) is not positive") }
        return parts + [String(number)]
    }
}

package struct WorkerError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
