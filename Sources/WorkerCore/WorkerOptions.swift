import ArgumentParser
import Foundation
import Logging
import Shared

/// The options every worker command shares (and the worker benchmarks in `hooks-bench`): the config file, the log
/// level, the container prefix and the Docker host id.
package struct WorkerOptions: ParsableArguments {
    package init() {}

    @Option(name: .shortAndLong, help: "Path of the YAML config file.")
    package var config = "/etc/forge-hooks/config.yaml"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    package var logLevel = "info"

    @Option(help: "Containers are named <prefix>-<agent> (default: worker.container_prefix, else 'hooks').")
    package var containerPrefix: String?

    @Option(help: "Which Docker host's containers this worker manages (default: the machine's host name).")
    package var hostID: String?

    /// - Parameter tokens: resolve the forge API tokens (the worker run posts feedback; other commands do not need them).
    package func load(tokens: Bool = false) throws -> (AppConfig, Logger) {
        let logger: Logger
        do {
            logger = try LogSetup.bootstrap(level: logLevel, label: "worker")
        } catch {
            throw ValidationError(error.description)
        }
        do {
            var config = try AppConfig.load(path: config, resolveSecrets: false, resolveTokens: tokens)
            if let containerPrefix { config.worker.containerPrefix = containerPrefix }
            return (config, logger)
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(78)
        }
    }

    package var resolvedHostID: String { hostID ?? ProcessInfo.processInfo.hostName }

    /// - Parameter streams: exec streams this process may hold at once (its slots); the connection pool gets room for
    ///   them plus control calls.
    package func docker(streams: Int = 2) throws -> DockerClient {
        DockerClient(socketPath: try DockerClient.socketPath(environment: ProcessInfo.processInfo.environment), streams: streams)
    }

    /// Runs `body` with a Docker client and shuts the client down afterwards, whether `body` returns or throws.
    package func withDocker<T>(streams: Int = 2, _ body: (DockerClient) async throws -> T) async throws -> T {
        let docker = try docker(streams: streams)
        do {
            let result = try await body(docker)
            await docker.shutdown()
            return result
        } catch {
            await docker.shutdown()
            throw error
        }
    }
}
