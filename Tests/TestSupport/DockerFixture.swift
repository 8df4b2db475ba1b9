import Foundation

/// Real Docker for tests: checks the engine answers and builds the stub agent image once per test process.
public enum DockerFixture {
    public static let image = "forge-hooks/agent-stub:test"
    public static let socket = "/var/run/docker.sock"

    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    private static let built = Task<Void, Error> {
        guard FileManager.default.fileExists(atPath: socket) else {
            throw TestSetupError("no Docker engine at \(socket): start dockerd (scripts/test.sh does) — these tests need real Docker")
        }
        // Containers a killed test run left behind (test prefixes are fht-…), once they are an hour old: a parallel
        // test process's containers are younger.
        _ = try? await shell(
            "docker ps -a --filter label=forge-hooks.managed=true --format '{{.ID}} {{.Names}} {{.CreatedAt}}' | "
                + "while read -r id name day time zone rest; do case \"$name\" in fht-*) ;; *) continue ;; esac; "
                + "created=$(date -d \"$day $time $zone\" +%s 2>/dev/null) || continue; "
                + "[ $(( $(date +%s) - created )) -gt 3600 ] && docker rm -f \"$id\" >/dev/null; done; true")
        // Reused when built from the same files: another test process may be running containers from it.
        try await runScript(["env", "FORGE_HOOKS_STUB_REUSE=1", "deploy/agent-stub/build-image.sh", image])
    }

    /// Ensures the engine is there and the stub image is built.
    public static func ready() async throws {
        try await built.value
    }

    /// Runs a repository script to completion; throws with its output if it fails. The wait is on a thread of its own:
    /// tests must not hold one of the cooperative pool's threads (two on this machine) while a child runs.
    public static func runScript(_ arguments: [String]) async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("script-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ChildProcess(
            "/bin/bash", ["-c", "cd '\(repositoryRoot.path)' && " + arguments.map { "'\($0)'" }.joined(separator: " ")], output: log)
        let code = await process.exited()
        guard code == 0 else {
            throw TestSetupError("\(arguments.joined(separator: " ")) failed (\(code)): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }

    /// Runs a shell command and returns its exit code and output (stdout and stderr). The wait is on a thread of its
    /// own, off the cooperative pool.
    @discardableResult
    public static func shell(_ command: String) async throws -> (Int32, String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sh-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ChildProcess("/bin/bash", ["-c", command], output: log)
        let code = await process.exited()
        return (code, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// `shell` that blocks the calling thread: only for cleanups in `defer`, where nothing can be awaited.
    @discardableResult
    public static func shellBlocking(_ command: String) throws -> (Int32, String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sh-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ChildProcess("/bin/bash", ["-c", command], output: log)
        let code = process.wait()
        return (code, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
