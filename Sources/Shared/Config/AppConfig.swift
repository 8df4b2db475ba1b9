import Foundation
import Yams

/// The whole configuration file, shared by the producer and the workers. Built and validated once at start-up.
public struct AppConfig: Sendable {
    public var redisURL: String
    /// Sentinels to find the master through (`redis.sentinel`); nil = `redisURL`'s host.
    public var redisSentinel: RedisConfiguration.Sentinel?
    public var keyPrefix: String
    public var queue: QueueSettings
    public var producer: ProducerSettings
    public var forges: [Forge: ForgeSettings]
    /// Only these senders may start an agent (empty = anyone not a bot).
    public var allowedSenders: Set<String>
    /// Accounts whose events never start an agent (the agents' own bot accounts; no loops).
    public var botLogins: Set<String>
    public var agents: [String: AgentSettings]
    public var rules: [RuleSettings]
    public var worker: WorkerSettings
    public var dashboard: DashboardSettings
    /// Forge tokens for feedback; resolved only when loaded with `resolveTokens` (the workers).
    public var forgeTokens = ForgeTokens()

    /// Loads and validates a config file. Secrets are resolved (from environment variables or files) here.
    /// - Throws: `ConfigError` naming the key and the problem.
    /// Workers pass `resolveSecrets: false`: they never see webhooks, so they need no webhook secrets. They alone pass
    /// `resolveTokens: true`: only they post to the forges.
    public static func load(
        path: String, environment: [String: String] = ProcessInfo.processInfo.environment, resolveSecrets: Bool = true,
        resolveTokens: Bool = false
    ) throws(ConfigError) -> AppConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(
                file: path, path: "", problem: "cannot read the file (\(error.localizedDescription)); pass --config with the path of your config file"
            )
        }
        return try parse(yaml: text, file: path, environment: environment, resolveSecrets: resolveSecrets, resolveTokens: resolveTokens)
    }

    public static func parse(
        yaml text: String, file: String = "config", environment: [String: String] = [:], resolveSecrets: Bool = true,
        resolveTokens: Bool = false
    ) throws(ConfigError) -> AppConfig {
        let parsed: Any?
        do {
            parsed = try Yams.load(yaml: text)
        } catch {
            throw ConfigError(file: file, path: "", problem: "not valid YAML: \(error)")
        }
        let root = ConfigNode(file: file, path: "", value: Self.normalize(parsed))
        _ = try root.mapping(allowed: ["redis", "queue", "producer", "worker", "forges", "senders", "bots", "agents", "rules", "dashboard"])

        let redis = root.child("redis")
        _ = try redis.mapping(allowed: ["url", "prefix", "sentinel", "replicas_ack", "replicas_ack_timeout"])
        let redisURL = try redis.child("url").string(default: "redis://127.0.0.1:6379")
        do {
            _ = try RedisConfiguration(url: redisURL)
        } catch {
            throw redis.child("url").error("\(error)")
        }
        let sentinel = try Self.sentinel(redis.child("sentinel"), environment: environment)
        let prefix = try redis.child("prefix").string(default: "hooks")
        if prefix.isEmpty || prefix.contains(" ") { throw redis.child("prefix").error("must be a non-empty word without spaces") }

        var queue = try Self.queueSettings(root.child("queue"))
        queue.replicasAck = try redis.child("replicas_ack").int(default: 0, range: 0...16)
        queue.replicasAckTimeout = try redis.child("replicas_ack_timeout").duration(default: queue.replicasAckTimeout)
        if queue.replicasAckTimeout > .seconds(2) {
            throw redis.child("replicas_ack_timeout").error("must be at most 2s: the producer answers within its 3 s Redis command timeout")
        }
        let producer = try ProducerSettings(root.child("producer"))
        let worker = try WorkerSettings(root.child("worker"))
        let dashboard = try DashboardSettings(root.child("dashboard"))

        var forges: [Forge: ForgeSettings] = [:]
        let forgesNode = root.child("forges")
        _ = try forgesNode.mapping(allowed: Set(Forge.allCases.map(\.rawValue)))
        for forge in Forge.allCases where !forgesNode.child(forge.rawValue).isMissing {
            forges[forge] = try ForgeSettings(
                forgesNode.child(forge.rawValue), forge: forge, environment: environment, resolveSecrets: resolveSecrets)
        }

        let senders = root.child("senders")
        _ = try senders.mapping(allowed: ["allow"])
        let allowed = Set(try senders.child("allow").strings().map { $0.lowercased() })

        var agents: [String: AgentSettings] = [:]
        for (name, node) in try root.child("agents").namedEntries() {
            guard name.range(of: "^[a-z0-9][a-z0-9_-]*$", options: .regularExpression) != nil else {
                throw node.error("agent names must be lower-case letters, digits, '-' or '_' (they name queues and containers)")
            }
            agents[name] = try AgentSettings(name: name, node)
        }
        try Self.checkDisjointRoots(agents, node: root.child("agents"))
        var bots = Set(try root.child("bots").strings().map { $0.lowercased() })
        for agent in agents.values { if let bot = agent.botLogin { bots.insert(bot.lowercased()) } }

        var rules: [RuleSettings] = []
        for node in try root.child("rules").items() {
            var rule = try RuleSettings(node)
            guard let agent = agents[rule.agent] else {
                throw node.child("agent").error("unknown agent '\(rule.agent)' (agents: \(agents.keys.sorted().joined(separator: ", ")))")
            }
            rule.feedback = try agent.feedback.overlaid(by: node.child("feedback"), allowTokens: false)
            rules.append(rule)
        }
        let tokens = try Self.forgeTokens(
            root, forges: forges, agents: agents, rules: rules, environment: environment, resolve: resolveTokens)
        var config = AppConfig(
            redisURL: redisURL, redisSentinel: sentinel, keyPrefix: prefix, queue: queue, producer: producer, forges: forges, allowedSenders: allowed,
            botLogins: bots, agents: agents, rules: rules, worker: worker, dashboard: dashboard)
        config.forgeTokens = tokens
        return config
    }

    /// Reads `forges.<f>.api.token_*` and `agents.<a>.feedback.tokens.<f>.token_*`, and checks that every rule that
    /// posts feedback on a forge with an API has a token there: the agent's own or the forge's.
    static func forgeTokens(
        _ root: ConfigNode, forges: [Forge: ForgeSettings], agents: [String: AgentSettings], rules: [RuleSettings],
        environment: [String: String], resolve: Bool
    ) throws(ConfigError) -> ForgeTokens {
        var tokens = ForgeTokens()
        var configured: [String: Set<Forge>] = [:]
        var forgeConfigured: Set<Forge> = []
        for forge in Forge.allCases where forges[forge]?.api != nil {
            let node = root.child("forges").child(forge.rawValue).child("api")
            if let token = try ForgeTokens.read(node, environment: environment, resolve: resolve, what: "the \(forge.rawValue) API token") {
                forgeConfigured.insert(forge)
                tokens.byForge[forge] = token
            }
        }
        for name in agents.keys.sorted() {
            let node = root.child("agents").child(name).child("feedback").child("tokens")
            _ = try node.mapping(allowed: Set(Forge.allCases.map(\.rawValue)))
            for forge in Forge.allCases where !node.child(forge.rawValue).isMissing {
                let entry = node.child(forge.rawValue)
                _ = try entry.mapping(allowed: ["token_env", "token_file"])
                guard forges[forge]?.api != nil else {
                    throw entry.error("forges.\(forge.rawValue).api is not set: add it (with the API url) so this token can be used")
                }
                guard
                    let token = try ForgeTokens.read(
                        entry, environment: environment, resolve: resolve, what: "agent \(name)'s \(forge.rawValue) API token")
                else { throw entry.error("set token_env or token_file") }
                configured[name, default: []].insert(forge)
                if let token { tokens.byAgent[name, default: [:]][forge] = token }
            }
        }
        for (index, rule) in rules.enumerated() where rule.feedback.isOn {
            let ruleForges = rule.forges.isEmpty ? Set(Forge.allCases) : Set(rule.forges.compactMap(Forge.init(rawValue:)))
            for forge in Forge.allCases where ruleForges.contains(forge) && forges[forge]?.api != nil {
                guard !forgeConfigured.contains(forge) && !(configured[rule.agent]?.contains(forge) ?? false) else { continue }
                throw root.child("rules[\(index)]").error(
                    "posts feedback on \(forge.rawValue) as agent \(rule.agent), which has no token there: set "
                        + "agents.\(rule.agent).feedback.tokens.\(forge.rawValue).token_env (its bot account), or "
                        + "forges.\(forge.rawValue).api.token_env, or turn feedback off for this rule (feedback: {reaction: false, status_comment: false})"
                )
            }
        }
        return tokens
    }

    /// The URL's credentials and db; the master's address from `redisSentinel` when set, else the URL's host.
    public var redisConfiguration: RedisConfiguration {
        var configuration = try! RedisConfiguration(url: redisURL)
        configuration.sentinel = redisSentinel
        return configuration
    }

    /// `redis.sentinel`: `master_name`, `addresses` (host:port…), and the sentinels' own `password_env`/`password_file`
    /// (and `username`). Its password is resolved by every process: all of them connect through the sentinels.
    static func sentinel(_ node: ConfigNode, environment: [String: String]) throws(ConfigError) -> RedisConfiguration.Sentinel? {
        guard !node.isMissing else { return nil }
        _ = try node.mapping(allowed: ["master_name", "addresses", "username", "password_env", "password_file"])
        let name = try node.child("master_name").requiredString()
        guard !name.isEmpty, !name.contains(" ") else { throw node.child("master_name").error("must be the master's name in the sentinels' config") }
        var addresses: [RedisConfiguration.Sentinel.Address] = []
        for (index, text) in try node.child("addresses").strings().enumerated() {
            let entry = ConfigNode(file: node.file, path: "\(node.path).addresses[\(index)]", value: text)
            guard text.contains(":"), !text.hasPrefix(":"), let (host, port) = try? ProducerSettings.hostPort(text, entry), port > 0 else {
                throw entry.error("must be a sentinel's host:port, e.g. 10.0.0.5:26379")
            }
            addresses.append(.init(host: host, port: port))
        }
        guard !addresses.isEmpty else {
            throw node.child("addresses").error("is required: the sentinels' host:port (three or more, on different machines)")
        }
        let password = try SecretSource(node, stem: "password")?.read(environment: environment, what: "the sentinels' password")
        let username = try node.child("username").string()
        if username != nil && password == nil {
            throw node.child("username").error("needs a password too: set password_env or password_file")
        }
        return RedisConfiguration.Sentinel(masterName: name, addresses: addresses, username: username, password: password)
    }
    public var keys: KeySchema { KeySchema(prefix: keyPrefix) }

    /// Agents' credentials, state and work dirs must neither coincide nor nest: everything inside a work or state dir
    /// belongs to an agent, which could swap a nested root for a symlink that root's chown and Docker's bind would then
    /// follow. The one exception is the default layout: an agent's own state dir inside its own credentials dir (not in
    /// its `run/`).
    static func checkDisjointRoots(_ agents: [String: AgentSettings], node: ConfigNode) throws(ConfigError) {
        func normalized(_ path: String) -> String {
            var p = (path as NSString).standardizingPath
            while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
            return p
        }
        let roots = agents.sorted { $0.key < $1.key }.flatMap { name, agent in
            [
                (name, "credentials_dir", normalized(agent.credentialsDir)), (name, "state_dir", normalized(agent.stateDir)),
                (name, "work_dir", normalized(agent.workDir)),
            ]
        }
        for (i, a) in roots.enumerated() {
            for b in roots[(i + 1)...] where a.2 == b.2 || a.2.hasPrefix(b.2 + "/") || b.2.hasPrefix(a.2 + "/") {
                // An agent's own state dir inside its own credentials dir is the default layout: the credentials dir is
                // the operator's and mounted read-only; the agent owns only what is inside the state dir.
                // A single plain name, none the CLI reads in /etc/claude-code as policy (managed-settings*, CLAUDE.md,
                // .claude) and not the prompts' run/: what the agent writes there must never look like policy.
                if a.0 == b.0, a.1 == "credentials_dir", b.1 == "state_dir", b.2.hasPrefix(a.2 + "/") {
                    let name = String(b.2.dropFirst(a.2.count + 1))
                    guard !name.contains("/"), !name.hasPrefix("."), !name.lowercased().hasPrefix("managed"), name.lowercased() != "claude.md",
                        name != AgentSettings.promptFolder
                    else {
                        throw node.child(b.0).child("state_dir").error(
                            "'\(name)' inside credentials_dir (\(a.2)) is not allowed: the CLI reads that directory as managed policy, "
                                + "so a state dir there must be one plain name such as 'state' (not '.…', 'managed…', 'CLAUDE.md' or '\(AgentSettings.promptFolder)')"
                        )
                    }
                    continue
                }
                throw node.child(a.0).child(a.1).error(
                    "\(a.2) and agents.\(b.0).\(b.1) (\(b.2)) overlap: give every agent's credentials_dir, state_dir and work_dir their own, "
                        + "non-nested directories (an agent owns what is inside its dirs and could redirect a nested one; only an agent's "
                        + "own state_dir may sit inside its own credentials_dir, and not in its run/)")
            }
        }
    }

    static func queueSettings(_ node: ConfigNode) throws(ConfigError) -> QueueSettings {
        _ = try node.mapping(allowed: [
            "max_attempts", "retry_base", "retry_max", "retry_jitter", "lease", "heartbeat", "retention", "dead_retention", "dedup_ttl",
            "log_max_lines", "log_max_bytes", "session_idle", "transcript_max_bytes", "session_file_max_bytes", "session_files_max_bytes",
            "redis_headroom",
        ])
        var s = QueueSettings()
        s.retry.maxAttempts = try node.child("max_attempts").int(default: s.retry.maxAttempts, range: 1...100)
        s.retry.base = try node.child("retry_base").duration(default: s.retry.base)
        s.retry.maximum = try node.child("retry_max").duration(default: s.retry.maximum)
        let jitter = node.child("retry_jitter")
        if !jitter.isMissing {
            guard let j = (jitter.value as? Double) ?? (jitter.value as? Int).map(Double.init), (0...1).contains(j) else {
                throw jitter.error("must be a number from 0 to 1")
            }
            s.retry.jitter = j
        }
        s.leaseDuration = try node.child("lease").duration(default: s.leaseDuration)
        s.heartbeatInterval = try node.child("heartbeat").duration(default: min(s.heartbeatInterval, s.leaseDuration / 3))
        // A dead worker's jobs wait for its lease plus at most one look: keep the look well inside a short lease.
        s.recoveryInterval = min(s.recoveryInterval, s.leaseDuration / 2)
        if s.heartbeatInterval * 2 > s.leaseDuration {
            throw node.child("heartbeat").error("must be at most half of queue.lease (\(s.leaseDuration)), or a slow heartbeat loses the lease")
        }
        s.retention = try node.child("retention").duration(default: s.retention)
        s.deadRetention = try node.child("dead_retention").duration(default: s.deadRetention, allowZero: true)
        s.dedupTTL = try node.child("dedup_ttl").duration(default: s.dedupTTL)
        s.logMaxLines = try node.child("log_max_lines").int(default: s.logMaxLines, range: 10...1_000_000)
        s.logMaxBytes = try node.child("log_max_bytes").int(default: s.logMaxBytes, range: (64 << 10)...(256 << 20))
        s.sessionIdle = try node.child("session_idle").duration(default: s.sessionIdle, allowZero: true)
        s.transcriptMaxBytes = try node.child("transcript_max_bytes").int(default: s.transcriptMaxBytes, range: 0...(256 << 20))
        s.sessionFileMaxBytes = try node.child("session_file_max_bytes").int(default: s.sessionFileMaxBytes, range: 0...(64 << 20))
        s.sessionFilesMaxBytes = try node.child("session_files_max_bytes").int(default: s.sessionFilesMaxBytes, range: 0...(256 << 20))
        let headroom = node.child("redis_headroom")
        if !headroom.isMissing {
            guard let value = (headroom.value as? Double) ?? (headroom.value as? Int).map(Double.init), value >= 0, value <= 0.9 else {
                throw headroom.error("must be a fraction of maxmemory from 0 (no guard) to 0.9, e.g. 0.2")
            }
            s.redisHeadroom = value
        }
        return s
    }

    /// Yams gives `[AnyHashable: Any]`; turn keys into strings all the way down.
    static func normalize(_ value: Any?) -> Any? {
        if let dict = value as? [AnyHashable: Any] {
            var out: [String: Any] = [:]
            for (k, v) in dict { out["\(k.base)"] = normalize(v) ?? NSNull() }
            return out
        }
        if let list = value as? [Any] { return list.map { normalize($0) ?? NSNull() } }
        return value
    }
}

/// The forges the producer accepts webhooks from; each has its own path (`/webhooks/<forge>`).
public enum Forge: String, Sendable, CaseIterable, Hashable {
    case forgejo, gitea, github
}

public struct ForgeSettings: Sendable {
    /// Every currently valid secret (several during a rotation). Never logged.
    public var secrets: [[UInt8]]
    /// The forge's REST API, for feedback (reactions and status comments); nil = no feedback on this forge.
    public var api: ForgeAPISettings?

    init(_ node: ConfigNode, forge: Forge, environment: [String: String], resolveSecrets: Bool) throws(ConfigError) {
        _ = try node.mapping(allowed: ["secret_env", "secret_file", "api"])
        if !node.child("api").isMissing { api = try ForgeAPISettings(node.child("api"), forge: forge) }
        var secrets: [[UInt8]] = []
        if !resolveSecrets {
            _ = try node.child("secret_env").strings()
            _ = try node.child("secret_file").strings()
            self.secrets = []
            return
        }
        for (i, name) in try node.child("secret_env").strings().enumerated() {
            let key = ConfigNode(file: node.file, path: "\(node.path).secret_env[\(i)]", value: name)
            secrets.append(Array(try key.secret(environmentVariable: name, in: environment, what: "the webhook secret").utf8))
        }
        for (i, path) in try node.child("secret_file").strings().enumerated() {
            let key = ConfigNode(file: node.file, path: "\(node.path).secret_file[\(i)]", value: path)
            secrets.append(Array(try key.secret(file: path, what: "secret").utf8))
        }
        guard !secrets.isEmpty else {
            throw node.error("no secret: set secret_env (environment variable names) or secret_file (paths); secrets never go in this file")
        }
        self.secrets = secrets
    }

    public init(secrets: [[UInt8]], api: ForgeAPISettings? = nil) {
        self.secrets = secrets
        self.api = api
    }
}

public struct ProducerSettings: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    /// Health, readiness and metrics listen here, apart from the public webhook listener.
    public var opsHost = "127.0.0.1"
    public var opsPort = 9090
    /// Extra path prefix under which the webhook routes are also served (`/hooks` → `/hooks/webhooks/github`).
    public var pathPrefix = ""
    public var maxBodyBytes = 1 << 20
    /// Peers whose `X-Forwarded-For` is believed (exact addresses or CIDR blocks).
    public var trustedProxies: [String] = ["127.0.0.1", "::1"]
    /// Connections (each on its own thread) the producer enqueues through. Redis runs commands one at a time, and
    /// concurrent calls are pipelined on each connection, so a few are enough; more only add thread wake-ups.
    public var redisConnections = 2

    public init() {}

    init(_ node: ConfigNode) throws(ConfigError) {
        _ = try node.mapping(allowed: ["listen", "ops_listen", "path_prefix", "max_body_bytes", "trusted_proxies", "redis_connections"])
        if let listen = try node.child("listen").string() { (host, port) = try Self.hostPort(listen, node.child("listen")) }
        if let ops = try node.child("ops_listen").string() { (opsHost, opsPort) = try Self.hostPort(ops, node.child("ops_listen")) }
        pathPrefix = try node.child("path_prefix").string(default: "")
        if !pathPrefix.isEmpty {
            if !pathPrefix.hasPrefix("/") { pathPrefix = "/" + pathPrefix }
            while pathPrefix.hasSuffix("/") { pathPrefix.removeLast() }
        }
        maxBodyBytes = try node.child("max_body_bytes").int(default: maxBodyBytes, range: 1024...(64 << 20))
        if !node.child("trusted_proxies").isMissing { trustedProxies = try node.child("trusted_proxies").strings() }
        redisConnections = try node.child("redis_connections").int(default: redisConnections, range: 1...64)
    }

    /// `host:port` (`[::1]:9092`, `:8080` = every address) as a config value or a command-line option (`option` names it).
    public static func hostPort(_ text: String, option: String) throws(ConfigError) -> (String, Int) {
        try hostPort(text, ConfigNode(file: "command line", path: option, value: text))
    }

    static func hostPort(_ text: String, _ node: ConfigNode) throws(ConfigError) -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw node.error("must be host:port, e.g. 0.0.0.0:8080")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

public struct WorkerSettings: Sendable {
    /// Job slots per worker process (`--concurrency` overrides).
    public var concurrency = 2
    /// On SIGTERM, running agents get this long to finish before they are stopped and their jobs re-queued.
    public var shutdownGrace: Duration = .seconds(60)
    /// Containers are named `<prefix>-<agent>`.
    public var containerPrefix = "hooks"
    /// Where the worker serves `/metrics` (Prometheus); nil = not served. One port per worker process.
    public var metricsListen: (host: String, port: Int)?

    public init() {}

    init(_ node: ConfigNode) throws(ConfigError) {
        _ = try node.mapping(allowed: ["concurrency", "shutdown_grace", "container_prefix", "metrics_listen"])
        if let listen = try node.child("metrics_listen").string() {
            metricsListen = try ProducerSettings.hostPort(listen, node.child("metrics_listen"))
        }
        concurrency = try node.child("concurrency").int(default: concurrency, range: 1...256)
        shutdownGrace = try node.child("shutdown_grace").duration(default: shutdownGrace, allowZero: true)
        containerPrefix = try node.child("container_prefix").string(default: containerPrefix)
        guard containerPrefix.range(of: "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", options: .regularExpression) != nil else {
            throw node.child("container_prefix").error("must be letters, digits, '_', '.' or '-' (it names containers)")
        }
    }
}
