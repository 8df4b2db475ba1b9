import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import TestSupport
import Testing

@testable import Dashboard
@testable import Shared

/// The dashboard's routes over a real server and a real redis-server: pages, pagination, escaping, and the
/// authentication and CSRF rules for actions.
@Suite(.timeLimit(.minutes(5))) struct DashboardHTTPTests {
    static let password = "a long dashboard password"
    let server: RedisServer
    let queue: JobQueue

    init() throws {
        server = try RedisServer()
        var settings = QueueSettings()
        settings.retry = RetryPolicy(maxAttempts: 1, base: .milliseconds(10), maximum: .milliseconds(10), jitter: 0)
        queue = JobQueue(redis: server.client(), settings: settings)
    }

    func dashboard(readOnly: Bool = false, base: String = "/dashboard") throws -> DashboardServer {
        DashboardServer(
            queue: queue, configuredAgents: ["dev"], auth: DashboardAuth(password: readOnly ? nil : Self.password, ttl: .seconds(600)),
            library: try Templates.library(), base: base, secureCookie: false, proxies: try TrustedProxies(["127.0.0.1"]),
            logger: Logger(label: "dashboard-test"))
    }

    func withApp(readOnly: Bool = false, _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(router: try dashboard(readOnly: readOnly).router())
        try await app.test(.live) { client in try await body(client) }
    }

    /// Enqueues a job, runs it and lets it fail for good: a dead job to requeue.
    func deadJob(title: String = "Checkout fails") async throws -> String {
        let job = NewJob(
            agent: "dev", session: SessionKey(agent: "dev", repository: "acme/shop", number: 3),
            fields: [("repo", "acme/shop"), ("number", "3"), ("title", title), ("prompt", title), ("event", "issue_comment")])
        _ = try await queue.enqueue([job])
        let reserved = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        #expect(try await queue.finish(reserved, worker: "w1", outcome: .failed(error: "boom", retryable: false)) == .dead)
        return job.id
    }

    static func body(_ response: TestResponse) -> String { String(buffer: response.body) }

    static func formHeaders(cookie: String? = nil) -> HTTPFields {
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let cookie { headers[.cookie] = "\(DashboardAuth.cookieName)=\(cookie)" }
        return headers
    }

    /// Signs in and returns the login cookie's value.
    static func signIn(_ client: any TestClientProtocol) async throws -> String {
        let response = try await client.execute(
            uri: "/dashboard/login", method: .post, headers: formHeaders(),
            body: ByteBuffer(string: "user=alice&password=a+long+dashboard+password&back=%2Fdashboard%2Fdead"))
        #expect(response.status == .seeOther)
        #expect(response.headers[.location] == "/dashboard/dead?done=signed-in")
        let setCookie = try #require(response.headers[.setCookie])
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/dashboard"))
        let value = setCookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1]
        return String(value)
    }

    static func csrf(in html: String) throws -> String {
        let marker = "name=\"csrf\" value=\""
        let start = try #require(html.range(of: marker)).upperBound
        return String(html[start...].prefix { $0 != "\"" })
    }

    @Test func pagesRenderWithSecurityHeadersAndEscapeForgeText() async throws {
        let id = try await deadJob(title: "<script>alert(1)</script><img src=x onerror=alert(2)>")
        try await withApp { client in
            for path in [
                "/dashboard/", "/dashboard/jobs", "/dashboard/jobs/\(id)", "/dashboard/dead", "/dashboard/sessions", "/dashboard/containers",
            ] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .ok, "\(path)")
                let csp = response.headers[.contentSecurityPolicy] ?? ""
                #expect(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "\(path)")
                let html = Self.body(response)
                #expect(!html.contains("<script>alert") && !html.contains("<img"), "\(path)")
                if path != "/dashboard/" && path != "/dashboard/sessions" && path != "/dashboard/containers" {
                    #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"), "\(path)")
                }
            }
            #expect(try await client.execute(uri: "/dashboard/jobs/nope", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/dashboard/jobs/%3Cx%3E", method: .get).status == .notFound)
            let root = try await client.execute(uri: "/", method: .get)
            #expect(root.status == .seeOther && root.headers[.location] == "/dashboard/")
        }
    }

    @Test func actionsNeedASignInAndTheFormsToken() async throws {
        let id = try await deadJob()
        try await withApp { client in
            let path = "/dashboard/jobs/\(id)/requeue"
            // Nobody signed in.
            #expect(
                try await client.execute(uri: path, method: .post, headers: Self.formHeaders(), body: ByteBuffer(string: "csrf=x")).status
                    == .unauthorized)
            // A wrong password.
            let wrong = try await client.execute(
                uri: "/dashboard/login", method: .post, headers: Self.formHeaders(), body: ByteBuffer(string: "user=alice&password=guess"))
            #expect(wrong.status == .unauthorized && wrong.headers[.setCookie] == nil)

            let cookie = try await Self.signIn(client)
            // Signed in, but no token, or another login's token.
            #expect(
                try await client.execute(uri: path, method: .post, headers: Self.formHeaders(cookie: cookie), body: ByteBuffer()).status == .forbidden
            )
            let forged = DashboardAuth(password: Self.password, ttl: .seconds(600)).csrfToken(cookie: "1.bob.00")
            #expect(
                try await client.execute(
                    uri: path, method: .post, headers: Self.formHeaders(cookie: cookie), body: ByteBuffer(string: "csrf=\(forged)")
                )
                .status == .forbidden)
            // A cross-site post, even with the right token.
            let page = try await client.execute(uri: "/dashboard/dead", method: .get, headers: Self.formHeaders(cookie: cookie))
            let token = try Self.csrf(in: Self.body(page))
            var crossSite = Self.formHeaders(cookie: cookie)
            crossSite[HTTPField.Name("Sec-Fetch-Site")!] = "cross-site"
            #expect(
                try await client.execute(uri: path, method: .post, headers: crossSite, body: ByteBuffer(string: "csrf=\(token)")).status == .forbidden
            )
            #expect(try await queue.record(id)?.status == .dead)

            // The real form: re-queued, and sent back where it came from (never to another site).
            let done = try await client.execute(
                uri: path, method: .post, headers: Self.formHeaders(cookie: cookie),
                body: ByteBuffer(string: "csrf=\(token)&back=https%3A%2F%2Fevil.example%2F"))
            #expect(done.status == .seeOther && done.headers[.location] == "/dashboard/dead?done=requeued&n=1")
            #expect(try await queue.record(id)?.status == .queued)
            let flash = try await client.execute(uri: "/dashboard/dead?done=requeued&n=1", method: .get, headers: Self.formHeaders(cookie: cookie))
            #expect(Self.body(flash).contains("Re-queued 1 job(s)."))
        }
    }

    @Test func dropSessionAndPurgeThroughTheForms() async throws {
        let job = NewJob(agent: "dev", session: SessionKey(agent: "dev", repository: "acme/shop", number: 9), fields: [("prompt", "p")])
        _ = try await queue.enqueue([job])
        let reserved = try #require(try await queue.reserveAny(worker: "w1", agents: ["dev"]))
        _ = try await queue.finish(reserved, worker: "w1", outcome: .succeeded, sessionID: "cli-session-1")
        #expect(try await queue.overview(agents: ["dev"]).agents[0].sessions == 1)
        try await withApp { client in
            let cookie = try await Self.signIn(client)
            let page = try await client.execute(
                uri: "/dashboard/session?key=dev%3Aacme%2Fshop%3A9", method: .get, headers: Self.formHeaders(cookie: cookie))
            let html = Self.body(page)
            #expect(html.contains("cli-session-1") && html.contains(job.id))
            let token = try Self.csrf(in: html)
            let dropped = try await client.execute(
                uri: "/dashboard/sessions/drop", method: .post, headers: Self.formHeaders(cookie: cookie),
                body: ByteBuffer(string: "csrf=\(token)&key=dev%3Aacme%2Fshop%3A9"))
            #expect(dropped.status == .seeOther && dropped.headers[.location]?.contains("done=dropped") == true)
            #expect(try await queue.sessionID(for: "dev:acme/shop:9") == nil)
            #expect(try await queue.overview(agents: ["dev"]).agents[0].sessions == 0)

            let purged = try await client.execute(
                uri: "/dashboard/purge", method: .post, headers: Self.formHeaders(cookie: cookie), body: ByteBuffer(string: "csrf=\(token)"))
            #expect(purged.headers[.location] == "/dashboard/dead?done=purged&n=1")
            #expect(try await queue.record(job.id) == nil)
        }
    }

    @Test func readOnlyRefusesEveryAction() async throws {
        let id = try await deadJob()
        try await withApp(readOnly: true) { client in
            #expect(try await client.execute(uri: "/dashboard/login", method: .get).status == .notFound)
            let response = try await client.execute(
                uri: "/dashboard/jobs/\(id)/requeue", method: .post, headers: Self.formHeaders(), body: ByteBuffer())
            #expect(response.status == .forbidden)
            let overview = Self.body(try await client.execute(uri: "/dashboard/", method: .get))
            #expect(overview.contains("read-only") && !overview.contains("Sign in"))
        }
        #expect(try await queue.record(id)?.status == .dead)
    }

    @Test func jobListPagesWithACursorAndFilters() async throws {
        var ids: [String] = []
        for n in 0..<120 {
            let agent = n % 3 == 0 ? "boss" : "dev"
            let job = NewJob(
                agent: agent, session: SessionKey(agent: agent, repository: "acme/r\(n % 2)", number: n),
                fields: [("repo", "acme/r\(n % 2)"), ("number", String(n)), ("prompt", "p")])
            _ = try await queue.enqueue([job])
            ids.append(job.id)
        }
        let all = ids
        try await withApp { client in
            var seen: [String] = []
            var next: String? = "/dashboard/jobs"
            var pages = 0
            while let uri = next {
                let html = Self.body(try await client.execute(uri: uri, method: .get))
                let found = html.components(separatedBy: "<td class=\"id\"><a href=\"/dashboard/jobs/").dropFirst().map {
                    String($0.prefix { $0 != "\"" })
                }
                seen += found
                pages += 1
                next = html.range(of: "class=\"more\" href=\"").map { r in
                    String(html[r.upperBound...].prefix { $0 != "\"" }).replacingOccurrences(of: "&amp;", with: "&")
                }
                #expect(pages < 10)
            }
            #expect(pages == 3 && seen.count == 120 && Set(seen) == Set(all), "every job once, newest first")
            // Newest first: ids start with their creation time (jobs created in the same millisecond may come in any order).
            let times = seen.map { $0.split(separator: "-")[0] }
            #expect(times == times.sorted(by: >))

            let filtered = Self.body(try await client.execute(uri: "/dashboard/jobs?agent=boss&repo=acme%2Fr1", method: .get))
            let rows = filtered.components(separatedBy: "<td class=\"id\"><a href=\"/dashboard/jobs/").count - 1
            #expect(rows == 20, "boss jobs in acme/r1: n % 3 == 0 and n odd")
        }
    }

    /// Values a hostile agent, a person with redis-cli or a newer version could leave in Redis must not crash a page,
    /// and a job id that is not one of ours never ends up in a link or a form's action.
    @Test func hostileValuesInRedisNeitherCrashNorRetargetForms() async throws {
        let keys = queue.keys
        let redis = queue.redis
        for (id, extra) in [("../purge?", ["status", "dead"]), ("x1", ["status", "succeeded", "duration_ms", "nan", "retry_at", "inf"])] {
            try await redis.send(["HSET", keys.job(id), "agent", "dev", "repo", "a/b", "number", "1"] + extra)
        }
        try await redis.send("LPUSH", keys.dead, "../purge?")
        try await redis.send("ZADD", keys.jobIndex, "1e300", "x1")
        try await redis.send("ZADD", keys.jobIndex, "-inf", "../purge?")
        try await redis.send("ZADD", keys.workers, "-inf", "w-bad")
        try await redis.send("HSET", keys.worker("w-bad"), "agents", String(repeating: "a,", count: 500) + "<b>x</b>", "slots", "1")
        try await redis.send("ZADD", keys.sessionsUsed, "-inf", "dev:a/b:1")
        try await redis.send("HSET", keys.sessions, "dev:a/b:1", "s")
        try await redis.send(
            "HSET", keys.containers, "h/dev",
            "{\"host\":\"h\",\"agent\":\"dev\",\"state\":\"matches\",\"containerID\":\"c\",\"differences\":[],\"worker\":\"w\",\"checkedAt\":1e300}")
        try await withApp { client in
            let cookie = try await Self.signIn(client)
            for path in [
                "/dashboard/", "/dashboard/jobs", "/dashboard/jobs/x1", "/dashboard/dead", "/dashboard/dead?offset=9223372036854775800",
                "/dashboard/sessions", "/dashboard/sessions?after=1-x", "/dashboard/containers",
            ] {
                let response = try await client.execute(uri: path, method: .get, headers: Self.formHeaders(cookie: cookie))
                #expect(response.status == .ok, "\(path)")
                let html = Self.body(response)
                #expect(!html.contains("action=\"/dashboard/jobs/../") && !html.contains("href=\"/dashboard/jobs/../"), "\(path)")
            }
            let overview = Self.body(try await client.execute(uri: "/dashboard/", method: .get))
            #expect(!overview.contains("<b>x</b>") && overview.components(separatedBy: "<tr>").count < 60, "registered agent names are capped")
        }
    }

    @Test func onlyItsOwnHostNamesAreAnswered() async throws {
        try await withApp { client in
            let port = try #require(client.port)
            func status(host: String) async throws -> String {
                try await DockerFixture.shell("curl -s -o /dev/null -w '%{http_code}' -H 'Host: \(host)' http://127.0.0.1:\(port)/dashboard/").1
            }
            #expect(try await status(host: "attacker.example:9191") == "421")
            #expect(try await status(host: "[::1]:9191") == "200")
            #expect(try await status(host: "localhost") == "200")
        }
        #expect(HostCheckMiddleware<DashboardContext>.hostName("Hooks.Example.com:443") == "hooks.example.com")
        #expect(HostCheckMiddleware<DashboardContext>.hostName("[::1]:80") == "::1")
        #expect(HostCheckMiddleware<DashboardContext>.hostName("localhost") == "localhost")
    }

    @Test func signInKeepsNamesWithDotsAndReturnsWhereItWasAsked() async throws {
        try await withApp { client in
            let login = Self.body(try await client.execute(uri: "/dashboard/login?back=%2Fdashboard%2Fdead", method: .get))
            #expect(login.contains("name=\"back\" value=\"/dashboard/dead\""))
            let response = try await client.execute(
                uri: "/dashboard/login", method: .post, headers: Self.formHeaders(),
                body: ByteBuffer(string: "user=alice.smith&password=a+long+dashboard+password"))
            let cookie = try #require(response.headers[.setCookie]?.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1])
            let page = Self.body(try await client.execute(uri: "/dashboard/", method: .get, headers: Self.formHeaders(cookie: String(cookie))))
            #expect(page.contains("alice.smith") && page.contains("Sign out"))
        }
    }

    @Test func backTargetsStayOnTheDashboard() throws {
        let server = try dashboard()
        #expect(server.back("/dashboard/jobs?undone=1&a=2&done=requeued&n=3", default: "/x") == "/dashboard/jobs?undone=1&a=2")
        #expect(server.back("/dashboard/\t/evil.com", default: "/x") == "/x")
        #expect(server.back("https://evil.example/dashboard/", default: "/x") == "/x")
        #expect(server.back("//evil.example/", default: "/x") == "/x")
        #expect(server.back("/elsewhere", default: "/x") == "/x")
        let root = try dashboard(base: "")
        #expect(root.back("//evil.example/", default: "/") == "/" && root.back("/\\evil.example", default: "/") == "/")
        #expect(root.back("/jobs?agent=dev", default: "/") == "/jobs?agent=dev")
    }

    /// Redis gone: the overview says so in place of its figures, other pages answer 503 naming the error, and actions
    /// change nothing; once Redis is back, pages work again without a restart.
    @Test func redisDownIsNamedAndPassesOver() async throws {
        let id = try await deadJob()
        try await withApp { client in
            let cookie = try await Self.signIn(client)
            let token = try Self.csrf(
                in: Self.body(try await client.execute(uri: "/dashboard/dead", method: .get, headers: Self.formHeaders(cookie: cookie))))
            server.stop()
            let overview = try await client.execute(uri: "/dashboard/", method: .get)
            #expect(overview.status == .ok && Self.body(overview).contains("Redis did not answer"))
            for path in ["/dashboard/jobs", "/dashboard/jobs/\(id)", "/dashboard/sessions", "/dashboard/dead", "/dashboard/containers"] {
                let page = try await client.execute(uri: path, method: .get)
                #expect(page.status == .serviceUnavailable && page.headers[.retryAfter] == "5", "\(path): \(page.status)")
                #expect(Self.body(page).contains("Redis did not answer") && Self.body(page).contains("Redis at 127.0.0.1"), "\(path)")
            }
            let action = try await client.execute(
                uri: "/dashboard/jobs/\(id)/requeue", method: .post, headers: Self.formHeaders(cookie: cookie),
                body: ByteBuffer(string: "csrf=\(token)"))
            #expect(action.status == .serviceUnavailable)
            try server.start()
            var status = HTTPResponse.Status.serviceUnavailable
            for _ in 0..<50 where status != .ok {
                status = try await client.execute(uri: "/dashboard/jobs", method: .get).status
                if status != .ok { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(status == .ok)
        }
    }
}
