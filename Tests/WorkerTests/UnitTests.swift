import Foundation
import Shared
import Testing

@testable import Worker

@Suite struct DemuxerTests {
    static func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let n = UInt32(payload.count)
        return [stream, 0, 0, 0, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + payload
    }

    @Test func framesSplitAtEveryPossibleByte() {
        let bytes = Self.frame(1, "{\"type\":\"system\"}\nhalf a ") + Self.frame(2, "warning: x\n") + Self.frame(1, "line\nlast without newline")
        // Feed the same stream cut at every position, and byte by byte: the lines must come out the same.
        let expected: [(DockerStreamDemuxer.Stream, String)] = [
            (.stdout, "{\"type\":\"system\"}"), (.stderr, "warning: x"), (.stdout, "half a line"), (.stdout, "last without newline"),
        ]
        for cut in 0...bytes.count {
            var d = DockerStreamDemuxer()
            var out = d.feed(bytes[..<cut])
            out += d.feed(bytes[cut...])
            out += d.finish()
            #expect(out.map(\.0) == expected.map(\.0) && out.map(\.1) == expected.map(\.1), "cut at \(cut)")
        }
        var d = DockerStreamDemuxer()
        var out: [(DockerStreamDemuxer.Stream, String)] = []
        for b in bytes { out += d.feed([b]) }
        out += d.finish()
        #expect(out.map(\.1) == expected.map(\.1))
    }

    @Test func largeFrameAndEmptyFrame() {
        let big = String(repeating: "x", count: 100_000)
        var d = DockerStreamDemuxer()
        let out = d.feed(Self.frame(1, "") + Self.frame(1, big + "\n"))
        #expect(out.count == 1 && out[0].1.count == 100_000)
    }

    @Test func aLineOverTheCapKeepsItsHeadAndTheNextLineIsIntact() {
        let long = String(repeating: "x", count: 100)
        let bytes = Self.frame(1, long) + Self.frame(1, long + "\nnext\n") + Self.frame(2, "err\n")
        for cut in 0...bytes.count {
            var d = DockerStreamDemuxer(maxLineBytes: 16)
            var out = d.feed(bytes[..<cut])
            out += d.feed(bytes[cut...])
            out += d.finish()
            #expect(
                out.map(\.1) == [String(repeating: "x", count: 16) + DockerStreamDemuxer.cutMarker(dropped: 184), "next", "err"], "cut at \(cut)")
        }
    }

    @Test func anEndlessLineHoldsAtMostTheCap() {
        // 64 MiB without a newline, in 64 KiB frames: nothing comes out until the end, and what is held stays at the cap.
        var d = DockerStreamDemuxer(maxLineBytes: 1 << 20)
        let chunk = Self.frame(1, String(repeating: "y", count: 64 << 10))
        for _ in 0..<1024 { #expect(d.feed(chunk).isEmpty) }
        let last = d.finish()
        #expect(last.count == 1 && last[0].1.utf8.count == (1 << 20) + DockerStreamDemuxer.cutMarker(dropped: 63 << 20).utf8.count)
    }
}

@Suite struct AgentSessionIDTests {
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

@Suite struct StreamJSONParserTests {
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

    @Test func commandTemplatePutsThePromptLastAfterDoubleDash() {
        let fresh = AgentRunner.command(template: AgentSettings.defaultCommand, prompt: "hi there", resume: nil, newSessionID: "n-1")
        #expect(fresh == ["claude", "-p", "--output-format", "stream-json", "--verbose", "--session-id", "n-1", "--", "hi there\n"])
        let resumed = AgentRunner.command(template: AgentSettings.defaultCommand, prompt: "p\n", resume: "old", newSessionID: "n-2")
        #expect(resumed.suffix(4) == ["--resume", "old", "--", "p\n"])
        // Forge text that looks like options is still one argument behind `--`.
        let hostile = "--dangerously-skip-permissions --settings /tmp/evil.json"
        let command = AgentRunner.command(template: AgentSettings.defaultCommand, prompt: hostile, resume: nil, newSessionID: "n")
        #expect(command.suffix(2) == ["--", hostile + "\n"] && command.filter { $0.hasPrefix("--dangerously") }.count == 1)
        // A prompt that is exactly a subcommand's name (`update`, `mcp`) never equals it.
        #expect(AgentRunner.command(template: AgentSettings.defaultCommand, prompt: "update", resume: nil, newSessionID: "n").last == "update\n")
    }
}

@Suite struct ContainerSpecTests {
    static let agent = AgentSettings(name: "dev", image: "agent:1", credentialsDir: "/srv/dev/config", workDir: "/srv/dev/work")

    static func inspect(
        running: Bool = true, image: String = "sha256:aaa", user: String = ContainerSpec.keeperUser, env: [String]? = nil,
        mounts: [(String, String, Bool)]? = nil, capDrop: [String] = ["ALL"]
    ) -> [String: Any] {
        let spec = ContainerSpec(agent: agent, containerPrefix: "hooks", hostID: "h")
        let defaultMounts = spec.binds.map { ($0.source, $0.target, !$0.readOnly) }
        return [
            "Id": "c1", "Image": image, "State": ["Running": running, "Status": running ? "running" : "exited"],
            "Config": [
                "Image": "agent:1", "User": user, "Env": env ?? (spec.envList + ["PATH=/usr/bin"]),
                "Labels": spec.labels.merging(["from-image": "x"]) { a, _ in a },
            ] as [String: Any],
            "HostConfig": [
                "CapDrop": capDrop, "SecurityOpt": ["no-new-privileges"], "PidsLimit": spec.pidsLimit, "Memory": spec.memoryBytes,
                "Privileged": false, "Init": true,
            ] as [String: Any],
            "Mounts": (mounts ?? defaultMounts).map {
                ["Type": "bind", "Source": $0.0, "Destination": $0.1, "RW": $0.2, "Mode": $0.2 ? "" : "ro"] as [String: Any]
            },
        ]
    }

    @Test func matchingContainerHasNoDifferencesEvenWithImageEnvAndLabels() {
        let spec = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        #expect(spec.differences(inspect: Self.inspect(), imageID: "sha256:aaa").isEmpty)
        #expect(spec.name == "hooks-dev")
        #expect(
            spec.binds.map(\.description) == [
                "/srv/dev/config:/home/claude/.config/claude-code:ro", "/srv/dev/config/projects:/home/claude/.config/claude-code/projects:rw",
                "/srv/dev/config/session-env:/home/claude/.config/claude-code/session-env:rw", "/srv/dev/work:/work:rw",
            ])
    }

    @Test func everyKindOfDriftIsReported() {
        let spec = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        let binds = spec.binds.map { ($0.source, $0.target, !$0.readOnly) }
        #expect(spec.differences(inspect: Self.inspect(running: false), imageID: "sha256:aaa").first?.hasPrefix("not running") == true)
        #expect(spec.differences(inspect: Self.inspect(), imageID: "sha256:bbb").first?.hasPrefix("image: runs") == true)
        #expect(spec.differences(inspect: Self.inspect(user: "1000:1000"), imageID: "sha256:aaa") == ["user: '1000:1000' ≠ '65534:65534'"])
        #expect(
            spec.differences(inspect: Self.inspect(env: ["HOME=/home/claude"]), imageID: "sha256:aaa") == [
                "env: CLAUDE_CONFIG_DIR missing or different"
            ])
        // projects/ bound read-only: missing rw bind + undesired ro bind.
        var roProjects = binds
        roProjects[1].2 = false
        let diffs = spec.differences(inspect: Self.inspect(mounts: roProjects), imageID: "sha256:aaa")
        #expect(diffs.count == 2 && diffs.allSatisfy { $0.contains("/projects") })
        // A Docker socket mounted in is drift.
        let withSocket = spec.differences(
            inspect: Self.inspect(mounts: binds + [("/var/run/docker.sock", "/var/run/docker.sock", true)]), imageID: "sha256:aaa")
        #expect(withSocket == ["bind not desired: /var/run/docker.sock:/var/run/docker.sock:rw"])
        #expect(
            spec.differences(inspect: Self.inspect(mounts: Array(binds.dropLast())), imageID: "sha256:aaa") == [
                "bind missing: /srv/dev/work:/work:rw"
            ])
    }

    @Test func createAsksForLeastPrivilege() throws {
        let spec = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        let host = try #require(spec.createBody["HostConfig"] as? [String: Any])
        #expect(host["CapDrop"] as? [String] == ["ALL"] && host["SecurityOpt"] as? [String] == ["no-new-privileges"])
        #expect(host["PidsLimit"] as? Int == 1024 && host["Memory"] as? Int64 == 8 << 30 && host["Privileged"] as? Bool == false)
        // The keeper (init, sleep) is not the agent's uid, so an agent cannot write into its memory.
        #expect(spec.createBody["User"] as? String == "65534:65534" && host["Init"] as? Bool == true)
        let mounts = try #require(host["Mounts"] as? [[String: Any]])
        #expect(!mounts.contains { ($0["Source"] as? String)?.contains("docker.sock") == true })
        #expect(mounts.first?["ReadOnly"] as? Bool == true)
    }

    @Test func privilegeDriftIsReported() {
        let spec = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        #expect(spec.differences(inspect: Self.inspect(capDrop: []), imageID: "sha256:aaa").first?.hasPrefix("capabilities") == true)
        var doc = Self.inspect()
        var host = doc["HostConfig"] as! [String: Any]
        host["SecurityOpt"] = [String]()
        host["PidsLimit"] = 0
        host["Memory"] = 0
        host["CapAdd"] = ["SYS_ADMIN"]
        doc["HostConfig"] = host
        let diffs = spec.differences(inspect: doc, imageID: "sha256:aaa")
        #expect(diffs.count == 4, "\(diffs)")
        host = Self.inspect()["HostConfig"] as! [String: Any]
        host["SecurityOpt"] = ["no-new-privileges", "seccomp=unconfined"]
        host["Init"] = false
        host["PidMode"] = "host"
        host["Devices"] = [["PathOnHost": "/dev/kmsg"]]
        doc = Self.inspect()
        doc["HostConfig"] = host
        doc["Mounts"] = (doc["Mounts"] as! [[String: Any]]) + [["Type": "volume", "Name": "sock", "Destination": "/var/run/docker.sock", "RW": true]]
        #expect(
            spec.differences(inspect: doc, imageID: "sha256:aaa") == [
                "security: seccomp=unconfined", "init: not set (orphans would not be reaped)", "devices: host devices passed in",
                "namespaces: PidMode is host", "mount not desired: volume sock at /var/run/docker.sock",
            ])
        #expect(diffs.contains { $0.hasPrefix("security: no-new-privileges") } && diffs.contains { $0.hasPrefix("pids limit") })
        #expect(diffs.contains { $0.hasPrefix("memory limit") } && diffs.contains { $0.contains("SYS_ADMIN") })
    }

    @Test func specHashChangesWithTheSpec() {
        var other = Self.agent
        other.environment["X"] = "1"
        let a = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        let b = ContainerSpec(agent: other, containerPrefix: "hooks", hostID: "h")
        #expect(a.specHash != b.specHash && a.specHash.count == 16)
    }
}
