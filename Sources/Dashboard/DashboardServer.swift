import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore
import Shared

/// The dashboard's routes. It reads Redis only through the queue's typed read models (`JobQueue+Overview`,
/// `+Browse`, `+Inspection`) and acts only through the queue's operator actions (requeue, purge, drop session) —
/// the same methods `hooksctl` uses.
struct DashboardServer: Sendable {
    let queue: JobQueue
    /// Agents from the config; agents workers registered with are added.
    let configuredAgents: [String]
    let auth: DashboardAuth
    let library: MustacheLibrary
    let base: String
    let secureCookie: Bool
    let proxies: TrustedProxies
    let logger: Logger
    /// `Host` names besides loopback the dashboard answers to.
    var allowedHosts: [String] = []
    var limits = DashboardLimits()
    /// How often live views look at Redis.
    var liveInterval: Duration = .seconds(2)
    var outputInterval: Duration = .milliseconds(500)

    static let securityHeaders: HTTPFields = [
        // Only this server's own stylesheet and script; no inline script, no framing, no form posts elsewhere.
        .contentSecurityPolicy:
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; "
            + "frame-ancestors 'none'; base-uri 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        .cacheControl: "no-store",
    ]

    func router() -> Router<DashboardContext> {
        let router = Router(context: DashboardContext.self)
        router.add(middleware: HostCheckMiddleware(allowedHosts: allowedHosts))
        router.add(
            middleware: RedisUnavailableMiddleware { [self] request, error in
                var response = errorPage(
                    request, status: .serviceUnavailable, heading: "Redis did not answer",
                    message: "\(error). Nothing was changed; the page works again once Redis answers.")
                response.headers[.retryAfter] = "5"
                return response
            })
        if base.isEmpty {
            register(router)
        } else {
            register(router.group(RouterPath(base)))
            router.get("/") { _, _ in Self.seeOther(base + "/") }
        }
        return router
    }

    private func register<R: RouterMethods<DashboardContext>>(_ r: R) {
        r.get("/") { request, _ in try await overviewPage(request) }
        r.get("overview/live") { request, _ in liveOverview(request) }
        r.get("jobs") { request, _ in try await jobsPage(request) }
        r.get("jobs/:id") { request, context in try await jobPage(request, id: context.parameters.get("id") ?? "") }
        r.get("jobs/:id/output") { request, context in try await jobOutput(request, id: context.parameters.get("id") ?? "") }
        r.post("jobs/:id/requeue") { request, context in
            try await act(request, context) { user, form in try await requeue(context.parameters.get("id") ?? "", user: user, form: form) }
        }
        r.get("sessions") { request, _ in try await sessionsPage(request) }
        r.get("session") { request, _ in try await sessionPage(request) }
        r.post("sessions/drop") { request, context in
            try await act(request, context) { user, form in try await dropSession(form, user: user) }
        }
        r.get("dead") { request, _ in try await deadPage(request) }
        r.post("dead/requeue-all") { request, context in try await act(request, context) { user, _ in try await requeueAll(user: user) } }
        r.post("purge") { request, context in try await act(request, context) { user, form in try await purge(form, user: user) } }
        r.get("containers") { request, _ in try await containersPage(request) }
        r.get("login") { request, _ in loginPage(request, failed: false, user: "") }
        r.post("login") { request, context in try await login(request, context) }
        r.post("logout") { request, context in try await act(request, context) { _, _ in logout() } }
        r.get("static/app.css") { _, _ in asset(Assets.css, type: "text/css; charset=utf-8") }
        r.get("static/app.js") { _, _ in asset(Assets.js, type: "text/javascript; charset=utf-8") }
        r.get("healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
    }

    // MARK: Rendering

    struct Viewer {
        let user: String?
        let cookie: String?
        let csrf: String
    }

    func viewer(_ request: Request) -> Viewer {
        let cookie = request.cookies[DashboardAuth.cookieName]?.value
        guard let user = auth.verify(cookie), let cookie else { return Viewer(user: nil, cookie: nil, csrf: "") }
        return Viewer(user: user, cookie: cookie, csrf: auth.csrfToken(cookie: cookie))
    }

    func render(_ template: String, _ context: [String: Any]) -> String {
        library.render(context, withTemplate: template) ?? "template \(template) failed to render"
    }

    func page(
        _ template: String, title: String, nav: String, request: Request, context: [String: Any], status: HTTPResponse.Status = .ok
    ) -> Response {
        let viewer = viewer(request)
        var inner = context
        inner["base"] = base
        inner["csrf"] = viewer.csrf
        inner["canAct"] = viewer.user != nil
        inner["actions"] = viewer.user != nil && (context["actions"] as? Bool ?? false)
        if inner["back"] == nil { inner["back"] = request.uri.description }
        var layout: [String: Any] = [
            "title": title, "base": base, "signedIn": viewer.user != nil, "user": viewer.user ?? "", "csrf": viewer.csrf,
            "actionsEnabled": auth.actionsEnabled, "content": render(template, inner), "nav\(nav)": true,
        ]
        if let flash = flash(request) { layout["flash"] = flash }
        return html(render("layout", layout), status: status)
    }

    func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = Self.securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func asset(_ text: String, type: String) -> Response {
        var headers = Self.securityHeaders
        headers[.contentType] = type
        headers[.cacheControl] = "max-age=300"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func errorPage(_ request: Request, status: HTTPResponse.Status, heading: String, message: String) -> Response {
        page("error", title: heading, nav: "", request: request, context: ["heading": heading, "message": message], status: status)
    }

    /// Fixed messages after an action (never text from the URL).
    func flash(_ request: Request) -> String? {
        let query = Self.query(request)
        let n = Int(query["n"] ?? "") ?? 0
        switch query["done"] {
        case "requeued": return "Re-queued \(n) job(s)."
        case "refused": return "Not re-queued: only dead or failed jobs can be (it may have been re-queued already)."
        case "missing": return "There is no such job any more."
        case "purged": return "Purged \(n) finished job record(s)."
        case "dropped": return "Session dropped: the next job starts a new conversation."
        case "not-dropped": return "No session was stored under that key."
        case "signed-in": return "Signed in."
        case "signed-out": return "Signed out."
        default: return nil
        }
    }

    /// The configured agents, and those workers registered with (well-formed names only, at most 50 in all: a worker
    /// record is data in Redis, and a page must stay small whatever it says).
    func agents(workers: [WorkerInfo]) -> [String] {
        let registered = Set(workers.flatMap(\.agents)).subtracting(configuredAgents).filter { name in
            name.utf8.count <= 64 && name.range(of: "^[a-z0-9][a-z0-9_-]*$", options: .regularExpression) != nil
        }
        return Array((configuredAgents + registered.sorted()).prefix(50)).sorted()
    }

    // MARK: Overview

    func overviewModel(now: Date = Date()) async throws(RedisError) -> [String: Any] {
        let workers = try await queue.workers(now: now)
        let names = agents(workers: workers)
        let overview = try await queue.overview(agents: names)
        let perMinute = try await queue.finishedPerMinute(agents: names, now: now)
        let perHour = try await queue.finishedPerHour(agents: names, now: now)
        let held = workers.flatMap(\.held)
        let records = try await queue.records(held, fields: ["status", "agent", "repo", "number"])
        let running = Dictionary(records.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let spend = SpendSummary(try await queue.spend(days: 30, now: now))
        return ViewModels.overview(
            overview, perMinute: perMinute, perHour: perHour, workers: workers, running: running, spend: spend, now: now, base: base)
    }

    func overviewPage(_ request: Request) async throws -> Response {
        let live: String
        do {
            live = render("overview-live", try await overviewModel())
        } catch {
            live = render("overview-live", ["base": base, "updated": ViewModels.time(Date()), "redisDown": "\(error)"])
        }
        return page("overview", title: "Overview", nav: "Overview", request: request, context: ["live": live])
    }

    /// Server-Sent Events: the rendered live part of the overview every `liveInterval`, for up to 10 minutes (the
    /// browser reconnects).
    func liveOverview(_ request: Request) -> Response {
        eventStream { writer in
            let end = ContinuousClock.now + .seconds(600)
            while ContinuousClock.now < end {
                let fragment: String
                do {
                    fragment = render("overview-live", try await overviewModel())
                } catch {
                    fragment = render("overview-live", ["base": base, "updated": ViewModels.time(Date()), "redisDown": "\(error)"])
                }
                try await writer.write(ByteBuffer(string: Self.event("overview", fragment)))
                try await Task.sleep(for: liveInterval)
            }
        }
    }

    func eventStream(_ body: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void) -> Response {
        guard limits.openStream() else {
            var headers = Self.securityHeaders
            headers[.retryAfter] = "30"
            return Response(
                status: .serviceUnavailable, headers: headers,
                body: .init(byteBuffer: ByteBuffer(string: "too many live views are open (\(limits.maxStreams)); try again later\n")))
        }
        let limits = limits
        var headers = Self.securityHeaders
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"  // nginx: pass events on as they come
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                defer { limits.closeStream() }
                try await writer.write(ByteBuffer(string: "retry: 3000\n\n"))
                try await body(&writer)
                try await writer.finish(nil)
            })
    }

    /// One SSE event; every line of `data` gets its own `data:` prefix (a newline cannot end the event early).
    static func event(_ name: String, _ data: String, id: Int? = nil) -> String {
        // CR, LF and CRLF all end a line in SSE: each becomes a line of its own.
        let normalized = data.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        let lines = normalized.split(separator: "\n", omittingEmptySubsequences: false).map { "data: " + $0 }
        return (id.map { "id: \($0)\n" } ?? "") + "event: \(name)\n" + lines.joined(separator: "\n") + "\n\n"
    }

    /// JSON string literal (for SSE data the script parses).
    static func json(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }

    // MARK: Jobs

    func jobsPage(_ request: Request) async throws -> Response {
        let query = Self.query(request)
        let statusText = query["status"] ?? ""
        var filter = JobFilter(agent: query["agent"] ?? "", repo: query["repo"] ?? "", session: query["session"] ?? "")
        filter.status = JobStatus(rawValue: statusText)
        let cursor = query["after"].flatMap { JobCursor($0) }
        let found = try await queue.jobs(matching: filter, after: cursor, limit: 50)
        var next: String?
        if let cursor = found.next {
            var parts = ["after=\(HTML.query(cursor.description))"]
            for (name, value) in [("status", statusText), ("agent", filter.agent), ("repo", filter.repo), ("session", filter.session)]
            where !value.isEmpty {
                parts.append("\(name)=\(HTML.query(value))")
            }
            next = "\(base)/jobs?" + parts.joined(separator: "&")
        }
        var context: [String: Any] = [
            "jobs": found.jobs.map(ViewModels.jobRow), "filtered": !filter.isEmpty, "examined": found.examined,
            "statuses": JobStatus.allCases.map { ["name": $0.rawValue, "selected": $0 == filter.status] },
            "filterAgent": filter.agent, "filterRepo": filter.repo, "filterSession": filter.session,
        ]
        if let next { context["next"] = next }
        return page("jobs", title: "Jobs", nav: "Jobs", request: request, context: context)
    }

    func jobPage(_ request: Request, id: String) async throws -> Response {
        guard ViewModels.isJobID(id), let record = try await queue.record(id) else {
            return errorPage(request, status: .notFound, heading: "No such job", message: "Job \(id) does not exist, or its record expired.")
        }
        let log = try await queue.logLines(id, after: 0)
        let status = record["status"] ?? ""
        var context: [String: Any] = [
            "id": id, "status": status, "fields": ViewModels.jobFields(record, base: base),
            "output": log.lines.joined(separator: "\n") + (log.lines.isEmpty ? "" : "\n"), "missed": log.missed,
            "requeueable": status == "dead" || status == "failed",
        ]
        if log.missed == 0 { context["missed"] = false }
        if !["succeeded", "dead"].contains(status) { context["stream"] = "\(base)/jobs/\(id)/output?seen=\(log.total)" }
        context["showOutput"] = !log.lines.isEmpty || context["stream"] != nil
        return page("job", title: "Job \(id)", nav: "Jobs", request: request, context: context)
    }

    /// Server-Sent Events: the job's new output lines (`line`, JSON strings), its status when it changes (`status`),
    /// and `end` once it is finished and everything was sent.
    func jobOutput(_ request: Request, id: String) async throws -> Response {
        guard ViewModels.isJobID(id) else { return Response(status: .notFound) }
        // A reconnecting EventSource sends the id of the last event it got: the number of lines it has.
        let resumed = request.headers[HTTPField.Name("Last-Event-ID")!].flatMap { Int($0) }
        let start = max(0, resumed ?? Int(Self.query(request)["seen"] ?? "") ?? 0)
        return eventStream { writer in
            var seen = start
            var lastStatus = ""
            let end = ContinuousClock.now + .seconds(3600)
            while ContinuousClock.now < end {
                // Redis not answering is not the job's end: keep the last status and look again.
                let status: String
                do {
                    status = try await queue.runState(id).map { $0.status?.rawValue ?? "unknown" } ?? "gone"
                } catch {
                    try await Task.sleep(for: outputInterval)
                    continue
                }
                if let batch = try? await queue.logLines(id, after: seen) {
                    var text = ""
                    if batch.missed > 0 { text += Self.event("line", Self.json("… \(batch.missed) lines trimmed …")) }
                    for (offset, line) in batch.lines.enumerated() {
                        // The last line of the batch carries the count, so a reconnect resumes after it.
                        text += Self.event("line", Self.json(line), id: offset == batch.lines.count - 1 ? batch.total : nil)
                    }
                    seen = batch.total
                    if !text.isEmpty { try await writer.write(ByteBuffer(string: text)) }
                }
                if status != lastStatus {
                    lastStatus = status
                    try await writer.write(ByteBuffer(string: Self.event("status", Self.json(status))))
                }
                if ["succeeded", "dead", "gone"].contains(status) {
                    try await writer.write(ByteBuffer(string: Self.event("end", Self.json(status))))
                    return
                }
                try await Task.sleep(for: outputInterval)
            }
        }
    }

    // MARK: Sessions

    func sessionsPage(_ request: Request) async throws -> Response {
        let cursor = Self.query(request)["after"].flatMap { JobCursor($0) }
        let result = try await queue.sessions(after: cursor, limit: 50)
        let total = try await queue.counts(agents: []).sessions
        var context: [String: Any] = [
            "total": total,
            "sessions": result.sessions.map { s in
                [
                    "key": s.key, "keyQuery": HTML.query(s.key), "sessionID": s.sessionID, "lastUsed": ViewModels.time(s.lastUsed),
                    "transcript": ViewModels.transcript(s.transcript),
                ] as [String: Any]
            },
        ]
        if let next = result.next { context["next"] = "\(base)/sessions?after=\(HTML.query(next.description))" }
        return page("sessions", title: "Sessions", nav: "Sessions", request: request, context: context)
    }

    func sessionPage(_ request: Request) async throws -> Response {
        let key = Self.query(request)["key"] ?? ""
        guard !key.isEmpty, key.count <= 512 else {
            return errorPage(request, status: .badRequest, heading: "Which session?", message: "Open a session from the Sessions page.")
        }
        let info = try await queue.session(key)
        let jobs = try await queue.jobs(matching: JobFilter(session: key), after: nil, limit: 200)
        var context: [String: Any] = [
            "key": key, "found": info != nil, "jobs": jobs.jobs.reversed().map(ViewModels.jobRow), "examined": jobs.examined,
        ]
        if let info {
            context["sessionID"] = info.sessionID
            context["lastUsed"] = ViewModels.time(info.lastUsed)
            context["transcript"] = ViewModels.transcript(info.transcript)
        }
        return page("session", title: "Session \(key)", nav: "Sessions", request: request, context: context)
    }

    // MARK: Dead and failed

    func deadPage(_ request: Request) async throws -> Response {
        let offset = min(max(0, Int(Self.query(request)["offset"] ?? "") ?? 0), 1_000_000_000)
        let dead = try await queue.deadJobs(offset: offset, count: 50)
        let delayed = try await queue.delayedJobs(offset: 0, count: 100)
        var context: [String: Any] = [
            "deadTotal": dead.total, "delayedTotal": delayed.total, "actions": true,
            "deadList": ["jobs": dead.records.map(ViewModels.jobRow)], "noDead": dead.records.isEmpty,
            "delayedList": ["jobs": delayed.records.map(ViewModels.jobRow)], "noDelayed": delayed.records.isEmpty,
        ]
        if offset + 50 < dead.total { context["deadNext"] = "\(base)/dead?offset=\(offset + 50)" }
        return page("dead", title: "Dead and failed", nav: "Dead", request: request, context: context)
    }

    // MARK: Containers

    func containersPage(_ request: Request) async throws -> Response {
        let now = Date()
        let reports = try await queue.containerReports()
        let rows: [[String: Any]] = reports.map { r in
            [
                "host": r.host, "agent": r.agent, "state": r.state.rawValue, "containerID": r.containerID, "differences": r.differences,
                "worker": r.worker, "checkedAge": ViewModels.age(now.timeIntervalSince(r.checkedAt)),
                "stale": now.timeIntervalSince(r.checkedAt) > 120,
            ]
        }
        return page("containers", title: "Containers", nav: "Containers", request: request, context: ["reports": rows])
    }

    // MARK: Actions

    /// Reads a form body (at most 64 KiB) as name → value.
    static func form(_ request: Request) async throws -> [String: String] {
        let buffer = try await request.body.collect(upTo: 64 << 10)
        return urlEncoded(String(buffer: buffer))
    }

    /// The query string, decoded as a browser encodes a GET form (`+` is a space).
    static func query(_ request: Request) -> [String: String] {
        urlEncoded(request.uri.query ?? "")
    }

    /// `application/x-www-form-urlencoded`; the first value of a repeated name wins.
    static func urlEncoded(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.replacingOccurrences(of: "+", with: " ").split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = parts.first?.removingPercentEncoding, result[name] == nil else { continue }
            result[name] = parts.count > 1 ? (parts[1].removingPercentEncoding ?? "") : ""
        }
        return result
    }

    func client(_ request: Request, _ context: DashboardContext) -> String {
        let peer = context.remoteAddress?.ipAddress
        return proxies.clientAddress(peer: peer, forwardedFor: request.headers[HTTPField.Name("X-Forwarded-For")!])
    }

    /// A cross-site request (another origin posting a form here) is refused before anything else.
    static func isCrossSite(_ request: Request) -> Bool {
        guard let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!] else { return false }
        return site != "same-origin" && site != "none"
    }

    /// Runs an action for a signed-in user whose form carries the right CSRF token; logs who did what.
    func act(
        _ request: Request, _ context: DashboardContext, _ action: (_ user: String, _ form: [String: String]) async throws -> Response
    ) async throws -> Response {
        guard auth.actionsEnabled else {
            return errorPage(request, status: .forbidden, heading: "Read-only", message: "This dashboard is read-only (dashboard.read_only).")
        }
        guard !Self.isCrossSite(request) else {
            return errorPage(request, status: .forbidden, heading: "Refused", message: "Actions must come from the dashboard's own pages.")
        }
        let form = try await Self.form(request)
        let viewer = viewer(request)
        guard let user = viewer.user else {
            return errorPage(request, status: .unauthorized, heading: "Sign in first", message: "Actions need you to sign in.")
        }
        guard auth.checkCSRF(token: form["csrf"], cookie: viewer.cookie) else {
            return errorPage(
                request, status: .forbidden, heading: "Refused",
                message: "The form's security token is missing or stale. Reload the page and try again.")
        }
        let who = "\(user)@\(client(request, context))"
        var logger = logger
        logger[metadataKey: "user"] = "\(who)"
        logger[metadataKey: "action"] = "\(request.uri.path)"
        let response = try await action(who, form)
        logger.notice("dashboard action", metadata: ["result": "\(response.headers[.location] ?? "\(response.status.code)")"])
        return response
    }

    func redirect(_ path: String, done: String, n: Int? = nil) -> Response {
        var target = path
        target += (target.contains("?") ? "&" : "?") + "done=\(done)" + (n.map { "&n=\($0)" } ?? "")
        return Self.seeOther(target)
    }

    static func seeOther(_ location: String) -> Response {
        var headers = securityHeaders
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    /// A `back` target only when it is a page of this dashboard (no open redirect): an absolute path under the base
    /// path, no control characters, no `//` or `\` a browser could read as another host; its flash items are dropped.
    func back(_ value: String?, default fallback: String) -> String {
        guard let value, value.hasPrefix(base + "/"), !value.hasPrefix("//"), !value.contains("\\"),
            !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }),
            var components = URLComponents(string: value), components.scheme == nil, components.host == nil
        else { return fallback }
        components.queryItems = components.queryItems?.filter { $0.name != "done" && $0.name != "n" }
        if components.queryItems?.isEmpty == true { components.queryItems = nil }
        return components.string ?? fallback
    }

    func requeue(_ id: String, user: String, form: [String: String]) async throws -> Response {
        let target = back(form["back"], default: "\(base)/dead")
        guard ViewModels.isJobID(id) else { return redirect(target, done: "missing") }
        let result = try await queue.requeue(id)
        logger.notice("dashboard: requeue", metadata: ["user": "\(user)", "job.id": "\(id)", "result": "\(result)"])
        switch result {
        case .queued: return redirect(target, done: "requeued", n: 1)
        case .refused: return redirect(target, done: "refused")
        case .missing: return redirect(target, done: "missing")
        }
    }

    func requeueAll(user: String) async throws -> Response {
        var count = 0
        for id in try await queue.deadJobIDs() {
            if case .queued = try await queue.requeue(id) { count += 1 }
        }
        logger.notice("dashboard: requeue every dead job", metadata: ["user": "\(user)", "count": "\(count)"])
        return redirect("\(base)/dead", done: "requeued", n: count)
    }

    func purge(_ form: [String: String], user: String) async throws -> Response {
        let includeDead = form["dead"] == "1"
        let purged = try await queue.purgeFinished(includeDead: includeDead)
        logger.notice("dashboard: purge", metadata: ["user": "\(user)", "include_dead": "\(includeDead)", "purged": "\(purged)"])
        return redirect("\(base)/dead", done: "purged", n: purged)
    }

    func dropSession(_ form: [String: String], user: String) async throws -> Response {
        let key = form["key"] ?? ""
        let dropped = key.isEmpty ? false : try await queue.dropSession(key)
        logger.notice("dashboard: drop session", metadata: ["user": "\(user)", "session": "\(key)", "dropped": "\(dropped)"])
        return redirect("\(base)/session?key=\(HTML.query(key))", done: dropped ? "dropped" : "not-dropped")
    }

    // MARK: Login

    func loginPage(_ request: Request, failed: Bool, user: String, status: HTTPResponse.Status = .ok) -> Response {
        guard auth.actionsEnabled else {
            return errorPage(
                request, status: .notFound, heading: "Read-only", message: "This dashboard is read-only: there is nothing to sign in to.")
        }
        let backTarget = back(Self.query(request)["back"], default: base + "/")
        return page(
            "login", title: "Sign in", nav: "", request: request, context: ["failed": failed, "user": user, "back": backTarget], status: status)
    }

    func login(_ request: Request, _ context: DashboardContext) async throws -> Response {
        guard auth.actionsEnabled else { return loginPage(request, failed: false, user: "") }
        guard !Self.isCrossSite(request) else {
            return errorPage(request, status: .forbidden, heading: "Refused", message: "Sign in from the dashboard's own page.")
        }
        let form = try await Self.form(request)
        let user = form["user"] ?? ""
        guard DashboardAuth.isValidUser(user), auth.checkPassword(form["password"] ?? ""), let value = auth.issue(user: user) else {
            logger.warning("dashboard: failed sign-in", metadata: ["user": "\(user.prefix(64))", "client": "\(client(request, context))"])
            try await Task.sleep(for: limits.failedSignInDelay())  // one failure a second, however many try at once
            return loginPage(request, failed: true, user: DashboardAuth.isValidUser(user) ? user : "", status: .unauthorized)
        }
        logger.notice("dashboard: signed in", metadata: ["user": "\(user)", "client": "\(client(request, context))"])
        var response = redirect(back(form["back"], default: base + "/"), done: "signed-in")
        response.setCookie(
            Cookie(
                name: DashboardAuth.cookieName, value: value, maxAge: Int(auth.ttl.seconds), path: base.isEmpty ? "/" : base, secure: secureCookie,
                httpOnly: true, sameSite: .strict))
        return response
    }

    func logout() -> Response {
        var response = redirect(base + "/", done: "signed-out")
        response.setCookie(
            Cookie(
                name: DashboardAuth.cookieName, value: "", maxAge: 0, path: base.isEmpty ? "/" : base, secure: secureCookie, httpOnly: true,
                sameSite: .strict))
        return response
    }
}
