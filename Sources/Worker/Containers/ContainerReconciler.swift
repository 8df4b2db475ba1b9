import Foundation
import Logging
import Shared

/// Makes each agent's container match its spec: create if missing, recreate on drift, leave alone when matching.
/// Calls for one agent are serialized (slots of one worker never reconcile the same container at once).
actor ContainerReconciler {
    struct Result: Sendable {
        let containerID: String
        /// Empty when the existing container matched; otherwise why it was (re)created.
        let changes: [String]
    }

    let docker: DockerClient
    let containerPrefix: String
    let hostID: String
    let logger: Logger
    private var inFlight: [String: Task<Result, Error>] = [:]

    init(docker: DockerClient, containerPrefix: String, hostID: String, logger: Logger) {
        self.docker = docker
        self.containerPrefix = containerPrefix
        self.hostID = hostID
        self.logger = logger
    }

    func spec(for agent: AgentSettings) -> ContainerSpec {
        ContainerSpec(agent: agent, containerPrefix: containerPrefix, hostID: hostID)
    }

    /// Ensures the agent's container matches; returns its id. Concurrent callers for the same agent share one run.
    func ensure(_ agent: AgentSettings, force: Bool = false) async throws -> Result {
        if let running = inFlight[agent.name] { return try await running.value }
        let spec = spec(for: agent)
        let task = Task { try await Self.reconcile(spec: spec, agent: agent, docker: docker, force: force, logger: logger) }
        inFlight[agent.name] = task
        defer { inFlight[agent.name] = nil }
        return try await task.value
    }

    /// The drift verdict without changing anything: nil = no container.
    func inspect(_ agent: AgentSettings) async throws -> (id: String, differences: [String])? {
        let spec = spec(for: agent)
        guard let current = try await docker.inspectContainer(spec.name) else { return nil }
        let imageID = try await docker.imageID(spec.image)
        return (current["Id"] as? String ?? "", spec.differences(inspect: current, imageID: imageID))
    }

    private static func reconcile(spec: ContainerSpec, agent: AgentSettings, docker: DockerClient, force: Bool, logger: Logger) async throws
        -> Result
    {
        try AgentEnvironment.sync(agent)
        guard let imageID = try await docker.imageID(spec.image) else {
            throw WorkerError("image \(spec.image) of agent \(agent.name) is not on this Docker host; build or pull it (docker image ls)")
        }
        var changes: [String] = []
        if let current = try await docker.inspectContainer(spec.name) {
            let id = current["Id"] as? String ?? spec.name
            let diffs = force ? ["rebuild requested"] : spec.differences(inspect: current, imageID: imageID)
            if diffs.isEmpty { return Result(containerID: id, changes: []) }
            let onlyStopped = diffs.count == 1 && diffs[0].hasPrefix("not running")
            if onlyStopped && !force {
                // Same spec, just stopped: starting it keeps the container (and its id).
                try await docker.startContainer(id)
                if let again = try await docker.inspectContainer(id), spec.differences(inspect: again, imageID: imageID).isEmpty {
                    logger.notice("started stopped container", metadata: ["agent": "\(agent.name)", "container": "\(spec.name)"])
                    return Result(containerID: id, changes: diffs)
                }
            }
            logger.notice(
                "container drifted; recreating",
                metadata: ["agent": "\(agent.name)", "container": "\(spec.name)", "drift": "\(diffs.joined(separator: "; "))"])
            try await docker.stopContainer(id, graceSeconds: 5)
            try await docker.removeContainer(id)
            changes = diffs
        } else {
            changes = ["missing"]
        }
        let created = await createOrAdopt(spec: spec, imageID: imageID, docker: docker)
        let id = try created.get()
        try await docker.startContainer(id)
        logger.notice(
            "container created",
            metadata: [
                "agent": "\(agent.name)", "container": "\(spec.name)", "id": "\(id.prefix(12))", "reason": "\(changes.joined(separator: "; "))",
            ])
        return Result(containerID: id, changes: changes)
    }

    /// Creates the container. A 409 means another worker process on this host created it meanwhile: re-inspect and
    /// use it once it matches — starting it if its creator has not yet (a container created but not started differs
    /// only in "not running"). A container that keeps differing in anything else is an error naming the difference.
    private static func createOrAdopt(spec: ContainerSpec, imageID: String, docker: DockerClient) async -> Swift.Result<String, Error> {
        do {
            return .success(try await docker.createContainer(name: spec.name, body: spec.createBody))
        } catch {
            guard error.status == 409 else { return .failure(error) }
        }
        var last: [String] = []
        for _ in 0..<50 {
            do {
                if let current = try await docker.inspectContainer(spec.name), let id = current["Id"] as? String {
                    last = spec.differences(inspect: current, imageID: imageID)
                    if last.isEmpty { return .success(id) }
                    if last.count == 1 && last[0].hasPrefix("not running") {
                        try await docker.startContainer(id)
                        continue
                    }
                }
            } catch {
                // Gone again (its creator recreated it), or a start that raced another: look again.
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return .failure(
            WorkerError(
                "another worker on this host created \(spec.name) with a different spec (\(last.joined(separator: "; "))): "
                    + "workers sharing a Docker host must run the same agent configuration"))
    }

    /// Removes containers this host owns whose agent is no longer configured. Returns their names.
    func removeOrphans(configured: Set<String>) async throws -> [String] {
        var removed: [String] = []
        for container in try await docker.listContainers(label: "\(ContainerSpec.managedLabel)=true") {
            let labels = container["Labels"] as? [String: String] ?? [:]
            guard labels[ContainerSpec.hostLabel] == hostID, let agent = labels[ContainerSpec.agentLabel], !configured.contains(agent),
                let id = container["Id"] as? String
            else { continue }
            let name = (container["Names"] as? [String])?.first ?? id
            guard name.hasPrefix("/\(containerPrefix)-") || name.hasPrefix("\(containerPrefix)-") else { continue }
            try await docker.stopContainer(id, graceSeconds: 5)
            try await docker.removeContainer(id)
            removed.append(name)
        }
        return removed
    }
}
