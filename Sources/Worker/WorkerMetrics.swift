import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

/// The worker's `/metrics` (Prometheus text): `forge_api_requests_total{forge,operation,status}` and whatever else
/// the worker counts through swift-metrics. Served only when `worker.metrics_listen` (or `--metrics-listen`) is set.
enum WorkerMetrics {
    static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Installs the Prometheus factory (once per process: swift-metrics allows one bootstrap).
    static func bootstrap() {
        bootstrapped.withLock { done in
            guard !done else { return }
            done = true
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        }
    }

    /// A service whose failure is logged (by what it is) rather than ending the worker: metrics are not worth a stop.
    struct Logged: Service {
        let inner: any Service
        let logger: Logger
        let what: String

        func run() async throws {
            do {
                try await inner.run()
            } catch {
                logger.error(
                    "metrics not served on \(what): \(error); give each worker process its own port (--metrics-listen or worker.metrics_listen)")
            }
        }
    }

    static func application(host: String, port: Int) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ in
            var buffer = ByteBuffer()
            buffer.writeBytes(registry.emitToBuffer())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: buffer))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "forge-hooks-worker"))
    }
}
