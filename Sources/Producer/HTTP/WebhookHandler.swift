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

    /// How a delivery ended well: the answer, its metric outcome and its log line.
    struct Answer {
        let response: Response
        let outcome: String
        let message: String
    }

    /// The request's state as the pipeline learns it: what its log line says and the event label its metrics get
    /// (`-` until the event header is read, then that header, then the normalized kind).
    struct Progress {
        var log: RequestLog
        var metricEvent = "-"
    }

    func handle(forgeName: String, request: Request, context: WebhookContext) async -> Response {
        let start = ContinuousClock.now
        // The path names the forge; only a configured one becomes a metric label, so unknown paths mint no series.
        let configured = Forge(rawValue: forgeName).flatMap { verifiers[$0] }
        let forgeLabel = configured == nil ? "unknown" : forgeName
        var progress = Progress(log: RequestLog(forge: forgeName))
        progress.log.client = proxies.clientAddress(
            peer: context.remoteAddress?.ipAddress, forwardedFor: Self.headerName("x-forwarded-for").flatMap { request.headers[$0] })

        let response: Response
        let outcome: String
        let level: Logger.Level
        let message: () -> String
        do {
            let answer = try await process(configured, forgeName: forgeName, request: request, progress: &progress)
            (response, outcome, level, message) = (answer.response, answer.outcome, .info, { answer.message })
        } catch {
            response = JSONResponse.error(error.status, error.message, headers: error.headers)
            (outcome, level, message) = (error.outcome, error.level, { error.logMessage })
        }
        metrics.requests(forge: forgeLabel, event: progress.metricEvent, outcome: outcome).increment()
        metrics.duration(outcome: outcome).recordInterval(since: start)
        if logger.logLevel <= level {
            logger.log(level: level, "\(message())", metadata: progress.log.metadata(outcome: outcome, status: response.status.code))
        }
        return response
    }

    /// The pipeline: verify, parse, normalize, route, dedup and enqueue. Every way out that is not success is a
    /// `WebhookRejection`.
    private func process(
        _ configured: SignatureVerifier?, forgeName: String, request: Request, progress: inout Progress
    ) async throws(WebhookRejection) -> Answer {
        let header: (String) -> String? = { name in Self.headerName(name).flatMap { request.headers[$0] } }
        guard let verifier = configured else {
            throw .unknownForge(forgeName, configured: config.forges.keys.map(\.rawValue).sorted())
        }
        let forge = verifier.forge

        // 1. Raw body, limited.
        var request = request
        let body: [UInt8]
        do {
            body = Array(try await request.collectBody(upTo: config.producer.maxBodyBytes).readableBytesView)
        } catch {
            throw .tooLarge(limit: config.producer.maxBodyBytes)
        }

        // 2. Signature over the exact bytes.
        if let failure = verifier.verify(body: body, header: header) { throw .unauthorized(failure) }

        // 3. Content type, headers.
        let contentType = header("content-type") ?? ""
        guard Self.isJSON(contentType: contentType) else { throw .unsupportedMediaType(contentType) }
        guard let (event, eventType) = EventNormalizer.eventHeader(forge: forge, header: header) else { throw .missingEventHeader }
        progress.log.event = event
        progress.metricEvent = event
        guard let delivery = EventNormalizer.deliveryHeader(forge: forge, header: header), !delivery.isEmpty, delivery.count <= 200 else {
            throw .missingDeliveryHeader
        }
        progress.log.delivery = delivery

        // 4. Payload.
        let normalized: ForgeEvent
        do {
            let payload = try EventNormalizer.parse(body)
            if event == "ping" { return Answer(response: JSONResponse.make(.ok, ["pong": .bool(true)]), outcome: "ping", message: "ping") }
            normalized = try EventNormalizer.normalize(forge: forge, event: event, eventType: eventType, payload: payload)
        } catch {
            throw .badPayload("\(error)")
        }
        progress.log.repository = normalized.repository
        progress.log.number = normalized.number
        progress.metricEvent = normalized.kind.name

        // 5. Route.
        let decision = router.route(normalized)
        if decision.jobs.isEmpty && decision.dropSessions.isEmpty {
            return Answer(
                response: JSONResponse.make(.accepted, ["ignored": .string(decision.ignored ?? "no rule matches")]), outcome: "ignored",
                message: "ignored: \(decision.ignored ?? "")")
        }

        // 6. Dedup + enqueue, one atomic round trip.
        let jobs = decision.jobs.map { routed in
            var job = NewJob(
                agent: routed.agent,
                session: SessionKey(agent: routed.agent, repository: normalized.repository, number: normalized.number ?? 0),
                fields: [
                    ("forge", forge.rawValue), ("event", normalized.kind.name), ("action", normalized.action), ("repo", normalized.repository),
                    ("number", String(normalized.number ?? 0)), ("is_pull_request", normalized.isPullRequest ? "1" : "0"),
                    ("delivery", delivery), ("sender", normalized.sender), ("rule", routed.rule), ("url", normalized.url ?? ""),
                    ("title", normalized.title ?? ""), ("prompt", routed.prompt),
                ])
            if let feedback = routed.feedback {
                // The workers post from these: what to post, the link, and the comment to react to.
                job.fields.append(("feedback", feedback.jobField))
                if let link = feedback.link(job: job.id, agent: routed.agent) { job.fields.append(("feedback_link", link)) }
                if let comment = normalized.commentID {
                    job.fields.append(("comment_id", String(comment)))
                    job.fields.append(("comment_kind", normalized.kind == .pullRequestReviewComment ? "review" : "issue"))
                }
            }
            return job
        }
        let enqueueStart = ContinuousClock.now
        let result: JobQueue.EnqueueResult
        do {
            result = try await queue.enqueue(jobs, delivery: (forge: forge.rawValue, id: delivery), dropSessions: decision.dropSessions)
        } catch {
            metrics.redisErrors.increment()
            throw .storeUnavailable("\(error)")
        }
        metrics.enqueueDuration.recordInterval(since: enqueueStart)
        switch result {
        case .duplicate(let ids):
            return Answer(
                response: JSONResponse.make(.ok, ["duplicate": .bool(true), "jobs": .array(ids.map { .string($0) })]), outcome: "duplicate",
                message: "duplicate delivery, nothing enqueued")
        case .queued(let ids):
            progress.log.jobIDs = ids
            var body: [String: JSONValue] = ["jobs": .array(ids.map { .string($0) }), "agents": .array(jobs.map { .string($0.agent) })]
            if !decision.dropSessions.isEmpty { body["dropped_sessions"] = .array(decision.dropSessions.map { .string($0) }) }
            return Answer(
                response: JSONResponse.make(.accepted, body), outcome: "accepted",
                message: ids.isEmpty ? "sessions dropped (closed)" : "enqueued \(ids.count) job(s) for \(jobs.map(\.agent).joined(separator: ","))")
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
