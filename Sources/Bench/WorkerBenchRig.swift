import Foundation
import Logging
import Shared
import WorkerCore

/// What the worker benchmarks share: a throwaway key prefix and container prefix, Redis, Docker, a reconciler and a
/// runner as the worker builds them (logging only warnings). `tearDown` removes the container and the keys.
struct BenchRig {
    let redis: RedisClient
    let queue: JobQueue
    let docker: DockerClient
    let reconciler: ContainerReconciler
    let runner: AgentRunner
    let prefix: String

    init(config: AppConfig, logger: Logger, docker: DockerClient) {
        redis = RedisClient(configuration: config.redisConfiguration, connections: 2)
        prefix = "bench-\(UUID().uuidString.prefix(6).lowercased())"
        queue = JobQueue(redis: redis, keys: KeySchema(prefix: prefix), settings: config.queue)
        self.docker = docker
        var quiet = logger
        quiet.logLevel = .warning
        reconciler = ContainerReconciler(docker: docker, containerPrefix: prefix, hostID: "bench", logger: quiet)
        runner = AgentRunner(docker: docker, queue: queue, logger: quiet)
    }

    /// Removes the agent's bench container and (when `keys`) the bench keys, and closes the clients.
    func tearDown(agent: String, keys: Bool) async throws {
        try? await docker.removeContainer("\(prefix)-\(agent)")
        for old in (try? await reconciler.retired()) ?? [] { try? await docker.removeContainer(old.id) }
        await docker.shutdown()
        defer { redis.shutdown() }
        if keys { try await redis.deleteKeys(matching: "\(prefix):*") }
    }
}
