import Foundation
import Shared
import TestSupport
import Testing

/// The whole stack with the real Claude Code CLI: nginx → Producer → Redis → two Worker processes → Docker → the
/// CLI, which talks to a fake Messages API on its container's loopback. Two comments on one issue: the second resumes
/// the first's session; the agent writes into its checkout; the job records what the turn cost apart from the session.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RealCLIEndToEndTests {
    @Test func twoCommentsOneConversationThroughTheWholeStack() async throws {
        try await RealCLI.ready()
        let stack = try await EndToEndTests.Stack(image: RealCLI.image, agentYAML: "    env: \(RealCLI.agentEnvironmentYAML)\n")
        var api: RealCLI.FakeAPI?
        do {
            try await stack.start()
            // The workers make every agent's container at start-up: the fake model goes into dev's network namespace.
            let container = "\(stack.prefix)-dev"
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, (try await DockerFixture.shell("docker inspect -f '{{.State.Running}}' \(container)")).1 != "true\n"
            {
                try await Task.sleep(for: .milliseconds(200))
            }
            api = try await RealCLI.startFakeAPI(container: container, logPath: stack.root.appendingPathComponent("fake-api.jsonl").path)

            let (s1, b1) = try await stack.post(
                event: "issue_comment",
                payload: EndToEndTests.comment(5, "@dev please add a note\nFAKE_WRITE: /work/acme/shop/5/NOTE.md from the agent"))
            #expect(s1 == 202, "\(b1)")
            let one = try await stack.waitDone(try #require(stack.jobIDs(b1).first))
            #expect(one["status"] == "succeeded" && one["result"]?.hasPrefix("fake answer 1\n[tool 1] File created successfully") == true, "\(one)")
            #expect(one["permission_denials"] == "0" && one["cli_version"]?.hasPrefix("2.") == true, "\(one)")
            let note = stack.root.appendingPathComponent("agents/dev/work/acme/shop/5/NOTE.md").path
            #expect((try? String(contentsOfFile: note, encoding: .utf8)) == "from the agent\n")

            let (_, b2) = try await stack.post(event: "issue_comment", payload: EndToEndTests.comment(5, "@dev thanks, and now?"))
            let two = try await stack.waitDone(try #require(stack.jobIDs(b2).first))
            #expect(two["status"] == "succeeded" && two["result"] == "fake answer 2", "\(two)")
            #expect(two["resumed_from"] == one["session_id"] && two["session_id"] == one["session_id"], "\(two)")
            let (turn, total) = (Double(two["cost_usd"] ?? "") ?? 0, Double(two["session_cost_usd"] ?? "") ?? 0)
            #expect(turn > 0 && total > turn, "turn \(turn), session \(total)")
            // The prompt reached the model as the forge wrote it, from standard input.
            #expect(api?.requests().contains { ($0["prompt"] as? String)?.contains("@dev thanks, and now?") == true } == true)
            // hooksctl sees the day's spend: both turns' own costs.
            let spend = try #require(try await stack.hooksctl(["spend", "--json"]) as? [String: Any])
            let dev = (spend["agents"] as? [[String: Any]])?.first { $0["agent"] as? String == "dev" }
            let spent = dev?["total_usd"] as? Double ?? 0
            #expect(abs(spent - (Double(one["cost_usd"] ?? "") ?? 0) - turn) < 1e-6, "\(spend)")
        } catch {
            api?.stop()
            await stack.stop()
            throw error
        }
        api?.stop()
        await stack.stop()
    }
}
