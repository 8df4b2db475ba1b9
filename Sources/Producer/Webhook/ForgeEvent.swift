import Shared

/// One forge event in forge-neutral terms: what routing and prompt templates see.
struct ForgeEvent: Sendable, Equatable {
    var forge: Forge
    var kind: EventKind
    /// Normalized to GitHub's words: Gitea `synchronized` → `synchronize`, `label_updated` → `labeled`,
    /// `label_cleared` → `unlabeled`, `reviewed` → `submitted`.
    var action: String
    /// `owner/name`.
    var repository: String
    var number: Int?
    var isPullRequest: Bool
    var sender: String
    var labels: [String]
    /// The label this event added, when the forge says which (GitHub `labeled`); Gitea's label events carry the full
    /// set only, so every present label counts as added there.
    var labelsAdded: [String]
    var assignees: [String]
    var assigneeAdded: String?
    /// Comment or review body.
    var comment: String?
    /// The triggering comment's id (comment events only): what feedback reacts to.
    var commentID: Int? = nil
    /// `approved`, `changes_requested`, `commented` (reviews only).
    var reviewState: String?
    var url: String?
    var title: String?
    var body: String?
    var merged: Bool
    var state: String?

    var owner: String { String(repository.split(separator: "/").first ?? "") }
    var name: String { String(repository.split(separator: "/").last ?? "") }
    /// True for an issue or pull request that was closed (or merged).
    var isClose: Bool { kind.isSubject && action == "closed" }
}
