import Foundation
import Shared
import TestSupport
import Testing

/// The whole system as an operator runs it: real nginx → Producer → Redis → two Workers → real Docker → stub agent,
/// with Forgejo-shaped payloads signed like Forgejo signs them. Every check reads Redis as an operator would, or
/// uses `hooksctl --json`.
@Suite(.serialized, .timeLimit(.minutes(5))) struct EndToEndTests {
    static let secret = "e2e-forgejo-secret"

    final class Stack: @unchecked Sendable {
        let redis: RedisServer
        let root: URL
        let client: RedisClient
        var processes: [ChildProcess] = []
        var nginx: NginxServer?
        /// Set by `enableDashboard()`: the dashboard is started with the stack, behind nginx at /dashboard/.
        var dashboardPort: Int?
        /// Set by `enableFeedback()`: worker i serves /metrics on `workerMetricsPorts[i - 1]`.
        var workerMetricsPorts: [Int] = []
        let httpPort: Int
        let opsPort: Int
        let prefix: String
        let configPath: String
        let bin = DockerFixture.repositoryRoot.appendingPathComponent(".build/debug").path

        /// `image` (and `agentYAML`, extra lines of each agent's settings) choose the agent: the stub by default.
        init(image: String = DockerFixture.image, agentYAML: String = "") async throws {
            try await DockerFixture.ready()
            redis = try RedisServer()
            let tag = UUID().uuidString.prefix(8).lowercased()
            prefix = "e2e-\(tag)"
            root = URL(fileURLWithPath: "/tmp/forge-hooks-e2e-\(tag)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try EndToEndTests.secret.write(to: root.appendingPathComponent("secret"), atomically: true, encoding: .utf8)
            httpPort = try freePort()
            opsPort = try freePort()
            var agents = ""
            for name in ["boss", "dev", "reviewer"] {
                agents += """
                      \(name):
                        image: \(image)
                        bot_login: \(name)-bot
                        credentials_dir: \(root.path)/agents/\(name)/config
                        work_dir: \(root.path)/agents/\(name)/work
                        timeout: 30s
                    \(agentYAML)
                    """
            }
            let yaml = """
                redis: {url: "\(redis.url)"}
                queue: {retry_base: 500ms, lease: 3s, heartbeat: 1s}
                producer: {listen: "127.0.0.1:\(httpPort)", ops_listen: "127.0.0.1:\(opsPort)"}
                worker: {container_prefix: \(prefix), shutdown_grace: 5s}
                forges:
                  forgejo: {secret_file: "\(root.path)/secret"}
                agents:
                \(agents)
                rules:
                  - {agent: boss, events: [issues], actions: [opened, labeled], labels: [triage], prompt: "Triage {{repo}}#{{number}}: {{title}}"}
                  - {agent: dev, events: [issue_comment], mention: true, prompt: "{{sender}}: {{comment}}"}
                  - {agent: dev, events: [pull_request_review], review_states: [changes_requested], prompt: "Changes requested: {{comment}}"}
                  - {agent: reviewer, events: [pull_request], actions: [opened, synchronize], prompt: "Review {{url}}"}
                """
            configPath = root.appendingPathComponent("config.yaml").path
            try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
            client = RedisClient(configuration: redis.configuration, connections: 2)
        }

        func start() async throws {
            processes.append(try ChildProcess("\(bin)/Producer", ["-c", configPath], output: root.appendingPathComponent("producer.log").path))
            for i in 1...2 { try startWorker(i) }
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline && !canConnect(port: opsPort) { try await Task.sleep(for: .milliseconds(100)) }
            guard canConnect(port: opsPort) else { throw TestSetupError("producer did not start: \(log("producer"))") }
            if let dashboardPort {
                processes.append(
                    try ChildProcess("\(bin)/hooks-dashboard", ["-c", configPath], output: root.appendingPathComponent("dashboard.log").path))
                let deadline = Date().addingTimeInterval(20)
                while Date() < deadline && !canConnect(port: dashboardPort) { try await Task.sleep(for: .milliseconds(100)) }
                guard canConnect(port: dashboardPort) else { throw TestSetupError("dashboard did not start: \(log("dashboard"))") }
            }
            nginx = try NginxServer(upstreamPort: httpPort, dashboardPort: dashboardPort)
        }

        /// Starts worker `i` (`e2e-worker-<i>`, logging to `worker-<i>.log`), appended to `processes`; `start()` starts
        /// 1 and 2. Started again after it stopped, it is the same worker id (its log is appended to).
        @discardableResult
        func startWorker(_ i: Int) throws -> ChildProcess {
            let metrics = workerMetricsPorts.count >= i ? ["--metrics-listen", "127.0.0.1:\(workerMetricsPorts[i - 1])"] : []
            let worker = try ChildProcess(
                "\(bin)/Worker", ["run", "-c", configPath, "--worker-id", "e2e-worker-\(i)", "--host-id", prefix, "--concurrency", "2"] + metrics,
                output: root.appendingPathComponent("worker-\(i).log").path)
            processes.append(worker)
            return worker
        }

        /// Adds a dashboard section (password in a file) to the config; call before `start()`.
        func enableDashboard(password: String) throws {
            let port = try freePort()
            let passwordFile = root.appendingPathComponent("dashboard-password").path
            try password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
            let section = "\ndashboard: {listen: \"127.0.0.1:\(port)\", base_path: /dashboard, password_file: \"\(passwordFile)\"}\n"
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: configPath))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(section.utf8))
            try handle.close()
            dashboardPort = port
        }

        /// Turns forge feedback on (call before `start()`): the forgejo API at `apiURL`; dev and reviewer post with their
        /// own tokens (`dev-token`, `reviewer-token`), boss with the forge's (`boss-token`); dev's comments link to the
        /// dashboard; three attempts per job. Each worker serves /metrics.
        /// With `githubAPIURL`, GitHub webhooks are taken too (same secret), dev answers mentions in review comments, and
        /// posts on GitHub with the same token files.
        func enableFeedback(apiURL: String, githubAPIURL: String? = nil) throws {
            var yaml = try String(contentsOfFile: configPath, encoding: .utf8)
            for name in ["boss", "dev", "reviewer"] {
                try "\(name)-token\n".write(to: root.appendingPathComponent("\(name)-token"), atomically: true, encoding: .utf8)
            }
            yaml = yaml.replacingOccurrences(
                of: "forgejo: {secret_file: \"\(root.path)/secret\"}",
                with: "forgejo: {secret_file: \"\(root.path)/secret\", api: {url: \"\(apiURL)\", token_file: \"\(root.path)/boss-token\"}}")
            yaml = yaml.replacingOccurrences(of: "queue: {retry_base: 500ms,", with: "queue: {max_attempts: 3, retry_base: 500ms,")
            if let githubAPIURL {
                yaml = yaml.replacingOccurrences(
                    of: "  forgejo: {secret_file:",
                    with:
                        "  github: {secret_file: \"\(root.path)/secret\", api: {url: \"\(githubAPIURL)\", token_file: \"\(root.path)/boss-token\"}}\n  forgejo: {secret_file:"
                )
                yaml = yaml.replacingOccurrences(
                    of: "  - {agent: dev, events: [issue_comment], mention: true, prompt: \"{{sender}}: {{comment}}\"}",
                    with: "  - {agent: dev, events: [issue_comment, pull_request_review_comment], mention: true, prompt: \"{{sender}}: {{comment}}\"}"
                )
            }
            for name in ["dev", "reviewer"] {
                let link = name == "dev" ? ", link: \"http://127.0.0.1/dashboard/jobs/{{job}}\"" : ""
                let tokenFile = "{token_file: \"\(root.path)/\(name)-token\"}"
                let tokens = "forgejo: \(tokenFile)" + (githubAPIURL != nil ? ", github: \(tokenFile)" : "")
                yaml = yaml.replacingOccurrences(
                    of: "    bot_login: \(name)-bot\n", with: "    bot_login: \(name)-bot\n    feedback: {tokens: {\(tokens)}\(link)}\n")
            }
            try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
            workerMetricsPorts = [try freePort(), try freePort()]
        }

        func log(_ name: String) -> String { (try? String(contentsOf: root.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? "" }

        /// POSTs through nginx, signed and headed like Forgejo (or, with `forge: "github"`, like GitHub). Returns (HTTP
        /// status, body).
        func post(event: String, payload: [String: Any], delivery: String = UUID().uuidString, forge: String = "forgejo") async throws -> (
            Int, String
        ) {
            let body = try JSONSerialization.data(withJSONObject: payload)
            let file = root.appendingPathComponent("payload-\(UUID().uuidString).json")
            try body.write(to: file)
            let headers =
                forge == "github"
                ? "-H 'X-GitHub-Event: \(event)' -H 'X-GitHub-Delivery: \(delivery)'"
                : "-H 'X-Forgejo-Event: \(event)' -H 'X-Gitea-Event: \(event)' -H 'X-Forgejo-Delivery: \(delivery)' "
                    + "-H \"X-Forgejo-Signature: $sig\" -H \"X-Gitea-Signature: $sig\""
            let (code, out) = try await DockerFixture.shell(
                """
                sig=$(openssl dgst -sha256 -hmac '\(EndToEndTests.secret)' -hex < '\(file.path)' | awk '{print $NF}')
                curl -s -w '\\n%{http_code}' -X POST http://127.0.0.1:\(nginx!.port)/webhooks/\(forge) -H 'Content-Type: application/json' \
                  \(headers) -H "X-Hub-Signature-256: sha256=$sig" --data-binary @'\(file.path)'
                """)
            guard code == 0 else { throw TestSetupError("curl failed: \(out)") }
            let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }

        func jobIDs(_ body: String) -> [String] {
            ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["jobs"] as? [String] ?? []
        }

        func waitDone(_ id: String, timeout: Duration = .seconds(60)) async throws -> [String: String] {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let job = try await client.send("HGETALL", "hooks:job:\(id)").hash ?? [:]
                if ["succeeded", "dead"].contains(job["status"] ?? "") { return job }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw TestSetupError("job \(id) did not finish; worker logs:\n\(log("worker-1").suffix(2000))\n\(log("worker-2").suffix(2000))")
        }

        func hooksctl(_ args: [String]) async throws -> Any {
            let (code, out) = try await DockerFixture.shell(
                "'\(bin)/hooksctl' " + (args + ["--redis", redis.url]).map { "'\($0)'" }.joined(separator: " "))
            guard code == 0 else { throw TestSetupError("hooksctl \(args) failed (\(code)): \(out)") }
            return try JSONSerialization.jsonObject(with: Data(out.utf8))
        }

        func stop() async {
            for p in processes.reversed() { p.terminate() }
            nginx?.stop()
            let (_, ids) = (try? await DockerFixture.shell("docker ps -aq --filter label=forge-hooks.host=\(prefix)")) ?? (0, "")
            for id in ids.split(separator: "\n") { _ = try? await DockerFixture.shell("docker rm -f \(id)") }
            client.shutdown()
            redis.stop()
            try? FileManager.default.removeItem(at: root)
        }
    }

    static var repository: [String: Any] { ["id": 9, "full_name": "acme/shop", "name": "shop", "owner": ["login": "acme"]] }
    static var alice: [String: Any] { ["id": 2, "login": "alice", "username": "alice"] }

    static func issue(_ number: Int, labels: [String] = [], state: String = "open") -> [String: Any] {
        [
            "id": 100 + number, "number": number, "title": "Checkout fails", "body": "Steps to reproduce…", "state": state,
            "labels": labels.map { ["name": $0] }, "assignees": [] as [Any], "user": alice,
            "html_url": "http://forge.local/acme/shop/issues/\(number)",
        ]
    }

    static func comment(_ number: Int, _ text: String, isPull: Bool = false) -> [String: Any] {
        var issue = issue(number)
        if isPull { issue["pull_request"] = ["merged": false] as [String: Any] }
        return [
            "action": "created", "issue": issue, "is_pull": isPull, "repository": repository, "sender": alice,
            "comment": ["id": Int.random(in: 1...99999), "body": text, "user": alice, "html_url": "http://forge.local/acme/shop/issues/\(number)#c"],
        ]
    }

    static func pullRequest(_ number: Int) -> [String: Any] {
        [
            "id": 500 + number, "number": number, "title": "Fix checkout", "body": "Fixes #1", "state": "open", "labels": [] as [Any],
            "assignees": [] as [Any], "user": alice, "html_url": "http://forge.local/acme/shop/pulls/\(number)", "merged": false,
        ]
    }

    @Test func forgeEventsDriveAgentsThatRememberTheirConversations() async throws {
        let stack = try await Stack()
        do {
            try await stack.start()
            // 1. An issue opened with a label → boss runs; its session id is stored.
            let (s1, b1) = try await stack.post(
                event: "issues",
                payload: [
                    "action": "opened", "number": 1, "issue": Self.issue(1, labels: ["triage"]), "repository": Self.repository, "sender": Self.alice,
                ])
            #expect(s1 == 202, "\(b1)")
            let boss = try await stack.waitDone(try #require(stack.jobIDs(b1).first))
            #expect(boss["status"] == "succeeded" && boss["agent"] == "boss", "\(boss)")
            let bossSession = try #require(try await stack.client.send("HGET", "hooks:sessions", "boss:acme/shop:1").string)
            #expect(boss["session_id"] == bossSession)

            // 2. @dev twice → dev runs, then resumes the same session.
            let (_, c1) = try await stack.post(event: "issue_comment", payload: Self.comment(1, "@dev can you fix this?"))
            let dev1 = try await stack.waitDone(try #require(stack.jobIDs(c1).first))
            #expect(dev1["status"] == "succeeded" && dev1["result"]?.contains("earlier turns: 0") == true, "\(dev1)")
            let (_, c2) = try await stack.post(event: "issue_comment", payload: Self.comment(1, "@dev also the cart page please"))
            let dev2 = try await stack.waitDone(try #require(stack.jobIDs(c2).first))
            #expect(dev2["resumed_from"] == dev1["session_id"] && dev2["session_id"] == dev1["session_id"], "\(dev2)")
            #expect(dev2["result"]?.contains("earlier turns: 1") == true, "\(dev2)")

            // 3. A PR opened → reviewer; @dev on the PR; a review requesting changes → dev resumes on the PR's session.
            let (_, p1) = try await stack.post(
                event: "pull_request",
                payload: ["action": "opened", "number": 2, "pull_request": Self.pullRequest(2), "repository": Self.repository, "sender": Self.alice])
            let reviewer = try await stack.waitDone(try #require(stack.jobIDs(p1).first))
            #expect(reviewer["agent"] == "reviewer" && reviewer["status"] == "succeeded")
            let (_, p2) = try await stack.post(event: "issue_comment", payload: Self.comment(2, "@dev please take over this PR", isPull: true))
            let devPR = try await stack.waitDone(try #require(stack.jobIDs(p2).first))
            #expect(devPR["session"] == "dev:acme/shop:2")
            let (s3, p3) = try await stack.post(
                event: "pull_request_rejected",
                payload: [
                    "action": "reviewed", "number": 2, "pull_request": Self.pullRequest(2), "repository": Self.repository, "sender": Self.alice,
                    "review": ["type": "pull_request_review_rejected", "content": "Please add a test"],
                ])
            #expect(s3 == 202, "\(p3)")
            let devReview = try await stack.waitDone(try #require(stack.jobIDs(p3).first))
            #expect(devReview["agent"] == "dev" && devReview["resumed_from"] == devPR["session_id"], "\(devReview)")
            #expect(devReview["result"]?.contains("earlier turns: 1") == true)

            // 4. The same delivery twice → one job.
            let payload = Self.comment(1, "@dev one more thing")
            let (d1, first) = try await stack.post(event: "issue_comment", payload: payload, delivery: "dup-delivery")
            let (d2, second) = try await stack.post(event: "issue_comment", payload: payload, delivery: "dup-delivery")
            #expect(d1 == 202 && d2 == 200 && second.contains("\"duplicate\":true"), "\(second)")
            #expect(stack.jobIDs(first) == stack.jobIDs(second))
            _ = try await stack.waitDone(try #require(stack.jobIDs(first).first))
            // dev ran: two issue comments, the PR comment, the review, and the deduplicated comment once.
            let jobs = try await stack.hooksctl(["jobs", "--agent", "dev", "--json"]) as? [[String: Any]] ?? []
            #expect(jobs.count == 5, "\(jobs.map { $0["id"] ?? "" })")

            // 5. The issue closed → its sessions are dropped; the PR's stay.
            let (s5, b5) = try await stack.post(
                event: "issues",
                payload: [
                    "action": "closed", "number": 1, "issue": Self.issue(1, state: "closed"), "repository": Self.repository, "sender": Self.alice,
                ])
            #expect(s5 == 202 && b5.contains("dropped_sessions"), "\(b5)")
            let sessions = try await stack.client.send("HKEYS", "hooks:sessions").strings ?? []
            #expect(!sessions.contains("boss:acme/shop:1") && !sessions.contains("dev:acme/shop:1"), "\(sessions)")
            #expect(sessions.contains("dev:acme/shop:2") && sessions.contains("reviewer:acme/shop:2"))
            let listed = try await stack.hooksctl(["sessions", "--json"]) as? [[String: Any]] ?? []
            #expect(Set(listed.compactMap { $0["session"] as? String }) == ["dev:acme/shop:2", "reviewer:acme/shop:2"])

            // The operator's status view: two live workers, nothing queued, running or dead.
            let status = try #require(try await stack.hooksctl(["status", "--json"]) as? [String: Any])
            let workers = status["workers"] as? [[String: Any]] ?? []
            #expect(workers.count == 2 && workers.allSatisfy { $0["alive"] as? Bool == true }, "\(workers)")
            #expect(status["dead"] as? Int == 0 && (status["running"] as? [Any])?.isEmpty == true)
        } catch {
            print("producer log:\n\(stack.log("producer").suffix(3000))")
            await stack.stop()
            throw error
        }
        await stack.stop()
    }
}
