import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Shared

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "Worker",
        abstract: "Runs agent jobs from Redis in each agent's Docker container, and repairs agent containers.",
        subcommands: [Run.self, SmokeCheck.self, AgentEnv.self, Containers.self, BenchDispatch.self, BenchTranscripts.self, BenchOutput.self],
        defaultSubcommand: Run.self)
}

struct CommonOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Path of the YAML config file.")
    var config = "/etc/forge-hooks/config.yaml"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: "Containers are named <prefix>-<agent> (default: worker.container_prefix, else 'hooks').")
    var containerPrefix: String?

    @Option(help: "Which Docker host's containers this worker manages (default: the machine's host name).")
    var hostID: String?

    func load() throws -> (AppConfig, Logger) {
        let logger: Logger
        do {
            logger = try LogSetup.bootstrap(level: logLevel, label: "worker")
        } catch {
            throw ValidationError(error.description)
        }
        do {
            var config = try AppConfig.load(path: config, resolveSecrets: false)
            if let containerPrefix { config.worker.containerPrefix = containerPrefix }
            return (config, logger)
        } catch {
            logger.critical("invalid configuration: \(error)")
            throw ExitCode(78)
        }
    }

    var resolvedHostID: String { hostID ?? ProcessInfo.processInfo.hostName }

    /// - Parameter streams: exec streams this process may hold at once (its slots); the connection pool gets room for
    ///   them plus control calls.
    func docker(streams: Int = 2) throws -> DockerClient {
        DockerClient(socketPath: try DockerClient.socketPath(environment: ProcessInfo.processInfo.environment), streams: streams)
    }
}

extension WorkerCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the worker (the default).")

        @OptionGroup var common: CommonOptions

        @Option(help: "Job slots in this process (default: worker.concurrency, else 2).")
        var concurrency: Int?

        @Option(help: "Comma-separated agents to serve (default: all configured).")
        var agents: String?

        @Option(help: "Stable worker name (default: <host>-<pid>). A restart under the same name reclaims its jobs at once.")
        var workerID: String?

        func run() async throws {
            let (config, logger) = try common.load()
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
                    if attempt < 3 {
                        try await Task.sleep(for: .milliseconds(200))
                        continue
                    }
                    logger.critical("\(error)")
                    throw ExitCode(69)
                }
            }
            let docker = try common.docker(streams: slots)
            do {
                try await docker.ping()
            } catch {
                logger.critical("\(error)")
                await docker.shutdown()
                throw ExitCode(69)
            }
            let queue = JobQueue(redis: redis, keys: config.keys, settings: config.queue)
            let reconciler = ContainerReconciler(
                docker: docker, containerPrefix: config.worker.containerPrefix, hostID: hostID, logger: logger,
                owner: .init(worker: workerID, startedMs: Timestamp.milliseconds(Date())),
                isAlive: { worker in (try? await queue.isAlive(worker: worker)) ?? true })
            let runner = AgentRunner(docker: docker, queue: queue, logger: logger)
            let executor = JobExecutor(
                queue: queue, containers: reconciler, runner: runner, agents: config.agents, workerID: workerID, hostID: hostID, logger: logger)
            let service = WorkerService(
                options: .init(workerID: workerID, hostID: hostID, concurrency: slots, agents: served, shutdownGrace: config.worker.shutdownGrace),
                queue: queue, executor: executor, reconciler: reconciler, runner: runner, config: config, logger: logger)
            logger.info(
                "worker starting",
                metadata: [
                    "worker": "\(workerID)", "host": "\(hostID)", "slots": "\(slots)", "agents": "\(served.joined(separator: ","))",
                    "redis": "\(config.redisConfiguration.endpointDescription)", "docker": "\(docker.socketPath)",
                ])
            let group = ServiceGroup(
                configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            do {
                try await group.run()
            } catch {
                await docker.shutdown()
                throw error
            }
            await docker.shutdown()
        }
    }

    struct SmokeCheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "smoke-check",
            abstract: "Verify each agent's credentials dir, projects/ and session-env/ exist and are writable by the agent uid.")

        @OptionGroup var common: CommonOptions

        func run() async throws {
            let (config, _) = try common.load()
            var failed = false
            for (name, agent) in config.agents.sorted(by: { $0.key < $1.key }) {
                let problems = AgentEnvironment.check(agent)
                if problems.isEmpty {
                    print("ok    \(name): \(agent.credentialsDir) (projects/, session-env/) and \(agent.workDir) usable by \(agent.user)")
                } else {
                    failed = true
                    for p in problems { print("FAIL  \(name): \(p)") }
                }
            }
            // Not a failure: the worker still runs, but a run's detached processes could outlive its kill.
            if let hierarchy = RunCgroup.Hierarchy.detect() {
                let kind = hierarchy.version == .v2 ? "cgroup v2" : "cgroup v1 freezer"
                print("ok    run containment: each run gets its own cgroup (\(kind) at \(hierarchy.mount))")
            } else {
                print(
                    "WARN  run containment: no cgroup hierarchy is reachable from this worker; a process an agent detaches can "
                        + "outlive its run (run the worker on the host, or give its container pid: host, cgroup: host and /sys/fs/cgroup)")
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct AgentEnv: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agent-env", abstract: "Agent host directories.", subcommands: [Sync.self])

        struct Sync: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create each agent's credentials dir, projects/, session-env/ and work dir, owned by the agent uid:gid.")
            @OptionGroup var common: CommonOptions

            func run() async throws {
                let (config, _) = try common.load()
                for (name, agent) in config.agents.sorted(by: { $0.key < $1.key }) {
                    let changes = try AgentEnvironment.sync(agent)
                    print("\(name): \(changes.isEmpty ? "already in order" : changes.joined(separator: "; "))")
                }
            }
        }
    }

    struct Containers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each agent's container and whether it matches its desired spec.", subcommands: [List.self, Rebuild.self],
            defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "list", abstract: "Each agent's container with its drift verdict.")
            @OptionGroup var common: CommonOptions
            @Flag(help: "JSON output.") var json = false

            func run() async throws {
                let (config, logger) = try common.load()
                let docker = try common.docker()
                let reconciler = ContainerReconciler(
                    docker: docker, containerPrefix: config.worker.containerPrefix, hostID: common.resolvedHostID, logger: logger)
                var rows: [[String: Any]] = []
                do {
                    for (name, agent) in config.agents.sorted(by: { $0.key < $1.key }) {
                        let spec = await reconciler.spec(for: agent)
                        if let found = try await reconciler.inspect(agent) {
                            rows.append([
                                "agent": name, "container": spec.name, "id": String(found.id.prefix(12)),
                                "verdict": found.differences.isEmpty ? "matches" : "drifted", "differences": found.differences,
                            ])
                        } else {
                            rows.append(["agent": name, "container": spec.name, "id": "", "verdict": "missing", "differences": [] as [String]])
                        }
                    }
                    for old in try await reconciler.retired() {
                        let runs = try await reconciler.runningExecs(old.id)
                        let agent = String(old.name.dropFirst(config.worker.containerPrefix.count + 1).prefix { $0 != "." })
                        rows.append([
                            "agent": agent, "container": old.name, "id": String(old.id.prefix(12)), "verdict": "retired",
                            "differences": ["retired \(Timestamp.iso(old.at)); \(runs) run(s) still in it; removed by a worker once none is left"],
                        ])
                    }
                } catch {
                    await docker.shutdown()
                    throw error
                }
                await docker.shutdown()
                if json {
                    let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    for row in rows {
                        print("\(row["agent"]!)\t\(row["container"]!)\t\(row["id"]!)\t\(row["verdict"]!)")
                        for d in row["differences"] as? [String] ?? [] { print("    - \(d)") }
                    }
                }
            }
        }

        struct Rebuild: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Recreate agent containers (named volumes survive).")
            @OptionGroup var common: CommonOptions
            @Argument(help: "Agents to rebuild (default: all).") var agents: [String] = []

            func run() async throws {
                let (config, logger) = try common.load()
                let names = agents.isEmpty ? config.agents.keys.sorted() : agents
                if let unknown = names.first(where: { config.agents[$0] == nil }) {
                    throw ValidationError("'\(unknown)' is not a configured agent (agents: \(config.agents.keys.sorted().joined(separator: ", ")))")
                }
                let docker = try common.docker()
                let reconciler = ContainerReconciler(
                    docker: docker, containerPrefix: config.worker.containerPrefix, hostID: common.resolvedHostID, logger: logger)
                do {
                    for name in names {
                        let result = try await reconciler.ensure(config.agents[name]!, force: true)
                        print("\(name): recreated \(result.containerID.prefix(12))")
                    }
                    for old in try await reconciler.retired() {
                        print("\(old.name): retired; runs in it finish there, then a running worker removes it")
                    }
                } catch {
                    await docker.shutdown()
                    throw error
                }
                await docker.shutdown()
            }
        }
    }
}
