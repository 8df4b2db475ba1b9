import Foundation
import Shared
import Testing

@testable import Producer

@Suite(.timeLimit(.minutes(5))) struct RoutingTests {
    static let yaml = """
        forges:
          github: {secret_env: GH}
        senders:
          allow: [alice, bob, carol]
        bots: [forge-admin-bot]
        agents:
          boss: {image: agent:1}
          dev: {image: agent:1, bot_login: dev-bot, mentions: ["@dev", "@developer"]}
          reviewer: {image: agent:1}
        rules:
          - name: triage
            agent: boss
            events: [issues]
            actions: [opened, labeled]
            labels: [triage]
            prompt: "Triage {{repo}}#{{number}}: {{title}}"
          - name: mention-dev
            agent: dev
            events: [issue_comment, pull_request_review_comment]
            mention: true
            prompt: "{{sender}} says: {{comment}}"
          - name: changes-requested
            agent: dev
            events: [pull_request_review]
            review_states: [changes_requested]
            prompt: "Address the review on {{url}}"
          - name: review-new-prs
            agent: reviewer
            events: [pull_request]
            actions: [opened, synchronize]
            repos: ["acme/*"]
            senders: [alice]
            prompt: "Review {{kind_label}} {{number}} <{{url}}> & more"
          - name: assigned-to-dev
            agent: dev
            events: [issues]
            actions: [assigned]
            assignees: [dev-bot]
            prompt: "You were assigned {{number}}"
        """

    static func router() throws -> EventRouter {
        try EventRouter(config: try AppConfig.parse(yaml: yaml, environment: ["GH": "x"]))
    }

    static func event(
        _ kind: String, _ action: String, repo: String = "acme/app", number: Int = 3, sender: String = "alice", pr: Bool = false,
        labels: [String] = [], added: [String] = [], assignee: String? = nil, comment: String? = nil, review: String? = nil
    ) -> ForgeEvent {
        ForgeEvent(
            forge: .github, kind: EventKind(name: kind), action: action, repository: repo, number: number, isPullRequest: pr, sender: sender,
            labels: labels,
            labelsAdded: added, assignees: assignee.map { [$0] } ?? [], assigneeAdded: assignee, comment: comment, reviewState: review,
            url: "https://x/\(number)", title: "T", body: nil, merged: false, state: "open")
    }

    @Test func labelRule() throws {
        let r = try Self.router()
        #expect(r.route(Self.event("issues", "opened", labels: ["Triage"])).jobs.map(\.agent) == ["boss"])
        #expect(r.route(Self.event("issues", "opened", labels: ["Triage"])).jobs.first?.prompt == "Triage acme/app#3: T")
        #expect(r.route(Self.event("issues", "opened", labels: ["bug"])).jobs.isEmpty)
        #expect(r.route(Self.event("issues", "closed", labels: ["triage"])).jobs.isEmpty)
    }

    @Test func mentionRule() throws {
        let r = try Self.router()
        #expect(r.route(Self.event("issue_comment", "created", comment: "hey @dev, can you fix it?")).jobs.map(\.agent) == ["dev"])
        #expect(r.route(Self.event("issue_comment", "created", comment: "@DEVELOPER look")).jobs.map(\.agent) == ["dev"])
        #expect(r.route(Self.event("issue_comment", "created", comment: "ask @devops or mail me@dev.io")).jobs.isEmpty)
        #expect(r.route(Self.event("issue_comment", "created", comment: "no mention")).ignored?.contains("no rule matches") == true)
    }

    @Test func reviewStateRule() throws {
        let r = try Self.router()
        #expect(r.route(Self.event("pull_request_review", "submitted", pr: true, review: "changes_requested")).jobs.map(\.agent) == ["dev"])
        #expect(r.route(Self.event("pull_request_review", "submitted", pr: true, review: "approved")).jobs.isEmpty)
    }

    @Test func repoGlobAndPerRuleSenders() throws {
        let r = try Self.router()
        let ok = r.route(Self.event("pull_request", "opened", pr: true))
        #expect(ok.jobs.map(\.agent) == ["reviewer"])
        #expect(ok.jobs.first?.prompt == "Review pull request 3 <https://x/3> & more", "prompts are text, not HTML-escaped")
        #expect(r.route(Self.event("pull_request", "opened", repo: "other/app", pr: true)).jobs.isEmpty)
        #expect(r.route(Self.event("pull_request", "opened", sender: "bob", pr: true)).jobs.isEmpty)
    }

    @Test func allowListAndLoopGuard() throws {
        let r = try Self.router()
        let stranger = r.route(Self.event("issue_comment", "created", sender: "mallory", comment: "@dev rm -rf"))
        #expect(stranger.jobs.isEmpty && stranger.ignored == "sender 'mallory' is not on senders.allow")
        let bot = r.route(Self.event("issue_comment", "created", sender: "dev-bot", comment: "@dev I did it"))
        #expect(bot.jobs.isEmpty && bot.ignored?.contains("loop guard") == true)
        let globalBot = r.route(Self.event("issue_comment", "created", sender: "Forge-Admin-Bot", comment: "@dev"))
        #expect(globalBot.jobs.isEmpty)
    }

    @Test func assigneeRuleAndSeveralAgents() throws {
        let r = try Self.router()
        #expect(r.route(Self.event("issues", "assigned", assignee: "dev-bot")).jobs.map(\.agent) == ["dev"])
        // One event can start several agents, one job each.
        let both = r.route(Self.event("issues", "labeled", labels: ["triage"], assignee: "dev-bot"))
        #expect(both.jobs.map(\.agent) == ["boss"])
        let multi = try EventRouter(
            config: try AppConfig.parse(
                yaml: """
                    agents: {a: {image: i}, b: {image: i}}
                    rules:
                      - {agent: a, events: [issues], prompt: x}
                      - {agent: a, events: [issues], prompt: duplicate for a}
                      - {agent: b, events: [issues], prompt: y}
                    """))
        #expect(multi.route(Self.event("issues", "opened")).jobs.map(\.agent) == ["a", "b"])
    }

    @Test func closingDropsEverySessionOfTheIssue() throws {
        let r = try Self.router()
        let closed = r.route(Self.event("pull_request", "closed", number: 9, pr: true))
        #expect(closed.dropSessions == ["boss:acme/app:9", "dev:acme/app:9", "reviewer:acme/app:9"])
    }

    @Test func notRoutedKinds() throws {
        var push = Self.event("push", "")
        push.number = nil
        #expect(try Self.router().route(push).ignored == "event 'push' is not routed")
    }

    @Test(arguments: [
        ("rules: [{agent: ghost, events: [issues], prompt: x}]\nagents: {dev: {image: i}}", "rules[0].agent: unknown agent 'ghost'"),
        ("agents: {dev: {image: i}}\nrules: [{agent: dev, events: [isues], prompt: x}]", "rules[0].events: unknown event kind 'isues'"),
        ("agents: {dev: {image: i}}\nrules: [{agent: dev, events: [issues]}]", "rules[0].prompt: is required"),
        ("agents: {dev: {image: i, user: '1000'}}", "agents.dev.user: must be uid:gid"),
        ("agents: {dev: {}}", "agents.dev.image: is required"),
        ("agents: {Dev: {image: i}}", "agents.Dev: agent names must be lower-case"),
        ("forges: {github: {}}", "forges.github: no secret"),
        ("forges: {github: {secret_env: NOPE}}", "forges.github.secret_env[0]: environment variable NOPE is not set"),
        ("forges: {gitlab: {secret_env: X}}", "gitlab: unknown key"),
        ("redis: {url: 'http://x'}", "redis.url: invalid Redis URL"),
        ("queue: {lease: 10s, heartbeat: 8s}", "queue.heartbeat: must be at most half"),
        ("queue: {retry_base: soon}", "queue.retry_base: must be a duration"),
        ("prodcer: {}", "prodcer: unknown key"),
        ("producer: {listen: 'localhost'}", "producer.listen: must be host:port"),
        ("producer: {redis_connections: 0}", "producer.redis_connections: must be between 1 and 64, got 0"),
        ("rules: [1", "not valid YAML"),
        ("redis: {sentinel: {addresses: ['127.0.0.1:26379']}}", "redis.sentinel.master_name: is required"),
        ("redis: {sentinel: {master_name: m}}", "redis.sentinel.addresses: is required"),
        ("redis: {sentinel: {master_name: m, addresses: ['127.0.0.1']}}", "redis.sentinel.addresses[0]: must be a sentinel's host:port"),
        ("redis: {sentinel: {master_name: m, addresses: ['a:1'], username: u}}", "redis.sentinel.username: needs a password too"),
        ("redis: {sentinel: {master_name: m, addresses: ['a:1'], password_env: NOPE}}", "redis.sentinel.password_env: environment variable NOPE"),
        ("redis: {replicas_ack: 20}", "redis.replicas_ack: must be between 0 and 16"),
        ("redis: {replicas_ack_timeout: 5s}", "redis.replicas_ack_timeout: must be at most 2s"),
        ("dashboard: {password_env: A, password_file: b}", "dashboard: set one of password_env and password_file"),
        (
            "redis: {sentinel: {master_name: m, addresses: ['a:1'], password_env: A, password_file: b}}",
            "redis.sentinel: set one of password_env and password_file, not both"
        ),
        (
            "redis: {sentinel: {master_name: m, addresses: ['a:1'], password_file: /nonexistent/pw}}",
            "redis.sentinel.password_file: cannot read the sentinels' password file /nonexistent/pw"
        ),
        ("dashboard: {base_path: 'a b'}", "dashboard.base_path: must be a URL path"),
        (
            "agents: {dev: {image: i}}\nrules: [{agent: dev, events: [issues], review_states: [rejected], prompt: x}]",
            "unknown review state 'rejected'"
        ),
    ])
    func invalidConfigNamesKeyAndProblem(yaml: String, expected: String) {
        #expect {
            let config = try AppConfig.parse(yaml: yaml, file: "test.yaml", environment: [:])
            _ = try EventRouter(config: config, file: "test.yaml")
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("test.yaml: ") && text.contains(expected)
        }
    }

    @Test func unknownTemplateVariableIsAConfigError() throws {
        let config = try AppConfig.parse(yaml: "agents: {dev: {image: i}}\nrules: [{agent: dev, events: [issues], prompt: 'Fix {{titel}}'}]")
        #expect { try EventRouter(config: config, file: "c.yaml") } throws: {
            "\($0)".hasPrefix("c.yaml: rules[0].prompt: unknown template variable 'titel' (known: agent, forge,")
        }
    }

    @Test func invalidTemplateIsAConfigError() throws {
        let config = try AppConfig.parse(yaml: "agents: {dev: {image: i}}\nrules: [{agent: dev, events: [issues], prompt: '{{#open}}x'}]")
        #expect { try EventRouter(config: config, file: "c.yaml") } throws: {
            "\($0)".hasPrefix("c.yaml: rules[0].prompt: invalid mustache template")
        }
    }

    /// Plain templates (text and `{{name}}` variables) render without swift-mustache; the text must be the same as
    /// swift-mustache's for every variable, and every other template must still go through swift-mustache.
    @Test func plainTemplatesRenderAsMustacheDoes() throws {
        let names = EventRouter.PromptContext.names
        let plain = [
            names.map { "\($0)={{\($0)}}" }.joined(separator: "\n"),
            "{{ sender }} says {{{comment}}} on {{&url}}: {{missing}}.",
            "no variables at all }",
            "{{comment}}{{comment}}",
            "",
        ]
        let events = [
            Self.event("issue_comment", "created", pr: true, labels: ["bug", "ui"], assignee: "dev-bot", comment: "hi <b>&amp;</b> \"q\" 😀"),
            Self.event("pull_request_review", "submitted", review: "approved"),
        ]
        for source in plain {
            let template = try PromptTemplate(source)
            #expect(template.plain != nil, "\(source)")
            for e in events {
                let context = EventRouter.PromptContext(event: e, agent: "dev")
                #expect(template.render(context) == template.renderWithMustache(context), "\(source)")
            }
        }
        #expect(try PromptTemplate("{{sender}}").render(.init(event: events[0], agent: "dev")) == "alice")
        #expect(try PromptTemplate("{{number}} {{is_pull_request}} {{merged}}").render(.init(event: events[0], agent: "dev")) == "3 true false")
        let other = [
            "{{#is_pull_request}}PR{{/is_pull_request}}", "{{^labels}}none{{/labels}}", "{{! comment }}x", "{{=<% %>=}}<% sender %>",
            "{{> partial}}", "{{repo.name}}", "{{ uppercased(sender) }}", "{{ na-me }}",
        ]
        for source in other {
            let template = try PromptTemplate(source)
            #expect(template.plain == nil, "\(source)")
            let context = EventRouter.PromptContext(event: events[0], agent: "dev")
            #expect(template.render(context) == template.renderWithMustache(context))
        }
        #expect(try PromptTemplate("{{#is_pull_request}}PR {{number}}{{/is_pull_request}}").render(.init(event: events[0], agent: "dev")) == "PR 3")
    }

    @Test(arguments: [
        ("application/json", true), ("Application/JSON", true), ("application/json; charset=utf-8", true), (" application/json ;x", true),
        ("application/jsonx", false), ("application/json-patch+json", false), ("text/json", false), ("", false), ("application/\u{0F}son", false),
    ])
    func contentTypeCheck(value: String, isJSON: Bool) {
        #expect(WebhookHandler.isJSON(contentType: value) == isJSON)
    }
}

@Suite struct EventKindTests {
    @Test func routedKindsRoundTripByName() {
        for kind in EventKind.routed {
            #expect(EventKind(name: kind.name) == kind)
            #expect(kind.isRouted)
        }
        #expect(EventKind(name: "push") == .other("push"))
        #expect(!EventKind(name: "push").isRouted)
        #expect(EventKind.issues.isSubject && EventKind.pullRequest.isSubject && !EventKind.issueComment.isSubject)
    }
}

/// Secrets named by `<name>_env` / `<name>_file`: read from where the config says, errors naming the key, never the
/// value.
@Suite struct SecretSettingsTests {
    func dashboardPassword(_ yaml: String, environment: [String: String] = [:]) throws -> String? {
        try AppConfig.parse(yaml: yaml, file: "test.yaml", environment: environment).dashboard.password(environment: environment, file: "test.yaml")
    }

    @Test func theDashboardPasswordComesFromTheEnvironmentOrAFile() throws {
        #expect(try dashboardPassword("dashboard: {password_env: PW}", environment: ["PW": "correct horse battery"]) == "correct horse battery")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "from a file, long enough\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try dashboardPassword("dashboard: {password_file: '\(file)'}") == "from a file, long enough")
        #expect(try dashboardPassword("dashboard: {read_only: true}") == nil)
    }

    @Test func dashboardPasswordErrorsNameTheKeyNeverTheValue() {
        func problem(_ yaml: String, _ environment: [String: String] = [:]) -> String {
            do {
                _ = try dashboardPassword(yaml, environment: environment)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let short = problem("dashboard: {password_env: PW}", ["PW": "hunter2"])
        #expect(short.contains("dashboard.password_env") && short.contains("shorter than 12") && !short.contains("hunter2"), "\(short)")
        let unset = problem("dashboard: {password_env: PW}")
        #expect(unset.contains("dashboard.password_env") && unset.contains("environment variable PW is not set"), "\(unset)")
        let none = problem("dashboard: {listen: '127.0.0.1:9191'}")
        #expect(none.contains("need a password") && none.contains("read_only: true"), "\(none)")
        let missing = problem("dashboard: {password_file: /nonexistent/pw}")
        #expect(missing.contains("dashboard.password_file") && missing.contains("/nonexistent/pw"), "\(missing)")
    }
}
