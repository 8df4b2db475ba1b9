import Foundation
import Shared

/// Host-side directories an agent's container binds: created before the container so Docker never creates them
/// root-owned, and repaired when they are. Also the smoke check that verifies them.
enum AgentEnvironment {
    struct Problem: Sendable, CustomStringConvertible {
        let path: String
        let issue: String
        let fix: String
        var description: String { "\(path): \(issue) — fix: \(fix)" }
    }

    /// Creates (or repairs ownership of) the credentials dir, its `projects/` and `session-env/`, and the work dir.
    /// Returns what was changed. - Throws: when a directory cannot be created or chowned.
    @discardableResult
    static func sync(_ agent: AgentSettings) throws -> [String] {
        var changes: [String] = []
        let fm = FileManager.default
        for (path, mode) in [
            (agent.credentialsDir, 0o750), (agent.credentialsDir + "/projects", 0o750), (agent.credentialsDir + "/session-env", 0o750),
            (agent.workDir, 0o750),
        ] {
            var isDir: ObjCBool = false
            if !fm.fileExists(atPath: path, isDirectory: &isDir) {
                try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
                changes.append("created \(path)")
            } else if !isDir.boolValue {
                throw WorkerError("\(path) exists but is not a directory; move it away and run `Worker agent-env sync`")
            }
            var st = stat()
            guard stat(path, &st) == 0 else { throw WorkerError("cannot stat \(path): \(String(cString: strerror(errno)))") }
            if st.st_uid != agent.uid || st.st_gid != agent.gid {
                guard chown(path, agent.uid, agent.gid) == 0 else {
                    throw WorkerError(
                        "cannot chown \(path) to \(agent.user): \(String(cString: strerror(errno))) (run the worker as root, or chown it yourself)")
                }
                changes.append("chowned \(path) to \(agent.user)")
            }
        }
        return changes
    }

    /// Verifies what `sync` would create, without changing anything.
    static func check(_ agent: AgentSettings) -> [Problem] {
        var problems: [Problem] = []
        let fix = "run `Worker agent-env sync --config <file>` (or: install -d -o \(agent.uid) -g \(agent.gid) <dir>)"
        for path in [agent.credentialsDir, agent.credentialsDir + "/projects", agent.credentialsDir + "/session-env", agent.workDir] {
            var st = stat()
            guard stat(path, &st) == 0 else {
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
    static func sessionDirectory(_ agent: AgentSettings, repository: String, number: Int) throws -> (host: String, container: String) {
        let parts = repository.split(separator: "/").map(String.init)
        guard parts.count == 2, parts.allSatisfy({ $0.range(of: "^[A-Za-z0-9_.-]+$", options: .regularExpression) != nil && $0 != "." && $0 != ".." })
        else { throw WorkerError("repository '\(repository)' is not a safe owner/name") }
        guard number > 0 else { throw WorkerError("issue number \(number) is not positive") }
        let relative = "\(parts[0])/\(parts[1])/\(number)"
        var path = agent.workDir
        for component in relative.split(separator: "/") {
            path += "/\(component)"
            var st = stat()
            if stat(path, &st) != 0 {
                guard mkdir(path, 0o750) == 0 || errno == EEXIST else {
                    throw WorkerError("cannot create \(path): \(String(cString: strerror(errno)))")
                }
                _ = chown(path, agent.uid, agent.gid)
            } else if st.st_uid != agent.uid {
                _ = chown(path, agent.uid, agent.gid)
            }
        }
        return (path, agent.workMount + "/" + relative)
    }
}

struct WorkerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
