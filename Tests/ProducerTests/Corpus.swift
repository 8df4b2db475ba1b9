import Foundation
import Shared
import Testing

@testable import Producer

/// The real forge payloads in `../shared/forge-payloads` (beside the repository, in CI too).
enum Corpus {
    static let root: URL = {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return repo.deletingLastPathComponent().appendingPathComponent("shared/forge-payloads")
    }()

    static func body(_ forge: String, _ file: String) throws -> [UInt8] {
        let url = root.appendingPathComponent(forge).appendingPathComponent(file)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw CorpusMissing(path: url.path)
        }
        return Array(data)
    }

    static func files(_ forge: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(forge).path)) ?? []).filter { $0.hasSuffix(".json") }
            .sorted()
    }

    /// The event header each corpus file is sent with (see the corpus README).
    static func event(_ forge: String, _ file: String) -> String {
        if forge == "github" { return file.hasPrefix("ping") ? "ping" : String(file.split(separator: ".")[0]) }
        if file.hasPrefix("HookPush") { return "push" }
        if file == "HookTag.json" { return "create" }
        if file == "HookRelease.json" { return "release" }
        switch file {
        case "HookPullRequestReviewAck.json": return "pull_request_approved"
        case "HookPullRequestReviewDeny.json": return "pull_request_rejected"
        case "HookPullRequestReviewComment.json": return "pull_request_comment"
        default: return "pull_request"
        }
    }

    /// Headers a forge sends with a delivery, signed with `secret`.
    static func headers(forge: String, event: String, delivery: String, body: [UInt8], secret: String) -> [(String, String)] {
        let sig = SignatureVerifier.sign(body, secret: Array(secret.utf8))
        var h: [(String, String)] = [("Content-Type", "application/json")]
        switch forge {
        case "github":
            h += [("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery), ("X-Hub-Signature-256", "sha256=\(sig)")]
        case "gitea":
            h += [("X-Gitea-Event", event), ("X-Gitea-Delivery", delivery), ("X-Gitea-Signature", sig), ("X-GitHub-Event", event)]
        default:
            h += [
                ("X-Forgejo-Event", event), ("X-Forgejo-Delivery", delivery), ("X-Forgejo-Signature", sig), ("X-Gitea-Event", event),
                ("X-Gitea-Delivery", delivery), ("X-Gitea-Signature", sig), ("X-Hub-Signature-256", "sha256=\(sig)"),
            ]
        }
        return h
    }
}

struct CorpusMissing: Error, CustomStringConvertible {
    let path: String
    var description: String { "corpus file \(path) not found: the tests expect shared/forge-payloads beside the repository" }
}
