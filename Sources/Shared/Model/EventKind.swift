/// What a forge event is about, in GitHub's words (Gitea and Forgejo events are mapped onto these). Rules name the
/// routed kinds in `events:`; any other event (`push`, `create`, `release`, …) is kept by name and never routed.
public enum EventKind: Sendable, Hashable, CustomStringConvertible {
    case issues
    case issueComment
    case pullRequest
    case pullRequestReview
    case pullRequestReviewComment
    /// An event that is not routed, by the forge's name for it.
    case other(String)

    /// Every kind a rule can route, in the order documentation lists them.
    public static let routed: [EventKind] = [.issues, .issueComment, .pullRequest, .pullRequestReview, .pullRequestReviewComment]

    public init(name: String) {
        self = Self.routed.first { $0.name == name } ?? .other(name)
    }

    /// The name used in rules, job records (`event`), metrics and prompt templates.
    public var name: String {
        switch self {
        case .issues: "issues"
        case .issueComment: "issue_comment"
        case .pullRequest: "pull_request"
        case .pullRequestReview: "pull_request_review"
        case .pullRequestReviewComment: "pull_request_review_comment"
        case .other(let name): name
        }
    }

    public var isRouted: Bool {
        if case .other = self { return false }
        return true
    }

    /// An event on the issue or pull request itself rather than a comment or review on it.
    public var isSubject: Bool { self == .issues || self == .pullRequest }

    public var description: String { name }
}
