import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import Shared

@main
struct ProducerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "Producer",
        abstract: "Receives forge webhooks, verifies and routes them, and enqueues agent jobs in Redis.")

    @Option(name: .shortAndLong, help: "Path of the YAML config file.")
    var config = "/etc/forge-hooks/config.yaml"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Flag(help: "Validate the config (and reach Redis) then exit.")
    var check = false

    func run() async throws {
        let logger: Logger
        do {
            logger = try LogSetup.bootstrap(level: logLevel, label: "producer")
        } catch {
            throw ValidationError(error.description)
        }

        let appConfig: AppConfig
        let router: EventRouter
        do {
            appConfig = try AppConfig.load(path: config)
            router = try EventRouter(config: appConfig, file: config)
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(78)  // EX_CONFIG
        }
        if appConfig.forges.isEmpty { logger.warning("no forge is configured (forges:): every webhook will be answered 404") }
        if appConfig.rules.isEmpty { logger.warning("no routing rule is configured (rules:): every event will be ignored") }

        var redisConfig = appConfig.redisConfiguration
        redisConfig.connectTimeout = .seconds(1)
        redisConfig.commandTimeout = .seconds(3)
        let redis = RedisClient(configuration: redisConfig, connections: appConfig.producer.redisConnections, name: "producer-redis")
        defer { redis.shutdown() }
        let queue = JobQueue(redis: redis, keys: appConfig.keys, settings: appConfig.queue)
        do {
            try await redis.ping()
        } catch {
            // A master name the sentinels do not know is a configuration error; no sentinel answering at all is most
            // often wrong addresses: both stop start-up. Sentinels that answer while no master is up yet (a failover
            // under way) do not: the producer starts and answers 503 until there is one.
            if case .unknownMaster = error {
                logger.critical("invalid configuration: \(error)")
                throw ExitCode(78)
            }
            var unreachableSentinels = false
            if case .sentinelsUnreachable = error { unreachableSentinels = true }
            if check || unreachableSentinels {
                logger.critical("\(error)")
                throw ExitCode(69)
            }
            logger.warning("Redis is not reachable yet; webhooks get 503 until it is: \(error)")
        }
        if check {
            print(
                "config OK: \(appConfig.forges.count) forge(s), \(appConfig.agents.count) agent(s), \(appConfig.rules.count) rule(s); Redis reachable"
            )
            return
        }

        let registry = PrometheusCollectorRegistry()
        ProducerServer.bootstrapMetrics(registry)
        let handler: WebhookHandler
        do {
            handler = try WebhookHandler(config: appConfig, queue: queue, router: router, logger: logger)
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(78)
        }
        let p = appConfig.producer
        let webhooks = Application(
            router: ProducerServer.webhookRouter(handler: handler, pathPrefix: p.pathPrefix),
            configuration: .init(address: .hostname(p.host, port: p.port), serverName: "forge-hooks"),
            logger: Logger(label: "producer.http"))
        let ops = Application(
            router: ProducerServer.opsRouter(queue: queue, registry: registry),
            configuration: .init(address: .hostname(p.opsHost, port: p.opsPort), serverName: "forge-hooks-ops"),
            logger: Logger(label: "producer.ops"))
        logger.info(
            "producer starting",
            metadata: [
                "webhooks": "\(p.host):\(p.port)\(p.pathPrefix)/webhooks/{\(appConfig.forges.keys.map(\.rawValue).sorted().joined(separator: ","))}",
                "ops": "\(p.opsHost):\(p.opsPort)", "redis": "\(redisConfig.endpointDescription)", "prefix": "\(appConfig.keyPrefix)",
                "rules": "\(appConfig.rules.count)",
            ])
        let group = ServiceGroup(
            configuration: .init(services: [webhooks, ops], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("producer stopped")
    }
}
