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
    /// The agent command; `{{prompt}}` is replaced by the job's prompt. Resume/session flags are appended.
    public var command: [String]
    public var timeout: Duration
    /// At most this many jobs of this agent run at once on one worker.
    public var concurrency: Int

    public var uid: UInt32 { UInt32(user.split(separator: ":").first ?? "1000") ?? 1000 }
    public var gid: UInt32 { UInt32(user.split(separator: ":").last ?? "1000") ?? 1000 }

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
    }

    init(name: String, _ node: ConfigNode) throws(ConfigError) {
        _ = try node.mapping(allowed: [
            "mentions", "bot_login", "image", "user", "credentials_dir", "work_dir", "config_dir", "work_mount", "env", "command", "timeout",
            "concurrency",
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
        timeout = try node.child("timeout").duration(default: timeout)
        concurrency = try node.child("concurrency").int(default: concurrency, range: 1...256)
    }
}
