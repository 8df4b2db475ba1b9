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
    /// Host directory with the agent CLI's credentials/config; mounted read-only at `configDir`.
    public var credentialsDir: String
    /// Host directory mounted read-write at `workMount`; sessions get `<workMount>/<owner>/<repo>/<number>`.
    public var workDir: String
    /// `CLAUDE_CONFIG_DIR` inside the container.
    public var configDir: String
    public var workMount: String
    public var environment: [String: String]
    /// The agent command. `{{prompt}}` marks where the prompt goes in the operator's mind; the worker always passes it
    /// last, after `--resume`/`--session-id` and a `--`, so forge text can never be read as an option.
    public var command: [String]
    public var timeout: Duration
    /// At most this many jobs of this agent run at once on one worker.
    public var concurrency: Int
    /// The container's memory limit in bytes (all runs on the host share it).
    public var memoryBytes: Int64
    /// The container's process limit (a fork bomb stops here).
    public var pidsLimit: Int
    /// What the agent shows on the forge while it works (rules may override it per key).
    public var feedback = FeedbackSettings()

    public var uid: UInt32 { UInt32(user.split(separator: ":").first ?? "1000") ?? 1000 }
    public var gid: UInt32 { UInt32(user.split(separator: ":").last ?? "1000") ?? 1000 }

    public static let promptPlaceholder = "{{prompt}}"
    public static let defaultCommand = ["claude", "-p", "{{prompt}}", "--output-format", "stream-json", "--verbose"]

    public init(name: String, image: String, credentialsDir: String, workDir: String) {
        self.name = name
        self.mentions = ["@\(name)"]
        self.image = image
        self.user = "1000:1000"
        self.credentialsDir = credentialsDir
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

    /// The prompt must be one whole `{{prompt}}` argument (it is moved behind `--`), the template must have no `--`
    /// (options after it would become prompt text), and must name a program.
    static func validate(command: [String], node: ConfigNode) throws(ConfigError) {
        guard let program = command.first, !program.isEmpty, !program.hasPrefix("-"), program != promptPlaceholder else {
            throw node.error("must start with the agent program, e.g. [claude, -p, \"{{prompt}}\", --output-format, stream-json, --verbose]")
        }
        let holders = command.filter { $0.contains("{{prompt}}") }
        guard holders == [promptPlaceholder] else {
            throw node.error(
                "must contain \"{{prompt}}\" exactly once, as a whole argument (found \(holders.count == 0 ? "none" : holders.map { "'\($0)'" }.joined(separator: ", "))): "
                    + "the worker passes the prompt as the last argument after `--` so forge text can never become a CLI option")
        }
        if command.contains("--") {
            throw node.error("must not contain `--`: the worker adds it before the prompt; put every option before it")
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
            "mentions", "bot_login", "image", "user", "credentials_dir", "work_dir", "config_dir", "work_mount", "env", "command", "timeout",
            "concurrency", "memory", "pids_limit", "feedback",
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
        configDir = try node.child("config_dir").string(default: configDir)
        workMount = try node.child("work_mount").string(default: workMount)
        for (key, path) in [("credentials_dir", credentialsDir), ("work_dir", workDir), ("config_dir", configDir), ("work_mount", workMount)]
        where !path.hasPrefix("/") {
            throw node.child(key).error("must be an absolute path")
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
        feedback = try FeedbackSettings().overlaid(by: node.child("feedback"), allowTokens: true)
    }
}
