import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared
import TestSupport
import Testing
import WorkerCore

/// The status comment's text: every state, and agent text that must stay inert.
@Suite struct StatusCommentTests {
    static let settings = FeedbackSettings()

    @Test func everyStateSaysWhatHappened() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var job = ["agent": "dev", "attempts": "1", "max_attempts": "5", "status": "running"]
        var text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.hasPrefix("<!-- forge-hooks job=j1 agent=dev -->\n"))
        #expect(text.contains("**dev** is working on this — job `j1`, attempt 1/5."))

        job["status"] = "failed"
        job["retry_at"] = String(Int64(now.timeIntervalSince1970 * 1000) + 30_000)
        job["error"] = "exit code 1: boom"
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("attempt 1/5 of job `j1` failed. Retrying at "), "\(text)")
        #expect(text.contains("(in 30 s)") && text.contains("exit code 1: boom"))

        job = [
            "agent": "dev", "attempts": "2", "status": "succeeded", "duration_ms": "133000", "num_turns": "5", "cost_usd": "0.04231",
            "session_id": "0b8a6d1e-4c1f-4d59-9a55-3f0c6a1f2b7e", "result": "Fixed the checkout.",
        ]
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("finished job `j1` — in 2 min 13 s, 5 turns, $0.0423, session `0b8a6d1e-4c1f-4d59-9a55-3f0c6a1f2b7e`."), "\(text)")
        #expect(text.contains("Fixed the checkout."))
        var noCost = Self.settings
        noCost.includeCost = false
        #expect(!StatusComment.render(job, id: "j1", settings: noCost, defaultMaxAttempts: 3, now: now).contains("$"))
        // A resumed session: the turn's own cost first, the session's total beside it; denials are said.
        job["resumed_from"] = job["session_id"]
        job["session_cost_usd"] = "0.31992"
        job["cost_usd"] = "0.10961"
        job["permission_denials"] = "2"
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("5 turns, $0.1096 (session so far $0.3199), 2 tool calls denied, session `"), "\(text)")
        job["cost_usd"] = nil
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("session so far $0.3199") && !text.contains("$0.1096"), "\(text)")
        job["session_cost_usd"] = nil
        job["resumed_from"] = nil
        job["permission_denials"] = nil
        job["cost_usd"] = "0.04231"

        job = ["agent": "dev", "attempts": "3", "status": "dead", "error": "timed out"]
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("gave up on job `j1` after 3 attempts") && text.contains("hooksctl requeue j1"))

        job = ["agent": "dev", "attempts": "1", "status": "queued", "error": "worker w1 stopped during attempt 1 (lease expired)"]
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("will try again — job `j1`, attempt 2/3 is queued") && text.contains("worker w1 stopped"))

        job["feedback_link"] = "https://hooks.example/dashboard/jobs/j1"
        text = StatusComment.render(job, id: "j1", settings: Self.settings, defaultMaxAttempts: 3, now: now)
        #expect(text.contains("[Job details](https://hooks.example/dashboard/jobs/j1)"))
    }

    /// Agent text cannot ping, trigger agents, render HTML or Markdown, break out of its block, or grow the comment.
    @Test func agentTextIsInert() {
        let hostile = """
            @dev please run again @boss
            <img src=x onerror=alert(1)> <!-- forge-hooks job=other agent=dev -->
            ````
            # heading [link](http://evil) ![pixel](http://evil/p.png) #12
            \u{202E}reversed\u{7}bell\u{200B}\u{2028}\u{FEFF}@\u{2060}\u{2060}x
            """
        let job = ["agent": "dev", "attempts": "1", "status": "succeeded", "result": hostile + String(repeating: "x", count: 5000)]
        let text = StatusComment.render(job, id: "j1", settings: FeedbackSettings(), defaultMaxAttempts: 3)
        // Mentions broken by a word joiner: no `@dev` / `@boss` left anywhere.
        #expect(!text.contains("@dev") && !text.contains("@boss") && text.contains("@\u{2060}dev"))
        // Inside a fence longer than any backtick run in the text.
        let lines = text.components(separatedBy: "\n")
        let open = lines.firstIndex { $0.hasPrefix("`````") }
        #expect(open != nil && lines[open!] == "`````text", "\(lines)")
        #expect(lines.last(where: { $0.hasPrefix("`") }) == "`````")
        #expect(!text.contains("\u{202E}") && !text.contains("\u{7}") && !text.contains("\u{200B}") && !text.contains("\u{FEFF}"))
        #expect(!text.contains("\u{2060}\u{2060}"))  // its own joiners dropped, then one after each @
        #expect(text.contains("… (cut at \(StatusComment.excerptLimit) characters)"))
        #expect(text.count < 2500)
        // The only marker is the first line.
        #expect(text.hasPrefix(StatusComment.marker(job: "j1", agent: "dev")))
    }

    @Test func rateLimitWaits() {
        var headers = HTTPHeaders([("Retry-After", "7")])
        #expect(ForgeAPIClientTestHooks.delay(429, headers) == .seconds(7))
        #expect(ForgeAPIClientTestHooks.delay(403, headers) == .seconds(7))  // GitHub's secondary limits
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        headers = HTTPHeaders([("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1800000042")])
        #expect(ForgeAPIClientTestHooks.delay(403, headers, now: now) == .seconds(42))
        headers = HTTPHeaders([("Retry-After", "Fri, 15 Jan 2027 08:00:10 GMT")])
        let date = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15 08:00:00 UTC
        #expect(ForgeAPIClientTestHooks.delay(429, headers, now: date) == .seconds(10))
        // A plain 403 (no access) is not a rate limit; a 429 without headers waits a minute; never over an hour.
        #expect(ForgeAPIClientTestHooks.delay(403, HTTPHeaders()) == nil)
        #expect(ForgeAPIClientTestHooks.delay(429, HTTPHeaders()) == .seconds(60))
        #expect(ForgeAPIClientTestHooks.delay(429, HTTPHeaders([("Retry-After", "999999")])) == .seconds(3600))
        // Nonsense from a proxy must not trap the worker.
        #expect(ForgeAPIClientTestHooks.delay(429, HTTPHeaders([("Retry-After", "nan")])) == .seconds(60))
        #expect(ForgeAPIClientTestHooks.delay(403, HTTPHeaders([("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "inf")])) == .seconds(60))
        #expect(ForgeAPIClientTestHooks.delay(429, HTTPHeaders([("Retry-After", "-5")])) == .seconds(1))
        // GitHub's secondary limit may say so only in its message.
        #expect(
            ForgeAPIClientTestHooks.delay(403, HTTPHeaders(), message: "You have exceeded a secondary rate limit. Please wait a few minutes")
                == .seconds(60))
    }
}

/// `forges.<f>.api`, `agents.<a>.feedback`, `rules[].feedback`: defaults, overrides, and errors that say what to do.
@Suite struct FeedbackConfigTests {
    static func config(_ extra: String, forgeAPI: String = "api: {url: \"https://git.example.com\", token_env: FORGE_TOKEN}") -> String {
        """
        forges:
          forgejo: {secret_env: SECRET, \(forgeAPI)}
        agents:
          dev:
            image: agent:1
            bot_login: dev-bot
            credentials_dir: /srv/a/dev/config
            work_dir: /srv/a/dev/work
        \(extra)
        """
    }

    @Test func defaultsAndOverrides() throws {
        let yaml = Self.config(
            """
              reviewer:
                image: agent:1
                credentials_dir: /srv/a/rev/config
                work_dir: /srv/a/rev/work
                feedback: {reaction: rocket, include_cost: false, link: "https://hooks.example/dashboard/jobs/{{job}}"}
            rules:
              - {agent: dev, events: [issue_comment], prompt: x}
              - {agent: reviewer, events: [pull_request], prompt: x, feedback: {status_comment: false}}
              - {agent: dev, events: [issues], prompt: x, feedback: {reaction: false}}
            """)
        let config = try AppConfig.parse(yaml: yaml, environment: ["SECRET": "s", "FORGE_TOKEN": "t0k"], resolveTokens: true)
        #expect(config.forges[.forgejo]?.api?.url == "https://git.example.com/api/v1")
        #expect(config.rules[0].feedback.jobField == "reaction=eyes;comment=1;cost=1")
        #expect(config.rules[1].feedback.jobField == "reaction=rocket;comment=0;cost=0")
        #expect(config.rules[1].feedback.link(job: "j1", agent: "reviewer") == "https://hooks.example/dashboard/jobs/j1")
        #expect(config.rules[2].feedback.reaction == nil && config.rules[2].feedback.statusComment)
        #expect(config.forgeTokens.token(agent: "dev", forge: .forgejo) == "t0k")
        #expect(!"\(config.forgeTokens)".contains("t0k"))
        // Producers and dashboards do not read tokens.
        #expect(try AppConfig.parse(yaml: yaml, environment: ["SECRET": "s"]).forgeTokens.byForge.isEmpty)
        // Round trip through the job field.
        let read = FeedbackSettings(jobField: config.rules[1].feedback.jobField)
        #expect(read.reaction == "rocket" && !read.statusComment && !read.includeCost)
    }

    @Test(arguments: [
        ("feedback: {reaction: party}", "unknown reaction 'party'"),
        ("feedback: {link: \"javascript:alert(1)\"}", "must be an http(s) URL"),
        ("feedback: {tokens: {github: {token_env: X}}}", "forges.github.api is not set"),
        ("feedback: {tokens: {forgejo: {token_env: X, token_file: /y}}}", "set one of token_env and token_file"),
        ("feedback: {colour: red}", "unknown key"),
    ])
    func badAgentFeedback(section: String, message: String) {
        let yaml = Self.config("    \(section)\nrules:\n  - {agent: dev, events: [issues], prompt: x}")
        #expect {
            try AppConfig.parse(yaml: yaml, environment: ["SECRET": "s", "FORGE_TOKEN": "t", "X": "x"])
        } throws: { "\($0)".contains(message) }
    }

    @Test func aRuleThatPostsNeedsAToken() throws {
        let yaml = Self.config("rules:\n  - {agent: dev, events: [issues], prompt: x}", forgeAPI: "api: {url: \"https://git.example.com\"}")
        #expect {
            try AppConfig.parse(yaml: yaml, environment: ["SECRET": "s"])
        } throws: { "\($0)".contains("agents.dev.feedback.tokens.forgejo.token_env") }
        // Feedback off for that rule: no token needed.
        let off = Self.config(
            "rules:\n  - {agent: dev, events: [issues], prompt: x, feedback: {reaction: false, status_comment: false}}",
            forgeAPI: "api: {url: \"https://git.example.com\"}")
        #expect(throws: Never.self) { try AppConfig.parse(yaml: off, environment: ["SECRET": "s"]) }
        // A worker with the env var unset is told which one.
        let yaml2 = Self.config("rules:\n  - {agent: dev, events: [issues], prompt: x}")
        #expect {
            try AppConfig.parse(yaml: yaml2, environment: ["SECRET": "s"], resolveTokens: true)
        } throws: { "\($0)".contains("FORGE_TOKEN is not set") }
        // A token from a file made secret has its newline dropped; one with a space inside is refused, unnamed.
        let trimmed = try AppConfig.parse(yaml: yaml2, environment: ["SECRET": "s", "FORGE_TOKEN": "abc123\n"], resolveTokens: true)
        #expect(trimmed.forgeTokens.token(agent: "dev", forge: .forgejo) == "abc123")
        #expect {
            try AppConfig.parse(yaml: yaml2, environment: ["SECRET": "s", "FORGE_TOKEN": "abc 123"], resolveTokens: true)
        } throws: { "\($0)".contains("FORGE_TOKEN has spaces or characters a token cannot have") && !"\($0)".contains("abc") }
        // Gitea and Forgejo need the URL.
        let noURL = Self.config("rules:\n  - {agent: dev, events: [issues], prompt: x}", forgeAPI: "api: {token_env: FORGE_TOKEN}")
        #expect {
            try AppConfig.parse(yaml: noURL, environment: ["SECRET": "s"])
        } throws: { "\($0)".contains("is required for forgejo") }
    }
}

/// Where the API is: https unless on this machine, no credentials in the URL, the usual API root for a bare host.
@Suite struct ForgeAPIURLTests {
    static func parse(_ forge: String, _ api: String) throws -> AppConfig {
        try AppConfig.parse(
            yaml: """
                forges:
                  \(forge): {secret_env: S, api: {\(api)}}
                agents:
                  dev: {image: a, bot_login: dev-bot, feedback: {tokens: {\(forge): {token_env: T}}}}
                """, environment: ["S": "s"])
    }

    @Test func urls() throws {
        #expect(try Self.parse("github", "url: \"https://github.example.com\"").forges[.github]?.api?.url == "https://github.example.com/api/v3")
        #expect(try Self.parse("github", "token_env: T").forges[.github]?.api?.url == "https://api.github.com")
        #expect(try Self.parse("gitea", "url: \"https://git.example.com/\"").forges[.gitea]?.api?.url == "https://git.example.com/api/v1")
        #expect(try Self.parse("gitea", "url: \"http://127.0.0.1:3000/api/v1\"").forges[.gitea]?.api?.url == "http://127.0.0.1:3000/api/v1")
        #expect { try Self.parse("gitea", "url: \"http://git.example.com\"") } throws: { "\($0)".contains("must be https") }
        #expect { try Self.parse("gitea", "url: \"https://bot:secret@git.example.com\"") } throws: {
            "\($0)".contains("without a query or credentials")
        }
    }

    @Test func aRuleCanClearTheAgentsLink() throws {
        let config = try AppConfig.parse(
            yaml: """
                forges:
                  github: {secret_env: S, api: {token_env: T}}
                agents:
                  dev: {image: a, bot_login: dev-bot, feedback: {link: "https://h.example/{{job}}"}}
                rules:
                  - {agent: dev, events: [issues], prompt: x, feedback: {link: ""}}
                """, environment: ["S": "s"])
        #expect(config.agents["dev"]?.feedback.link != nil && config.rules[0].feedback.link == nil)
    }
}

/// Reaches `ForgeAPIClient`'s header parsing.
enum ForgeAPIClientTestHooks {
    static func delay(_ status: Int, _ headers: HTTPHeaders, message: String = "", now: Date = Date()) -> Duration? {
        ForgeAPIClient.rateLimitDelay(status: status, headers: headers, message: message, now: now)
    }
}
