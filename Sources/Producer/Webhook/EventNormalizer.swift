import Foundation
import Shared

/// A payload that cannot be understood: answered 400, naming the field.
struct PayloadError: Error, Equatable, CustomStringConvertible {
    let field: String
    let problem: String
    var description: String { field.isEmpty ? problem : "field '\(field)' \(problem)" }
}

/// Turns a forge's webhook (event header + JSON body) into a `ForgeEvent`.
enum EventNormalizer {
    /// The event name as the forge sends it, from its headers.
    static func eventHeader(forge: Forge, header: (String) -> String?) -> (event: String, type: String?)? {
        switch forge {
        case .github:
            return header("x-github-event").map { ($0, nil) }
        case .gitea, .forgejo:
            let event = header("x-gitea-event") ?? header("x-forgejo-event") ?? header("x-github-event")
            let type = header("x-gitea-event-type") ?? header("x-forgejo-event-type")
            return event.map { ($0, type) }
        }
    }

    static func deliveryHeader(forge: Forge, header: (String) -> String?) -> String? {
        switch forge {
        case .github: return header("x-github-delivery")
        case .gitea: return header("x-gitea-delivery") ?? header("x-github-delivery")
        case .forgejo: return header("x-forgejo-delivery") ?? header("x-gitea-delivery") ?? header("x-github-delivery")
        }
    }

    /// Every object member name `normalize` reads, at any depth; the rest of a payload is syntax-checked only.
    static let fieldsRead = JSONKeySet([
        "action", "number", "issue", "pull_request", "comment", "review", "repository", "sender", "label", "assignee", "assignees",
        "labels", "is_pull", "full_name", "login", "username", "title", "body", "html_url", "state", "merged", "name", "type", "content",
        "id",
    ])

    /// Parses the body; it must be a JSON object.
    static func parse(_ body: [UInt8]) throws(PayloadError) -> [String: JSONValue] {
        if body.isEmpty { throw PayloadError(field: "", problem: "empty body: expected a JSON object") }
        let value: JSONValue
        do {
            value = try JSONParser.parse(body, keep: Self.fieldsRead)
        } catch {
            throw PayloadError(field: "", problem: "malformed JSON: \(error)")
        }
        guard case .object(let object) = value else { throw PayloadError(field: "", problem: "the body must be a JSON object") }
        return object
    }

    /// - Throws: `PayloadError` naming the missing or mistyped field.
    static func normalize(forge: Forge, event: String, eventType: String?, payload p: [String: JSONValue]) throws -> ForgeEvent {
        let j = JSONObject(p, path: "")
        var kind = EventKind(name: event)
        var reviewState: String?
        if forge != .github {
            switch event {
            case "pull_request_approved", "pull_request_rejected", "pull_request_comment", "pull_request_review_approved",
                "pull_request_review_rejected", "pull_request_review_comment":
                if p.present("comment") && p.present("issue") {
                    kind = .issueComment  // a comment on the PR's conversation (X-Gitea-Event-Type: pull_request_comment)
                } else {
                    kind = .pullRequestReview
                    let type = (try? j.object("review")?.string("type")) ?? nil
                    let tag = type ?? eventType ?? event
                    reviewState =
                        tag.hasSuffix("approved") ? "approved" : tag.hasSuffix("rejected") ? "changes_requested" : "commented"
                }
            default:
                break
            }
        }
        guard kind.isRouted else {
            // Not routed (push, create, release, …): only the repository is read, if present.
            let repo = (try? j.object("repository")?.string("full_name")) ?? nil
            return ForgeEvent(
                forge: forge, kind: kind, action: ((try? j.string("action")) ?? nil) ?? "", repository: repo ?? "", number: nil,
                isPullRequest: false, sender: "", labels: [], labelsAdded: [], assignees: [], assigneeAdded: nil, comment: nil,
                reviewState: nil, url: nil, title: nil, body: nil, merged: false, state: nil)
        }

        let repository = try j.requiredObject("repository").requiredString("full_name")
        guard repository.split(separator: "/").count == 2 else {
            throw PayloadError(field: "repository.full_name", problem: "must be owner/name, got '\(repository)'")
        }
        let senderObject = try j.requiredObject("sender")
        guard let sender = try senderObject.string("login") ?? senderObject.string("username"), !sender.isEmpty else {
            throw PayloadError(field: "sender.login", problem: "is missing")
        }
        let action = Self.normalizeAction(try j.string("action") ?? "")

        var event = ForgeEvent(
            forge: forge, kind: kind, action: action, repository: repository, number: nil, isPullRequest: false, sender: sender,
            labels: [], labelsAdded: [], assignees: [], assigneeAdded: nil, comment: nil, reviewState: reviewState, url: nil,
            title: nil, body: nil, merged: false, state: nil)

        // The issue or pull request the event is about.
        let subject: JSONObject
        switch kind {
        case .issues, .issueComment:
            subject = try j.requiredObject("issue")
            let isPull = try j.bool("is_pull") ?? false
            let hasPullRequest = try subject.object("pull_request") != nil
            event.isPullRequest = isPull || p.present("pull_request") || hasPullRequest
        default:
            subject = try j.requiredObject("pull_request")
            event.isPullRequest = true
        }
        guard let number = try subject.int("number") ?? (try j.int("number")) else {
            throw PayloadError(field: "\(subject.path).number", problem: "is missing")
        }
        guard number > 0 else { throw PayloadError(field: "\(subject.path).number", problem: "must be a positive integer") }
        event.number = number
        event.title = try subject.string("title")
        event.body = try subject.string("body")
        event.url = try subject.string("html_url")
        event.state = try subject.string("state")
        event.merged = try subject.bool("merged") ?? false
        event.labels = try subject.names("labels", key: "name")
        event.assignees = try subject.names("assignees", key: "login", alternate: "username")
        if event.assignees.isEmpty, let single = try subject.object("assignee"), let login = try single.string("login") ?? single.string("username") {
            event.assignees = [login]
        }
        if let label = try j.object("label"), let name = try label.string("name") {
            event.labelsAdded = action == "labeled" ? [name] : []
        } else if action == "labeled" {
            event.labelsAdded = event.labels  // Gitea: label_updated carries the whole set
        }
        if action == "assigned" {
            if let a = try j.object("assignee") { event.assigneeAdded = try a.string("login") ?? a.string("username") }
        }

        switch kind {
        case .issueComment, .pullRequestReviewComment:
            let comment = try j.requiredObject("comment")
            event.comment = try comment.requiredString("body", allowEmpty: true)
            if let u = try comment.string("html_url") { event.url = u }
            event.commentID = try comment.int("id").flatMap { $0 > 0 ? $0 : nil }
        case .pullRequestReview:
            let review = try j.requiredObject("review")
            if forge == .github {
                event.comment = try review.string("body")
                guard let state = try review.string("state") else { throw PayloadError(field: "review.state", problem: "is missing") }
                event.reviewState = state.lowercased()
                if let u = try review.string("html_url") { event.url = u }
            } else {
                event.comment = try review.string("content")
            }
        default:
            break
        }
        return event
    }

    static func normalizeAction(_ action: String) -> String {
        switch action {
        case "synchronized": return "synchronize"
        case "label_updated": return "labeled"
        case "label_cleared": return "unlabeled"
        case "reviewed": return "submitted"
        default: return action
        }
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    /// The key is there and not null.
    func present(_ key: String) -> Bool {
        if let v = self[key], v != .null { return true }
        return false
    }
}

/// Typed access to a JSON object that names the path of a bad field.
struct JSONObject {
    let dict: [String: JSONValue]
    let path: String

    init(_ dict: [String: JSONValue], path: String) {
        self.dict = dict
        self.path = path
    }

    private func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func present(_ key: String) -> JSONValue? {
        guard let v = dict[key], v != .null else { return nil }
        return v
    }

    func object(_ key: String) throws(PayloadError) -> JSONObject? {
        guard let v = present(key) else { return nil }
        guard case .object(let d) = v else { throw PayloadError(field: field(key), problem: "must be an object") }
        return JSONObject(d, path: field(key))
    }

    func requiredObject(_ key: String) throws(PayloadError) -> JSONObject {
        guard let o = try object(key) else { throw PayloadError(field: field(key), problem: "is missing") }
        return o
    }

    func string(_ key: String) throws(PayloadError) -> String? {
        guard let v = present(key) else { return nil }
        guard case .string(let s) = v else { throw PayloadError(field: field(key), problem: "must be a string") }
        return s
    }

    func requiredString(_ key: String, allowEmpty: Bool = false) throws(PayloadError) -> String {
        guard let s = try string(key) else { throw PayloadError(field: field(key), problem: "is missing") }
        if !allowEmpty && s.isEmpty { throw PayloadError(field: field(key), problem: "is empty") }
        return s
    }

    func int(_ key: String) throws(PayloadError) -> Int? {
        guard let v = present(key) else { return nil }
        guard case .number(let n) = v, n == n.rounded(), abs(n) < 1e15 else {
            throw PayloadError(field: field(key), problem: "must be an integer")
        }
        return Int(n)
    }

    func bool(_ key: String) throws(PayloadError) -> Bool? {
        guard let v = present(key) else { return nil }
        guard case .bool(let b) = v else { throw PayloadError(field: field(key), problem: "must be true or false") }
        return b
    }

    /// `[{key: …}]` → names; a missing or null list is empty.
    func names(_ key: String, key nameKey: String, alternate: String? = nil) throws(PayloadError) -> [String] {
        guard let v = present(key) else { return [] }
        guard case .array(let list) = v else { throw PayloadError(field: field(key), problem: "must be a list") }
        var out: [String] = []
        for (i, item) in list.enumerated() {
            guard case .object(let d) = item else { throw PayloadError(field: "\(field(key))[\(i)]", problem: "must be an object") }
            if case .string(let s) = d[nameKey] ?? .null {
                out.append(s)
            } else if let alternate, case .string(let s) = d[alternate] ?? .null {
                out.append(s)
            }
        }
        return out
    }
}
