import Foundation
import Shared
import Testing

@testable import WorkerCore

@Suite(.timeLimit(.minutes(5))) struct AgentSessionIDTests {
    @Test func onlyCanonicalUUIDsAreAccepted() {
        #expect(AgentSessionID.isValid("0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b40"))
        #expect(AgentSessionID.isValid("0B7E3A2C-59F1-4F6E-9C1D-3D2A8F1E7B40"))
        for bad in [
            "", "abc", "../../../../tmp/x", "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b4", "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b400",
            "0b7e3a2c_59f1-4f6e-9c1d-3d2a8f1e7b40", "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b4g", "--resume-59f1-4f6e-9c1d-3d2a8f1e7b40",
            "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e/b40", "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1é7b4",
        ] {
            #expect(!AgentSessionID.isValid(bad), "\(bad)")
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct StreamJSONParserTests {
    @Test func readsInitAndResult() {
        var p = StreamJSONParser()
        let sid = "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b40"
        p.consume(#"{"type":"system","subtype":"init","session_id":"\#(sid)","cwd":"/work/a/b/1"}"#)
        p.consume("not json at all")
        p.consume(#"{"type":"assistant","message":{"content":[]}}"#)
        p.consume(
            #"{"type":"result","subtype":"success","is_error":false,"num_turns":3,"session_id":"\#(sid)","total_cost_usd":0.25,"result":"done"}"#)
        #expect(p.sessionID == sid && p.sawResult && p.subtype == "success" && p.isError == false)
        #expect(p.numTurns == 3 && p.costUSD == 0.25 && p.result == "done" && p.errors.isEmpty)
        #expect(p.rejectedSessionID == nil)
    }

    @Test func onlyLinesThatCanBeSystemOrResultAreParsed() {
        #expect(StreamJSONParser.mayCarryTypeOfInterest(#"{"type": "result", "x": 1}"#))
        #expect(StreamJSONParser.mayCarryTypeOfInterest(#"{"type":"system","subtype":"init"}"#))
        #expect(!StreamJSONParser.mayCarryTypeOfInterest(#"{"type":"assistant","message":"the results are in"}"#))
        #expect(!StreamJSONParser.mayCarryTypeOfInterest(#"{"type":"user","a":"resul"#))
        // Whitespace between key and value still parses; the scan only decides whether to parse at all.
        var p = StreamJSONParser()
        p.consume(#"{ "type" : "result", "subtype" : "success", "is_error" : false, "num_turns" : 2 }"#)
        #expect(p.sawResult && p.numTurns == 2)
    }

    @Test func aSessionIDThatIsNotAUUIDIsRefusedAndReported() {
        var p = StreamJSONParser()
        p.consume(#"{"type":"system","subtype":"init","session_id":"../../../../tmp/x"}"#)
        p.consume(#"{"type":"result","subtype":"success","is_error":false,"session_id":"--settings=/tmp/evil"}"#)
        #expect(p.sessionID == nil && p.sawResult)
        #expect(p.rejectedSessionID == "../../../../tmp/x")
    }

    @Test func boundsCountBytesNotCharacters() {
        // One Character: "a" and 100,000 combining acute accents (200,001 bytes).
        let zalgo = "a" + String(repeating: "\u{301}", count: 100_000)
        #expect(zalgo.count == 1)
        let cut = StreamJSONParser.bounded(zalgo, 1000)
        #expect(cut.utf8.count < 1100 && cut.hasSuffix("[cut at 1000 bytes]"))
        #expect(StreamJSONParser.bounded("short", 1000) == "short")
    }

    @Test func resultAndErrorsAreBounded() {
        var p = StreamJSONParser()
        let huge = String(repeating: "r", count: 100_000)
        let errors = (0..<50).map { _ in "\"" + String(repeating: "e", count: 5000) + "\"" }.joined(separator: ",")
        p.consume(#"{"type":"result","subtype":"error","is_error":true,"result":"\#(huge)","errors":[\#(errors)]}"#)
        #expect(p.result!.utf8.count < StreamJSONParser.resultMaxCharacters + 100 && p.result!.hasSuffix("bytes]"))
        #expect(p.errors.count == 10 && p.errors.allSatisfy { $0.utf8.count < 1100 })
    }

    @Test func successSubtypeWithIsErrorIsAFailure() {
        var p = StreamJSONParser()
        p.consume(#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"session_id":"s","total_cost_usd":0,"result":"API Error"}"#)
        var outcome = AgentRunner.Outcome()
        outcome.exitCode = 0
        outcome.parsed = p
        #expect(!outcome.succeeded)
        #expect(outcome.errorSummary == "API Error")
    }

    @Test func noConversationFoundIsRecognised() {
        var p = StreamJSONParser()
        p.consume(
            #"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":0,"session_id":"x","total_cost_usd":0,"errors":["No conversation found with session ID: x"]}"#
        )
        var outcome = AgentRunner.Outcome()
        outcome.exitCode = 1
        outcome.parsed = p
        #expect(outcome.resumeNotFound)
        var stderrOnly = AgentRunner.Outcome()
        stderrOnly.exitCode = 1
        stderrOnly.stderrTail = ["No conversation found with session ID: y"]
        #expect(stderrOnly.resumeNotFound)
    }

    @Test func theCommandCarriesNoPromptOnlyTheSessionAndPermissionFlags() {
        var permissions = AgentSettings.Permissions()
        let fresh = AgentRunner.command(template: AgentSettings.defaultCommand, permissions: permissions, resume: nil, newSessionID: "n-1")
        #expect(
            fresh == [
                "claude", "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "bypassPermissions", "--session-id", "n-1",
            ])
        permissions.mode = "acceptEdits"
        permissions.disallowedTools = ["WebFetch"]
        let resumed = AgentRunner.command(
            template: AgentSettings.defaultCommand + ["{{prompt}}"], permissions: permissions, resume: "old", newSessionID: "n-2")
        #expect(resumed.suffix(6) == ["--permission-mode", "acceptEdits", "--disallowedTools", "WebFetch", "--resume", "old"])
        #expect(!resumed.contains("{{prompt}}"))
        // The wrapper reads the prompt from a file the worker wrote: standard input, never an argument.
        let wrapped = RunCgroup.wrap(fresh, marker: "job-1.abcd1234")
        #expect(wrapped[2].hasSuffix("exec \"$@\" < '/etc/claude-code/run/job-1.abcd1234.prompt'"))
        #expect(RunCgroup.uncontained(fresh, marker: "m.1")[2] == "exec \"$@\" < '/etc/claude-code/run/m.1.prompt'")
    }

    @Test func resultLinesGiveTurnCostDenialsAndWhatTheCLIIs() {
        var p = StreamJSONParser()
        p.consume(
            #"{"type":"system","subtype":"init","cwd":"/w","session_id":"11111111-2222-3333-4444-555555555555","tools":["Bash","Read"],"mcp_servers":[{"name":"gh","status":"connected"}],"model":"claude-x","claude_code_version":"2.1.337"}"#
        )
        p.consume(
            #"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"a","name":"Bash","input":{}},{"type":"tool_use","id":"b","name":"Write","input":{"content":"\"type\":\"tool_use\""}}]}}"#
        )
        p.consume(
            #"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"total_cost_usd":0.3199,"permission_denials":[{"tool_name":"Bash","tool_use_id":"a"},{"tool_name":"Write"},{"tool_name":"Bash"}],"model_usage_since_last_result":{"m1":{"costUSD":0.1},"m2":{"costUSD":0.0096}},"result":"ok"}"#
        )
        #expect(p.cliVersion == "2.1.337" && p.model == "claude-x" && p.toolCount == 2 && p.mcpServers == ["gh (connected)"])
        #expect(p.toolCalls == 2)
        #expect(p.permissionDenials == 3 && p.deniedToolsSummary == "Bash ×2, Write")
        #expect(abs((p.turnCostUSD ?? 0) - 0.1096) < 1e-9 && p.costUSD == 0.3199)
        #expect(JobExecutor.turnCost(p, resumed: true) == p.turnCostUSD)
        var old = StreamJSONParser()
        old.consume(#"{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.5}"#)
        #expect(old.turnCostUSD == nil)
        #expect(JobExecutor.turnCost(old, resumed: false) == 0.5)
        #expect(JobExecutor.turnCost(old, resumed: true) == nil)
    }

    @Test func projectFolderNamesMatchTheCLI() {
        #expect(TranscriptStore.projectFolder(forCwd: "/work/acme/shop.git/12") == "-work-acme-shop-git-12")
        // Seen from Claude Code 2.1.337: cut at 200, then '-' and the path's hash in base 36.
        let long = "/tmp/cc/" + String(repeating: "a", count: 120) + "/" + String(repeating: "b", count: 100) + "/x.y"
        let folder = TranscriptStore.projectFolder(forCwd: long)
        #expect(folder.hasSuffix("-7kp9yd") && folder.count == 207)
        #expect(TranscriptStore.projectFolder(forCwd: "/wörk/😀") == "-w-rk---")
    }
}
