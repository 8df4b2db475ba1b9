import Foundation
import TestSupport
import Testing

/// What an operator sees when something is wrong at start-up: the real binaries, their exit codes and messages.
@Suite(.timeLimit(.minutes(5))) struct StartupErrorsTests {
    static let bin = DockerFixture.repositoryRoot.appendingPathComponent(".build/debug").path

    static func run(_ binary: String, _ args: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let dir = FileManager.default.temporaryDirectory
        let out = dir.appendingPathComponent("startup-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let p = try ChildProcess("\(bin)/\(binary)", args, environment: env, output: out)
        let code = p.wait()
        return (code, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    static func config(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func invalidConfigStopsStartupNamingTheKey() throws {
        let path = try Self.config("agents: {dev: {image: i}}\nrules: [{agent: devv, events: [issues], prompt: x}]")
        for binary in ["Producer", "Worker"] {
            let (code, out) = try Self.run(binary, ["--config", path])
            #expect(code == 78, "\(binary): \(out)")
            #expect(out.contains("rules[0].agent: unknown agent 'devv'"), "\(binary): \(out)")
        }
        let (missing, out) = try Self.run("Producer", ["--config", "/nonexistent/config.yaml"])
        #expect(missing == 78 && out.contains("cannot read the file"), "\(out)")
    }

    @Test func unreachableRedisAndDockerAreClearErrors() throws {
        let port = try freePort()
        let path = try Self.config("redis: {url: \"redis://127.0.0.1:\(port)\"}\nagents: {dev: {image: i}}")
        let (producer, pout) = try Self.run("Producer", ["--config", path, "--check"])
        #expect(producer == 69 && pout.contains("cannot connect to Redis at 127.0.0.1:\(port)"), "\(pout)")
        let (worker, wout) = try Self.run("Worker", ["--config", path])
        #expect(worker == 69 && wout.contains("cannot connect to Redis"), "\(wout)")

        let redis = try RedisServer()
        defer { redis.stop() }
        let ok = try Self.config("redis: {url: \"\(redis.url)\"}\nagents: {dev: {image: i}}")
        let (docker, dout) = try Self.run("Worker", ["--config", ok], environment: ["DOCKER_HOST": "unix:///nonexistent/docker.sock"])
        #expect(docker == 69 && dout.contains("Docker engine unreachable"), "\(dout)")
        let (tcp, tout) = try Self.run("Worker", ["--config", ok], environment: ["DOCKER_HOST": "tcp://10.0.0.1:2375"])
        #expect(tcp != 0 && tout.contains("use unix:///path/to/docker.sock"), "\(tout)")
    }

    /// Sentinel settings that cannot work stop the Producer and the Worker at start-up, saying which part is wrong:
    /// sentinels that do not answer (69), a master name they do not know (78).
    @Test func badSentinelSettingsStopStartup() async throws {
        let cluster = try await SentinelCluster()
        defer { cluster.stop() }
        let nowhere = try freePort()
        let unreachable = try Self.config(
            "redis: {url: \"redis://127.0.0.1:6379\", sentinel: {master_name: m, addresses: [\"127.0.0.1:\(nowhere)\"]}}\nagents: {dev: {image: i}}")
        let wrongName = try Self.config(
            "redis: {url: \"redis://127.0.0.1:6379\", sentinel: {master_name: nope, addresses: [\"127.0.0.1:\(cluster.sentinelPorts[0])\"]}}\n"
                + "agents: {dev: {image: i}}")
        for binary in ["Producer", "Worker"] {
            let (code, out) = try await Self.runAsync(binary, ["--config", unreachable])
            #expect(code == 69 && out.contains("no sentinel answered") && out.contains("127.0.0.1:\(nowhere)"), "\(binary): \(out)")
            let (named, nout) = try await Self.runAsync(binary, ["--config", wrongName])
            #expect(named == 78 && nout.contains("do not monitor a master named 'nope'"), "\(binary): \(nout)")
        }
        // The right settings pass the producer's check.
        let good = try Self.config("redis: {url: \"redis://127.0.0.1:6379\", \(cluster.yaml)}\nagents: {dev: {image: i}}")
        let (ok, out) = try await Self.runAsync("Producer", ["--config", good, "--check"])
        #expect(ok == 0 && out.contains("Redis reachable"), "\(out)")
    }

    static func runAsync(_ binary: String, _ args: [String]) async throws -> (Int32, String) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("startup-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = try ChildProcess("\(bin)/\(binary)", args, output: out)
        let code = await p.exited()
        return (code, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    @Test func smokeCheckFailsLoudlyThenPassesAfterSync() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try Self.config(
            "agents: {dev: {image: i, credentials_dir: \(root)/config, work_dir: \(root)/work}}")
        let (failed, out) = try Self.run("Worker", ["smoke-check", "--config", path])
        #expect(failed == 1, "\(out)")
        #expect(out.contains("FAIL  dev: \(root)/config/state/projects: does not exist") && out.contains("agent-env sync"), "\(out)")
        // A root-owned state dir (Docker's default for a missing bind source) is caught too.
        try FileManager.default.createDirectory(atPath: "\(root)/config/state/projects", withIntermediateDirectories: true)
        let (_, rootOwned) = try Self.run("Worker", ["smoke-check", "--config", path])
        #expect(rootOwned.contains("state/projects: not writable by the agent (1000:1000; owner 0:0)"), "\(rootOwned)")
        let (synced, sout) = try Self.run("Worker", ["agent-env", "sync", "--config", path])
        #expect(synced == 0 && sout.contains("chowned \(root)/config/state/projects"), "\(sout)")
        let (passed, pout) = try Self.run("Worker", ["smoke-check", "--config", path])
        #expect(passed == 0 && pout.hasPrefix("ok    dev:"), "\(pout)")
        // It says where each directory is in the container, what the CLI may do, and that no credentials were found.
        #expect(pout.contains("read-write at /home/claude/.config/claude-code = CLAUDE_CONFIG_DIR") && pout.contains("read-only at /etc/claude-code"))
        #expect(pout.contains("permissions --permission-mode bypassPermissions") && pout.contains("WARN  dev: no credentials found"), "\(pout)")
        // Whether runs of one agent can write into each other's processes: said either way, never a failure (every
        // setting's line: HostCheckTests).
        #expect(pout.contains("ptrace isolation: "), "\(pout)")
    }
}
