import HTTPTypes
import Hummingbird
import Logging

/// Why a webhook delivery is refused: what the client is told (status, message, headers), the metric outcome, and the
/// log line with its level. The handler's pipeline throws these; one place answers them.
struct WebhookRejection: Error {
    let status: HTTPResponse.Status
    let outcome: String
    let message: String
    let logMessage: String
    let level: Logger.Level
    var headers: HTTPFields = [:]

    static func unknownForge(_ name: String, configured: [String]) -> Self {
        Self(
            status: .notFound, outcome: "unknown_forge",
            message: "no webhook endpoint for '\(name)' (configured: \(configured.isEmpty ? "none" : configured.joined(separator: ", ")))",
            logMessage: "webhook for an unconfigured forge", level: .notice)
    }

    static func tooLarge(limit: Int) -> Self {
        Self(
            status: .contentTooLarge, outcome: "too_large", message: "body larger than \(limit) bytes (producer.max_body_bytes)",
            logMessage: "webhook body over the limit", level: .notice)
    }

    static func unauthorized(_ failure: SignatureVerifier.Failure) -> Self {
        let message: String
        switch failure {
        case .missing(let names): message = "missing signature header (expected one of: \(names.joined(separator: ", ")))"
        case .malformed(let name): message = "malformed signature in \(name)"
        case .mismatch: message = "signature does not match any configured secret"
        }
        return Self(status: .unauthorized, outcome: "unauthorized", message: message, logMessage: "rejected webhook: \(message)", level: .warning)
    }

    static func unsupportedMediaType(_ contentType: String) -> Self {
        Self(
            status: .unsupportedMediaType, outcome: "unsupported_media_type",
            message: "content type must be application/json, got '\(contentType)' (set the webhook's content type to application/json)",
            logMessage: "webhook with wrong content type", level: .notice)
    }

    static let missingEventHeader = Self(
        status: .badRequest, outcome: "bad_request", message: "missing event header", logMessage: "webhook without event header", level: .notice)

    static let missingDeliveryHeader = Self(
        status: .badRequest, outcome: "bad_request",
        message: "missing delivery id header (X-GitHub-Delivery / X-Gitea-Delivery / X-Forgejo-Delivery)",
        logMessage: "webhook without delivery id", level: .notice)

    static func badPayload(_ why: String) -> Self {
        Self(status: .badRequest, outcome: "bad_request", message: why, logMessage: "bad payload: \(why)", level: .notice)
    }

    /// Redis did not take the jobs: the forge (or operator) retries; nothing was enqueued for this answer.
    static func storeUnavailable(_ why: String) -> Self {
        Self(
            status: .serviceUnavailable, outcome: "unavailable", message: "job store unavailable, retry later", logMessage: "cannot enqueue: \(why)",
            level: .error, headers: [.retryAfter: "5"])
    }
}
