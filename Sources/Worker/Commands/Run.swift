import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import Shared
import WorkerCore

extension WorkerCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the worker (the default).")

        @OptionGroup var common: WorkerOptions

        @Option(help: "Job slots in this process (default: worker.concurrency, else 2).")
        var concurrency: Int?

        @Option(help: "Comma-separated agents to serve (default: all configured).")
        var agents: String?

        @Option(help: "Stable worker name (default: <host>-<pid>). A restart under the same name reclaims its jobs at once.")
        var workerID: String?

        @Option(help: "Serve Prometheus /metrics on host:port (default: worker.metrics_listen; not served when unset).")
        var metricsListen: String?

        func run() async throws {
            let (config, logger) = try common.load(tokens: true)
            var served = config.agents.keys.sorted()
            if let agents {
                served = agents.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                if let unknown = served.first(where: { config.agents[$0] == nil }) {
                    throw ValidationError("--agents: '\(unknown)' is not configured (agents: \(config.agents.keys.sorted().joined(separator: ", ")))")
                }
            }
            guard !served.isEmpty else { throw ValidationError("no agents to serve: configure agents: in \(common.config)") }
            let slots = concurrency ?? config.worker.concurrency
            guard (1...256).contains(slots) else { throw ValidationError("--concurrency must be between 1 and 256") }
            var metrics = config.worker.metricsListen
            if let metricsListen {
                do {
                    metrics = try ProducerSettings.hostPort(metricsListen, option: "--metrics-listen")
                } catch {
                    throw ValidationError("\(error)")
                }
            }
            WorkerMetrics.bootstrap()
            let hostID = common.resolvedHostID
            let workerID = workerID ?? "\(hostID)-\(getpid())"

            let redis = RedisClient(configuration: config.redisConfiguration, connections: 4, name: "worker-redis")
            defer { redis.shutdown() }
            // Three tries: one dropped connection is not "Redis is unreachable".
            for attempt in 1...3 {
                do {
                    try await redis.ping()
                    break
                } catch {
                    if case .unknownMaster = error {
                        logger.critical("invalid configuration: \(error)")
                        throw ExitCode(78)
                    }
                    if attempt < 3 {
                        try await Task.sleep(for: .milliseconds(200))
                        continue
                    }
                    logger.critical("\(error)")
                    throw ExitCode(69)
                }
            }
            // Redis' memory settings against the budgets: advice, not a refusal (CONFIG may be renamed or forbidden).
            if let reply = try? await redis.send("CONFIG", "GET", "maxmemory*"), let pairs = reply.strings {
                let values = Dictionary(
                    stride(from: 0, to: pairs.count - 1, by: 2).map { (pairs[$0], pairs[$0 + 1]) }, uniquingKeysWith: { a, _ in a })
                for advice in config.queue.memoryAdvice(maxmemory: Int64(values["maxmemory"] ?? "") ?? 0, policy: values["maxmemory-policy"] ?? "") {
                    logger.warning("\(advice)")
                }
            }
            try await common.withDocker(streams: slots) { docker in
                do {
                    try await docker.ping()
                } catch {
                    logger.critical("\(error)")
                    throw ExitCode(69)
                }
                // Fail closed: without seccomp or Yama one run of an agent can take over another (docs/security.md).
                let options: [String]
                do { options = try await docker.securityOptions() } catch {
                    logger.critical("\(error)")
                    throw ExitCode(69)
                }
                let yama = try? String(contentsOfFile: "/proc/sys/kernel/yama/ptrace_scope", encoding: .utf8)
                if let missing = HostChecks.ptraceBarrier(engineSecurityOptions: options, yamaScope: yama) {
                    logger.critical("refusing to start: \(missing)")
                    throw ExitCode(78)
                }
                let queue = JobQueue(redis: redis, keys: config.keys, settings: config.queue)
                let reconciler = ContainerReconciler(
                    docker: docker, containerPrefix: config.worker.containerPrefix, hostID: hostID, logger: logger,
                    owner: .init(worker: workerID, startedMs: Timestamp.milliseconds(Date())),
                    isAlive: { worker in (try? await queue.isAlive(worker: worker)) ?? true })
                let runner = AgentRunner(docker: docker, queue: queue, logger: logger)
                let executor = JobExecutor(
                    queue: queue, containers: reconciler, runner: runner, agents: config.agents, workerID: workerID, hostID: hostID, logger: logger)
                let forgeHTTP = HTTPClient(
                    eventLoopGroupProvider: .singleton,
                    configuration: .init(timeout: .init(connect: .seconds(5), read: ForgeAPIClient.timeout)))
                let feedback = Self.feedbackService(
                    config: config, served: served, queue: queue, workerID: workerID, http: forgeHTTP, logger: logger)
                let service = WorkerService(
                    options: .init(
                        workerID: workerID, hostID: hostID, concurrency: slots, agents: served, shutdownGrace: config.worker.shutdownGrace),
                    queue: queue, executor: executor, reconciler: reconciler, runner: runner, config: config, logger: logger, feedback: feedback)
                logger.info(
                    "worker starting",
                    metadata: [
                        "worker": "\(workerID)", "host": "\(hostID)", "slots": "\(slots)", "agents": "\(served.joined(separator: ","))",
                        "redis": "\(config.redisConfiguration.endpointDescription)", "docker": "\(docker.socketPath)",
                    ])
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                    .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)
                ]
                if let (host, port) = metrics {
                    // A metrics port that cannot be bound (two workers given the same one) is logged, not fatal.
                    services.append(
                        .init(
                            service: WorkerMetrics.Logged(
                                inner: WorkerMetrics.application(host: host, port: port), logger: logger,
                                what: "\(host):\(port)"),
                            successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore))
                    logger.info("serving metrics", metadata: ["listen": "\(host):\(port)"])
                }
                let group = ServiceGroup(
                    configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                do {
                    try await group.run()
                } catch {
                    try? await forgeHTTP.shutdown()
                    throw error
                }
                try? await forgeHTTP.shutdown()
            }
        }

        /// The feedback loop for the served agents: one account per forge token, shared by the agents that use it.
        /// Nil when no served agent can post anywhere (no forge has an `api:` section).
        static func feedbackService(
            config: AppConfig, served: [String], queue: JobQueue, workerID: String, http: HTTPClient, logger: Logger
        ) -> FeedbackService? {
            var accounts: [String: [Forge: ForgeAccount]] = [:]
            var byToken: [String: ForgeAccount] = [:]
            for agent in served {
                for (forge, settings) in config.forges {
                    guard let api = settings.api, let token = config.forgeTokens.token(agent: agent, forge: forge) else { continue }
                    let key = "\(forge.rawValue)\u{0}\(api.url)\u{0}\(token)"
                    let account = byToken[key] ?? ForgeAccount(api: ForgeAPIClient(forge: forge, baseURL: api.url, token: token, http: http))
                    byToken[key] = account
                    accounts[agent, default: [:]][forge] = account
                }
            }
            guard !accounts.isEmpty else { return nil }
            logger.info(
                "forge feedback on",
                metadata: ["accounts": "\(byToken.count)", "agents": "\(accounts.keys.sorted().joined(separator: ","))"])
            return FeedbackService(
                queue: queue, accounts: accounts, agents: served, workerID: workerID, botLogins: config.botLogins,
                defaultMaxAttempts: config.queue.retry.maxAttempts, logger: logger)
        }
    }
}
