import Foundation

/// One agent (boss, dev, reviewer…): how it is triggered by mention, and how workers run it.
public struct AgentSettings: Sendable, Equatable {
    public var name: String
    /// Words that mention the agent in a comment (default `@<name>`), matched case-insensitively as whole words.
    public var mentions: [String]
    /// The forge account the agent posts as; its events never start an agent.
    public var botLogin: String?
    public var image: String
    /// `uid:gid` the agent runs as inside its container.
    public var user: String
    /// Host directory the operator owns (managed settings, `CLAUDE.md`, secrets): mounted read-only at
    /// `policyMount` (`/etc/claude-code`, where the CLI reads managed settings no agent can override). The worker also
    /// keeps each run's prompt file in its `run/`, so the agent reads it but cannot change it.
    public var credentialsDir: String
    /// Host directory with the CLI's own state (`.claude.json`, `projects/`, `sessions/`, an OAuth login's
    /// `.credentials.json`…), owned by the agent and mounted read-write at `configDir` (`CLAUDE_CONFIG_DIR`).
    public var stateDir: String
    /// Host directory mounted read-write at `workMount`; sessions get `<workMount>/<owner>/<repo>/<number>`.
    public var workDir: String
    /// `CLAUDE_CONFIG_DIR` inside the container.
    public var configDir: String
    public var workMount: String
    public var environment: [String: String]
    /// The agent command. The prompt is never an argument: the worker feeds it on standard input (print mode reads it
    /// from there), so no size limit of `execve` applies and forge text can never be read as an option. A
    /// `{{prompt}}` argument in older configs is accepted and dropped.
    public var command: [String]
    /// What the CLI may do without asking (print mode cannot ask: whatever needs approval is denied).
    public var permissions = Permissions()
    public var timeout: Duration
    /// At most this many jobs of this agent run at once on one worker.
    public var concurrency: Int
    /// The container's memory limit in bytes (all runs on the host share it).
    public var memoryBytes: Int64
    /// The container's process limit (a fork bomb stops here).
    public var pidsLimit: Int
    /// The container's CPU limit in cores (`NanoCpus`), shared by its runs; nil = none.
    public var cpus: Double? = 2
    /// Resource limits of every process in the container (`ulimit`), by name (`nofile`, `nproc`, `core`, …) → (soft,
    /// hard).
    public var ulimits: [String: Ulimit] = ["nofile": Ulimit(soft: 8192, hard: 8192), "core": Ulimit(soft: 0, hard: 0)]
    public struct Ulimit: Sendable, Equatable {
        public var soft: Int64
        public var hard: Int64
        public init(soft: Int64, hard: Int64) {
            self.soft = soft
            self.hard = hard
        }
    }
    public static let ulimitNames: Set<String> = [
        "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending",
        "stack",
    ]
    /// What the agent shows on the forge while it works (rules may override it per key).
    public var feedback = FeedbackSettings()

    public var uid: UInt32 { UInt32(user.split(separator: ":").first ?? "1000") ?? 1000 }
    public var gid: UInt32 { UInt32(user.split(separator: ":").last ?? "1000") ?? 1000 }

    public static let promptPlaceholder = "{{prompt}}"
    public static let defaultCommand = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    /// Where the read-only `credentials_dir` appears in the container: the CLI's managed-settings directory on Linux.
    public static let policyMount = "/etc/claude-code"
    /// The worker's folder of prompt files below `credentials_dir` (root-owned; `<policyMount>/run` inside).
    public static let promptFolder = "run"

    /// The CLI flags for what the agent may do without asking.
    public struct Permissions: Sendable, Equatable {
        /// `--permission-mode`: `bypassPermissions` (the container is the sandbox), `acceptEdits`, `manual` (older CLIs:
        /// `default`), `dontAsk`, `plan`, `auto`.
        public var mode = "bypassPermissions"
        /// `--allowedTools`: tools (or rules like `Bash(git:*)`) allowed without asking.
        public var allowedTools: [String] = []
        /// `--disallowedTools`: tools never allowed.
        public var disallowedTools: [String] = []

        public static let modes = ["bypassPermissions", "acceptEdits", "manual", "default", "dontAsk", "plan", "auto"]

        public init() {}

        /// The flags, in the CLI's own spelling.
        public var arguments: [String] {
            ["--permission-mode", mode] + (allowedTools.isEmpty ? [] : ["--allowedTools", allowedTools.joined(separator: ",")])
                + (disallowedTools.isEmpty ? [] : ["--disallowedTools", disallowedTools.joined(separator: ",")])
        }

        init(_ node: ConfigNode) throws(ConfigError) {
            _ = try node.mapping(allowed: ["mode", "allowed_tools", "disallowed_tools"])
            let aliases = ["bypass": "bypassPermissions", "accept_edits": "acceptEdits"]
            if let given = try node.child("mode").string() {
                let value = aliases[given] ?? given
                guard Self.modes.contains(value) else {
                    throw node.child("mode").error(
                        "'\(given)' is not a permission mode of the Claude Code CLI; use one of \(Self.modes.joined(separator: ", ")) "
                            + "(bypass = bypassPermissions: every tool call allowed, the container being the sandbox)")
                }
                mode = value
            }
            for (key, path) in [("allowed_tools", \Permissions.allowedTools), ("disallowed_tools", \Permissions.disallowedTools)] {
                let tools = try node.child(key).strings()
                for tool in tools
                where tool.isEmpty || tool.contains(",") || tool.hasPrefix("-") || tool.unicodeScalars.contains(where: { $0.value < 0x20 }) {
                    throw node.child(key).error("'\(tool)' is not a tool name or rule (e.g. Bash, Edit, \"Bash(git:*)\"; no commas)")
                }
                self[keyPath: path] = tools
            }
        }
    }

    /// Options the worker sets itself and a template must not carry.
    static let reservedOptions = [
        "--", "--resume", "-r", "--session-id", "--continue", "-c", "--permission-mode", "--allowedTools", "--allowed-tools",
        "--disallowedTools", "--disallowed-tools", "--dangerously-skip-permissions", "--input-format",
    ]

    public init(name: String, image: String, credentialsDir: String, workDir: String) {
        self.name = name
        self.mentions = ["@\(name)"]
        self.image = image
        self.user = "1000:1000"
        self.credentialsDir = credentialsDir
        self.stateDir = credentialsDir + "/state"
        self.workDir = workDir
        self.configDir = "/home/claude/.config/claude-code"
        self.workMount = "/work"
        self.environment = [:]
        self.command = Self.defaultCommand
        self.timeout = .seconds(1800)
        self.concurrency = 2
        self.memoryBytes = 8 << 30
        self.pidsLimit = 1024
    }

    /// The template must name a program and leave to the worker what it sets itself: the session (`--resume`,
    /// `--session-id`), the permissions (`permissions:`), the prompt (standard input; a whole `{{prompt}}` argument is
    /// accepted and dropped) and `--`.
    static func validate(command: [String], node: ConfigNode) throws(ConfigError) {
        guard let program = command.first, !program.isEmpty, !program.hasPrefix("-"), program != promptPlaceholder else {
            throw node.error("must start with the agent program, e.g. [claude, -p, --output-format, stream-json, --verbose]")
        }
        let partial = command.filter { $0.contains(promptPlaceholder) && $0 != promptPlaceholder }
        if let bad = partial.first {
            throw node.error(
                "'\(bad)' puts {{prompt}} inside an argument: the worker feeds the prompt on standard input, so drop it "
                    + "(a whole \"{{prompt}}\" argument is accepted and ignored)")
        }
        for argument in command {
            let option = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
            if reservedOptions.contains(option) {
                let instead =
                    option.contains("ermission") || option.contains("llowed") || option.contains("dangerously")
                    ? "set agents.<name>.permissions instead" : "the worker sets it for every run"
                throw node.error("must not contain `\(option)`: \(instead)")
            }
        }
    }

    /// `8g`, `512m`, `64k`, `8GiB`, or a number of bytes.
    static func parseBytes(_ value: Any?) -> Int64? {
        if let n = value as? Int { return Int64(n) }
        guard let text = (value as? String)?.trimmingCharacters(in: .whitespaces).lowercased(), !text.isEmpty else { return nil }
        let digits = text.prefix { $0.isNumber }
        guard let number = Int64(digits) else { return nil }
        let units: [String: Int64] = [
            "": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
        ]
        guard let unit = units[String(text.dropFirst(digits.count))], number <= Int64.max / unit else { return nil }
        return number * unit
    }

    init(name: String, _ node: ConfigNode) throws(ConfigError) {
        _ = try node.mapping(allowed: [
            "mentions", "bot_login", "image", "user", "credentials_dir", "state_dir", "work_dir", "config_dir", "work_mount", "env", "command",
            "permissions", "timeout", "concurrency", "memory", "pids_limit", "cpus", "ulimits", "feedback",
        ])
        self.init(
            name: name, image: try node.child("image").requiredString(),
            credentialsDir: try node.child("credentials_dir").string(default: "/var/lib/forge-hooks/agents/\(name)/config"),
            workDir: try node.child("work_dir").string(default: "/var/lib/forge-hooks/agents/\(name)/work"))
        let mentions = try node.child("mentions").strings()
        if !mentions.isEmpty { self.mentions = mentions }
        botLogin = try node.child("bot_login").string()
        user = try node.child("user").string(default: user)
        guard user.range(of: "^[0-9]+:[0-9]+$", options: .regularExpression) != nil else {
            throw node.child("user").error("must be uid:gid in numbers, e.g. 1000:1000 (a bare uid runs with gid 0)")
        }
        if uid == 0 { throw node.child("user").error("must not be root: the agent CLI refuses --dangerously-skip-permissions as root") }
        if uid == 65534 {
            throw node.child("user").error("must not be 65534: that is the container's own keeper (init), which agent runs must not reach")
        }
        stateDir = try node.child("state_dir").string(default: stateDir)
        configDir = try node.child("config_dir").string(default: configDir)
        workMount = try node.child("work_mount").string(default: workMount)
        for (key, path) in [
            ("credentials_dir", credentialsDir), ("state_dir", stateDir), ("work_dir", workDir), ("config_dir", configDir), ("work_mount", workMount),
        ]
        where !path.hasPrefix("/") {
            throw node.child(key).error("must be an absolute path")
        }
        if configDir == Self.policyMount || configDir.hasPrefix(Self.policyMount + "/") || Self.policyMount.hasPrefix(configDir + "/") {
            throw node.child("config_dir").error("must not be or contain \(Self.policyMount), where credentials_dir is mounted read-only")
        }
        let envNode = node.child("env")
        if !envNode.isMissing {
            guard let dict = envNode.value as? [String: Any] else { throw envNode.error("must be a mapping of NAME: value") }
            for (k, v) in dict {
                guard k.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) != nil else {
                    throw envNode.child(k).error("is not a valid environment variable name")
                }
                environment[k] = "\(v)"
            }
        }
        let command = try node.child("command").strings()
        if !command.isEmpty { self.command = command }
        try Self.validate(command: self.command, node: node.child("command"))
        self.command.removeAll { $0 == Self.promptPlaceholder }
        permissions = try Permissions(node.child("permissions"))
        timeout = try node.child("timeout").duration(default: timeout)
        concurrency = try node.child("concurrency").int(default: concurrency, range: 1...256)
        let memory = node.child("memory")
        if !memory.isMissing {
            guard let bytes = Self.parseBytes(memory.value), bytes >= 64 << 20 else {
                throw memory.error("must be a size of at least 64m, e.g. 8g, 512m or a number of bytes")
            }
            memoryBytes = bytes
        }
        pidsLimit = try node.child("pids_limit").int(default: pidsLimit, range: 32...1_000_000)
        let cpuNode = node.child("cpus")
        if !cpuNode.isMissing {
            if let off = cpuNode.value as? Bool, off == false {
                cpus = nil
            } else if let value = (cpuNode.value as? Double) ?? (cpuNode.value as? Int).map(Double.init)
                ?? (cpuNode.value as? String).flatMap(Double.init), value >= 0.01, value <= 1024
            {
                cpus = value
            } else {
                throw cpuNode.error("must be a number of cores from 0.01 to 1024 (e.g. 2 or 0.5), or false for no limit")
            }
        }
        let ulimitNode = node.child("ulimits")
        for (name, value) in try ulimitNode.mapping(allowed: Self.ulimitNames) {
            let entry = ulimitNode.child(name)
            if let n = (value as? Int).map(Int64.init) {
                guard n >= 0 else { throw entry.error("must not be negative") }
                ulimits[name] = Ulimit(soft: n, hard: n)
            } else if let pair = value as? [String: Any], let soft = (pair["soft"] as? Int).map(Int64.init),
                let hard = (pair["hard"] as? Int).map(Int64.init),
                pair.count == 2, soft >= 0, soft <= hard
            {
                ulimits[name] = Ulimit(soft: soft, hard: hard)
            } else {
                throw entry.error("must be a number (soft = hard) or {soft: n, hard: m} with 0 <= soft <= hard")
            }
        }
        feedback = try FeedbackSettings().overlaid(by: node.child("feedback"), allowTokens: true)
    }
}
