import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import TestSupport
import Testing

@testable import Producer
@testable import Shared

/// Real nginx (with the repository's site config) → live producer → real Redis.
@Suite(.timeLimit(.minutes(5))) struct NginxTests {
    @Test func signedCorpusPayloadsThroughNginx() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        let config = try WebhookHTTPTests.config(redis: redis)
        let redisClient = RedisClient(configuration: config.redisConfiguration, connections: 4)
        defer { redisClient.shutdown() }
        let queue = JobQueue(redis: redisClient, keys: config.keys, settings: config.queue)
        let logs = LogCapture()
        let logger = Logger(label: "test") { _ in logs.handler() }
        let handler = try WebhookHandler(config: config, queue: queue, router: try EventRouter(config: config), logger: logger)
        let app = Application(router: ProducerServer.webhookRouter(handler: handler, pathPrefix: ""))
        try await app.test(.live) { direct in
            let nginx = try NginxServer(upstreamPort: try #require(direct.port))
            defer { nginx.stop() }
            let client = NginxClient(port: nginx.port)

            var accepted = 0
            for (forge, file) in [
                ("forgejo", "HookPullRequest.json"), ("gitea", "HookPullRequestReviewDeny.json"), ("github", "issue_comment.created.json"),
            ] {
                let body = try Corpus.body(forge, file)
                var headers = HTTPFields()
                for (k, v) in Corpus.headers(
                    forge: forge, event: Corpus.event(forge, file), delivery: UUID().uuidString, body: body, secret: WebhookHTTPTests.secret)
                {
                    headers.append(HTTPField(name: HTTPField.Name(k)!, value: v))
                }
                // A client trying to forge its address.
                headers.append(HTTPField(name: HTTPField.Name("X-Forwarded-For")!, value: "6.6.6.6"))
                let response = try await client.send("/webhooks/\(forge)", method: .post, headers: headers, body: ByteBuffer(bytes: body))
                #expect(response.status == .accepted, "\(forge)/\(file): \(String(buffer: response.body ?? ByteBuffer()))")
                accepted += 1
            }
            #expect(try await queue.redis.send("LLEN", "hooks:queue:dev").int == accepted)
            // nginx overwrote X-Forwarded-For: the producer logged the address nginx saw, not the forged one.
            let clients = logs.values(for: "client")
            #expect(clients.count >= 3 && clients.allSatisfy { $0 == "127.0.0.1" }, "\(clients)")

            // Wrong signature through nginx is still 401.
            let body = try Corpus.body("github", "issues.opened.json")
            var bad = HTTPFields()
            for (k, v) in Corpus.headers(forge: "github", event: "issues", delivery: "x", body: body, secret: "nope") {
                bad.append(HTTPField(name: HTTPField.Name(k)!, value: v))
            }
            #expect(try await client.send("/webhooks/github", method: .post, headers: bad, body: ByteBuffer(bytes: body)).status == .unauthorized)

            // Bodies over 1 MiB stop at nginx with 413; nothing but /webhooks/ is public.
            let huge = ByteBuffer(repeating: UInt8(ascii: " "), count: (1 << 20) + 1)
            let tooLarge = try await client.send("/webhooks/github", method: .post, headers: [.contentType: "application/json"], body: huge)
            #expect(tooLarge.status == .contentTooLarge)
            #expect(try await client.send("/metrics", method: .get).status == .notFound)
            #expect(try await client.send("/healthz", method: .get).status == .notFound)
            #expect(try await client.send("/webhooks/github", method: .get).status == .forbidden)
        }
    }

    /// `nginx -t` on the production site file itself (TLS placeholders replaced by a throwaway certificate).
    @Test func productionSiteConfigIsValid() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nginx-t-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let openssl = try ChildProcess(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hooks.example.com", "-days", "1",
                "-keyout", dir.appendingPathComponent("key.pem").path, "-out", dir.appendingPathComponent("cert.pem").path,
            ])
        #expect(openssl.wait() == 0)
        let deploy = NginxServer.deployDirectory.appendingPathComponent("nginx")
        var site = try String(contentsOf: deploy.appendingPathComponent("forge-hooks.conf"), encoding: .utf8)
        site = site.replacingOccurrences(of: "/etc/ssl/certs/hooks.example.com.pem", with: dir.appendingPathComponent("cert.pem").path)
        site = site.replacingOccurrences(of: "/etc/ssl/private/hooks.example.com.key", with: dir.appendingPathComponent("key.pem").path)
        site = site.replacingOccurrences(
            of: "/etc/nginx/snippets/forge-hooks-locations.conf", with: deploy.appendingPathComponent("forge-hooks-locations.conf").path)
        try site.write(to: dir.appendingPathComponent("site.conf"), atomically: true, encoding: .utf8)
        try """
        pid \(dir.path)/nginx.pid;
        error_log \(dir.path)/error.log;
        events {}
        http { include \(dir.path)/site.conf; }
        """.write(to: dir.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        let output = dir.appendingPathComponent("t.log").path
        let check = try ChildProcess(
            try NginxServer.binary(),
            ["-t", "-c", dir.appendingPathComponent("nginx.conf").path, "-e", dir.appendingPathComponent("error.log").path], output: output)
        let code = check.wait()
        #expect(code == 0, "\((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
    }

    @Test func trustedProxyClientAddress() throws {
        let proxies = try TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])
        // Untrusted peer: its own address, whatever it claims.
        #expect(proxies.clientAddress(peer: "203.0.113.9", forwardedFor: "6.6.6.6") == "203.0.113.9")
        // Trusted peer: right-most hop that is not a trusted proxy.
        #expect(proxies.clientAddress(peer: "127.0.0.1", forwardedFor: "6.6.6.6, 198.51.100.7, 10.1.2.3") == "198.51.100.7")
        #expect(proxies.clientAddress(peer: "::1", forwardedFor: nil) == "::1")
        #expect(proxies.clientAddress(peer: "::ffff:127.0.0.1", forwardedFor: "198.51.100.7") == "198.51.100.7")
        #expect(proxies.clientAddress(peer: "127.0.0.1", forwardedFor: "not-an-ip") == "127.0.0.1")
        #expect(throws: TrustedProxyError.self) { try TrustedProxies(["10.0.0.0/33"]) }
        #expect(throws: TrustedProxyError.self) { try TrustedProxies(["localhost"]) }
    }
}

/// Collects log metadata for assertions.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [Logger.Metadata] = []

    func values(for key: String) -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return entries.compactMap { $0[key].map { "\($0)" } }
    }

    func handler() -> Handler { Handler(capture: self) }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            capture.lock.lock()
            capture.entries.append(metadata.merging(event.metadata ?? [:]) { $1 })
            capture.lock.unlock()
        }
    }
}

/// One fresh connection per request: nginx closes the connection after some answers (413).
struct NginxClient {
    let port: Int
    func send(_ uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil) async throws -> TestClient.Response {
        let client = TestClient(host: "127.0.0.1", port: port)
        client.connect()
        do {
            let response = try await client.execute(
                TestClient.Request(uri, method: method, authority: "hooks.example.com", headers: headers, body: body))
            try? await client.shutdown()
            return response
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
