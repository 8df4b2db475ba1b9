import Crypto
import Foundation
import Shared

/// The desired state of one agent's long-lived container on this Docker host.
package struct ContainerSpec: Sendable, Equatable {
    struct Bind: Sendable, Hashable, CustomStringConvertible {
        let source: String
        let target: String
        let readOnly: Bool
        var description: String { "\(source):\(target):\(readOnly ? "ro" : "rw")" }
    }

    static let managedLabel = "forge-hooks.managed"
    static let agentLabel = "forge-hooks.agent"
    static let hostLabel = "forge-hooks.host"
    static let specLabel = "forge-hooks.spec"
    /// Which worker created the container, and when that worker started (ms since 1970): the tie-break of a rolling
    /// upgrade, where the most recently started worker's spec wins. Not part of the spec.
    static let creatorLabel = "forge-hooks.creator"
    static let creatorStartedLabel = "forge-hooks.creator-started"
    /// What a retired container's name carries after `<prefix>-<agent>`: `.retired.<unix seconds>.<id12>`.
    static let retiredInfix = ".retired."
    /// The user of the container's own processes (init, `sleep infinity`): not the agent's uid. Processes of one uid can
    /// ptrace and write each other's memory; were the keeper the agent's uid, an agent could inject code into it and
    /// run outside every run's cgroup, for good. Agent runs get the agent's uid on each exec instead.
    static let keeperUser = "65534:65534"

    package let name: String
    let agent: String
    let image: String
    /// The container's user (the keeper); agent execs run as the agent's `uid:gid`.
    let user: String
    let environment: [String: String]
    let binds: [Bind]
    package let command: [String]
    let workMount: String
    let hostID: String
    let memoryBytes: Int64
    let pidsLimit: Int
    /// `NanoCpus` (cores × 10⁹), nil for no limit.
    let nanoCPUs: Int64?
    let agentUlimits: [String: AgentSettings.Ulimit]
    /// `name=soft:hard`, sorted: as `ContainerDetails` reads them back.
    var ulimits: [String] { agentUlimits.map { "\($0.key)=\($0.value.soft):\($0.value.hard)" }.sorted() }
    /// The worker making this container (labels only), nil for an operator's command.
    var creator: Creator?

    package struct Creator: Sendable, Equatable {
        let worker: String
        let startedMs: Int64

        package init(worker: String, startedMs: Int64) {
            self.worker = worker
            self.startedMs = startedMs
        }

        /// Whether `self` started after `other` (ties broken by id): its spec wins a disagreement.
        func isNewer(than other: Creator) -> Bool {
            startedMs != other.startedMs ? startedMs > other.startedMs : worker > other.worker
        }
    }

    init(agent: AgentSettings, containerPrefix: String, hostID: String) {
        self.agent = agent.name
        self.name = "\(containerPrefix)-\(agent.name)"
        self.image = agent.image
        self.user = Self.keeperUser
        var env = agent.environment
        env["CLAUDE_CONFIG_DIR"] = agent.configDir
        env["HOME"] = env["HOME"] ?? "/home/claude"
        self.environment = env
        // The CLI's state (its config dir) is the agent's and writable; the operator's files (managed settings,
        // CLAUDE.md, secrets, the worker's prompt files) are read-only, where the CLI reads managed settings.
        self.binds = [
            Bind(source: agent.stateDir, target: agent.configDir, readOnly: false),
            Bind(source: agent.credentialsDir, target: AgentSettings.policyMount, readOnly: true),
            Bind(source: agent.workDir, target: agent.workMount, readOnly: false),
        ]
        self.workMount = agent.workMount
        self.command = ["sleep", "infinity"]
        self.hostID = hostID
        self.memoryBytes = agent.memoryBytes
        self.pidsLimit = agent.pidsLimit
        self.nanoCPUs = agent.cpus.map { Int64(($0 * 1e9).rounded()) }
        self.agentUlimits = agent.ulimits
    }

    /// A short hash of everything desired, stored as a label: a changed spec is visible at a glance.
    var specHash: String {
        let text =
            ([image, user, command.joined(separator: " ")] + environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            + binds.map(\.description) + [
                "memory=\(memoryBytes)", "pids=\(pidsLimit)", "cap_drop=ALL", "no-new-privileges", "seccomp=\(SeccompProfile.digest)",
                "cpus=\(nanoCPUs.map(String.init) ?? "none")", "ulimits=\(ulimits.joined(separator: ","))",
            ]).joined(separator: "\n")
        return SHA256.hash(data: Array(text.utf8)).prefix(8).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }

    var labels: [String: String] {
        var labels = [Self.managedLabel: "true", Self.agentLabel: agent, Self.hostLabel: hostID, Self.specLabel: specHash]
        if let creator {
            labels[Self.creatorLabel] = creator.worker
            labels[Self.creatorStartedLabel] = String(creator.startedMs)
        }
        return labels
    }

    var envList: [String] { environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } }

    /// The body of `POST /containers/create`. Binds use `Mounts` (type bind), which refuse a missing source instead
    /// of creating it root-owned; no Docker socket is ever mounted. Least privilege: every capability dropped,
    /// `no-new-privileges` (a setuid binary in the image gains nothing), a process and a memory limit.
    var createBody: [String: Any] {
        [
            "Image": image, "User": user, "Env": envList, "Labels": labels, "Cmd": command, "WorkingDir": workMount,
            "HostConfig": [
                "Mounts": binds.map { ["Type": "bind", "Source": $0.source, "Target": $0.target, "ReadOnly": $0.readOnly] as [String: Any] },
                "RestartPolicy": ["Name": "unless-stopped"], "Init": true, "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges", SeccompProfile.securityOpt],
                "PidsLimit": pidsLimit, "Memory": memoryBytes, "MemorySwap": memoryBytes, "Privileged": false,
                "NanoCpus": nanoCPUs ?? 0,
                "Ulimits": agentUlimits.sorted { $0.key < $1.key }.map {
                    ["Name": $0.key, "Soft": $0.value.soft, "Hard": $0.value.hard] as [String: Any]
                },
            ] as [String: Any],
        ]
    }

    /// What differs between a container's inspect document and this spec (empty = matches).
    func differences(inspect: ContainerDetails, imageID: String?) -> [String] {
        var diffs: [String] = []
        let (state, config, host) = (inspect.state, inspect.config, inspect.hostConfig)
        if !state.running { diffs.append("not running (status \(state.status.isEmpty ? "?" : state.status))") }
        if let imageID, !inspect.image.isEmpty, inspect.image != imageID {
            diffs.append("image: runs \(inspect.image.prefix(19)), \(image) is now \(imageID.prefix(19))")
        }
        if config.image != image { diffs.append("image: \(config.image.isEmpty ? "?" : config.image) ≠ \(image)") }
        if config.user != user { diffs.append("user: '\(config.user)' ≠ '\(user)'") }
        let env = Set(config.env)
        for entry in envList where !env.contains(entry) {
            diffs.append("env: \(entry.split(separator: "=", maxSplits: 1).first ?? "") missing or different")
        }
        if !host.capDrop.contains(where: { $0.uppercased() == "ALL" || $0.uppercased() == "CAP_ALL" }) {
            diffs.append("capabilities: not all dropped (CapDrop \(host.capDrop))")
        }
        if !host.capAdd.isEmpty { diffs.append("capabilities: adds \(host.capAdd)") }
        if !host.securityOpt.contains(where: { $0 == "no-new-privileges" || $0 == "no-new-privileges:true" }) {
            diffs.append("security: no-new-privileges not set")
        }
        if !host.securityOpt.contains(SeccompProfile.securityOpt) {
            diffs.append("security: not the worker's seccomp profile (\(SeccompProfile.digest)): its runs could ptrace each other")
        }
        if host.privileged { diffs.append("security: privileged") }
        for opt in host.securityOpt where opt.contains("unconfined") || opt.hasPrefix("systempaths") {
            diffs.append("security: \(opt)")
        }
        if host.initProcess != true { diffs.append("init: not set (orphans would not be reaped)") }
        if host.deviceCount > 0 { diffs.append("devices: host devices passed in") }
        for key in ["PidMode", "IpcMode", "UsernsMode", "UTSMode"] where host.namespaceModes[key] == "host" {
            diffs.append("namespaces: \(key) is host")
        }
        if host.pidsLimit != pidsLimit { diffs.append("pids limit: \(host.pidsLimit.map { "\($0)" } ?? "none") ≠ \(pidsLimit)") }
        if host.memory != memoryBytes { diffs.append("memory limit: \(host.memory.map { "\($0)" } ?? "none") ≠ \(memoryBytes)") }
        if (host.nanoCPUs ?? 0) != (nanoCPUs ?? 0) {
            diffs.append(
                "cpu limit: \(host.nanoCPUs.map { "\(Double($0) / 1e9)" } ?? "none") ≠ \(nanoCPUs.map { "\(Double($0) / 1e9)" } ?? "none") cores")
        }
        if host.ulimits != ulimits { diffs.append("ulimits: \(host.ulimits.joined(separator: ", ")) ≠ \(ulimits.joined(separator: ", "))") }
        let labels = config.labels
        if labels[Self.managedLabel] != "true" { diffs.append("labels: not managed by forge-hooks") }
        for m in inspect.mounts where m.type != "bind" {
            diffs.append(
                "mount not desired: \(m.type.isEmpty ? "?" : m.type) \(m.name.isEmpty ? m.source : m.name) at \(m.destination.isEmpty ? "?" : m.destination)"
            )
        }
        let mounts = inspect.mounts.filter { $0.type == "bind" }.map { Bind(source: $0.source, target: $0.destination, readOnly: !$0.readWrite) }
        let have = Set(mounts)
        let want = Set(binds)
        for missing in binds where !have.contains(missing) { diffs.append("bind missing: \(missing)") }
        for extra in mounts where !want.contains(extra) { diffs.append("bind not desired: \(extra)") }
        // What the checks above cannot see — an env var removed from the config looks like one the image sets — the
        // spec hash the container was made with still tells.
        if diffs.isEmpty, let made = labels[Self.specLabel], made != specHash {
            diffs.append("spec: made from another configuration (spec \(made) ≠ \(specHash)); e.g. an env var was removed")
        }
        return diffs
    }
}
