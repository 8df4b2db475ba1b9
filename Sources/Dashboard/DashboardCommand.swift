import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Shared

/// Its own small server rather than a `hooksctl` subcommand: it runs for days behind nginx, has its own listener
/// and password, and keeps Hummingbird out of the operator CLI. It needs Redis only, never Docker.
@main
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hooks-dashboard",
        abstract: "Web dashboard: queues, jobs, sessions, workers and containers, read from Redis; requeue, drop and purge.")

    @Option(name: .shortAndLong, help: "Path of the YAML config file (its redis and dashboard sections).")
    var config = "/etc/forge-hooks/config.yaml"

    @Option(help: "Listen on host:port instead of dashboard.listen.")
    var listen: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func run() async throws {
        let logger: Logger
        do {
            logger = try LogSetup.bootstrap(level: logLevel, label: "dashboard")
        } catch {
            throw ValidationError(error.description)
        }
        let appConfig: AppConfig
        let password: String?
        let proxies: TrustedProxies
        var settings: DashboardSettings
        do {
            appConfig = try AppConfig.load(path: config, resolveSecrets: false)
            settings = appConfig.dashboard
            password = try settings.password(file: config)
            proxies = try TrustedProxies(settings.trustedProxies)
            if let listen {
                let parsed = try AppConfig.parse(yaml: "dashboard: {listen: \"\(listen)\"}", file: "--listen")
                (settings.host, settings.port) = (parsed.dashboard.host, parsed.dashboard.port)
            }
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(78)  // EX_CONFIG
        }
        var redisConfig = appConfig.redisConfiguration
        redisConfig.connectTimeout = .seconds(1)
        redisConfig.commandTimeout = .seconds(3)
        let redis = RedisClient(configuration: redisConfig, connections: 2, name: "dashboard-redis")
        defer { redis.shutdown() }
        do {
            try await redis.ping()
        } catch {
            logger.warning("Redis is not reachable yet; pages show the error until it is: \(error)")
        }
        var server = DashboardServer(
            queue: JobQueue(redis: redis, keys: appConfig.keys, settings: appConfig.queue), configuredAgents: appConfig.agents.keys.sorted(),
            auth: DashboardAuth(password: password, ttl: settings.sessionTTL), library: try Templates.library(), base: settings.basePath,
            secureCookie: settings.secureCookie, proxies: proxies, logger: logger)
        server.allowedHosts = settings.allowedHosts
        let app = Application(
            router: server.router(),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "forge-hooks-dashboard"),
            logger: Logger(label: "dashboard.http"))
        logger.info(
            "dashboard starting",
            metadata: [
                "listen": "\(settings.host):\(settings.port)\(settings.basePath)/", "redis": "\(redisConfig.endpointDescription)",
                "prefix": "\(appConfig.keyPrefix)", "actions": "\(password == nil ? "off (read-only)" : "on (password set)")",
            ])
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
