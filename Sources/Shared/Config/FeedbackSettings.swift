import Foundation

/// What an agent shows on the forge while it works (`agents.<name>.feedback`, overridden per key by
/// `rules[].feedback`): a reaction on the comment that triggered it, one status comment per job kept up to date, and
/// what that comment holds. Effective only for forges with an `api:` section.
public struct FeedbackSettings: Sendable, Equatable {
    /// Reactions every forge accepts (GitHub's list; Gitea's default `ALLOWED_REACTIONS` is the same set).
    public static let reactions = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]

    /// Reaction on the triggering comment; nil = none.
    public var reaction: String? = "eyes"
    public var statusComment = true
    public var includeCost = true
    /// A link added to the status comment, `{{job}}` and `{{agent}}` replaced (e.g. the dashboard's job page).
    public var link: String?

    public init() {}

    /// Whether anything is posted at all.
    public var isOn: Bool { reaction != nil || statusComment }

    /// These settings with the keys `node` sets replaced (`agents.<a>.feedback` over the defaults, a rule's over the
    /// agent's). `allowTokens` lets the agent's section carry `tokens` (read by `ForgeTokens`).
    func overlaid(by node: ConfigNode, allowTokens: Bool) throws(ConfigError) -> FeedbackSettings {
        var keys: Set<String> = ["reaction", "status_comment", "include_cost", "link"]
        if allowTokens { keys.insert("tokens") }
        _ = try node.mapping(allowed: keys)
        var out = self
        let reaction = node.child("reaction")
        if let on = reaction.value as? Bool {
            guard !on else { throw reaction.error("must be a reaction (\(Self.reactions.joined(separator: ", "))) or false") }
            out.reaction = nil
        } else if let name = try reaction.string() {
            guard name == "none" || Self.reactions.contains(name) else {
                throw reaction.error("unknown reaction '\(name)': use one of \(Self.reactions.joined(separator: ", ")), or false for none")
            }
            out.reaction = name == "none" ? nil : name
        }
        out.statusComment = try node.child("status_comment").bool(default: out.statusComment)
        out.includeCost = try node.child("include_cost").bool(default: out.includeCost)
        if let link = try node.child("link").string(), link.isEmpty {
            out.link = nil  // a rule clears the agent's link
        } else if let link = try node.child("link").string() {
            guard let url = URL(string: link.replacingOccurrences(of: "{{job}}", with: "x").replacingOccurrences(of: "{{agent}}", with: "x")),
                ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil
            else {
                throw node.child("link").error("must be an http(s) URL, e.g. https://hooks.example.com/dashboard/jobs/{{job}}")
            }
            out.link = link
        }
        return out
    }

    /// The job field (`feedback`) the producer writes and the workers read: `reaction=eyes;comment=1;cost=1`, or ""
    /// when nothing is to be posted.
    public var jobField: String {
        guard isOn else { return "" }
        return "reaction=\(reaction ?? "none");comment=\(statusComment ? 1 : 0);cost=\(includeCost ? 1 : 0)"
    }

    /// Reads `jobField` back; unknown parts are ignored, so an older worker reads a newer producer's field.
    public init(jobField: String) {
        self.init()
        reaction = nil
        statusComment = false
        for part in jobField.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            switch pair[0] {
            case "reaction": reaction = Self.reactions.contains(pair[1]) ? pair[1] : nil
            case "comment": statusComment = pair[1] == "1"
            case "cost": includeCost = pair[1] == "1"
            default: break
            }
        }
    }

    /// The link for a job, or nil.
    public func link(job: String, agent: String) -> String? {
        link?.replacingOccurrences(of: "{{job}}", with: job).replacingOccurrences(of: "{{agent}}", with: agent)
    }
}

/// `forges.<forge>.api`: where the forge's REST API is and the token used for agents without one of their own.
public struct ForgeAPISettings: Sendable, Equatable {
    /// The API root: `https://api.github.com`, `https://git.example.com/api/v1`.
    public var url: String

    public static let githubDefault = "https://api.github.com"

    init(_ node: ConfigNode, forge: Forge) throws(ConfigError) {
        _ = try node.mapping(allowed: ["url", "token_env", "token_file"])
        var url = try node.child("url").string() ?? (forge == .github ? Self.githubDefault : "")
        guard !url.isEmpty else {
            throw node.child("url").error("is required for \(forge.rawValue): the API root of your server, e.g. https://git.example.com/api/v1")
        }
        while url.hasSuffix("/") { url.removeLast() }
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = parsed.host, parsed.query == nil, parsed.user == nil, parsed.password == nil
        else {
            throw node.child("url").error(
                "must be an http(s) URL without a query or credentials, e.g. https://git.example.com/api/v1 (the token goes in token_env or token_file)"
            )
        }
        // The token travels in a header: plain HTTP only to this machine.
        if scheme == "http" && !["127.0.0.1", "::1", "[::1]", "localhost"].contains(host.lowercased()) {
            throw node.child("url").error("must be https: the API token would cross the network in clear (plain http only to 127.0.0.1)")
        }
        // A bare server address means the API's usual place: /api/v1 on Gitea and Forgejo, /api/v3 on GitHub Enterprise.
        if parsed.path.isEmpty || parsed.path == "/" {
            if forge != .github {
                url += "/api/v1"
            } else if host.lowercased() != "api.github.com" {
                url += "/api/v3"
            }
        }
        self.url = url
    }

    public init(url: String) { self.url = url }
}

/// The forge tokens the workers post with: per agent (its bot account) and per forge (the fallback). Read from
/// environment variables or files named in the config, never from the config itself; never printed.
public struct ForgeTokens: Sendable, CustomStringConvertible {
    public var byAgent: [String: [Forge: String]] = [:]
    public var byForge: [Forge: String] = [:]

    public init(byAgent: [String: [Forge: String]] = [:], byForge: [Forge: String] = [:]) {
        self.byAgent = byAgent
        self.byForge = byForge
    }

    /// The agent's own token for the forge, else the forge's.
    public func token(agent: String, forge: Forge) -> String? { byAgent[agent]?[forge] ?? byForge[forge] }

    public var description: String {
        "ForgeTokens(agents: \(byAgent.mapValues { $0.keys.map(\.rawValue).sorted() }), forges: \(byForge.keys.map(\.rawValue).sorted()))"
    }

    /// `token_env` / `token_file` of `node`; nil when neither is set. `resolve: false` checks the keys only.
    static func read(_ node: ConfigNode, environment: [String: String], resolve: Bool, what: String) throws(ConfigError) -> String?? {
        guard let source = try SecretSource(node, stem: "token") else { return .none }
        guard resolve else { return .some(nil) }
        // A trailing newline (a secret made from a file) is dropped; anything else that cannot be in a header is an
        // error that names the variable or file, never the value.
        let token = try source.read(environment: environment, what: what).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty, token.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw source.key.error("\(what) from \(source.name) has spaces or characters a token cannot have: set it to the token alone")
        }
        return token
    }
}
