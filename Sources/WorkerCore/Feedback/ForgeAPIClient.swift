import AsyncHTTPClient
import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import Shared

/// One issue or pull-request comment as a forge returns it.
package struct ForgeComment: Sendable, Equatable {
    package let id: Int64
    package let body: String
    package let author: String
}

/// Which kind of comment a reaction goes on: the conversation (issue comments, on all three forges also a pull
/// request's conversation) or a line comment of a pull-request review (GitHub has its own endpoint for those).
package enum CommentKind: String, Sendable {
    case issue, review
}

/// The calls feedback makes, as named in logs and in `forge_api_requests_total{operation}`.
package enum ForgeOperation: String, Sendable {
    case getUser = "get_user"
    case listComments = "list_comments"
    case createComment = "create_comment"
    case editComment = "edit_comment"
    case addReaction = "add_reaction"
}

/// A forge API call that failed, in the terms feedback acts on.
package struct ForgeAPIError: Error, Sendable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable {
        /// Refused for good (401, 403, 404, 422, …): retrying the same request cannot help.
        case rejected
        /// Over a rate limit: try again after the delay the forge named.
        case rateLimited(retryAfter: Duration)
        /// 5xx, a timeout or no connection: may pass.
        case unavailable
    }

    package let forge: Forge
    package let operation: ForgeOperation
    package let status: Int?
    package let kind: Kind
    /// The forge's own message (bounded), or the transport error.
    package let message: String
    /// No connection could be made (refused, connect timeout, name not resolved): the forge is down for every call.
    package var connectionFailed = false
    /// The call was cancelled (the attempt's deadline, the worker stopping): nothing is known about the forge.
    package var cancelled = false

    package var description: String {
        let what = "\(forge.rawValue) \(operation.rawValue)"
        let code = status.map { "HTTP \($0)" } ?? "no response"
        var hint = ""
        switch (kind, status) {
        case (.rejected, 401): hint = " — the token was refused: check that it is current and belongs to the agent's bot account"
        case (.rejected, 403):
            hint = " — the token may not do this: it needs write access to the repository's issues and pull requests (see docs/feedback.md)"
        case (.rejected, 404) where operation == .getUser:
            hint = " — no API at this address: check forges.\(forge.rawValue).api.url (GitHub Enterprise: …/api/v3, Gitea and Forgejo: …/api/v1)"
        case (.rejected, 404): hint = " — not found, or the token cannot see this repository"
        case (.rateLimited(let after), _): hint = " — rate limited; retrying in \(Int(after.seconds.rounded(.up))) s"
        default: break
        }
        return "\(what): \(code): \(message)\(hint)"
    }
}

/// The forge REST calls feedback needs, one implementation per API dialect (GitHub; Gitea and Forgejo's v1).
package protocol ForgeAPI: Sendable {
    var forge: Forge { get }
    /// The login of the token's account.
    func currentUser() async throws(ForgeAPIError) -> String
    /// Comments of issue or pull request `number` updated at or after `since`, oldest first, at most `limit`.
    func comments(repository: String, number: Int, since: Date?, limit: Int) async throws(ForgeAPIError) -> [ForgeComment]
    func createComment(repository: String, number: Int, body: String) async throws(ForgeAPIError) -> ForgeComment
    func editComment(repository: String, id: Int64, body: String) async throws(ForgeAPIError)
    func addReaction(repository: String, commentID: Int64, kind: CommentKind, content: String) async throws(ForgeAPIError)
}

/// A small REST client for one forge and one token, on AsyncHTTPClient. Timeouts are short (feedback is never worth
/// holding anything up for); the token goes in the `Authorization` header only and is never logged or printed.
package struct ForgeAPIClient: ForgeAPI {
    package let forge: Forge
    /// `https://api.github.com`, `https://git.example.com/api/v1`.
    package let baseURL: String
    private let token: String
    private let http: HTTPClient
    /// The whole-request deadline (connect, send, answer).
    private let timeout: TimeAmount
    package static let timeout: TimeAmount = .seconds(15)
    /// Comment lists and answers bigger than this are refused rather than buffered.
    static let maxBodyBytes = 8 << 20

    package init(forge: Forge, baseURL: String, token: String, http: HTTPClient, timeout: TimeAmount = ForgeAPIClient.timeout) {
        self.forge = forge
        self.timeout = timeout
        self.baseURL = baseURL  // as ForgeAPISettings normalised it: no trailing slash
        self.token = token
        self.http = http
    }

    private var isGitHub: Bool { forge == .github }

    /// `owner/name` as two escaped path segments.
    private func repoPath(_ repository: String) -> String {
        repository.split(separator: "/", maxSplits: 1).map { Self.escape(String($0)) }.joined(separator: "/")
    }

    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? segment
    }

    package func currentUser() async throws(ForgeAPIError) -> String {
        let body = try await send(.getUser, .GET, "/user")
        guard let user = try? JSONDecoder().decode(UserDTO.self, from: body), let login = user.name else {
            // Typically a web page at a wrong URL (GitHub Enterprise needs /api/v3, Gitea /api/v1).
            throw error(
                .getUser, status: 200, .rejected,
                "the answer is not a user account: check forges.\(forge.rawValue).api.url (\(baseURL)) points at the API root")
        }
        return login
    }

    package func comments(repository: String, number: Int, since: Date?, limit: Int) async throws(ForgeAPIError) -> [ForgeComment] {
        // GitHub pages (`page`, `per_page` up to 100); Gitea and Forgejo answer every comment since `since` at once.
        var out: [ForgeComment] = []
        var page = 1
        while out.count < limit {
            var query: [String] = isGitHub ? ["per_page=100", "page=\(page)"] : []
            if let since { query.append("since=\(Self.escape(String(Timestamp.iso(since).prefix(19)) + "Z"))") }
            let path = "/repos/\(repoPath(repository))/issues/\(number)/comments" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
            let body = try await send(.listComments, .GET, path)
            guard let items = try? JSONDecoder().decode([CommentDTO].self, from: body) else {
                throw error(.listComments, status: 200, .unavailable, "the answer is not a list of comments")
            }
            out += items.map(\.comment)
            guard isGitHub, items.count == 100 else { break }
            page += 1
        }
        return Array(out.prefix(limit))
    }

    package func createComment(repository: String, number: Int, body: String) async throws(ForgeAPIError) -> ForgeComment {
        let answer = try await send(.createComment, .POST, "/repos/\(repoPath(repository))/issues/\(number)/comments", json: ["body": body])
        guard let created = try? JSONDecoder().decode(CommentDTO.self, from: answer) else {
            throw error(.createComment, status: 201, .unavailable, "the answer is not a comment")
        }
        return created.comment
    }

    package func editComment(repository: String, id: Int64, body: String) async throws(ForgeAPIError) {
        _ = try await send(.editComment, .PATCH, "/repos/\(repoPath(repository))/issues/comments/\(id)", json: ["body": body])
    }

    package func addReaction(repository: String, commentID: Int64, kind: CommentKind, content: String) async throws(ForgeAPIError) {
        // Gitea and Forgejo keep review line comments with the issue comments; GitHub has a separate endpoint.
        let collection = isGitHub && kind == .review ? "pulls" : "issues"
        _ = try await send(
            .addReaction, .POST, "/repos/\(repoPath(repository))/\(collection)/comments/\(commentID)/reactions", json: ["content": content])
    }

    // MARK: HTTP

    private func send(
        _ operation: ForgeOperation, _ method: HTTPMethod, _ path: String, json: [String: String]? = nil
    ) async throws(ForgeAPIError) -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: isGitHub ? "Bearer \(token)" : "token \(token)")
        request.headers.add(name: "Accept", value: isGitHub ? "application/vnd.github+json" : "application/json")
        request.headers.add(name: "User-Agent", value: "forge-hooks")
        if isGitHub { request.headers.add(name: "X-GitHub-Api-Version", value: "2022-11-28") }
        if let json {
            let data = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data()
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await http.execute(request, timeout: timeout)
            body = try await response.body.collect(upTo: Self.maxBodyBytes)
        } catch {
            count(operation, "error")
            var failure = self.error(operation, status: nil, .unavailable, Self.describe(error, timeout: timeout))
            failure.cancelled = Task.isCancelled || error is CancellationError || (error as? HTTPClientError) == .cancelled
            failure.connectionFailed = !failure.cancelled && Self.isConnectFailure(error)
            throw failure
        }
        let status = Int(response.status.code)
        count(operation, String(status))
        let data = Data(body.readableBytesView)
        if (200..<300).contains(status) { return data }
        let message = Self.message(data)
        if let wait = Self.rateLimitDelay(status: status, headers: response.headers, message: message) {
            throw error(operation, status: status, .rateLimited(retryAfter: wait), message)
        }
        throw error(operation, status: status, status >= 500 || status == 408 ? .unavailable : .rejected, message)
    }

    private func count(_ operation: ForgeOperation, _ status: String) {
        Counter(label: "forge_api_requests_total", dimensions: [("forge", forge.rawValue), ("operation", operation.rawValue), ("status", status)])
            .increment()
    }

    private func error(_ operation: ForgeOperation, status: Int?, _ kind: ForgeAPIError.Kind, _ message: String) -> ForgeAPIError {
        ForgeAPIError(forge: forge, operation: operation, status: status, kind: kind, message: message)
    }

    /// How long a rate limit asks to wait, or nil when the answer is not one: 429 always; 403 when GitHub says the
    /// limit is used up (`X-RateLimit-Remaining: 0`), names a wait (`Retry-After`), or its message says so (a
    /// secondary limit may come with neither header). `Retry-After` (seconds or an HTTP date) wins over
    /// `X-RateLimit-Reset` (epoch seconds); a minute when neither says (or says nonsense); never more than an hour.
    package static func rateLimitDelay(status: Int, headers: HTTPHeaders, message: String = "", now: Date = Date()) -> Duration? {
        let retryAfter = headers.first(name: "retry-after")
        let remaining = headers.first(name: "x-ratelimit-remaining")
        let saysSo = message.lowercased().contains("rate limit")
        guard status == 429 || (status == 403 && (retryAfter != nil || remaining == "0" || saysSo)) else { return nil }
        var seconds: Double = 60
        if let retryAfter {
            if let n = Double(retryAfter.trimmingCharacters(in: .whitespaces)) {
                seconds = n
            } else if let date = httpDate(retryAfter) {
                seconds = date.timeIntervalSince(now)
            }
        } else if let reset = headers.first(name: "x-ratelimit-reset").flatMap(Double.init) {
            seconds = reset - now.timeIntervalSince1970
        }
        if !seconds.isFinite { seconds = 60 }  // `nan`, `inf` from a broken proxy must not trap the worker
        return .milliseconds(Int64(min(max(seconds, 1), 3600) * 1000))
    }

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }

    /// The forge's `message` field, bounded and on one line, else the start of the body.
    static func message(_ data: Data) -> String {
        let text: String
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let m = object["message"] as? String {
            text = m
        } else {
            text = String(decoding: data.prefix(300), as: UTF8.self)
        }
        let line = text.replacingOccurrences(of: "\n", with: " ").trimmingCharacters(in: .whitespaces)
        return line.isEmpty ? "(no message)" : StreamJSONParser.bounded(line, 300)
    }

    /// Whether no connection was made at all (as opposed to one that failed or timed out mid-answer).
    static func isConnectFailure(_ error: Error) -> Bool {
        if let e = error as? HTTPClientError { return e == .connectTimeout }
        let type = String(describing: Swift.type(of: error))
        let text = "\(error)".lowercased()
        return type.contains("NIOConnectionError") || type.contains("ConnectTimeout") || text.contains("connection refused")
            || text.contains("connectiontimeout") || text.contains("connect timeout")
    }

    /// The transport error in words that never carry a request header (AsyncHTTPClient's own description of an
    /// invalid header value includes the value: the token).
    static func describe(_ error: Error, timeout: TimeAmount) -> String {
        if let e = error as? HTTPClientError {
            if e == .deadlineExceeded || e == .readTimeout || e == .connectTimeout {
                return "no answer within \(Double(timeout.nanoseconds) / 1e9) s"
            }
            return "HTTP client error: \(e.shortDescription)"
        }
        if error is CancellationError { return "cancelled (the attempt's deadline passed, or the worker is stopping)" }
        return "no connection: \(String(describing: type(of: error))) \(String("\(error)".prefix(200)))"
    }
}

/// The fields feedback reads of the forges' user and comment objects (both dialects name them alike).
private struct UserDTO: Decodable {
    let login: String?
    let username: String?
    var name: String? { (login?.isEmpty == false ? login : nil) ?? username }
}

private struct CommentDTO: Decodable {
    let id: Int64
    let body: String?
    let user: UserDTO?
    var comment: ForgeComment { ForgeComment(id: id, body: body ?? "", author: user?.name ?? "") }
}
