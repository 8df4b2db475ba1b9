import Foundation
import Shared
import Testing

@testable import WorkerCore

@Suite(.timeLimit(.minutes(5))) struct ContainerSpecTests {
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
                "CapDrop": capDrop, "SecurityOpt": ["no-new-privileges", SeccompProfile.securityOpt], "PidsLimit": spec.pidsLimit,
                "Memory": spec.memoryBytes, "NanoCpus": spec.nanoCPUs ?? 0,
                "Ulimits": [["Name": "nofile", "Soft": 8192, "Hard": 8192], ["Name": "core", "Soft": 0, "Hard": 0]],
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
                "/srv/dev/config/state:/home/claude/.config/claude-code:rw", "/srv/dev/config:/etc/claude-code:ro", "/srv/dev/work:/work:rw",
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
        // The credentials bound read-write: missing ro bind + undesired rw bind.
        var rwCredentials = binds
        rwCredentials[1].2 = true
        let diffs = spec.differences(inspect: Self.inspect(mounts: rwCredentials), imageID: "sha256:aaa")
        #expect(diffs.count == 2 && diffs.allSatisfy { $0.contains("/etc/claude-code") })
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
        #expect(host["CapDrop"] as? [String] == ["ALL"] && host["SecurityOpt"] as? [String] == ["no-new-privileges", SeccompProfile.securityOpt])
        #expect(host["PidsLimit"] as? Int == 1024 && host["Memory"] as? Int64 == 8 << 30 && host["Privileged"] as? Bool == false)
        // The keeper (init, sleep) is not the agent's uid, so an agent cannot write into its memory.
        #expect(spec.createBody["User"] as? String == "65534:65534" && host["Init"] as? Bool == true)
        let mounts = try #require(host["Mounts"] as? [[String: Any]])
        #expect(!mounts.contains { ($0["Source"] as? String)?.contains("docker.sock") == true })
        #expect(mounts.first { $0["Target"] as? String == "/etc/claude-code" }?["ReadOnly"] as? Bool == true)
        #expect(mounts.first { $0["Target"] as? String == "/home/claude/.config/claude-code" }?["ReadOnly"] as? Bool == false)
        #expect(spec.createBody["WorkingDir"] as? String == "/work")
    }

    /// The profile denies what lets one run reach another (and the namespace flags of clone), and Docker gets it whole.
    @Test func theSeccompProfileDeniesPtraceAndIsInTheCreateBody() throws {
        let spec = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        let host = try #require(spec.createBody["HostConfig"] as? [String: Any])
        #expect(host["SecurityOpt"] as? [String] == ["no-new-privileges", "seccomp=" + SeccompProfile.json])
        let profile = try #require(try JSONSerialization.jsonObject(with: Data(SeccompProfile.json.utf8)) as? [String: Any])
        #expect(profile["defaultAction"] as? String == "SCMP_ACT_ALLOW")
        let rules = try #require(profile["syscalls"] as? [[String: Any]])
        let denied = Set(rules.filter { $0["args"] == nil && $0["errnoRet"] as? Int == 1 }.flatMap { $0["names"] as? [String] ?? [] })
        for call in ["ptrace", "process_vm_readv", "process_vm_writev", "unshare", "setns", "keyctl", "bpf", "io_uring_setup", "userfaultfd"] {
            #expect(denied.contains(call), "\(call)")
        }
        #expect(rules.filter { ($0["names"] as? [String]) == ["clone"] }.count == 7)
        #expect(rules.contains { ($0["names"] as? [String]) == ["clone3"] && $0["errnoRet"] as? Int == 38 })
    }

    /// CPU and ulimits are part of the spec: defaults 2 cores, nofile 8192, no core dumps; a change is drift.
    @Test func cpuAndUlimitsAreAskedForAndDriftWhenChanged() throws {
        let spec = ContainerSpec(agent: Self.agent, containerPrefix: "hooks", hostID: "h")
        let host = try #require(spec.createBody["HostConfig"] as? [String: Any])
        #expect(host["NanoCpus"] as? Int64 == 2_000_000_000)
        let ulimits = try #require(host["Ulimits"] as? [[String: Any]])
        #expect(ulimits.map { "\($0["Name"]!)=\($0["Soft"]!):\($0["Hard"]!)" } == ["core=0:0", "nofile=8192:8192"])
        var agent = Self.agent
        agent.cpus = 0.5
        agent.ulimits["nproc"] = AgentSettings.Ulimit(soft: 100, hard: 200)
        let changed = ContainerSpec(agent: agent, containerPrefix: "hooks", hostID: "h")
        let diffs = changed.differences(inspect: Self.inspect(), imageID: "sha256:aaa")
        #expect(diffs.contains("cpu limit: 2.0 ≠ 0.5 cores") && diffs.contains { $0.hasPrefix("ulimits: core=0:0, nofile=8192:8192 ≠ ") }, "\(diffs)")
        agent.cpus = nil
        #expect(
            ContainerSpec(agent: agent, containerPrefix: "hooks", hostID: "h").createBody["HostConfig"].map {
                ($0 as! [String: Any])["NanoCpus"] as? Int64
            } == 0)
        // From the config.
        let config = try AppConfig.parse(
            yaml: "agents: {a: {image: i, cpus: 1.5, ulimits: {nofile: 4096, nproc: {soft: 512, hard: 1024}}}, b: {image: i, cpus: false}}",
            file: "t.yaml",
            environment: [:])
        #expect(config.agents["a"]?.cpus == 1.5 && config.agents["b"]?.cpus == nil)
        #expect(config.agents["a"]?.ulimits["nofile"] == AgentSettings.Ulimit(soft: 4096, hard: 4096))
        #expect(config.agents["a"]?.ulimits["nproc"] == AgentSettings.Ulimit(soft: 512, hard: 1024))
        for (yaml, says) in [
            ("{cpus: 0}", "must be a number of cores"), ("{cpus: lots}", "must be a number of cores"), ("{ulimits: {files: 3}}", "unknown key"),
            ("{ulimits: {nofile: {soft: 9, hard: 3}}}", "0 <= soft <= hard"), ("{ulimits: {nofile: -1}}", "must not be negative"),
        ] {
            #expect {
                try AppConfig.parse(
                    yaml: "agents: {a: {image: i, permissions: {}, \(yaml.dropFirst().dropLast())}}", file: "t.yaml", environment: [:])
            } throws: { error in
                "\(error)".contains(says)
            }
        }
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
        #expect(diffs.count == 5, "\(diffs)")
        #expect(diffs.contains { $0.hasPrefix("security: not the worker's seccomp profile") })
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
                "security: not the worker's seccomp profile (\(SeccompProfile.digest)): its runs could ptrace each other",
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

extension ContainerSpec {
    /// The tests write inspect documents as Docker sends them; decoded here as the client decodes an answer.
    func differences(inspect json: [String: Any], imageID: String?) -> [String] {
        let body = Array((try? JSONSerialization.data(withJSONObject: json)) ?? Data())
        return differences(inspect: try! ContainerDetails(json: body), imageID: imageID)
    }
}
