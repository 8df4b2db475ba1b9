import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// The real Claude Code CLI (the version pinned in `deploy/agent-claude/build-image.sh`) through the real executor,
/// Redis and Docker, against a fake Messages API on each agent container's own loopback. What the fake model does is
/// scripted by `FAKE_…` lines in the prompt (see `deploy/agent-claude/fake-messages-api.py`); the tools themselves
/// (Bash, Write, Read, subagents) are the CLI's own.
@Suite(.serialized, .timeLimit(.minutes(10))) struct RealCLITests {
    static let agentYAML = "    env: \(RealCLI.agentEnvironmentYAML)\n"

    /// One host with the real CLI and the fake API running in its agent's container.
    static func withRealCLI(
        extraAgentYAML: String = "", queueYAML: String = "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms}",
        _ body: (WorkerEnvironment, RealCLI.FakeAPI) async throws -> Void
    ) async throws {
        try await RealCLI.ready()
        try await WorkerEnvironment.with(timeout: "120s", queueYAML: queueYAML, extraAgentYAML: agentYAML + extraAgentYAML, image: RealCLI.image) {
            env in
            let api = try await startAPI(env)
            defer { api.stop() }
            try await body(env, api)
        }
    }

    static func startAPI(_ env: WorkerEnvironment) async throws -> RealCLI.FakeAPI {
        let container = try await env.reconciler().ensure(env.agent())
        return try await RealCLI.startFakeAPI(container: container.containerID, logPath: env.root.path + "/fake-api-\(env.hostID).jsonl")
    }

    @Test func firstTurnThenResumeWithTheTurnsOwnCost() async throws {
        try await Self.withRealCLI { env, api in
            try await env.enqueue("hello from the first turn", number: 1)
            let one = try await env.runNext(env.executor())
            #expect(one["status"] == "succeeded", "\(one)")
            let sessionID = try #require(one["session_id"])
            #expect(AgentSessionID.isValid(sessionID))
            #expect(one["result"] == "fake answer 1", "\(one)")
            #expect(one["cli_version"]?.hasPrefix("2.") == true && one["model"]?.isEmpty == false, "\(one)")
            #expect(Int(one["cli_tools"] ?? "") ?? 0 > 3)
            let cost1 = try #require(Double(one["cost_usd"] ?? ""))
            #expect(cost1 > 0 && one["session_cost_usd"] == one["cost_usd"], "\(one)")
            #expect(api.requests().contains { ($0["prompt"] as? String)?.contains("hello from the first turn") == true }, "\(api.requests())")

            try await env.enqueue("and the second", number: 1)
            let two = try await env.runNext(env.executor())
            #expect(two["status"] == "succeeded" && two["session_id"] == sessionID && two["resumed_from"] == sessionID, "\(two)")
            #expect(two["result"] == "fake answer 2", "the CLI did not see the first turn: \(two)")
            let cost2 = try #require(Double(two["cost_usd"] ?? ""))
            let total2 = try #require(Double(two["session_cost_usd"] ?? ""))
            // The CLI's own total_cost_usd is the session's running total; the job keeps the turn's cost apart.
            #expect(cost2 > 0 && abs(total2 - (cost1 + cost2)) < 1e-6, "turn \(cost2), session \(total2), first \(cost1)")
            #expect(two["warning"] == nil, "\(two)")
        }
    }

    @Test func permissionsDecideWhetherToolsRunAndDenialsAreRecorded() async throws {
        // Default permissions (bypass inside the container): the agent edits the checkout.
        try await Self.withRealCLI { env, _ in
            try await env.enqueue(
                "write it\nFAKE_WRITE: /work/acme/widgets/2/made-by-agent.txt hello\nFAKE_BASH: echo bash-ran > bash.txt", number: 2)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded" && job["permission_denials"] == "0" && job["tool_calls"] == "2", "\(job)")
            let work = env.agent().workDir + "/acme/widgets/2"
            #expect((try? String(contentsOfFile: work + "/made-by-agent.txt", encoding: .utf8)) == "hello\n")
            #expect((try? String(contentsOfFile: work + "/bash.txt", encoding: .utf8)) == "bash-ran\n")
            #expect(job["warning"] == nil, "\(job)")
        }
        // Asking mode: print mode cannot ask, so both calls are denied — and the job says so.
        try await Self.withRealCLI(extraAgentYAML: "    permissions: {mode: manual}\n") { env, _ in
            try await env.enqueue("write it\nFAKE_WRITE: /work/acme/widgets/3/x.txt hello\nFAKE_BASH: echo hi > y.txt", number: 3)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded" && job["permission_denials"] == "2" && job["tool_calls"] == "2", "\(job)")
            #expect(job["denied_tools"] == "Write, Bash", "\(job)")
            #expect(job["warning"]?.contains("every tool call of this run was denied") == true, "\(job)")
            #expect(!FileManager.default.fileExists(atPath: env.agent().workDir + "/acme/widgets/3/x.txt"))
        }
    }

    @Test func aResumeOnAnotherHostHasTheSavedToolOutputAndSubagents() async throws {
        try await RealCLI.ready()
        try await WorkerEnvironment.withTwoHosts(timeout: "120s", extraAgentYAML: Self.agentYAML, image: RealCLI.image) { hostA, hostB in
            let apiA = try await Self.startAPI(hostA)
            defer { apiA.stop() }
            let apiB = try await Self.startAPI(hostB)
            defer { apiB.stop() }
            // Over ~30 KB of output: the CLI saves it in <session>/tool-results/ and keeps only a preview and the path.
            try await hostA.enqueue("list\nFAKE_BASH: seq 100000 130000\nFAKE_TASK: say hi from the subagent", number: 4)
            let one = try await hostA.runNext(hostA.executor(workerID: "A"))
            #expect(one["status"] == "succeeded", "\(one)")
            let sessionID = try #require(one["session_id"])
            let stored = try await hostA.client.send("HGETALL", "hooks:transcript:dev:acme/widgets:4").hash ?? [:]
            let files = stored.keys.filter { $0.hasPrefix("file:") }
            #expect(files.contains { $0.hasPrefix("file:\(sessionID)/tool-results/") && $0.hasSuffix(".txt") }, "\(stored.keys.sorted())")
            #expect(files.contains { $0.hasPrefix("file:\(sessionID)/subagents/agent-") && $0.hasSuffix(".jsonl") }, "\(stored.keys.sorted())")
            #expect(one["warning"] == nil, "\(one)")

            // Host B reads the saved output back through the path the conversation holds.
            try await hostB.enqueue("read what you saved\nFAKE_READ_SAVED_OUTPUT", number: 4)
            let two = try await hostB.runNext(hostB.executor(workerID: "B"))
            #expect(two["status"] == "succeeded" && two["session_id"] == sessionID, "\(two)")
            let result = two["result"] ?? ""
            #expect(result.contains("fake answer 2") && result.contains("100000") && !result.contains("does not exist"), "\(result)")
            let project = hostB.agent().stateDir + "/projects/" + TranscriptStore.projectFolder(forCwd: "/work/acme/widgets/4")
            let subagents = (try? FileManager.default.contentsOfDirectory(atPath: "\(project)/\(sessionID)/subagents")) ?? []
            #expect(subagents.contains { $0.hasSuffix(".meta.json") } && subagents.contains { $0.hasSuffix(".jsonl") }, "\(subagents)")
        }
    }

    @Test func aHalfMegabytePromptGoesInWhole() async throws {
        try await Self.withRealCLI { env, api in
            let line = String(repeating: "forge text that is long. ", count: 40) + "\n"
            let prompt = "BEGIN\n" + String(repeating: line, count: 500) + "END-OF-PROMPT"
            #expect(prompt.utf8.count > 500_000)
            try await env.enqueue(prompt, number: 5)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            let main = api.requests().filter { ($0["tools"] as? Int ?? 0) > 0 }
            #expect(main.contains { ($0["input_bytes"] as? Int ?? 0) > 500_000 }, "the prompt did not reach the model whole")
            // Nothing of it stays behind in the prompt folder.
            let left = (try? FileManager.default.contentsOfDirectory(atPath: env.agent().credentialsDir + "/run")) ?? ["?"]
            #expect(left.isEmpty, "\(left)")
        }
    }

    @Test func aLongWorkingDirectoryStillResumesOnAnotherHostsCopy() async throws {
        let mount = "/work/" + String(repeating: "deep-path/", count: 20) + "x"
        try await Self.withRealCLI(extraAgentYAML: "    work_mount: \(mount)\n") { env, _ in
            try await env.enqueue("first", number: 6)
            let one = try await env.runNext(env.executor())
            #expect(one["status"] == "succeeded", "\(one)")
            let sessionID = try #require(one["session_id"])
            let cwd = mount + "/acme/widgets/6"
            // The CLI's own folder name (cut, plus its hash) is where the worker finds the transcript.
            let local = TranscriptStore.localPath(env.agent(), cwd: cwd, sessionID: sessionID)
            #expect(FileManager.default.fileExists(atPath: local), "\(local)")
            #expect(TranscriptStore.projectFolder(forCwd: cwd).count > 200)
            let stored = try await env.client.send("HGET", "hooks:transcript:dev:acme/widgets:6", "bytes").string
            #expect(Int(stored ?? "") ?? 0 > 0)
            // Lose the local copy: the next turn resumes from the one shipped through Redis.
            try FileManager.default.removeItem(atPath: local)
            try await env.enqueue("second", number: 6)
            let two = try await env.runNext(env.executor())
            #expect(two["session_id"] == sessionID && two["result"] == "fake answer 2" && two["warning"] == nil, "\(two)")
        }
    }

    @Test func aStaleSessionFallsBackToAFreshOneOnce() async throws {
        try await Self.withRealCLI { env, api in
            let stale = UUID().uuidString.lowercased()
            try await env.client.send("HSET", "hooks:sessions", "dev:acme/widgets:7", stale)
            try await env.enqueue("hello", number: 7)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded" && job["session_id"] != stale, "\(job)")
            #expect(job["warning"]?.contains("session \(stale) was not found by the agent CLI") == true, "\(job)")
            #expect(job["result"] == "fake answer 1")
            #expect(api.requests().filter { ($0["tools"] as? Int ?? 0) > 0 }.count == 1, "one model call: the stale resume made none")
        }
    }

    /// The stub agent stands in for the CLI in the fast tests: what the worker reads from the real CLI's first and
    /// last lines, the stub must print too, with the same JSON types.
    @Test func theStubPrintsWhatTheRealCLIPrints() async throws {
        var real: [String: [String: Any]] = [:]
        try await Self.withRealCLI { env, _ in
            let id = try await env.enqueue("hello", number: 8)
            try await env.runNext(env.executor())
            real = try await Self.firstAndLast(env, id)
        }
        var stub: [String: [String: Any]] = [:]
        try await WorkerEnvironment.with { env in
            let id = try await env.enqueue("hello", number: 8)
            try await env.runNext(env.executor())
            stub = try await Self.firstAndLast(env, id)
        }
        for line in ["init", "result"] {
            let (r, s) = (try #require(real[line]), try #require(stub[line]))
            for (key, value) in s {
                let theirs = try #require(r[key], "the real CLI's \(line) line has no '\(key)' (the stub's does): \(r.keys.sorted())")
                #expect(Self.kind(theirs) == Self.kind(value), "\(line).\(key): real \(Self.kind(theirs)), stub \(Self.kind(value))")
            }
            for key in ["session_id", "type"]
                + (line == "init"
                    ? ["claude_code_version", "model", "tools", "mcp_servers"]
                    : [
                        "subtype", "is_error", "total_cost_usd", "num_turns", "result", "permission_denials", "model_usage_since_last_result",
                    ])
            {
                #expect(s[key] != nil && r[key] != nil, "\(line).\(key)")
            }
        }
    }

    static func firstAndLast(_ env: WorkerEnvironment, _ id: String) async throws -> [String: [String: Any]] {
        let lines = try await env.client.send("LRANGE", "hooks:log:\(id)", "0", "-1").strings ?? []
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return [
            "init": try #require(objects.first { $0["type"] as? String == "system" && $0["subtype"] as? String == "init" }),
            "result": try #require(objects.last { $0["type"] as? String == "result" }),
        ]
    }

    static func kind(_ value: Any) -> String {
        switch value {
        case is String: return "string"
        case let n as NSNumber: return String(cString: n.objCType) == "c" ? "bool" : "number"
        case is [Any]: return "array"
        case is [String: Any]: return "object"
        default: return "null"
        }
    }
}
