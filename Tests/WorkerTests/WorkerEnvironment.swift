import Foundation
import Logging
import Shared
import TestSupport

@testable import WorkerCore

/// One test's world: its own redis-server, data root, container prefix and host id, on the real dockerd.
/// `cleanup()` removes its containers and files.
final class WorkerEnvironment: @unchecked Sendable {
    let redis: RedisServer
    let root: URL
    let prefix: String
    let hostID: String
    let configPath: String
    var config: AppConfig
    let docker: DockerClient
    let client: RedisClient
    let queue: JobQueue
    let logger = Logger(label: "worker-test")

    private let ownsRedis: Bool

    init(
        agents: [String] = ["dev"], timeout: String = "20s", extraAgentYAML: String = "",
        queueYAML: String = "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms}", sharing other: WorkerEnvironment? = nil,
        redisArguments: [String] = [], agentConcurrency: Int = 4, sentinel: SentinelCluster? = nil, redisYAML: String = "",
        image: String = DockerFixture.image
    ) async throws {
        try await DockerFixture.ready()
        redis = try other?.redis ?? sentinel?.master ?? RedisServer(extraArguments: redisArguments)
        ownsRedis = other == nil && sentinel == nil
        let tag = UUID().uuidString.prefix(8).lowercased()
        prefix = "fht-\(tag)"
        hostID = "host-\(tag)"
        root = URL(fileURLWithPath: "/tmp/forge-hooks-test-\(tag)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        var yaml = """
            redis: {url: "\(redis.url)"\(sentinel.map { ", " + $0.yaml } ?? "")\(redisYAML)}
            queue: \(queueYAML)
            worker: {container_prefix: \(prefix), shutdown_grace: 2s}
            agents:

            """
        for agent in agents {
            yaml += """
                  \(agent):
                    image: \(image)
                    credentials_dir: \(root.path)/\(agent)/config
                    work_dir: \(root.path)/\(agent)/work
                    timeout: \(timeout)
                    concurrency: \(agentConcurrency)
                \(extraAgentYAML)

                """
        }
        configPath = root.appendingPathComponent("config.yaml").path
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        config = try AppConfig.load(path: configPath, resolveSecrets: false)
        docker = DockerClient(socketPath: DockerFixture.socket)
        var rc = config.redisConfiguration
        rc.connectTimeout = .milliseconds(500)
        client = RedisClient(configuration: rc, connections: 4)
        queue = JobQueue(redis: client, keys: config.keys, settings: config.queue)
    }

    func agent(_ name: String = "dev") -> AgentSettings { config.agents[name]! }

    func reconciler() -> ContainerReconciler {
        ContainerReconciler(docker: docker, containerPrefix: prefix, hostID: hostID, logger: logger)
    }

    /// `contained: false` runs without run cgroups, as a worker that cannot reach cgroupfs does.
    func executor(workerID: String = "test-worker", reconciler: ContainerReconciler? = nil, contained: Bool = true) -> JobExecutor {
        var runner = AgentRunner(docker: docker, queue: queue, logger: logger)
        if !contained { runner.cgroups = nil }
        return JobExecutor(
            queue: queue, containers: reconciler ?? self.reconciler(), runner: runner,
            agents: config.agents, workerID: workerID, hostID: hostID, logger: logger)
    }

    @discardableResult
    func enqueue(_ prompt: String, agent: String = "dev", repo: String = "acme/widgets", number: Int = 1) async throws -> String {
        let job = NewJob(
            agent: agent, session: SessionKey(agent: agent, repository: repo, number: number),
            fields: [("repo", repo), ("number", String(number)), ("prompt", prompt), ("forge", "forgejo"), ("event", "issue_comment")])
        _ = try await queue.enqueue([job])
        return job.id
    }

    /// Reserves the next job and runs it to the end with `executor`.
    @discardableResult
    func runNext(_ executor: JobExecutor, agent: String = "dev") async throws -> [String: String] {
        guard let job = try await queue.reserveAny(worker: executor.workerID, agents: [agent]) else { throw TestSetupError("no job to run") }
        await executor.execute(job, control: RunControl())
        return try await queue.job(job.id) ?? [:]
    }

    func containerID(_ agent: String = "dev") async throws -> String? {
        try await docker.inspectContainer("\(prefix)-\(agent)")?.id
    }

    /// The Worker binary built next to the tests.
    var workerBinary: String { DockerFixture.repositoryRoot.appendingPathComponent(".build/debug/Worker").path }

    func cleanup() async {
        if let list = try? await docker.listContainers(label: "forge-hooks.host=\(hostID)") {
            for c in list { try? await docker.removeContainer(c.id) }
        }
        for name in config.agents.keys { try? await docker.removeContainer("\(prefix)-\(name)") }
        await docker.shutdown()
        client.shutdown()
        if ownsRedis { redis.stop() }
        try? FileManager.default.removeItem(at: root)
    }
}

extension WorkerEnvironment {
    /// Runs `body` in a fresh environment and always cleans it up (containers, files, Redis), even when it throws.
    static func with(
        agents: [String] = ["dev"], timeout: String = "20s", queueYAML: String = "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms}",
        extraAgentYAML: String = "", redisArguments: [String] = [], agentConcurrency: Int = 4, sentinel: SentinelCluster? = nil,
        redisYAML: String = "", image: String = DockerFixture.image, _ body: (WorkerEnvironment) async throws -> Void
    ) async throws {
        let env = try await WorkerEnvironment(
            agents: agents, timeout: timeout, extraAgentYAML: extraAgentYAML, queueYAML: queueYAML, redisArguments: redisArguments,
            agentConcurrency: agentConcurrency, sentinel: sentinel, redisYAML: redisYAML, image: image)
        do {
            try await body(env)
        } catch {
            let logs = env.workerLogTails()
            await env.cleanup()
            // A CI log shows little more than the failure: the worker processes' own words go with it.
            throw logs.isEmpty ? error : TestSetupError("\(error)\n\(logs)")
        }
        await env.cleanup()
    }

    /// The end of every worker process's log in this environment (`worker-<id>.log`), for failure messages.
    func workerLogTails(bytes: Int = 2500) -> String {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter {
            $0.hasPrefix("worker-") && $0.hasSuffix(".log")
        }
        return names.sorted().map { name in
            let text = (try? String(contentsOfFile: root.appendingPathComponent(name).path, encoding: .utf8)) ?? ""
            return "--- \(name) (last \(bytes) bytes):\n\(text.utf8.count > bytes ? String(text.suffix(bytes)) : text)"
        }
        .joined(separator: "\n")
    }

    /// Two hosts sharing one Redis (separate data roots, container prefixes and host ids); both are cleaned up.
    static func withTwoHosts(
        queueYAML: String = "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms}", timeout: String = "20s", extraAgentYAML: String = "",
        image: String = DockerFixture.image, _ body: (_ hostA: WorkerEnvironment, _ hostB: WorkerEnvironment) async throws -> Void
    ) async throws {
        try await with(timeout: timeout, queueYAML: queueYAML, extraAgentYAML: extraAgentYAML, image: image) { hostA in
            let hostB = try await WorkerEnvironment(
                timeout: timeout, extraAgentYAML: extraAgentYAML, queueYAML: queueYAML, sharing: hostA, image: image)
            do {
                try await body(hostA, hostB)
            } catch {
                await hostB.cleanup()
                throw error
            }
            await hostB.cleanup()
        }
    }
}
