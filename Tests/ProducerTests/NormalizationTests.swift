import Foundation
import Shared
import Testing

@testable import Producer

@Suite(.timeLimit(.minutes(5))) struct NormalizationTests {
    struct Expected: Sendable, CustomTestStringConvertible {
        let forge: String, file: String, kind: String, action: String, repo: String, number: Int?, sender: String
        let merged: Bool, labels: [String], reviewState: String?
        var testDescription: String { "\(forge)/\(file)" }
    }

    // Derived from the raw JSON (repository.full_name, issue|pull_request.number, sender.login|username, labels…),
    // with the kinds and actions normalized as DESIGN step 2 says.
    static let table: [Expected] = [
        .init(
            forge: "github", file: "issue_comment.created.1.json", kind: "issue_comment", action: "created", repo: "Codertocat/Hello-World",
            number: 1, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issue_comment.created.json", kind: "issue_comment", action: "created", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issue_comment.edited.json", kind: "issue_comment", action: "edited", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issues.assigned.json", kind: "issues", action: "assigned", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issues.edited.json", kind: "issues", action: "edited", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issues.labeled.json", kind: "issues", action: "labeled", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issues.opened.json", kind: "issues", action: "opened", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issues.opened.with-empty-body.json", kind: "issues", action: "opened", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "issues.reopened.json", kind: "issues", action: "reopened", repo: "Codertocat/Hello-World", number: 1,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request.closed.json", kind: "pull_request", action: "closed", repo: "Codertocat/Hello-World", number: 2,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request.labeled.json", kind: "pull_request", action: "labeled", repo: "Codertocat/Hello-World", number: 2,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request.opened.json", kind: "pull_request", action: "opened", repo: "Codertocat/Hello-World", number: 2,
            sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request.opened.with-null-body.json", kind: "pull_request", action: "opened", repo: "Codertocat/Hello-World",
            number: 2, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request.review_requested.json", kind: "pull_request", action: "review_requested",
            repo: "Codertocat/Hello-World", number: 2, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request.synchronize.json", kind: "pull_request", action: "synchronize", repo: "Codertocat/Hello-World",
            number: 2, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "github", file: "pull_request_review.dismissed.json", kind: "pull_request_review", action: "dismissed",
            repo: "Codertocat/Hello-World", number: 2, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: "dismissed"),
        .init(
            forge: "github", file: "pull_request_review.submitted.json", kind: "pull_request_review", action: "submitted",
            repo: "Codertocat/Hello-World", number: 2, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: "commented"),
        .init(
            forge: "github", file: "pull_request_review_comment.created.json", kind: "pull_request_review_comment", action: "created",
            repo: "Codertocat/Hello-World", number: 2, sender: "Codertocat", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequest.json", kind: "pull_request", action: "opened", repo: "gordon/hello-world", number: 1,
            sender: "gordon", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestAddLabel.json", kind: "pull_request", action: "labeled", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug", "help wanted"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestAddMile.json", kind: "pull_request", action: "milestoned", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug", "help wanted"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestAddReviewRequest.json", kind: "pull_request", action: "review_requested",
            repo: "a_nice_user/hello_world_ci", number: 7, sender: "a_nice_user", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestAssigneesAdded.json", kind: "pull_request", action: "assigned", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestAssigneesRemoved.json", kind: "pull_request", action: "unassigned",
            repo: "a_nice_user/hello_world_ci", number: 7, sender: "a_nice_user", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestChangeBody.json", kind: "pull_request", action: "edited", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestChangeLabel.json", kind: "pull_request", action: "labeled", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestChangeMile.json", kind: "pull_request", action: "milestoned", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug", "help wanted"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestChangeTitle.json", kind: "pull_request", action: "edited", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestClosed.json", kind: "pull_request", action: "closed", repo: "anbraten/test-repo", number: 1,
            sender: "anbraten", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestMerged.json", kind: "pull_request", action: "closed", repo: "anbraten/test-repo", number: 1,
            sender: "anbraten", merged: true, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestRemoveLabel.json", kind: "pull_request", action: "unlabeled", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug", "help wanted"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestRemoveMile.json", kind: "pull_request", action: "demilestoned", repo: "a_nice_user/hello_world_ci",
            number: 7, sender: "a_nice_user", merged: false, labels: ["bug", "help wanted"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestReopened.json", kind: "pull_request", action: "reopened", repo: "test_it/test_ci_thing", number: 1,
            sender: "6543", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPullRequestReviewAck.json", kind: "pull_request_review", action: "submitted",
            repo: "a_nice_user/hello_world_ci", number: 7, sender: "a_nice_user", merged: false, labels: [], reviewState: "approved"),
        .init(
            forge: "gitea", file: "HookPullRequestReviewComment.json", kind: "pull_request_review", action: "submitted",
            repo: "a_nice_user/hello_world_ci", number: 7, sender: "a_nice_user", merged: false, labels: [], reviewState: "commented"),
        .init(
            forge: "gitea", file: "HookPullRequestReviewDeny.json", kind: "pull_request_review", action: "submitted",
            repo: "a_nice_user/hello_world_ci", number: 7, sender: "a_nice_user", merged: false, labels: [], reviewState: "changes_requested"),
        .init(
            forge: "gitea", file: "HookPullRequestUpdated.json", kind: "pull_request", action: "synchronize", repo: "Test-CI/multi-line-secrets",
            number: 2, sender: "test", merged: false, labels: ["Kind/Bug", "Kind/Security"], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPush.json", kind: "push", action: "", repo: "gordon/hello-world", number: nil, sender: "", merged: false,
            labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPushBranch.json", kind: "push", action: "", repo: "meisam/woodpecktester", number: nil, sender: "",
            merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookPushMulti.json", kind: "push", action: "", repo: "Test-CI/multi-line-secrets", number: nil, sender: "",
            merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookRelease.json", kind: "release", action: "published", repo: "anbraten/demo", number: nil, sender: "",
            merged: false, labels: [], reviewState: nil),
        .init(
            forge: "gitea", file: "HookTag.json", kind: "create", action: "", repo: "gordon/hello-world", number: nil, sender: "", merged: false,
            labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequest.json", kind: "pull_request", action: "opened", repo: "gordon/hello-world", number: 1,
            sender: "gordon", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestAssigneeCleared.json", kind: "pull_request", action: "unassigned", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: ["Kind/Documentation", "Kind/Enhancement"], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestAssigneesAdded.json", kind: "pull_request", action: "assigned", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestClosed.json", kind: "pull_request", action: "closed", repo: "anbraten/test-repo", number: 1,
            sender: "anbraten", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestEdited.json", kind: "pull_request", action: "edited", repo: "anbraten/test-repo", number: 1,
            sender: "anbraten", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestLabelAdded.json", kind: "pull_request", action: "labeled", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: ["Kind/Documentation", "Kind/Enhancement"], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestLabelsCleared.json", kind: "pull_request", action: "unlabeled", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: ["Kind/Enhancement", "Kind/Testing"], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestLabelsUpdated.json", kind: "pull_request", action: "labeled", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: ["Kind/Enhancement", "Kind/Testing"], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestMerged.json", kind: "pull_request", action: "closed", repo: "anbraten/test-repo", number: 1,
            sender: "anbraten", merged: true, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestMilestoneAdded.json", kind: "pull_request", action: "milestoned", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestMilestoneChanged.json", kind: "pull_request", action: "milestoned", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: ["Kind/Documentation", "Kind/Enhancement"], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestMilestoneCleared.json", kind: "pull_request", action: "demilestoned",
            repo: "test_it/test_ci_thing", number: 1, sender: "6543", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestReopened.json", kind: "pull_request", action: "reopened", repo: "test_it/test_ci_thing",
            number: 1, sender: "6543", merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPullRequestUpdated.json", kind: "pull_request", action: "synchronize", repo: "Test-CI/multi-line-secrets",
            number: 2, sender: "test", merged: false, labels: ["Kind/Bug", "Kind/Security"], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPush.json", kind: "push", action: "", repo: "gordon/hello-world", number: nil, sender: "", merged: false,
            labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPushBranch.json", kind: "push", action: "", repo: "meisam/woodpecktester", number: nil, sender: "",
            merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookPushMulti.json", kind: "push", action: "", repo: "Test-CI/multi-line-secrets", number: nil, sender: "",
            merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookRelease.json", kind: "release", action: "published", repo: "anbraten/demo", number: nil, sender: "",
            merged: false, labels: [], reviewState: nil),
        .init(
            forge: "forgejo", file: "HookTag.json", kind: "create", action: "", repo: "gordon/hello-world", number: nil, sender: "", merged: false,
            labels: [], reviewState: nil),
    ]

    @Test func tableCoversEveryCorpusFile() {
        for forge in ["github", "gitea", "forgejo"] {
            let listed = Set(Self.table.filter { $0.forge == forge }.map(\.file))
            let present = Set(Corpus.files(forge)).subtracting(["ping.payload.json"])
            #expect(!present.isEmpty, "no corpus files for \(forge) at \(Corpus.root.path)")
            #expect(listed == present, "\(forge): table and corpus differ")
        }
    }

    @Test(arguments: table)
    func normalizesCorpusFile(_ e: Expected) throws {
        let payload = try EventNormalizer.parse(try Corpus.body(e.forge, e.file))
        let event = try EventNormalizer.normalize(
            forge: Forge(rawValue: e.forge)!, event: Corpus.event(e.forge, e.file), eventType: nil, payload: payload)
        #expect(event.kind.name == e.kind)
        #expect(event.action == e.action)
        #expect(event.repository == e.repo)
        #expect(event.number == e.number)
        #expect(event.merged == e.merged)
        #expect(event.reviewState == e.reviewState)
        if e.number != nil {
            #expect(event.sender == e.sender)
            #expect(event.labels == e.labels)
            #expect(event.isPullRequest == (e.kind != "issues" && e.kind != "issue_comment"))
            #expect(event.url?.hasPrefix("http") == true)
        }
    }

    @Test func githubDetails() throws {
        let comment = try EventNormalizer.normalize(
            forge: .github, event: "issue_comment", eventType: nil,
            payload: try EventNormalizer.parse(try Corpus.body("github", "issue_comment.created.json")))
        #expect(comment.comment?.hasPrefix("You are totally right") == true)
        #expect(comment.isPullRequest == false)
        let labeled = try EventNormalizer.normalize(
            forge: .github, event: "issues", eventType: nil, payload: try EventNormalizer.parse(try Corpus.body("github", "issues.labeled.json")))
        #expect(labeled.labelsAdded == ["bug"])
        let assigned = try EventNormalizer.normalize(
            forge: .github, event: "issues", eventType: nil, payload: try EventNormalizer.parse(try Corpus.body("github", "issues.assigned.json")))
        #expect(assigned.assigneeAdded == "Codertocat")
        let nullBody = try EventNormalizer.normalize(
            forge: .github, event: "pull_request", eventType: nil,
            payload: try EventNormalizer.parse(try Corpus.body("github", "pull_request.opened.with-null-body.json")))
        #expect(nullBody.body == nil)
    }

    /// Gitea/Forgejo `issues` and `issue_comment` (not in the corpus; shape from its README).
    static func giteaIssuePayload(comment: String? = nil, isPull: Bool = false, action: String = "opened") -> [String: Any] {
        var p: [String: Any] = [
            "action": action, "number": 12,
            "issue": [
                "number": 12, "title": "Crash on save", "body": "It crashes", "labels": [["name": "bug"]], "assignees": [["login": "dev-bot"]],
                "user": ["login": "alice"], "html_url": "https://git.example/acme/app/issues/12", "state": "open",
            ] as [String: Any],
            "repository": ["full_name": "acme/app", "owner": ["login": "acme"], "name": "app"] as [String: Any],
            "sender": ["login": "alice"],
        ]
        if let comment {
            p["comment"] =
                ["id": 5, "body": comment, "user": ["login": "alice"], "html_url": "https://git.example/acme/app/issues/12#c5"] as [String: Any]
            p["is_pull"] = isPull
        }
        return p
    }

    @Test func giteaIssuesAndComments() throws {
        let issue = try EventNormalizer.normalize(forge: .forgejo, event: "issues", eventType: "issues", payload: Self.json(Self.giteaIssuePayload()))
        #expect(issue.kind == .issues && issue.action == "opened" && issue.number == 12 && !issue.isPullRequest)
        #expect(issue.labels == ["bug"] && issue.assignees == ["dev-bot"] && issue.sender == "alice")

        let comment = try EventNormalizer.normalize(
            forge: .gitea, event: "issue_comment", eventType: "issue_comment", payload: Self.json(Self.giteaIssuePayload(comment: "@dev please fix")))
        #expect(comment.kind == .issueComment && comment.comment == "@dev please fix" && !comment.isPullRequest)
        #expect(comment.url == "https://git.example/acme/app/issues/12#c5")

        // A comment on a PR's conversation: X-Gitea-Event: issue_comment, X-Gitea-Event-Type: pull_request_comment, is_pull.
        let prComment = try EventNormalizer.normalize(
            forge: .gitea, event: "issue_comment", eventType: "pull_request_comment",
            payload: Self.json(Self.giteaIssuePayload(comment: "@dev rebase", isPull: true, action: "created")))
        #expect(prComment.kind == .issueComment && prComment.isPullRequest)
        // …and sent under X-Gitea-Event: pull_request_comment it is still a conversation comment, not a review.
        let asHeader = try EventNormalizer.normalize(
            forge: .forgejo, event: "pull_request_comment", eventType: "pull_request_comment",
            payload: Self.json(Self.giteaIssuePayload(comment: "@dev rebase", isPull: true, action: "created")))
        #expect(asHeader.kind == .issueComment && asHeader.isPullRequest)
    }

    @Test(arguments: [
        ("", "empty body"),
        ("{\"action\": \"opened\"", "malformed JSON"),
        ("[1,2,3]", "must be a JSON object"),
        ("\"text\"", "must be a JSON object"),
        ("{\"a\": 1} x", "unexpected data after"),
        ("{\"a\": \"\\ud800\"}", "unpaired surrogate"),
        ("{\"a\": \"tab\there\"}", "control character"),
        ("{\"a\": 01}", "expected ',' or '}'"),
        ("{\"a\": tru}", "invalid literal"),
        ("{\"skipped_url\": [1, {\"x\": }]}", "unexpected character"),
        ("{\"skipped_url\": \"\\q\"}", "invalid escape"),
    ])
    func rejectsMalformedBodies(body: String, message: String) {
        #expect { try EventNormalizer.parse(Array(body.utf8)) } throws: { "\($0)".contains(message) }
    }

    static func json(_ object: [String: Any]) -> [String: JSONValue] {
        try! EventNormalizer.parse(Array(try! JSONSerialization.data(withJSONObject: object)))
    }

    @Test func parsesEscapesAndUnicode() throws {
        let value = try JSONParser.parse(Array(#"{"s":"a\"b\\c\/d\n\u00e9\ud83d\ude00","n":[-1.5e2,0,12],"t":true,"z":null}"#.utf8))
        guard case .object(let o) = value else { Issue.record("not an object"); return }
        #expect(o["s"] == .string("a\"b\\c/d\né😀"))
        #expect(o["n"] == .array([.number(-150), .number(0), .number(12)]))
        #expect(o["t"] == .bool(true) && o["z"] == .null)
        #expect(JSONValue.object(o).serialized == #"{"n":[-150,0,12],"s":"a\"b\\c/d\né😀","t":true,"z":null}"#)
        let deep = Array((String(repeating: "[", count: 500) + String(repeating: "]", count: 500)).utf8)
        #expect { try JSONParser.parse(deep) } throws: { "\($0)".contains("nesting deeper") }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: PayloadError.self) { try EventNormalizer.parse([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]) }
    }

    @Test func namesMissingAndMistypedFields() throws {
        var p = Self.giteaIssuePayload()
        p["repository"] = nil
        #expect { try EventNormalizer.normalize(forge: .gitea, event: "issues", eventType: nil, payload: Self.json(p)) } throws: {
            "\($0)" == "field 'repository' is missing"
        }
        p = Self.giteaIssuePayload()
        p["issue"] = ["number": "12"]
        #expect { try EventNormalizer.normalize(forge: .gitea, event: "issues", eventType: nil, payload: Self.json(p)) } throws: {
            "\($0)" == "field 'issue.number' must be an integer"
        }
        p = Self.giteaIssuePayload()
        p["issue"] = ["number": true]
        #expect { try EventNormalizer.normalize(forge: .gitea, event: "issues", eventType: nil, payload: Self.json(p)) } throws: {
            "\($0)" == "field 'issue.number' must be an integer"
        }
        p = Self.giteaIssuePayload(comment: "hi")
        p["comment"] = ["body": 42]
        #expect { try EventNormalizer.normalize(forge: .gitea, event: "issue_comment", eventType: nil, payload: Self.json(p)) } throws: {
            "\($0)" == "field 'comment.body' must be a string"
        }
        p = Self.giteaIssuePayload()
        p["sender"] = "alice"
        #expect { try EventNormalizer.normalize(forge: .gitea, event: "issues", eventType: nil, payload: Self.json(p)) } throws: {
            "\($0)" == "field 'sender' must be an object"
        }
    }
}
