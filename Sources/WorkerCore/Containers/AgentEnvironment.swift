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

    /// Creates (or repairs ownership of) the credentials dir, its `projects/` and `session-env/`, and the work dir.
    /// Returns what was changed.
    ///
    /// The credentials and work dirs are the operator's paths (created by path, symlinks in them allowed); `projects/`
    /// and `session-env/` are opened below the credentials dir's descriptor without following links, and every chown
    /// goes through a descriptor, so a link placed there can never redirect root's chown.
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
            } else if !isDir.boolValue {
                throw WorkerError("\(root) exists but is not a directory; move it away and run `Worker agent-env sync`")
            }
            let handle = try DirectoryHandle.openTrusted(root)
            if try handle.chownIfNeeded(owner) { changes.append("chowned \(root) to \(agent.user)") }
            guard root == agent.credentialsDir else { continue }
            for name in ["projects", "session-env"] {
                let existed = handle.entryKind(name) != nil
                let sub = try handle.subdirectory(name, create: 0o750)
                if !existed { changes.append("created \(sub.path)") }
                if try sub.chownIfNeeded(owner) { changes.append("chowned \(sub.path) to \(agent.user)") }
            }
        }
        return changes
    }

    /// Verifies what `sync` would create, without changing anything.
    package static func check(_ agent: AgentSettings) -> [Problem] {
        var problems: [Problem] = []
        let fix = "run `Worker agent-env sync --config <file>` (or: install -d -o \(agent.uid) -g \(agent.gid) <dir>)"
        for path in [agent.credentialsDir, agent.credentialsDir + "/projects", agent.credentialsDir + "/session-env", agent.workDir] {
            var st = stat()
            // The operator's roots may be symlinks; below them the agent could have planted one, which must show up.
            let operatorRoot = path == agent.credentialsDir || path == agent.workDir
            guard (operatorRoot ? stat(path, &st) : lstat(path, &st)) == 0 else {
                problems.append(Problem(path: path, issue: "does not exist", fix: fix))
                continue
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                problems.append(Problem(path: path, issue: "is not a directory", fix: "move it away, then \(fix)"))
                continue
            }
            let writable =
                (st.st_uid == agent.uid && st.st_mode & S_IWUSR != 0) || (st.st_gid == agent.gid && st.st_mode & S_IWGRP != 0)
                || st.st_mode & S_IWOTH != 0
            if path != agent.credentialsDir && !writable {
                problems.append(
                    Problem(path: path, issue: "not writable by the agent (\(agent.user); owner \(st.st_uid):\(st.st_gid))", fix: fix))
            }
            let readable = (st.st_uid == agent.uid) || (st.st_gid == agent.gid && st.st_mode & S_IRGRP != 0) || st.st_mode & S_IROTH != 0
            if path == agent.credentialsDir && !readable {
                problems.append(Problem(path: path, issue: "not readable by the agent (\(agent.user))", fix: fix))
            }
        }
        return problems
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
