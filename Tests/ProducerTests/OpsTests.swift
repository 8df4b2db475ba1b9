import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import Shared
import TestSupport
import Testing

@testable import Producer

@Suite(.timeLimit(.minutes(5))) struct OpsTests {
    static let registry = PrometheusCollectorRegistry()

    @Test func healthReadinessAndMetrics() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        ProducerServer.bootstrapMetrics(Self.registry)
        let config = try WebhookHTTPTests.config(redis: redis)
        var rc = config.redisConfiguration
        rc.connectTimeout = .milliseconds(300)
        let client = RedisClient(configuration: rc, connections: 2)
        defer { client.shutdown() }
        let queue = JobQueue(redis: client, keys: config.keys, settings: config.queue)
        let handler = try WebhookHandler(config: config, queue: queue, router: try EventRouter(config: config), logger: .init(label: "t"))
        // A webhook first, so there is something to count.
        try await Application(router: ProducerServer.webhookRouter(handler: handler, pathPrefix: "")).test(.router) { web in
            let body = try Corpus.body("github", "issues.opened.json")
            var headers = HTTPFields()
            for (k, v) in Corpus.headers(forge: "github", event: "issues", delivery: "m1", body: body, secret: WebhookHTTPTests.secret) {
                headers.append(HTTPField(name: HTTPField.Name(k)!, value: v))
            }
            _ = try await web.execute(uri: "/webhooks/github", method: .post, headers: headers, body: ByteBuffer(bytes: body))
            // Unknown forges share one label: a client must not be able to mint a series per path.
            for name in ["gitlab", "x1", "x2"] {
                _ = try await web.execute(uri: "/webhooks/\(name)", method: .post, headers: headers, body: ByteBuffer(bytes: body))
            }
        }
        try await Application(router: ProducerServer.opsRouter(queue: queue, registry: Self.registry)).test(.router) { ops in
            let health = try await ops.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
            let ready = try await ops.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            let metrics = String(buffer: try await ops.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains(#"webhook_requests_total{forge="github",event="issues",outcome="accepted"}"#))
            #expect(metrics.contains("enqueue_duration_seconds"))
            #expect(metrics.contains(#"webhook_requests_total{forge="unknown",event="-",outcome="unknown_forge"} 3"#))
            #expect(!metrics.contains(#"forge="gitlab""#) && !metrics.contains(#"forge="x1""#))
            redis.stop()
            let notReady = try await ops.execute(uri: "/readyz", method: .get)
            #expect(notReady.status == .serviceUnavailable)
            #expect(String(buffer: notReady.body).contains("Redis at 127.0.0.1:\(redis.port)"))
        }
    }
}
