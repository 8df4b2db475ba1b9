/// One routing rule: which events, under which conditions, start which agent with which prompt.
/// Every condition given must hold; a condition left out matches anything.
public struct RuleSettings: Sendable {
    public static let knownReviewStates: Set<String> = ["approved", "changes_requested", "commented"]

    public var name: String
    public var agent: String
    public var events: Set<EventKind>
    public var actions: Set<String>
    public var forges: Set<String>
    public var repos: [String]
    public var pullRequest: Bool?
    /// Any of these labels is present on the issue/PR.
    public var labels: Set<String>
    /// The event added one of these labels.
    public var labelAdded: Set<String>
    /// Any of these accounts is assigned.
    public var assignees: Set<String>
    /// The comment/review body mentions the agent.
    public var mention: Bool
    public var reviewStates: Set<String>
    /// Only these senders may trigger this rule (on top of the global allow list).
    public var senders: Set<String>
    public var prompt: String
    /// The agent's feedback settings with this rule's `feedback:` keys over them.
    public var feedback = FeedbackSettings()

    public init(name: String, agent: String, events: Set<EventKind>, prompt: String) {
        self.name = name
        self.agent = agent
        self.events = events
        self.actions = []
        self.forges = []
        self.repos = []
        self.labels = []
        self.labelAdded = []
        self.assignees = []
        self.mention = false
        self.reviewStates = []
        self.senders = []
        self.prompt = prompt
    }

    init(_ node: ConfigNode) throws(ConfigError) {
        _ = try node.mapping(allowed: [
            "name", "agent", "events", "actions", "forges", "repos", "pull_request", "labels", "label_added", "assignees", "mention",
            "review_states", "senders", "prompt", "feedback",
        ])
        let agent = try node.child("agent").requiredString()
        let names = try node.child("events").strings()
        let known = EventKind.routed.map(\.name).joined(separator: ", ")
        guard !names.isEmpty else {
            throw node.child("events").error("is required: a list of event kinds (\(known))")
        }
        if let bad = names.first(where: { !EventKind(name: $0).isRouted }) {
            throw node.child("events").error("unknown event kind '\(bad)' (known: \(known))")
        }
        self.init(
            name: try node.child("name").string(default: node.path), agent: agent, events: Set(names.map(EventKind.init(name:))),
            prompt: try node.child("prompt").requiredString())
        actions = Set(try node.child("actions").strings())
        forges = Set(try node.child("forges").strings())
        if let bad = forges.first(where: { Forge(rawValue: $0) == nil }) {
            throw node.child("forges").error("unknown forge '\(bad)' (known: forgejo, gitea, github)")
        }
        repos = try node.child("repos").strings()
        pullRequest = node.child("pull_request").isMissing ? nil : try node.child("pull_request").bool(default: false)
        labels = Set(try node.child("labels").strings().map { $0.lowercased() })
        labelAdded = Set(try node.child("label_added").strings().map { $0.lowercased() })
        assignees = Set(try node.child("assignees").strings().map { $0.lowercased() })
        mention = try node.child("mention").bool(default: false)
        reviewStates = Set(try node.child("review_states").strings())
        if let bad = reviewStates.first(where: { !Self.knownReviewStates.contains($0) }) {
            throw node.child("review_states").error("unknown review state '\(bad)' (known: approved, changes_requested, commented)")
        }
        senders = Set(try node.child("senders").strings().map { $0.lowercased() })
    }
}
