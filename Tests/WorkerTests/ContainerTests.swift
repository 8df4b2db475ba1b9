import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// Container reconcile on a real dockerd.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ContainerTests {
    @Test func firstJobCreatesContainerWithEveryBindAndAgentOwnedDirs() async throws {
        try await WorkerEnvironment.with() { env in
            let agent = env.agent()
            try await env.enqueue("hello")
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")

            let inspect = try #require(try await env.docker.inspectContainer("\(env.prefix)-dev"))
            let mounts = inspect.mounts.map { "\($0.source):\($0.destination):\($0.readWrite ? "rw" : "ro")" }.sorted()
            #expect(
                mounts
                    == [
                        "\(agent.stateDir):\(agent.configDir):rw", "\(agent.credentialsDir):/etc/claude-code:ro",
                        "\(agent.workDir):\(agent.workMount):rw",
                    ].sorted())
            #expect(!mounts.contains { $0.contains("docker.sock") })
            let config = inspect.config
            // The keeper is not the agent's uid; the agent's execs are (checked by every run: the stub refuses root).
            #expect(config.user == "65534:65534")
            let host = inspect.hostConfig
            #expect(host.capDrop == ["ALL"] && host.pidsLimit == agent.pidsLimit && host.initProcess == true)
            #expect(host.securityOpt.contains("no-new-privileges"))
            // A CPU limit and ulimits, as every run sees them.
            #expect(host.nanoCPUs == 2_000_000_000 && host.ulimits == ["core=0:0", "nofile=8192:8192"], "\(host)")
            let (code, limits) = try await env.docker.run(container: inspect.id, command: ["sh", "-c", "ulimit -n; ulimit -c"], user: agent.user)
            #expect(code == 0 && Array(limits.prefix(2)) == ["8192", "0"], "\(limits)")
            #expect(config.env.contains("CLAUDE_CONFIG_DIR=\(agent.configDir)"))
            #expect(config.labels["forge-hooks.agent"] == "dev")
            for path in [agent.stateDir, agent.stateDir + "/projects", agent.stateDir + "/session-env", agent.workDir] {
                var st = stat()
                #expect(stat(path, &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000, "\(path) not owned by 1000:1000")
            }
            // The operator's dir and the prompts' folder are root's; the agent reads them through the read-only bind.
            for path in [agent.credentialsDir, agent.credentialsDir + "/run"] {
                var st = stat()
                #expect(stat(path, &st) == 0 && st.st_uid == 0 && st.st_gid == 1000, "\(path) not owned by 0:1000")
            }
            #expect(AgentEnvironment.check(agent).isEmpty)
        }
    }

    @Test func brokenHandMadeContainerIsRecreatedAndTranscriptLandsOnTheHost() async throws {
        try await WorkerEnvironment.with() { env in
            let agent = env.agent()
            try AgentEnvironment.sync(agent)
            // The seed's broken state: credentials bound as the config dir, read-only: the CLI can save nothing.
            let (code, out) = try await DockerFixture.shell(
                "docker run -d --name \(env.prefix)-dev -u 1000:1000 -v \(agent.credentialsDir):\(agent.configDir):ro -v \(agent.workDir):/work "
                    + "-e CLAUDE_CONFIG_DIR=\(agent.configDir) \(DockerFixture.image) sleep infinity")
            #expect(code == 0, "\(out)")
            let handMade = try #require(try await env.containerID())
            let verdict = try #require(try await env.reconciler().inspect(agent))
            #expect(verdict.differences.contains { $0.hasPrefix("bind missing: \(agent.stateDir):\(agent.configDir):rw") }, "\(verdict.differences)")

            try await env.enqueue("remember me", repo: "acme/widgets", number: 42)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            let recreated = try #require(try await env.containerID())
            #expect(recreated != handMade)
            #expect(job["container_changes"]?.contains("bind missing") == true)
            let sessionID = try #require(job["session_id"])
            let transcript = "\(agent.stateDir)/projects/-work-acme-widgets-42/\(sessionID).jsonl"
            #expect(FileManager.default.fileExists(atPath: transcript), "no transcript at \(transcript)")
            #expect(try String(contentsOfFile: transcript, encoding: .utf8).contains("remember me"))
        }
    }

    /// Docker refuses more CPUs than the host has: an agent asking for more gets the host's count, and no drift.
    @Test func anAgentAskingForMoreCPUsThanTheHostHasGetsTheHostsCount() async throws {
        try await WorkerEnvironment.with(extraAgentYAML: "    cpus: 512\n") { env in
            let made = try await env.reconciler().ensure(env.agent())
            let inspect = try #require(try await env.docker.inspectContainer(made.containerID))
            let host = try #require(try await env.docker.cpuCount())
            #expect(inspect.hostConfig.nanoCPUs == Int64(host) * 1_000_000_000)
            #expect(try await env.reconciler().inspect(env.agent())?.differences == [])
        }
    }

    @Test func matchingContainerIsKeptAndDriftRecreatesOnce() async throws {
        try await WorkerEnvironment.with() { env in
            // A tag of its own: re-tagging the shared test image would make every other test's container drift.
            let image = "forge-hooks/agent-stub:retag-\(env.prefix)"
            #expect(try await DockerFixture.shell("docker tag \(DockerFixture.image) \(image)").0 == 0)
            defer { _ = try? DockerFixture.shellBlocking("docker rmi -f \(image)") }
            env.config.agents["dev"]!.image = image
            let executor = env.executor()
            try await env.enqueue("one")
            _ = try await env.runNext(executor)
            let first = try #require(try await env.containerID())
            try await env.enqueue("two")
            let second = try await env.runNext(executor)
            #expect(try await env.containerID() == first, "a matching container must not be recreated")
            #expect(second["container_changes"] == nil)

            // Re-tag the image (same name, new id): drift by image id → recreated once, then stable.
            try await DockerFixture.runScript(["deploy/agent-stub/build-image.sh", image])
            try await env.enqueue("three")
            let third = try await env.runNext(executor)
            let afterImage = try #require(try await env.containerID())
            #expect(afterImage != first)
            #expect(third["container_changes"]?.contains("image") == true, "\(third)")
            try await env.enqueue("four")
            _ = try await env.runNext(executor)
            #expect(try await env.containerID() == afterImage)

            // Change a bind in config (another work dir): recreated once.
            var changed = env.config.agents["dev"]!
            changed.workDir = env.root.path + "/dev/work2"
            env.config.agents["dev"] = changed
            let executor2 = env.executor()
            try await env.enqueue("five")
            let fifth = try await env.runNext(executor2)
            let afterBind = try #require(try await env.containerID())
            #expect(afterBind != afterImage && fifth["container_changes"]?.contains("bind") == true)
            try await env.enqueue("six")
            _ = try await env.runNext(executor2)
            #expect(try await env.containerID() == afterBind)
        }
    }

    /// Two worker processes on one host find the container missing at once: one creates it, the other gets 409 and
    /// must adopt it (starting it if need be) instead of failing its job.
    @Test func twoWorkersRacingToCreateBothEndUpWithTheSameContainer() async throws {
        try await WorkerEnvironment.with { env in
            for round in 0..<3 {
                let (a, b) = (env.reconciler(), env.reconciler())
                async let first = a.ensure(env.agent())
                async let second = b.ensure(env.agent())
                let (one, two) = try await (first, second)
                #expect(one.containerID == two.containerID, "round \(round)")
                #expect(try await env.docker.inspectContainer(one.containerID)?.state.running == true, "round \(round)")
                try await env.docker.removeContainer(one.containerID)
            }
        }
    }

    @Test func stoppedContainerIsStartedNotRecreated() async throws {
        try await WorkerEnvironment.with() { env in
            let reconciler = env.reconciler()
            let created = try await reconciler.ensure(env.agent())
            try await env.docker.stopContainer(created.containerID, graceSeconds: 0)
            let again = try await reconciler.ensure(env.agent())
            #expect(again.containerID == created.containerID)
            #expect(again.changes.first?.hasPrefix("not running") == true)
        }
    }

    @Test func orphanedContainersOfUnconfiguredAgentsAreRemoved() async throws {
        try await WorkerEnvironment.with(agents: ["dev", "old"]) { env in
            let reconciler = env.reconciler()
            _ = try await reconciler.ensure(env.agent("old"))
            _ = try await reconciler.ensure(env.agent("dev"))
            let removed = try await reconciler.removeOrphans(configured: ["dev"])
            #expect(removed.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "/")) } == ["\(env.prefix)-old"])
            #expect(try await env.containerID("dev") != nil)
        }
    }
}
