import Foundation
import TestSupport
import Testing
import Yams

/// What can be checked here of deploy/ without a registry: the units, the compose file, the Redis configs.
@Suite(.timeLimit(.minutes(5))) struct DeployFilesTests {
    static let deploy = DockerFixture.repositoryRoot.appendingPathComponent("deploy")

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "systemd-analyze is not installed"))
    func systemdUnitsVerify() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("units-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // The binaries are not installed on this machine: point the units at one that exists, keep everything else.
        for (file, instance) in [
            ("forge-hooks-producer.service", "forge-hooks-producer.service"), ("forge-hooks-worker@.service", "forge-hooks-worker@1.service"),
            ("forge-hooks-dashboard.service", "forge-hooks-dashboard.service"),
        ] {
            var text = try String(contentsOf: Self.deploy.appendingPathComponent("systemd/\(file)"), encoding: .utf8)
            #expect(text.contains("/usr/local/bin/"))
            text = text.replacingOccurrences(of: "/usr/local/bin/Producer", with: "/bin/true").replacingOccurrences(
                of: "/usr/local/bin/Worker", with: "/bin/true"
            ).replacingOccurrences(of: "/usr/local/bin/hooks-dashboard", with: "/bin/true")
            try text.write(to: dir.appendingPathComponent(instance), atomically: true, encoding: .utf8)
        }
        let (code, out) = try await DockerFixture.shell(
            "cd '\(dir.path)' && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify forge-hooks-producer.service forge-hooks-worker@1.service forge-hooks-dashboard.service 2>&1"
        )
        #expect(code == 0, "\(out)")
        #expect(!out.contains("Unknown key") && !out.contains("Failed to parse"), "\(out)")
        let worker = try String(contentsOf: Self.deploy.appendingPathComponent("systemd/forge-hooks-worker@.service"), encoding: .utf8)
        #expect(worker.contains("ExecStartPre=/usr/local/bin/Worker smoke-check"))
    }

    @Test func composeFileParsesAndWiresTheStack() throws {
        let text = try String(contentsOf: Self.deploy.appendingPathComponent("compose.yaml"), encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any])
        let services = try #require(root["services"] as? [String: Any])
        #expect(Set(services.keys) == ["redis", "producer", "worker", "dashboard", "nginx"])
        let worker = try #require(services["worker"] as? [String: Any])
        let volumes = worker["volumes"] as? [String] ?? []
        #expect(volumes.contains("/var/run/docker.sock:/var/run/docker.sock"))
        #expect(volumes.contains("/var/lib/forge-hooks:/var/lib/forge-hooks"), "agent bind sources must have the same path as on the host")
        #expect((worker["deploy"] as? [String: Any])?["replicas"] as? Int == 2)
        // Run containment needs the host's pids and a writable cgroupfs.
        #expect(worker["pid"] as? String == "host" && volumes.contains("/sys/fs/cgroup:/sys/fs/cgroup"))
        let redisConf = try String(contentsOf: Self.deploy.appendingPathComponent("redis/redis.conf"), encoding: .utf8)
        #expect(
            redisConf.contains("appendonly yes") && redisConf.contains("appendfsync everysec") && redisConf.contains("maxmemory-policy noeviction"))
        let demo = try String(contentsOf: Self.deploy.appendingPathComponent("redis/redis-demo.conf"), encoding: .utf8)
        #expect(demo.contains("appendonly yes") && demo.contains("maxmemory-policy noeviction"))
        let ha = try #require(
            try Yams.load(yaml: String(contentsOf: Self.deploy.appendingPathComponent("compose.ha.yaml"), encoding: .utf8)) as? [String: Any])
        let haServices = try #require(ha["services"] as? [String: Any])
        #expect(Set(haServices.keys).isSuperset(of: ["redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]))
        let sentinelConf = try String(contentsOf: Self.deploy.appendingPathComponent("redis/sentinel.conf"), encoding: .utf8)
        #expect(sentinelConf.contains("sentinel monitor forge-hooks redis 6379 2") && sentinelConf.contains("down-after-milliseconds"))
        let replicaConf = try String(contentsOf: Self.deploy.appendingPathComponent("redis/redis-replica.conf"), encoding: .utf8)
        #expect(replicaConf.contains("replicaof redis 6379") && replicaConf.contains("appendonly yes"))
        let agent = try String(contentsOf: Self.deploy.appendingPathComponent("agent/Dockerfile"), encoding: .utf8)
        #expect(agent.contains("npm install -g \"@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}\"") && agent.contains("--uid 1000"))
        #expect(!agent.contains("docker.sock"))
        // The production image installs the CLI version the real-CLI tests run.
        let builder = try String(contentsOf: Self.deploy.appendingPathComponent("agent-claude/build-image.sh"), encoding: .utf8)
        let tested = try #require(builder.firstMatch(of: /CLAUDE_AGENT_SDK_VERSION:-([0-9.]+)/)).1
        let docs = try String(contentsOf: Self.deploy.deletingLastPathComponent().appendingPathComponent("docs/worker.md"), encoding: .utf8)
        let cli = try #require(docs.firstMatch(of: /runs \*\*Claude Code ([0-9.]+)\*\*\s+\(from `claude-agent-sdk==([0-9.]+)`/))
        #expect(cli.2 == tested, "docs/worker.md names claude-agent-sdk==\(cli.2), build-image.sh pins \(tested)")
        #expect(agent.contains("ARG CLAUDE_CODE_VERSION=\(cli.1)"), "the Dockerfile does not pin Claude Code \(cli.1)")
    }

    /// The shipped Redis and Sentinel configs start a real redis-server (a stray trailing comment, for one, makes it
    /// refuse the file). Paths, ports and the master's host name are overridden for this machine.
    @Test func shippedRedisConfigsStart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("redis-confs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let master = try freePort()
        var started: [ChildProcess] = []
        defer { for process in started { process.terminate() } }
        for (file, isSentinel) in [("redis.conf", false), ("redis-replica.conf", false), ("sentinel.conf", true)] {
            var text = try String(contentsOf: Self.deploy.appendingPathComponent("redis/\(file)"), encoding: .utf8)
            text = text.replacingOccurrences(of: " redis 6379", with: " 127.0.0.1 \(master)").replacingOccurrences(
                of: "dir /data", with: "dir \(dir.path)")
            let copy = dir.appendingPathComponent(file)
            try text.write(to: copy, atomically: true, encoding: .utf8)
            let port = file == "redis.conf" ? master : try freePort()
            let log = dir.appendingPathComponent("\(file).log").path
            let process = try ChildProcess(
                try RedisServer.binary(),
                [copy.path] + (isSentinel ? ["--sentinel"] : []) + [
                    "--port", String(port), "--dir", dir.path, "--daemonize", "no", "--bind", "127.0.0.1",
                ],
                output: log)
            started.append(process)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline && !canConnect(port: port) && process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
            #expect(canConnect(port: port), "\(file) did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }
}
