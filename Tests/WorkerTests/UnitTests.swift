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
}

@Suite struct StreamJSONParserTests {
    @Test func readsInitAndResult() {
        var p = StreamJSONParser()
        p.consume(#"{"type":"system","subtype":"init","session_id":"abc","cwd":"/work/a/b/1"}"#)
        p.consume("not json at all")
        p.consume(#"{"type":"assistant","message":{"content":[]}}"#)
        p.consume(#"{"type":"result","subtype":"success","is_error":false,"num_turns":3,"session_id":"abc","total_cost_usd":0.25,"result":"done"}"#)
        #expect(p.sessionID == "abc" && p.sawResult && p.subtype == "success" && p.isError == false)
        #expect(p.numTurns == 3 && p.costUSD == 0.25 && p.result == "done" && p.errors.isEmpty)
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

    @Test func commandTemplate() {
        let fresh = AgentRunner.command(template: AgentSettings.defaultCommand, prompt: "hi there", resume: nil, newSessionID: "n-1")
        #expect(fresh == ["claude", "-p", "hi there", "--output-format", "stream-json", "--verbose", "--session-id", "n-1"])
        let resumed = AgentRunner.command(template: AgentSettings.defaultCommand, prompt: "p", resume: "old", newSessionID: "n-2")
        #expect(resumed.suffix(2) == ["--resume", "old"])
    }
}

@Suite struct ContainerSpecTests {
    static let agent = AgentSettings(name: "dev", image: "agent:1", credentialsDir: "/srv/dev/config", workDir: "/srv/dev/work")

    static func inspect(
        running: Bool = true, image: String = "sha256:aaa", user: String = "1000:1000", env: [String]? = nil,
        mounts: [(String, String, Bool)]? = nil
    ) -> [String: Any] {
        let spec = ContainerSpec(agent: agent, containerPrefix: "hooks", hostID: "h")
        let defaultMounts = spec.binds.map { ($0.source, $0.target, !$0.readOnly) }
        return [
            "Id": "c1", "Image": image, "State": ["Running": running, "Status": running ? "running" : "exited"],
            "Config": [
                "Image": "agent:1", "User": user, "Env": env ?? (spec.envList + ["PATH=/usr/bin"]),
                "Labels": spec.labels.merging(["from-image": "x"]) { a, _ in a },
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
        #expect(spec.differences(inspect: Self.inspect(user: "1000"), imageID: "sha256:aaa") == ["user: '1000' ≠ '1000:1000'"])
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

    @Test func specHashChangesWithTheSpec() {
        var other = Self.agent
        other.environment["X"] = "1"
        let a = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        let b = ContainerSpec(agent: other, containerPrefix: "hooks", hostID: "h")
        #expect(a.specHash != b.specHash && a.specHash.count == 16)
    }
}
