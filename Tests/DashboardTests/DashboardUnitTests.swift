import Foundation
import Testing

@testable import Dashboard
@testable import Shared

@Suite struct FinishedChartTests {
    @Test func barsStackSucceededUnderFailedAndTipsAreEscaped() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let buckets = [
            FinishedBucket(start: start, succeeded: 3, failed: 1), FinishedBucket(start: start.addingTimeInterval(60)),
            FinishedBucket(start: start.addingTimeInterval(120), succeeded: 0, failed: 2),
        ]
        let svg = FinishedChart.svg(buckets, label: "dev <b>", bucketName: { _ in "<t>" })
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>"))
        // Bucket 1: two rects; bucket 2: none; bucket 3: one (failed only).
        #expect(svg.components(separatedBy: "<rect").count - 1 == 3)
        #expect(svg.components(separatedBy: "<title>").count - 1 == 2)
        #expect(svg.contains("&lt;t&gt;: 3 succeeded, 1 failed") && svg.contains("aria-label=\"dev &lt;b&gt;\""))
        #expect(!svg.contains("<t>") && !svg.contains("<b>") && !svg.contains("script") && !svg.contains("style="))
        // The tallest bar (4) fills the chart's height; the failed-only bar is half of it.
        #expect(svg.contains("height=\"48.0\"") && svg.contains("height=\"16.0\"") && svg.contains("height=\"32.0\""))
        #expect(svg.contains("peak 4"))
    }

    @Test func emptySeriesDrawsOnlyTheAxis() {
        let svg = FinishedChart.svg([FinishedBucket(start: Date())], label: "x", bucketName: { _ in "" })
        #expect(!svg.contains("<rect") && svg.contains("<line") && svg.contains("peak 1"))
    }
}

@Suite struct DashboardAuthTests {
    let auth = DashboardAuth(password: "correct horse battery staple", ttl: .seconds(3600))

    @Test func passwordIsCheckedExactly() {
        #expect(auth.checkPassword("correct horse battery staple"))
        #expect(!auth.checkPassword("correct horse battery stapl"))
        #expect(!auth.checkPassword(""))
    }

    @Test func loginCookieRoundTripsAndRejectsTamperingAndExpiry() throws {
        let now = Date()
        let cookie = try #require(auth.issue(user: "alice", now: now))
        #expect(auth.verify(cookie, now: now) == "alice")
        #expect(auth.verify(cookie.replacingOccurrences(of: ".alice.", with: ".mallory."), now: now) == nil)
        #expect(auth.verify(cookie, now: now.addingTimeInterval(3601)) == nil)
        let other = DashboardAuth(password: "another long password", ttl: .seconds(3600))
        #expect(other.verify(cookie, now: now) == nil, "a changed password ends every login")
        #expect(auth.verify("garbage", now: now) == nil && auth.verify(nil, now: now) == nil)
        #expect(auth.issue(user: "<script>") == nil && auth.issue(user: "") == nil)
    }

    @Test func csrfTokenIsBoundToTheLogin() throws {
        let a = try #require(auth.issue(user: "alice"))
        let b = try #require(auth.issue(user: "bob"))
        #expect(auth.checkCSRF(token: auth.csrfToken(cookie: a), cookie: a))
        #expect(!auth.checkCSRF(token: auth.csrfToken(cookie: b), cookie: a))
        #expect(!auth.checkCSRF(token: nil, cookie: a) && !auth.checkCSRF(token: "", cookie: a))
    }

    @Test func readOnlyHasNoLogin() {
        let readOnly = DashboardAuth(password: nil, ttl: .seconds(60))
        #expect(!readOnly.actionsEnabled && readOnly.issue(user: "alice") == nil && !readOnly.checkPassword(""))
    }
}

@Suite struct ViewModelTests {
    @Test func jobFieldsLinkOnlyHTTPURLs() {
        let record = JobRecord(
            id: "j1",
            fields: [
                "status": "succeeded", "repo": "acme/shop", "number": "7", "url": "javascript:alert(1)", "prompt": "<script>x</script>",
                "session": "dev:acme/shop:7", "cost_usd": "0.0012", "log_lines": "9", "custom": "v",
            ])
        let rows = ViewModels.jobFields(record, base: "/d")
        let byName = Dictionary(uniqueKeysWithValues: rows.map { ($0["name"] as! String, $0) })
        #expect(byName["repo"]?["link"] == nil && byName["url"]?["link"] == nil, "a javascript: URL is never a link")
        #expect(byName["repo"]?["value"] as? String == "acme/shop#7 (issue)")
        #expect(byName["session"]?["internal"] as? String == "/d/session?key=dev%3Aacme%2Fshop%3A7")
        #expect(byName["cost_usd"]?["value"] as? String == "$0.0012 (this turn)")
        #expect(byName["log_lines"] == nil && byName["custom"] != nil, "bookkeeping hidden, unknown fields shown")
        #expect(rows.first?["name"] as? String == "status")

        let https = JobRecord(id: "j2", fields: ["status": "queued", "repo": "a/b", "number": "1", "url": "https://forge/a/b/issues/1"])
        let link = ViewModels.jobFields(https, base: "").first { $0["name"] as? String == "repo" }?["link"] as? String
        #expect(link == "https://forge/a/b/issues/1")
    }

    @Test func overviewAttributesRunningJobsToWorkers() {
        var dev = AgentCounts(agent: "dev")
        dev.running = 1
        dev.feedback = 3
        let overview = Overview(agents: [dev], delayedTotal: 0, deadTotal: 0, sessionsTotal: 0, sampled: false)
        let now = Date()
        let worker = WorkerInfo(
            id: "w1", host: "h", agents: ["dev"], slots: "2", lastHeartbeat: now.addingTimeInterval(-3), leaseRemaining: .seconds(20),
            held: ["j1", "j2"])
        let running = [
            "j1": JobRecord(id: "j1", fields: ["status": "running", "agent": "dev", "repo": "a/b", "number": "4"]),
            "j2": JobRecord(id: "j2", fields: ["status": "queued", "agent": "dev"]),
        ]
        let model = ViewModels.overview(overview, perMinute: [:], perHour: [:], workers: [worker], running: running, now: now, base: "")
        let row = (model["workers"] as! [[String: Any]])[0]
        let runs = row["runs"] as! [[String: Any]]
        #expect(runs.count == 1 && runs[0]["jobID"] as? String == "j1" && runs[0]["jobSubject"] as? String == "a/b#4")
        #expect(row["heartbeatAge"] as? String == "3s" && row["alive"] as? Bool == true)
        #expect((model["agents"] as! [[String: Any]])[0]["feedback"] as? Int == 3)
        let html = try! Templates.library().render(model, withTemplate: "overview-live") ?? ""
        #expect(html.contains("Forge feedback</th>") && html.contains("<td class=\"n\">3</td>"), "\(html)")
    }

    @Test func overviewShowsWhatEachAgentSpentAndTheCostliestRepositories() throws {
        let overview = Overview(
            agents: [AgentCounts(agent: "dev"), AgentCounts(agent: "boss")], delayedTotal: 0, deadTotal: 0, sessionsTotal: 0, sampled: false)
        let now = Date()
        var today = SpendDay(day: now)
        today.agents = ["dev": 0.5]
        today.repos = [SpendDay.Repo(agent: "dev", repo: "acme/<b>shop</b>"): 0.5]
        var earlier = SpendDay(day: now.addingTimeInterval(-10 * 86400))
        earlier.agents = ["dev": 2.25]
        earlier.repos = [SpendDay.Repo(agent: "dev", repo: "acme/widgets"): 2.25]
        let model = ViewModels.overview(
            overview, perMinute: [:], perHour: [:], workers: [], running: [:], spend: SpendSummary([earlier, today]), now: now, base: "")
        let html = try #require(try Templates.library().render(model, withTemplate: "overview-live"))
        #expect(html.contains("<td class=\"n\">$0.5000</td><td class=\"n\">$0.5000</td><td class=\"n\">$2.75</td>"), "\(html)")
        #expect(html.contains("<td class=\"n\">$0.0000</td><td class=\"n\">$0.0000</td><td class=\"n\">$0.0000</td>"))
        #expect(html.contains("Spend by repository, 30 days") && html.contains("<td>acme/widgets</td><td class=\"n\">$2.25</td>"))
        #expect(html.contains("acme/&lt;b&gt;shop&lt;/b&gt;") && !html.contains("<b>shop"))
    }

    @Test func agesAndSizesReadWell() {
        #expect(ViewModels.age(59) == "59s" && ViewModels.age(200) == "3m 20s" && ViewModels.age(7500) == "2h 5m" && ViewModels.age(90000) == "1d 1h")
        #expect(ViewModels.bytes(512) == "512 B" && ViewModels.bytes(2048) == "2.0 KiB")
    }
}

@Suite struct EventStreamTests {
    @Test func everyLineOfDataIsPrefixedSoNoLineEndsTheEventEarly() {
        let event = DashboardServer.event("overview", "<p>a</p>\n\nevent: fake\r\ndata: x")
        #expect(event == "event: overview\ndata: <p>a</p>\ndata: \ndata: event: fake\ndata: data: x\n\n")
    }

    @Test func jsonStringsAreQuotedAndEscaped() {
        #expect(DashboardServer.json("tick \"1\"\n</script>") == "\"tick \\\"1\\\"\\n<\\/script>\"")
    }
}
