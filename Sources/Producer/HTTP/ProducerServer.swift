import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import Shared
import Synchronization

/// Builds the producer's two HTTP applications: the public webhook listener and the ops listener
/// (`/healthz`, `/readyz`, `/metrics`), which stays private by default.
enum ProducerServer {
    static func webhookRouter(handler: WebhookHandler, pathPrefix: String) -> Router<WebhookContext> {
        let router = Router(context: WebhookContext.self)
        router.add(middleware: JSONErrorMiddleware())
        let route: @Sendable (Request, WebhookContext) async throws -> Response = { request, context in
            await handler.handle(forgeName: context.parameters.get("forge") ?? "", request: request, context: context)
        }
        router.post("/webhooks/:forge", use: route)
        if !pathPrefix.isEmpty { router.post("\(pathPrefix)/webhooks/:forge", use: route) }
        return router
    }

    static func opsRouter(queue: JobQueue, registry: PrometheusCollectorRegistry) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        router.get("/healthz") { _, _ in JSONResponse.make(.ok, ["status": .string("alive")]) }
        router.get("/readyz") { _, _ in
            do {
                try await queue.ping()
                return JSONResponse.make(.ok, ["status": .string("ready"), "redis": .string("ok")])
            } catch {
                Counter(label: "redis_errors_total", dimensions: [("operation", "ping")]).increment()
                return JSONResponse.make(
                    .serviceUnavailable, ["status": .string("not ready"), "redis": .string("\(error)")], headers: [.retryAfter: "5"])
            }
        }
        router.get("/metrics") { _, _ in
            var buffer = ByteBuffer()
            buffer.writeBytes(registry.emitToBuffer())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: buffer))
        }
        return router
    }

    /// Installs the Prometheus factory once per process (swift-metrics allows one bootstrap).
    static func bootstrapMetrics(_ registry: PrometheusCollectorRegistry) {
        metricsOnce.run { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
    }

    static let metricsOnce = Once()
}

/// Runs a closure at most once.
final class Once: Sendable {
    private let done = Mutex(false)
    func run(_ body: () -> Void) {
        done.withLock { done in
            if !done {
                done = true
                body()
            }
        }
    }
}
