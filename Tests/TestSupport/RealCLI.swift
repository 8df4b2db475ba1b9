import Foundation

/// The real Claude Code CLI for tests: an agent image built with `deploy/agent-claude/build-image.sh` (the CLI from
/// the pinned claude-agent-sdk wheel), and a fake Messages API (`deploy/agent-claude/fake-messages-api.py`) started in
/// an agent container's own network namespace, so the CLI talks to it on the container's loopback and nothing leaves
/// the machine.
public enum RealCLI {
    public static let image = "forge-hooks/agent-claude:test"
    /// The port the fake API listens on inside each agent container.
    public static let port = 8765

    private static let built = Task<Void, Error> {
        try await DockerFixture.ready()
        try await DockerFixture.runScript(["env", "FORGE_HOOKS_STUB_REUSE=1", "deploy/agent-claude/build-image.sh", image])
    }

    /// Ensures the engine is there and the real-CLI image is built (the first build fetches the wheel: ~190 MB).
    public static func ready() async throws { try await built.value }

    /// The agent `env:` that points the CLI at the fake API and keeps it offline.
    public static var agentEnvironmentYAML: String {
        "{ANTHROPIC_BASE_URL: \"http://127.0.0.1:\(port)\", ANTHROPIC_API_KEY: sk-fake-key, DISABLE_TELEMETRY: \"1\", "
            + "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: \"1\", DISABLE_AUTOUPDATER: \"1\"}"
    }

    /// A fake Messages API serving one container's network namespace; `requests()` reads what it was sent.
    public final class FakeAPI: @unchecked Sendable {
        public let logPath: String
        let process: ChildProcess

        init(logPath: String, process: ChildProcess) {
            self.logPath = logPath
            self.process = process
        }

        /// Every request logged so far, one JSON object each.
        public func requests() -> [[String: Any]] {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        public func stop() { process.terminate() }
    }

    /// Starts the fake API in the network namespace of `container` (by name or id), logging to `logPath`.
    public static func startFakeAPI(container: String, logPath: String) async throws -> FakeAPI {
        let (code, pid) = try await DockerFixture.shell("docker inspect -f '{{.State.Pid}}' '\(container)'")
        guard code == 0, let hostPID = Int(pid.trimmingCharacters(in: .whitespacesAndNewlines)), hostPID > 0 else {
            throw TestSetupError("container \(container) is not running: \(pid)")
        }
        let ready = logPath + ".ready"
        try? FileManager.default.removeItem(atPath: ready)
        let script = DockerFixture.repositoryRoot.appendingPathComponent("deploy/agent-claude/fake-messages-api.py").path
        let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
        let process = try ChildProcess(
            "/usr/bin/nsenter",
            ["-t", String(hostPID), "-n", python, script, "--port", String(port), "--log", logPath, "--ready-file", ready],
            output: logPath + ".out")
        for _ in 0..<200 {
            if FileManager.default.fileExists(atPath: ready) { return FakeAPI(logPath: logPath, process: process) }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw TestSetupError("the fake Messages API did not start: \((try? String(contentsOfFile: logPath + ".out", encoding: .utf8)) ?? "")")
    }
}
