import Foundation
import Mustache
import Shared

/// Decides, from the config's rules, which agents an event starts and with which prompt.
struct EventRouter: Sendable {
    struct RoutedJob: Sendable, Equatable {
        let agent: String
        let rule: String
        let prompt: String
        /// The rule's feedback settings, when its forge has an API to post them through; nil = none.
        var feedback: FeedbackSettings? = nil
    }

    struct Decision: Sendable, Equatable {
        var jobs: [RoutedJob] = []
        /// Why nothing was started, when `jobs` is empty.
        var ignored: String?
        /// Sessions to drop (the issue or PR was closed).
        var dropSessions: [String] = []
    }

    private struct CompiledRule: Sendable {
        let settings: RuleSettings
        let template: PromptTemplate
    }

    private let rules: [CompiledRule]
    private let agents: [String: AgentSettings]
    private let allowedSenders: Set<String>
    private let botLogins: Set<String>
    /// Forges with an `api:` section: only their jobs get feedback.
    private let forgesWithAPI: Set<Forge>

    /// Compiles every rule's prompt template. - Throws: `ConfigError` naming the rule whose template is invalid.
    init(config: AppConfig, file: String = "config") throws(ConfigError) {
        var compiled: [CompiledRule] = []
        for (i, rule) in config.rules.enumerated() {
            let template: PromptTemplate
            do {
                template = try PromptTemplate(rule.prompt)
            } catch {
                throw ConfigError(file: file, path: "rules[\(i)].prompt", problem: "invalid mustache template: \(error)")
            }
            // A misspelt variable would render as nothing in every prompt; refuse it at start-up instead.
            if let unknown = template.variables.first(where: { !PromptContext.names.contains($0) }) {
                throw ConfigError(
                    file: file, path: "rules[\(i)].prompt",
                    problem: "unknown template variable '\(unknown)' (known: \(PromptContext.names.joined(separator: ", ")))")
            }
            compiled.append(CompiledRule(settings: rule, template: template))
        }
        rules = compiled
        agents = config.agents
        allowedSenders = config.allowedSenders
        botLogins = config.botLogins
        forgesWithAPI = Set(config.forges.filter { $0.value.api != nil }.keys)
    }

    func route(_ event: ForgeEvent) -> Decision {
        var decision = Decision()
        guard event.kind.isRouted, let number = event.number else {
            decision.ignored = "event '\(event.kind)' is not routed"
            return decision
        }
        if event.isClose {
            decision.dropSessions = agents.keys.sorted().map { SessionKey(agent: $0, repository: event.repository, number: number).description }
        }
        let sender = event.sender.lowercased()
        if botLogins.contains(sender) {
            decision.ignored = "sender '\(event.sender)' is an agent's bot account (loop guard)"
            return decision
        }
        if !allowedSenders.isEmpty && !allowedSenders.contains(sender) {
            decision.ignored = "sender '\(event.sender)' is not on senders.allow"
            return decision
        }
        var started: Set<String> = []
        for rule in rules where !started.contains(rule.settings.agent) && matches(rule.settings, event) {
            started.insert(rule.settings.agent)
            let feedback = forgesWithAPI.contains(event.forge) && rule.settings.feedback.isOn ? rule.settings.feedback : nil
            decision.jobs.append(
                RoutedJob(
                    agent: rule.settings.agent, rule: rule.settings.name, prompt: render(rule.template, event, agent: rule.settings.agent),
                    feedback: feedback))
        }
        if decision.jobs.isEmpty {
            decision.ignored = "no rule matches \(event.kind).\(event.action) on \(event.repository)#\(number) from \(event.sender)"
        }
        return decision
    }

    func matches(_ rule: RuleSettings, _ e: ForgeEvent) -> Bool {
        guard rule.events.contains(e.kind) else { return false }
        if !rule.actions.isEmpty && !rule.actions.contains(e.action) { return false }
        if !rule.forges.isEmpty && !rule.forges.contains(e.forge.rawValue) { return false }
        if !rule.repos.isEmpty && !rule.repos.contains(where: { Self.glob($0, e.repository) }) { return false }
        if let pr = rule.pullRequest, pr != e.isPullRequest { return false }
        if !rule.senders.isEmpty && !rule.senders.contains(e.sender.lowercased()) { return false }
        if !rule.labels.isEmpty && !e.labels.contains(where: { rule.labels.contains($0.lowercased()) }) { return false }
        if !rule.labelAdded.isEmpty && !e.labelsAdded.contains(where: { rule.labelAdded.contains($0.lowercased()) }) { return false }
        if !rule.assignees.isEmpty {
            let assigned = (e.assignees + [e.assigneeAdded].compactMap { $0 }).map { $0.lowercased() }
            if !assigned.contains(where: rule.assignees.contains) { return false }
        }
        if !rule.reviewStates.isEmpty && !(e.reviewState.map(rule.reviewStates.contains) ?? false) { return false }
        if rule.mention {
            let text = e.comment ?? (e.kind.isSubject ? e.body : nil) ?? ""
            let words = agents[rule.agent]?.mentions ?? ["@\(rule.agent)"]
            if !words.contains(where: { Self.mentions(text, $0) }) { return false }
        }
        return true
    }

    /// Whole-word, case-insensitive: `@dev` matches "hey @dev," but not "@devops" or "me@dev.io".
    static func mentions(_ text: String, _ word: String) -> Bool {
        var searchRange = text.startIndex..<text.endIndex
        while let r = text.range(of: word, options: .caseInsensitive, range: searchRange) {
            let before = r.lowerBound == text.startIndex ? nil : text[text.index(before: r.lowerBound)]
            let after = r.upperBound == text.endIndex ? nil : text[r.upperBound]
            let isWordChar: (Character?) -> Bool = { c in c.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "@" } ?? false }
            let dotWord =
                after == "." && r.upperBound < text.endIndex && text.index(after: r.upperBound) < text.endIndex
                && isWordChar(text[text.index(after: r.upperBound)])
            if !isWordChar(before) && !isWordChar(after) && !dotWord { return true }
            searchRange = r.upperBound..<text.endIndex
        }
        return false
    }

    static func glob(_ pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, 1 << 4 /* FNM_CASEFOLD */) == 0
    }

    /// The values a prompt template can use, looked up by name as the template asks for them: a template that reads
    /// two of them costs two lookups, not a dictionary of all of them.
    struct PromptContext: MustacheParent {
        static let names = [
            "agent", "forge", "event", "action", "repo", "owner", "name", "number", "is_pull_request", "kind_label", "sender", "title",
            "body", "comment", "review_state", "url", "labels", "assignees", "merged",
        ]
        let event: ForgeEvent
        let agent: String

        func child(named name: String) -> Any? {
            let e = event
            switch name {
            case "agent": return agent
            case "forge": return e.forge.rawValue
            case "event": return e.kind.name
            case "action": return e.action
            case "repo": return e.repository
            case "owner": return e.owner
            case "name": return e.name
            case "number": return e.number ?? 0
            case "is_pull_request": return e.isPullRequest
            case "kind_label": return e.isPullRequest ? "pull request" : "issue"
            case "sender": return e.sender
            case "title": return e.title ?? ""
            case "body": return e.body ?? ""
            case "comment": return e.comment ?? ""
            case "review_state": return e.reviewState ?? ""
            case "url": return e.url ?? ""
            case "labels": return e.labels.joined(separator: ", ")
            case "assignees": return e.assignees.joined(separator: ", ")
            case "merged": return e.merged
            default: return nil
            }
        }
    }

    func render(_ template: PromptTemplate, _ e: ForgeEvent, agent: String) -> String {
        template.render(PromptContext(event: e, agent: agent))
    }
}
