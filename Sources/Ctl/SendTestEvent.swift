import ArgumentParser
import Crypto
import Foundation

extension Hooksctl {
    struct SendTestEvent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "send-test-event", abstract: "Sign a payload file like the forge does and POST it to a producer (uses curl).")
        @Option(help: "Producer base URL.") var url = "http://127.0.0.1:8080"
        @Option(help: "forgejo, gitea or github.") var forge = "forgejo"
        @Option(help: "Event header value (e.g. issues, issue_comment, pull_request, pull_request_rejected).") var event: String
        @Option(help: "JSON payload file.") var file: String
        @Option(help: "Secret (prefer --secret-file or $FORGE_HOOKS_SECRET).") var secret: String?
        @Option(help: "File holding the secret.") var secretFile: String?
        @Option(help: "Delivery id (default: a new UUID; reuse one to test dedup).") var delivery: String?

        func run() async throws {
            guard ["forgejo", "gitea", "github"].contains(forge) else { throw ValidationError("--forge must be forgejo, gitea or github") }
            guard let body = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read --file \(file)") }
            var key = secret ?? ProcessInfo.processInfo.environment["FORGE_HOOKS_SECRET"]
            if let secretFile {
                guard let data = FileManager.default.contents(atPath: secretFile) else {
                    throw ValidationError("cannot read --secret-file \(secretFile)")
                }
                key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard let key, !key.isEmpty else { throw ValidationError("no secret: pass --secret-file, --secret or set FORGE_HOOKS_SECRET") }
            let sig = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(key.utf8))).map { b in
                (b < 16 ? "0" : "") + String(b, radix: 16)
            }.joined()
            let id = delivery ?? UUID().uuidString.lowercased()
            var headers = ["Content-Type: application/json"]
            switch forge {
            case "github": headers += ["X-GitHub-Event: \(event)", "X-GitHub-Delivery: \(id)", "X-Hub-Signature-256: sha256=\(sig)"]
            case "gitea": headers += ["X-Gitea-Event: \(event)", "X-Gitea-Delivery: \(id)", "X-Gitea-Signature: \(sig)"]
            default:
                headers += [
                    "X-Forgejo-Event: \(event)", "X-Forgejo-Delivery: \(id)", "X-Forgejo-Signature: \(sig)", "X-Gitea-Event: \(event)",
                    "X-Gitea-Delivery: \(id)", "X-Gitea-Signature: \(sig)",
                ]
            }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments =
                ["-sS", "-w", "\nHTTP %{http_code}\n", "-X", "POST", "\(url)/webhooks/\(forge)", "--data-binary", "@\(file)"]
                + headers.flatMap { ["-H", $0] }
            try process.run()
            process.waitUntilExit()
            if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
        }
    }
}
