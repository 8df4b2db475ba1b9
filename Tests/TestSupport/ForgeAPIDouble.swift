import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A stand-in for a forge's REST API (GitHub, or Gitea/Forgejo's v1), for the feedback tests: no real forge can run
/// here. Every request is checked against the forge's own published API description (`APIDescription`, from the
/// vendored excerpts) and any mismatch is recorded in `violations`, which tests expect to stay empty. It keeps
/// comments and reactions the way the forge does (ids, authors, `since`, GitHub's paging, only the author may edit)
/// and answers faults on demand: 401, 404, 422, 429 with `Retry-After`, 5xx, and requests that hang.
package final class ForgeAPIDouble: Sendable {
    package enum Flavor: Sendable { case github, gitea }

    package struct Comment: Sendable, Equatable {
        package var id: Int64
        package var repository: String
        package var number: Int
        package var body: String
        package var author: String
        package var created: Date
        package var updated: Date
        package var edits: Int
        /// Every body it had, oldest first (the last is `body`).
        package var history: [String] = []
    }

    package struct Reaction: Sendable, Equatable {
        package var repository: String
        package var commentID: Int64
        /// `issue` or `review` (GitHub's pulls/comments endpoint).
        package var kind: String
        package var content: String
        package var user: String
    }

    package struct Request: Sendable {
        package var method: String
        package var path: String
        package var operation: String
        package var status: Int
        package var user: String?
    }

    /// How a scripted fault answers.
    package enum Fault: Sendable {
        case status(Int, headers: [String: String] = [:], message: String = "injected fault")
        /// Answers after this long (longer than the client's timeout: a hang).
        case hang(Duration)
        /// Does what was asked, but only after this long (a slow forge: the request takes effect late).
        case slow(Duration)
    }

    private struct ScriptedFault {
        var operation: String?
        var remaining: Int
        var fault: Fault
    }

    private struct State {
        var comments: [Int64: Comment] = [:]
        var reactions: [Reaction] = []
        var nextID: Int64 = 1000
        var requests: [Request] = []
        var arrivals: [String] = []
        /// Bumped by `clearFaults` and `stop`: requests hanging then answer at once.
        var hangGeneration = 0
        var violations: [String] = []
        var faults: [ScriptedFault] = []
        /// Comments that exist on the forge but were not made through this API (the webhook's triggering comments).
        var external: [Int64: (repository: String, kind: String)] = [:]
        var foreignEdits: [String] = []
        /// Accounts without write access: their edits of others' comments are refused (403).
        var readOnly: Set<String> = []
    }

    package let flavor: Flavor
    let description: APIDescription
    /// token → login.
    let tokens: [String: String]
    private let state = Mutex(State())
    private let server = Mutex<(task: Task<Void, any Error>?, group: ServiceGroup?, port: Int)>((nil, nil, 0))

    /// Served before the description's own base path: `/api/v3` makes the GitHub double look like GitHub Enterprise.
    let mount: String

    package init(flavor: Flavor, tokens: [String: String], mount: String = "") throws {
        self.flavor = flavor
        self.mount = mount
        self.description = try (flavor == .github ? APIDescription.github : APIDescription.gitea).get()
        self.tokens = tokens
    }

    /// The API root the client is configured with.
    package var baseURL: String { "http://127.0.0.1:\(server.withLock { $0.port })\(mount)\(description.basePath)" }
    package var port: Int { server.withLock { $0.port } }

    /// Starts listening on `port` (0 = any free port); returns once it accepts connections.
    package func start(port: Int = 0) async throws {
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "forge-api-double")
        logger.logLevel = .critical  // stopping it mid-connection (a forge going down) is part of the tests
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { [self] request, _ in await self.respond(request) },
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "forge-api-double"),
            onServerRunning: { channel in
                readyContinuation.yield(channel.localAddress?.port ?? 0)
                readyContinuation.finish()
            },
            logger: logger)
        // In a service group, so that `stop` shuts it down gracefully: its connections are closed and its port is
        // free again (a cancelled server leaves accepted connections open, and a restart on the port fails).
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task {
            defer { readyContinuation.finish() }  // a server that cannot start must not leave `start` waiting
            try await group.run()
        }
        var bound = 0
        for await p in ready { bound = p }
        guard bound > 0 else {
            do {
                try await task.value
            } catch {
                throw TestSetupError("forge API double did not start on port \(port): \(error)")
            }
            throw TestSetupError("forge API double did not start on port \(port)")
        }
        server.withLock { $0 = (task, group, bound) }
    }

    /// Stops listening (a forge that is down: connections are refused).
    package func stop() async {
        let (task, group) = server.withLock { ($0.task, $0.group) }
        state.withLock { $0.hangGeneration += 1 }  // a graceful stop waits for the requests under way
        await group?.triggerGracefulShutdown()
        _ = try? await task?.value
        server.withLock {
            $0.task = nil
            $0.group = nil
        }
    }

    // MARK: Test controls and observations

    /// Answers the next `times` requests of `operation` (its operationId; nil = any) with `fault`.
    package func inject(_ fault: Fault, operation: String? = nil, times: Int = 1) {
        state.withLock { $0.faults.append(ScriptedFault(operation: operation, remaining: times, fault: fault)) }
    }

    /// Drops the faults not used yet, and ends the hangs under way.
    package func clearFaults() {
        state.withLock {
            $0.faults.removeAll()
            $0.hangGeneration += 1
        }
    }

    /// A comment that exists on the forge (e.g. the one a webhook reported), so reactions on it succeed.
    package func seedComment(id: Int64, repository: String, kind: String = "issue") {
        state.withLock { $0.external[id] = (repository, kind) }
    }

    /// A comment written by someone (another account, a human) directly into the store.
    @discardableResult
    package func addComment(repository: String, number: Int, body: String, author: String) -> Int64 {
        state.withLock { s in
            s.nextID += 1
            s.comments[s.nextID] = Comment(
                id: s.nextID, repository: repository, number: number, body: body, author: author, created: Date(), updated: Date(), edits: 0)
            return s.nextID
        }
    }

    package var comments: [Comment] { state.withLock { $0.comments.values.sorted { $0.id < $1.id } } }
    package var reactions: [Reaction] { state.withLock { $0.reactions } }
    package var requests: [Request] { state.withLock { $0.requests } }
    /// The operations asked for, as they arrive (`requests` has them once answered).
    package var arrivals: [String] { state.withLock { $0.arrivals } }
    /// Requests that did not match the forge's API description. Expected to stay empty.
    package var violations: [String] { state.withLock { $0.violations } }
    /// Edits of a comment by an account other than its author. A real forge allows them to anyone with write access
    /// to the repository, as the double does, so the client must never send one: expected to stay empty.
    package var foreignEdits: [String] { state.withLock { $0.foreignEdits } }
    /// Makes `login` a reader: its edits of others' comments are refused with 403.
    package func setReadOnly(_ login: String) { state.withLock { _ = $0.readOnly.insert(login) } }

    // MARK: Serving

    private func respond(_ request: Hummingbird.Request) async -> Response {
        let method = request.method.rawValue
        let uri = request.uri.string
        let components = URLComponents(string: uri)
        var path = components?.percentEncodedPath ?? uri
        if !mount.isEmpty && path.hasPrefix(mount) { path = String(path.dropFirst(mount.count)) }
        let query = (components?.queryItems ?? []).map { ($0.name, $0.value ?? "") }
        let contentType = request.headers[.contentType]
        var bodyData = Data()
        if let buffer = try? await request.body.collect(upTo: 1 << 20) { bodyData = Data(buffer.readableBytesView) }

        let (match, problems) = description.check(
            method: method, path: path, query: query, body: bodyData.isEmpty ? nil : bodyData, contentType: contentType)
        let operation = match?.operationID ?? "\(method) \(path)"
        var violations = problems
        // Authentication, as the description declares it: Gitea's AuthorizationHeaderToken is "token <t>"; GitHub
        // takes "Bearer <t>" or "token <t>" and refuses requests without a User-Agent.
        let authorization = request.headers[.authorization] ?? ""
        let parts = authorization.split(separator: " ", maxSplits: 1).map(String.init)
        var user: String?
        if parts.count == 2 {
            let allowed = flavor == .github ? ["Bearer", "token"] : ["token"]
            if !allowed.contains(parts[0]) { violations.append("\(operation): Authorization scheme '\(parts[0])' is not one the forge takes") }
            user = tokens[parts[1]]
        } else {
            violations.append("\(operation): no Authorization header")
        }
        if flavor == .github {
            if request.headers[.userAgent] == nil { violations.append("\(operation): no User-Agent (GitHub refuses such requests)") }
            if !(request.headers[.accept] ?? "").contains("application/vnd.github+json") && !(request.headers[.accept] ?? "").contains("json") {
                violations.append("\(operation): Accept should be application/vnd.github+json")
            }
        }
        let fault = state.withLock { s -> Fault? in
            s.violations += violations
            s.arrivals.append(operation)
            guard let index = s.faults.firstIndex(where: { $0.remaining > 0 && ($0.operation == nil || $0.operation == operation) }) else {
                return nil
            }
            s.faults[index].remaining -= 1
            return s.faults[index].fault
        }
        var refusal: Response?
        switch fault {
        case .status(let code, let headers, let message)?: refusal = answer(code, ["message": message], headers: headers)
        case .hang(let duration)?:
            let (generation, until) = (state.withLock { $0.hangGeneration }, ContinuousClock.now + duration)
            while ContinuousClock.now < until, state.withLock({ $0.hangGeneration }) == generation {
                try? await Task.sleep(for: .milliseconds(50))
            }
            refusal = answer(504, ["message": "hung"])
        case .slow(let duration)?: try? await Task.sleep(for: duration)
        case nil: break
        }
        let response: Response
        if let refusal {
            response = refusal
        } else if user == nil {
            response = answer(401, ["message": flavor == .github ? "Bad credentials" : "token is required"])
        } else if let match, violations.isEmpty {
            response = handle(match, query: query, body: bodyData, user: user!)
        } else if match == nil {
            response = answer(404, ["message": "Not Found"])
        } else {
            response = answer(422, ["message": "Validation Failed: \(violations.joined(separator: "; "))"])
        }
        state.withLock {
            $0.requests.append(Request(method: method, path: path, operation: operation, status: Int(response.status.code), user: user))
        }
        return response
    }

    private func handle(_ match: APIDescription.Match, query: [(String, String)], body: Data, user: String) -> Response {
        let p = match.pathParameters
        let repository = "\(p["owner"] ?? "")/\(p["repo"] ?? "")"
        let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        let template = match.template
        switch (match.method, template) {
        case ("GET", "/user"):
            return answer(200, ["login": user, "id": abs(user.hashValue % 100_000), "username": user])
        case ("GET", _) where template.hasSuffix("/comments") && !template.contains("/issues/comments"):
            let number = Int(p["index"] ?? p["issue_number"] ?? "") ?? 0
            let since = query.first { $0.0 == "since" }.flatMap { ISO8601DateFormatter().date(from: $0.1) }
            var list = state.withLock { s in
                s.comments.values.filter { $0.repository == repository && $0.number == number && (since == nil || $0.updated >= since!) }
                    .sorted { $0.id < $1.id }
            }
            if flavor == .github {
                let perPage = min(Int(query.first { $0.0 == "per_page" }?.1 ?? "") ?? 30, 100)
                let page = max(Int(query.first { $0.0 == "page" }?.1 ?? "") ?? 1, 1)
                list = Array(list.dropFirst((page - 1) * perPage).prefix(perPage))
            }
            return answer(200, list.map(render))
        case ("POST", _) where template.hasSuffix("/comments") && !template.contains("/issues/comments"):
            let number = Int(p["index"] ?? p["issue_number"] ?? "") ?? 0
            let text = json["body"] as? String ?? ""
            if flavor == .github && text.count > 65536 {
                return answer(422, ["message": "Validation Failed: body is too long (maximum is 65536 characters)"])
            }
            let created = state.withLock { s in
                s.nextID += 1
                let c = Comment(
                    id: s.nextID, repository: repository, number: number, body: text, author: user, created: Date(), updated: Date(), edits: 0,
                    history: [text])
                s.comments[c.id] = c
                return c
            }
            return answer(201, render(created))
        case ("PATCH", _):
            let id = Int64(p["id"] ?? p["comment_id"] ?? "") ?? 0
            let text = json["body"] as? String ?? ""
            let result = state.withLock { s -> Result<Comment, ForgeAnswer> in
                guard var c = s.comments[id], c.repository == repository else { return .failure(ForgeAnswer(status: 404, message: "Not Found")) }
                if c.author != user {
                    guard !s.readOnly.contains(user) else {
                        return .failure(ForgeAnswer(status: 403, message: "user should be the poster of the comment"))
                    }
                    s.foreignEdits.append("\(user) edited comment \(id) by \(c.author)")
                }
                c.body = text
                c.updated = Date()
                c.edits += 1
                c.history.append(text)
                s.comments[id] = c
                return .success(c)
            }
            switch result {
            case .success(let c): return answer(200, render(c))
            case .failure(let f): return answer(f.status, ["message": f.message])
            }
        case ("POST", _) where template.hasSuffix("/reactions"):
            let id = Int64(p["id"] ?? p["comment_id"] ?? "") ?? 0
            let kind = template.contains("/pulls/") ? "review" : "issue"
            let content = json["content"] as? String ?? ""
            let giteaAllowed = ["+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"]
            if flavor == .gitea && !giteaAllowed.contains(content) {
                return answer(403, ["message": "'\(content)' is not an allowed reaction"])
            }
            let result = state.withLock { s -> Int in
                let known =
                    s.comments[id].map { $0.repository == repository && kind == "issue" }
                    ?? s.external[id].map { $0.repository == repository && $0.kind == kind } ?? false
                guard known else { return 404 }
                let reaction = Reaction(repository: repository, commentID: id, kind: kind, content: content, user: user)
                if s.reactions.contains(reaction) { return 200 }
                s.reactions.append(reaction)
                return 201
            }
            if result == 404 { return answer(404, ["message": "Not Found"]) }
            return answer(result, ["content": content, "user": ["login": user], "created_at": Self.iso(Date())] as [String: Any])
        default:
            return answer(404, ["message": "the double does not serve \(match.method) \(template)"])
        }
    }

    private struct ForgeAnswer: Error {
        let status: Int
        let message: String
    }

    private func render(_ c: Comment) -> [String: Any] {
        [
            "id": c.id, "body": c.body, "user": ["login": c.author, "id": 1] as [String: Any], "created_at": Self.iso(c.created),
            "updated_at": Self.iso(c.updated), "html_url": "https://forge.example/\(c.repository)/issues/\(c.number)#issuecomment-\(c.id)",
        ]
    }

    static func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    private func answer(_ status: Int, _ object: Any, headers: [String: String] = [:]) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = "application/json"
        for (name, value) in headers { if let field = HTTPField.Name(name) { fields[field] = value } }
        var out = object
        if status >= 400, var dict = object as? [String: Any] {
            dict[flavor == .github ? "documentation_url" : "url"] = "https://docs.example/api"
            out = dict
        }
        let data = (try? JSONSerialization.data(withJSONObject: out)) ?? Data()
        return Response(
            status: HTTPResponse.Status(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
