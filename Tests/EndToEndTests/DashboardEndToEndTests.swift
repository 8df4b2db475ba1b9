import Foundation
import Shared
import TestSupport
import Testing

/// The dashboard on the real stack (nginx → producer → Redis → workers → Docker stub, and nginx → dashboard), looked at
/// by a real headless Chromium: pages show the real jobs, sessions, workers and containers; a running job's output
/// arrives live over SSE; forge text that carries markup stays inert; actions need a sign-in and the form's token.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DashboardEndToEndTests {
    static let password = "e2e dashboard password"
    static let xss = "<script>alert(1)</script><img src=x onerror=alert(2)>"

    static func chromiumBinary() throws -> String {
        for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw TestSetupError("chromium is not installed: run `apt-get install -y chromium` (or `bash .ci/run`, which does)")
    }

    /// The DOM after the page's scripts ran. With `waitForStreams`, Chromium's virtual time waits for open requests
    /// (an EventSource) to end, so live updates that arrive before the stream closes are in the DOM.
    static func dom(_ url: String, waitForStreams: Bool = false) async throws -> String {
        let budget = waitForStreams ? "--virtual-time-budget=60000" : ""
        let (code, out) = try await DockerFixture.shell(
            "timeout 90 '\(try chromiumBinary())' --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \(budget) --dump-dom '\(url)' 2>/dev/null"
        )
        guard code == 0, !out.isEmpty else { throw TestSetupError("chromium failed (\(code)) on \(url): \(out.suffix(500))") }
        return out
    }

    static func curl(_ arguments: String) async throws -> String {
        let (code, out) = try await DockerFixture.shell("curl -s \(arguments)")
        guard code == 0 || code == 28 else { throw TestSetupError("curl \(arguments) failed (\(code)): \(out)") }
        return out
    }

    static func waitRunning(_ stack: EndToEndTests.Stack, _ id: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let status = try await stack.client.send("HGET", "hooks:job:\(id)", "status").string
            if status == "running" { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError("job \(id) never ran; worker log: \(stack.log("worker-1").suffix(1500))")
    }

    @Test func realStackInARealBrowser() async throws {
        let stack = try await EndToEndTests.Stack()
        do {
            try stack.enableDashboard(password: Self.password)
            try await stack.start()
            let base = "http://127.0.0.1:\(stack.nginx!.port)/dashboard"

            // An issue whose title carries markup → boss; a comment whose text does → dev, with live output.
            var issue = EndToEndTests.issue(1, labels: ["triage"])
            issue["title"] = "Checkout \(Self.xss)"
            let (s1, b1) = try await stack.post(
                event: "issues",
                payload: ["action": "opened", "number": 1, "issue": issue, "repository": EndToEndTests.repository, "sender": EndToEndTests.alice])
            #expect(s1 == 202, "\(b1)")
            let bossID = try #require(stack.jobIDs(b1).first)
            _ = try await stack.waitDone(bossID)

            let (_, b2) = try await stack.post(event: "issue_comment", payload: EndToEndTests.comment(1, "@dev STUB_TICKS=8 please \(Self.xss)"))
            let devID = try #require(stack.jobIDs(b2).first)
            try await Self.waitRunning(stack, devID)

            // Live output: the page is opened while the agent runs; the ticks it prints later reach the page over SSE.
            let early = try await Self.curl("'\(base)/jobs/\(devID)'")
            #expect(early.contains("data-stream=") && !early.contains("tick 8"), "opened before the run ended")
            let live = try await Self.dom("\(base)/jobs/\(devID)", waitForStreams: true)
            let output = live.components(separatedBy: "id=\"output\"").dropFirst().first ?? ""
            #expect(output.contains("tick 1") && output.contains("tick 8"), "\(live.suffix(3000))")
            #expect(live.contains(">succeeded</span>"), "the status badge follows the job")
            let done = try await stack.waitDone(devID)
            #expect(done["status"] == "succeeded")

            // Pages render the real state, and the markup from the forge is text, not elements.
            for path in [
                "/", "/jobs", "/jobs/\(devID)", "/jobs/\(bossID)", "/sessions", "/session?key=dev%3Aacme%2Fshop%3A1", "/dead", "/containers",
            ] {
                let dom = try await Self.dom(base + path)
                #expect(!dom.contains("<script>alert") && !dom.contains("<img"), "\(path): injected markup became elements")
                #expect(dom.contains("forge-hooks</a>"), "\(path)")
            }
            let overview = try await Self.dom(base + "/")
            #expect(overview.contains("e2e-worker-1") && overview.contains("e2e-worker-2") && overview.contains("<svg"))
            #expect(overview.contains("/dashboard/jobs?agent=boss"))
            let jobs = try await Self.dom(base + "/jobs")
            #expect(jobs.contains(devID) && jobs.contains(bossID) && jobs.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            let devPage = try await Self.dom(base + "/jobs/\(devID)")
            #expect(devPage.contains("STUB_TICKS=8 please &lt;script&gt;") && devPage.contains(done["session_id"] ?? "?"))
            let sessions = try await Self.dom(base + "/sessions")
            #expect(sessions.contains("dev:acme/shop:1") && sessions.contains("boss:acme/shop:1"))
            let containers = try await Self.waitFor(base + "/containers", text: "matches")
            #expect(containers.contains("\(stack.prefix)") && containers.contains("e2e-worker-"))

            // The overview follows live over SSE (the stream sends the rendered table every 2 s).
            let events = try await Self.curl("-N --max-time 3 '\(base)/overview/live'")
            #expect(events.contains("event: overview") && events.contains("data: <p class=\"updated\">"))

            // Actions: refused without a sign-in or without the form's token; done with both.
            let jar = stack.root.appendingPathComponent("cookies").path
            let dropURL = "'\(base)/sessions/drop' -d 'key=dev%3Aacme%2Fshop%3A1'"
            #expect(try await Self.curl("-o /dev/null -w '%{http_code}' -X POST \(dropURL)") == "401")
            let signIn = try await Self.curl(
                "-o /dev/null -w '%{http_code} %{redirect_url}' -c '\(jar)' -X POST '\(base)/login' --data-urlencode 'user=e2e' "
                    + "--data-urlencode 'password=\(Self.password)'")
            #expect(signIn.hasPrefix("303 "), "\(signIn)")
            #expect(try await Self.curl("-o /dev/null -w '%{http_code}' -b '\(jar)' -X POST \(dropURL)") == "403")
            let page = try await Self.curl("-b '\(jar)' '\(base)/session?key=dev%3Aacme%2Fshop%3A1'")
            let token = try #require(page.range(of: "name=\"csrf\" value=\"")).upperBound
            let csrf = String(page[token...].prefix { $0 != "\"" })
            #expect(try await Self.curl("-o /dev/null -w '%{http_code}' -b '\(jar)' -X POST \(dropURL) -d 'csrf=\(csrf)'") == "303")
            #expect(try await stack.client.send("HGET", "hooks:sessions", "dev:acme/shop:1").isNull)
            #expect(stack.log("dashboard").contains("dashboard: drop session") && stack.log("dashboard").contains("user=e2e@127.0.0.1"))

            if let path = ProcessInfo.processInfo.environment["DASHBOARD_SCREENSHOT"] {
                _ = try await DockerFixture.shell(
                    "timeout 60 '\(try Self.chromiumBinary())' --headless=new --no-sandbox --disable-gpu --window-size=1400,820 "
                        + "--screenshot='\(path)' '\(base)/' 2>/dev/null")
            }
        } catch {
            Issue.record("\(error)\ndashboard log:\n\(stack.log("dashboard").suffix(2000))")
        }
        await stack.stop()
    }

    static func waitFor(_ url: String, text: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(30)
        var dom = ""
        while ContinuousClock.now < deadline {
            dom = try await Self.dom(url)
            if dom.contains(text) { return dom }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw TestSetupError("\(url) never showed '\(text)': \(dom.suffix(1500))")
    }
}
