import Foundation
import Logging
import Shared

/// Makes each agent's container match its spec: create if missing, replace on drift, leave alone when matching.
/// Calls for one agent are serialized (slots of one worker never reconcile the same container at once).
///
/// Replacing never kills a run. Other slots and other workers on this Docker host may be running agents in the old
/// container, so it is *retired*: renamed to `<name>.retired.<unix>.<id>` (execs in flight keep running; new ones go
/// to the fresh container at the usual name) and removed by `removeRetired` once no exec runs in it.
///
/// Two workers that disagree on the spec (a rolling upgrade: old and new config on one host) must not replace each
/// other's container back and forth: the container records which worker made it and when that worker started, and
/// the most recently started live worker's spec wins. An older worker that finds the newer spec in place *defers*:
/// `ensure` throws `ContainerDeferral` and the job goes back to the queue for a worker whose spec matches.
package actor ContainerReconciler {
    package struct Result: Sendable {
        package let containerID: String
        /// Empty when the existing container matched; otherwise why it was (re)created.
        let changes: [String]
    }

    let docker: DockerClient
    let containerPrefix: String
    let hostID: String
    let logger: Logger
    /// The worker reconciling, nil for an operator's command (which always wins).
    let owner: ContainerSpec.Creator?
    /// Whether a worker still holds its lease (a dead creator's spec does not block anyone).
    let isAlive: @Sendable (String) async -> Bool
    /// A retired container is not removed before this age, so a run that inspected it just before it was retired
    /// has started its exec (and is then seen running) by the time it is looked at.
    var retiredGrace: Duration = .seconds(60)
    private var inFlight: [String: Task<Result, Error>] = [:]
    /// The host's CPU count (asked once): an agent's `cpus` is capped at it, since Docker refuses more.
    private var hostCPUs: Int?
    private var cappedAgents: Set<String> = []
    private var deferredUntil: [String: ContinuousClock.Instant] = [:]

    package init(
        docker: DockerClient, containerPrefix: String, hostID: String, logger: Logger, owner: ContainerSpec.Creator? = nil,
        isAlive: @escaping @Sendable (String) async -> Bool = { _ in false }
    ) {
        self.docker = docker
        self.containerPrefix = containerPrefix
        self.hostID = hostID
        self.logger = logger
        self.owner = owner
        self.isAlive = isAlive
    }

    package func spec(for agent: AgentSettings) async -> ContainerSpec {
        if hostCPUs == nil, let count = try? await docker.cpuCount(), count > 0 { hostCPUs = count }
        var capped = agent
        if let cpus = capped.cpus, let host = hostCPUs, Double(host) < cpus {
            capped.cpus = Double(host)
            if cappedAgents.insert(agent.name).inserted {
                logger.warning("agent \(agent.name) asks for \(cpus) CPUs; this host has \(host): its container gets \(host)")
            }
        }
        var spec = ContainerSpec(agent: capped, containerPrefix: containerPrefix, hostID: hostID)
        spec.creator = owner
        return spec
    }

    func setRetiredGrace(_ grace: Duration) { retiredGrace = grace }

    /// Agents whose container runs a newer worker's different spec: this worker leaves their queues alone for a while.
    func deferredAgents() -> Set<String> {
        let now = ContinuousClock.now
        deferredUntil = deferredUntil.filter { $0.value > now }
        return Set(deferredUntil.keys)
    }

    /// Ensures the agent's container matches; returns its id. Concurrent callers for the same agent share one run.
    package func ensure(_ agent: AgentSettings, force: Bool = false) async throws -> Result {
        if let running = inFlight[agent.name] { return try await running.value }
        let spec = await spec(for: agent)
        if let running = inFlight[agent.name] { return try await running.value }
        let (docker, logger, owner, isAlive) = (docker, logger, owner, isAlive)
        let task = Task {
            try await Self.reconcile(spec: spec, agent: agent, docker: docker, force: force, owner: owner, isAlive: isAlive, logger: logger)
        }
        inFlight[agent.name] = task
        defer { inFlight[agent.name] = nil }
        do {
            return try await task.value
        } catch let deferral as ContainerDeferral {
            deferredUntil[agent.name] = .now + .seconds(10)
            throw deferral
        }
    }

    /// The drift verdict without changing anything: nil = no container.
    package func inspect(_ agent: AgentSettings) async throws -> (id: String, differences: [String])? {
        let spec = await spec(for: agent)
        guard let current = try await docker.inspectContainer(spec.name) else { return nil }
        let imageID = try await docker.imageID(spec.image)
        return (current.id, spec.differences(inspect: current, imageID: imageID))
    }

    private static func reconcile(
        spec: ContainerSpec, agent: AgentSettings, docker: DockerClient, force: Bool, owner: ContainerSpec.Creator?,
        isAlive: @Sendable (String) async -> Bool, logger: Logger
    ) async throws -> Result {
        try AgentEnvironment.sync(agent)
        guard let imageID = try await docker.imageID(spec.image) else {
            throw WorkerError("image \(spec.image) of agent \(agent.name) is not on this Docker host; build or pull it (docker image ls)")
        }
        var changes: [String] = []
        var force = force
        var last: [String] = []
        // Each round looks afresh: another worker may create, start or retire the container between our calls.
        for round in 0..<20 {
            if round > 0 { try await Task.sleep(for: .milliseconds(round < 5 ? 20 : 200)) }
            guard let current = try await docker.inspectContainer(spec.name), case let id = current.id, !id.isEmpty else {
                do {
                    let id = try await docker.createContainer(name: spec.name, body: spec.createBody)
                    try await docker.startContainer(id)
                    if changes.isEmpty { changes = ["missing"] }
                    logger.notice(
                        "container created",
                        metadata: [
                            "agent": "\(agent.name)", "container": "\(spec.name)", "id": "\(id.prefix(12))",
                            "reason": "\(changes.joined(separator: "; "))",
                        ])
                    return Result(containerID: id, changes: changes)
                } catch {
                    guard error.status == 409 else { throw error }
                    continue  // another worker on this host created it meanwhile: look at theirs
                }
            }
            let diffs = force ? ["rebuild requested"] : spec.differences(inspect: current, imageID: imageID)
            if diffs.isEmpty { return Result(containerID: id, changes: changes) }
            last = diffs
            if diffs.count == 1 && diffs[0].hasPrefix("not running") && !force {
                // Same spec, just stopped (or created by another worker that has not started it yet): start it.
                do {
                    try await docker.startContainer(id)
                } catch {
                    guard error.status == 404 || error.status == 409 else { throw error }
                    continue
                }
                if let again = try await docker.inspectContainer(id), spec.differences(inspect: again, imageID: imageID).isEmpty {
                    logger.notice("started stopped container", metadata: ["agent": "\(agent.name)", "container": "\(spec.name)"])
                    return Result(containerID: id, changes: changes + diffs)
                }
                continue
            }
            if !force, let owner, let winner = await newerCreator(of: current, than: owner, spec: spec, isAlive: isAlive) {
                throw ContainerDeferral(
                    agent: agent.name,
                    message:
                        "container \(spec.name) was made by worker \(winner.worker), started after this one (\(owner.worker)), with a different "
                        + "spec (\(diffs.prefix(3).joined(separator: "; "))); the newest worker's spec wins, so this job goes back to the queue "
                        + "for a worker whose configuration matches. Give all workers on host \(spec.hostID) the same agent configuration.")
            }
            logger.notice(
                "container drifted; retiring it (runs in it finish there) and creating a new one",
                metadata: ["agent": "\(agent.name)", "container": "\(spec.name)", "drift": "\(diffs.joined(separator: "; "))"])
            do {
                try await docker.renameContainer(id, to: retiredName(spec.name, id: id))
            } catch {
                // Gone, or retired by another worker at the same moment (404, 409, or 400 when it already has the very
                // name): look again; a failure that persists ends in the error below after the last round.
                logger.info("retiring the container failed; looking again", metadata: ["container": "\(spec.name)", "error": "\(error)"])
            }
            changes = diffs
            force = false
        }
        throw WorkerError(
            "container \(spec.name) did not settle: other workers on this host keep changing it (last difference: "
                + "\(last.joined(separator: "; "))); workers sharing a Docker host must run the same agent configuration")
    }

    /// The creator recorded on `container`, when it is a live worker other than `owner` that started after it and
    /// wanted a different spec. Containers without creator labels (made by hand or by `containers rebuild`) lose.
    private static func newerCreator(
        of container: ContainerDetails, than owner: ContainerSpec.Creator, spec: ContainerSpec, isAlive: @Sendable (String) async -> Bool
    ) async -> ContainerSpec.Creator? {
        let labels = container.config.labels
        guard labels[ContainerSpec.specLabel] != spec.specHash, let worker = labels[ContainerSpec.creatorLabel],
            let started = labels[ContainerSpec.creatorStartedLabel].flatMap(Int64.init), worker != owner.worker
        else { return nil }
        let creator = ContainerSpec.Creator(worker: worker, startedMs: started)
        guard creator.isNewer(than: owner), await isAlive(worker) else { return nil }
        return creator
    }

    static func retiredName(_ name: String, id: String, now: Date = Date()) -> String {
        "\(name)\(ContainerSpec.retiredInfix)\(Int(now.timeIntervalSince1970)).\(id.prefix(12))"
    }

    /// When a retired container was retired, from its name; nil for any other name.
    static func retiredAt(_ name: String, prefix: String) -> Date? {
        let bare = name.hasPrefix("/") ? String(name.dropFirst()) : name
        guard bare.hasPrefix(prefix + "-"), let range = bare.range(of: ContainerSpec.retiredInfix) else { return nil }
        let parts = bare[range.upperBound...].split(separator: ".")
        guard parts.count == 2, let seconds = Int(parts[0]) else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }

    /// Whether any exec is running in the container — or was created and not started yet (a run between its create
    /// and start calls), for up to five minutes.
    private func busy(_ container: ContainerDetails, age: TimeInterval) async throws -> Bool {
        for exec in container.execIDs {
            let state: DockerClient.ExecState
            do {
                state = try await docker.inspectExec(exec)
            } catch {
                // Only "no such exec" means it is gone; a slow or failing engine must not get a run stopped.
                if error.status == 404 { continue }
                return true
            }
            if state.running || (state.pid == 0 && age < 300) { return true }
        }
        return false
    }

    /// The ids of this host's running containers under this prefix, retired ones included.
    package func runningContainers() async throws -> [String] {
        try await docker.listContainers(label: "\(ContainerSpec.managedLabel)=true").compactMap { listed in
            guard listed.labels[ContainerSpec.hostLabel] == hostID, listed.state == "running", listed.name.hasPrefix("\(containerPrefix)-") else {
                return nil
            }
            return listed.id
        }
    }

    /// This host's retired containers: name (without `/`), id, when retired.
    package func retired() async throws -> [(name: String, id: String, at: Date)] {
        try await docker.listContainers(label: "\(ContainerSpec.managedLabel)=true").compactMap { listed in
            guard listed.labels[ContainerSpec.hostLabel] == hostID, let at = Self.retiredAt(listed.name, prefix: containerPrefix) else { return nil }
            return (listed.name, listed.id, at)
        }
    }

    /// How many execs run in a container now.
    package func runningExecs(_ id: String) async throws -> Int {
        var running = 0
        for exec in try await docker.inspectContainer(id)?.execIDs ?? [] where (try? await docker.inspectExec(exec))?.running == true {
            running += 1
        }
        return running
    }

    /// Removes this host's retired containers in which no run is left. Returns their names.
    func removeRetired(now: Date = Date()) async throws -> [String] {
        var removed: [String] = []
        for (name, id, retired) in try await retired() {
            let age = now.timeIntervalSince(retired)
            do {
                guard age >= retiredGrace.seconds, let container = try await docker.inspectContainer(id) else { continue }
                if try await busy(container, age: age) { continue }
                try await docker.stopContainer(id, graceSeconds: 5)
                try await docker.removeContainer(id)
                logger.notice("removed a retired container: no run left in it", metadata: ["container": "\(name)"])
                removed.append(name)
            } catch {
                // Another worker removing it at the same moment (409), or the engine failing: the next look retries.
                logger.info("retired container not removed this time", metadata: ["container": "\(name)", "error": "\(error)"])
            }
        }
        return removed
    }

    /// Removes containers this host owns whose agent is no longer configured — once no run is left in them and no
    /// other live worker made them. Returns their names.
    func removeOrphans(configured: Set<String>) async throws -> [String] {
        var removed: [String] = []
        for container in try await docker.listContainers(label: "\(ContainerSpec.managedLabel)=true") {
            let (labels, id, name) = (container.labels, container.id, container.name)
            guard labels[ContainerSpec.hostLabel] == hostID, let agent = labels[ContainerSpec.agentLabel], !configured.contains(agent) else {
                continue
            }
            guard name.hasPrefix("\(containerPrefix)-") else { continue }
            // Another live worker may still serve that agent (a rolling upgrade), or runs may still be in it.
            if let creator = labels[ContainerSpec.creatorLabel], creator != owner?.worker, await isAlive(creator) { continue }
            if let inspected = try await docker.inspectContainer(id), try await busy(inspected, age: .infinity) { continue }
            try await docker.stopContainer(id, graceSeconds: 5)
            try await docker.removeContainer(id)
            removed.append(name)
        }
        return removed
    }
}

/// This worker must not replace the agent's container: a newer live worker put its own, different spec there.
struct ContainerDeferral: Error, CustomStringConvertible {
    let agent: String
    let message: String
    var description: String { message }
}
