import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Shared

/// Verifies, normalizes, routes, dedups and enqueues one webhook delivery.
///
/// Answers: 401 bad/missing signature, 413 body over the limit, 415 not JSON, 400 malformed payload or missing headers
/// (naming the field), 404 unknown forge, 200 ping / duplicate delivery, 202 ignored or accepted (with job ids),
/// 503 + Retry-After when Redis does not answer. A 2xx is only sent once Redis has the jobs; a 4xx never leaves a job.
struct WebhookHandler: Sendable {
    let config: AppConfig
    let queue: JobQueue
    let router: EventRouter
    let verifiers: [Forge: SignatureVerifier]
    let proxies: TrustedProxies
    let logger: Logger
    private let metrics = WebhookMetrics()

    init(config: AppConfig, queue: JobQueue, router: EventRouter, logger: Logger) throws {
        self.config = config
        self.queue = queue
        self.router = router
        self.verifiers = config.forges.reduce(into: [:]) { $0[$1.key] = SignatureVerifier(forge: $1.key, secrets: $1.value.secrets) }
        self.proxies = try TrustedProxies(config.producer.trustedProxies)
        self.logger = logger
    }

    func handle(forgeName: String, request: Request, context: WebhookContext) async -> Response {
        let start = ContinuousClock.now
        let header: (String) -> String? = { name in Self.headerName(name).flatMap { request.headers[$0] } }
        // What the request's log line says, gathered as plain values; turned into metadata only if the line is logged.
        var log = RequestLog(forge: forgeName)
        // The path names the forge; only a configured one becomes a metric label, so unknown paths mint no series.
        let configured = Forge(rawValue: forgeName).flatMap { verifiers[$0] }
        let forgeLabel = configured == nil ? "unknown" : forgeName
        log.client = proxies.clientAddress(peer: context.remoteAddress?.ipAddress, forwardedFor: header("x-forwarded-for"))

        func answer(_ response: Response, outcome: String, event: String = "-", _ message: @autoclosure () -> String, level: Logger.Level = .info)
            -> Response
        {
            metrics.requests(forge: forgeLabel, event: event, outcome: outcome).increment()
            metrics.duration(outcome: outcome).recordInterval(since: start)
            if logger.logLevel <= level {
                logger.log(level: level, "\(message())", metadata: log.metadata(outcome: outcome, status: response.status.code))
            }
            return response
        }

        guard let verifier = configured else {
            let known = config.forges.keys.map(\.rawValue).sorted().joined(separator: ", ")
            return answer(
                JSONResponse.error(.notFound, "no webhook endpoint for '\(forgeName)' (configured: \(known.isEmpty ? "none" : known))"),
                outcome: "unknown_forge", "webhook for an unconfigured forge", level: .notice)
        }
        let forge = verifier.forge

        // 1. Raw body, limited.
        var request = request
        let body: [UInt8]
        do {
            let buffer = try await request.collectBody(upTo: config.producer.maxBodyBytes)
            body = Array(buffer.readableBytesView)
        } catch {
            return answer(
                JSONResponse.error(.contentTooLarge, "body larger than \(config.producer.maxBodyBytes) bytes (producer.max_body_bytes)"),
                outcome: "too_large", "webhook body over the limit", level: .notice)
        }

        // 2. Signature over the exact bytes.
        if let failure = verifier.verify(body: body, header: header) {
            let message: String
            switch failure {
            case .missing(let names): message = "missing signature header (expected one of: \(names.joined(separator: ", ")))"
            case .malformed(let name): message = "malformed signature in \(name)"
            case .mismatch: message = "signature does not match any configured secret"
            }
            return answer(JSONResponse.error(.unauthorized, message), outcome: "unauthorized", "rejected webhook: \(message)", level: .warning)
        }

        // 3. Content type, headers.
        let contentType = header("content-type") ?? ""
        guard Self.isJSON(contentType: contentType) else {
            return answer(
                JSONResponse.error(
                    .unsupportedMediaType,
                    "content type must be application/json, got '\(contentType)' (set the webhook's content type to application/json)"),
                outcome: "unsupported_media_type", "webhook with wrong content type", level: .notice)
        }
        guard let (event, eventType) = EventNormalizer.eventHeader(forge: forge, header: header) else {
            return answer(
                JSONResponse.error(.badRequest, "missing event header"), outcome: "bad_request", "webhook without event header", level: .notice)
        }
        log.event = event
        guard let delivery = EventNormalizer.deliveryHeader(forge: forge, header: header), !delivery.isEmpty, delivery.count <= 200 else {
            return answer(
                JSONResponse.error(.badRequest, "missing delivery id header (X-GitHub-Delivery / X-Gitea-Delivery / X-Forgejo-Delivery)"),
                outcome: "bad_request", event: event, "webhook without delivery id", level: .notice)
        }
        log.delivery = delivery

        // 4. Payload.
        let normalized: ForgeEvent
        do {
            let payload = try EventNormalizer.parse(body)
            if event == "ping" {
                return answer(JSONResponse.make(.ok, ["pong": .bool(true)]), outcome: "ping", event: event, "ping")
            }
            normalized = try EventNormalizer.normalize(forge: forge, event: event, eventType: eventType, payload: payload)
        } catch let error as PayloadError {
            return answer(JSONResponse.error(.badRequest, "\(error)"), outcome: "bad_request", event: event, "bad payload: \(error)", level: .notice)
        } catch {
            return answer(JSONResponse.error(.badRequest, "\(error)"), outcome: "bad_request", event: event, "bad payload: \(error)", level: .notice)
        }
        log.repository = normalized.repository
        log.number = normalized.number

        // 5. Route.
        let decision = router.route(normalized)
        if decision.jobs.isEmpty && decision.dropSessions.isEmpty {
            return answer(
                JSONResponse.make(.accepted, ["ignored": .string(decision.ignored ?? "no rule matches")]), outcome: "ignored", event: normalized.kind,
                "ignored: \(decision.ignored ?? "")")
        }

        // 6. Dedup + enqueue, one atomic round trip.
        let jobs = decision.jobs.map { routed in
            NewJob(
                agent: routed.agent,
                session: SessionKey(agent: routed.agent, repository: normalized.repository, number: normalized.number ?? 0),
                fields: [
                    ("forge", forge.rawValue), ("event", normalized.kind), ("action", normalized.action), ("repo", normalized.repository),
                    ("number", String(normalized.number ?? 0)), ("is_pull_request", normalized.isPullRequest ? "1" : "0"),
                    ("delivery", delivery), ("sender", normalized.sender), ("rule", routed.rule), ("url", normalized.url ?? ""),
                    ("title", normalized.title ?? ""), ("prompt", routed.prompt),
                ])
        }
        let enqueueStart = ContinuousClock.now
        let result: JobQueue.EnqueueResult
        do {
            result = try await queue.enqueue(jobs, delivery: (forge: forge.rawValue, id: delivery), dropSessions: decision.dropSessions)
        } catch {
            metrics.redisErrors.increment()
            return answer(
                JSONResponse.error(.serviceUnavailable, "job store unavailable, retry later", headers: [.retryAfter: "5"]),
                outcome: "unavailable", event: normalized.kind, "cannot enqueue: \(error)", level: .error)
        }
        metrics.enqueueDuration.recordInterval(since: enqueueStart)
        switch result {
        case .duplicate(let ids):
            return answer(
                JSONResponse.make(.ok, ["duplicate": .bool(true), "jobs": .array(ids.map { .string($0) })]), outcome: "duplicate",
                event: normalized.kind,
                "duplicate delivery, nothing enqueued")
        case .queued(let ids):
            log.jobIDs = ids
            var body: [String: JSONValue] = ["jobs": .array(ids.map { .string($0) }), "agents": .array(jobs.map { .string($0.agent) })]
            if !decision.dropSessions.isEmpty { body["dropped_sessions"] = .array(decision.dropSessions.map { .string($0) }) }
            return answer(
                JSONResponse.make(.accepted, body), outcome: "accepted", event: normalized.kind,
                ids.isEmpty ? "sessions dropped (closed)" : "enqueued \(ids.count) job(s) for \(jobs.map(\.agent).joined(separator: ","))")
        }
    }
}

extension WebhookHandler {
    /// The header names the handler reads, parsed once.
    private static let knownHeaderNames: [String: HTTPField.Name] = {
        let names =
            ["content-type", "x-forwarded-for", "x-github-event", "x-gitea-event", "x-forgejo-event", "x-gitea-event-type", "x-forgejo-event-type"]
            + ["x-github-delivery", "x-gitea-delivery", "x-forgejo-delivery"]
            + Forge.allCases.flatMap(SignatureVerifier.signatureHeaders(for:))
        return Dictionary(names.map { ($0, HTTPField.Name($0)!) }, uniquingKeysWith: { a, _ in a })
    }()

    static func headerName(_ name: String) -> HTTPField.Name? { knownHeaderNames[name] ?? HTTPField.Name(name) }

    /// `application/json`, in any case, with or without parameters (`; charset=utf-8`).
    static func isJSON(contentType: String) -> Bool {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        var type = contentType.utf8.prefix { $0 != UInt8(ascii: ";") }[...]
        while let first = type.first, isSpace(first) { type = type.dropFirst() }
        while let last = type.last, isSpace(last) { type = type.dropLast() }
        let lower: (UInt8) -> UInt8 = { (65...90).contains($0) ? $0 + 32 : $0 }
        return type.elementsEqual("application/json".utf8) { lower($0) == $1 }
    }
}

/// The fields of a webhook's log line.
struct RequestLog {
    var forge: String
    var client = ""
    var event: String?
    var delivery: String?
    var repository = ""
    var number: Int?
    var jobIDs: [String] = []

    func metadata(outcome: String, status: Int) -> Logger.Metadata {
        var meta: Logger.Metadata = ["client": "\(client)", "forge": "\(forge)", "outcome": "\(outcome)", "status": "\(status)"]
        if let event { meta["event"] = "\(event)" }
        if let delivery { meta["delivery.id"] = "\(delivery)" }
        if !repository.isEmpty { meta["repo"] = "\(repository)" }
        if let number { meta["number"] = "\(number)" }
        if !jobIDs.isEmpty { meta["job.ids"] = "\(jobIDs.joined(separator: ","))" }
        return meta
    }
}

/// The webhook metrics, made once per label set: the metrics factory's own lookup costs a lock and several hashes
/// per call, which the handler would otherwise pay twice per request.
final class WebhookMetrics: @unchecked Sendable {
    private struct Key: Hashable {
        let forge: String
        let event: String
        let outcome: String
    }

    private let lock = NSLock()
    private var counters: [Key: Counter] = [:]
    private var timers: [String: Metrics.Timer] = [:]
    let redisErrors = Counter(label: "redis_errors_total", dimensions: [("operation", "enqueue")])
    let enqueueDuration = Metrics.Timer(label: "enqueue_duration_seconds")

    /// Requests by forge, event and outcome. Labels come from signed requests (or are fixed), and the cache is
    /// bounded all the same.
    func requests(forge: String, event: String, outcome: String) -> Counter {
        let key = Key(forge: forge, event: event, outcome: outcome)
        lock.lock()
        defer { lock.unlock() }
        if let counter = counters[key] { return counter }
        let counter = Counter(label: "webhook_requests_total", dimensions: [("forge", forge), ("event", event), ("outcome", outcome)])
        if counters.count < 1000 { counters[key] = counter }
        return counter
    }

    func duration(outcome: String) -> Metrics.Timer {
        lock.lock()
        defer { lock.unlock() }
        if let timer = timers[outcome] { return timer }
        let timer = Metrics.Timer(label: "webhook_request_duration_seconds", dimensions: [("outcome", outcome)])
        timers[outcome] = timer
        return timer
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
