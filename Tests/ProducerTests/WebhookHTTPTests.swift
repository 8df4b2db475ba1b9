import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TestSupport
import Testing

@testable import Producer
@testable import Shared

/// The webhook endpoint through the real HTTP stack (a live Hummingbird server) with a real redis-server.
@Suite(.timeLimit(.minutes(5))) struct WebhookHTTPTests {
    static let secret = "It's a Secret to Everybody"
    static let maxBody = 64 * 1024

    static func config(redis: RedisServer, prefix: String = "", githubAPI: Bool = false) throws -> AppConfig {
        try AppConfig.parse(
            yaml: """
                redis: {url: "\(redis.url)"}
                producer: {max_body_bytes: \(maxBody), path_prefix: "\(prefix)"}
                forges:
                  github: {secret_env: GH_SECRET\(githubAPI ? ", api: {token_env: GH_TOKEN}" : "")}
                  gitea: {secret_env: GITEA_SECRET}
                  forgejo: {secret_env: [FORGEJO_OLD, FORGEJO_SECRET]}
                agents:
                  dev: {image: agent:1, bot_login: dev-bot}
                  boss: {image: agent:1}
                rules:
                  - agent: dev
                    events: [issues, issue_comment, pull_request, pull_request_review, pull_request_review_comment]
                    prompt: "{{event}} {{action}} {{repo}}#{{number}}"
                """,
            environment: ["GH_SECRET": secret, "GITEA_SECRET": secret, "FORGEJO_SECRET": secret, "FORGEJO_OLD": "rotated-out-soon"])
    }

    static func withProducer(
        redis: RedisServer, prefix: String = "", githubAPI: Bool = false,
        _ body: @escaping @Sendable (any TestClientProtocol, JobQueue) async throws -> Void
    ) async throws {
        let config = try config(redis: redis, prefix: prefix, githubAPI: githubAPI)
        var rc = config.redisConfiguration
        rc.connectTimeout = .milliseconds(300)
        rc.commandTimeout = .seconds(2)
        let client = RedisClient(configuration: rc, connections: 4)
        defer { client.shutdown() }
        let queue = JobQueue(redis: client, keys: config.keys, settings: config.queue)
        let handler = try WebhookHandler(config: config, queue: queue, router: try EventRouter(config: config), logger: .init(label: "test"))
        let app = Application(router: ProducerServer.webhookRouter(handler: handler, pathPrefix: config.producer.pathPrefix))
        try await app.test(.live) { client in try await body(client, queue) }
    }

    static func post(
        _ client: any TestClientProtocol, forge: String, file: String? = nil, body: [UInt8]? = nil, event: String? = nil,
        delivery: String = UUID().uuidString, secret: String = secret, path: String? = nil, tweak: (inout HTTPFields) -> Void = { _ in }
    ) async throws -> (status: HTTPResponse.Status, json: [String: Any], headers: HTTPFields) {
        let bytes = try body ?? Corpus.body(forge, file!)
        let ev = event ?? Corpus.event(forge, file ?? "")
        var headers = HTTPFields()
        for (k, v) in Corpus.headers(forge: forge, event: ev, delivery: delivery, body: bytes, secret: secret) {
            headers.append(HTTPField(name: HTTPField.Name(k)!, value: v))
        }
        tweak(&headers)
        let response = try await client.execute(
            uri: path ?? "/webhooks/\(forge)", method: .post, headers: headers, body: ByteBuffer(bytes: bytes))
        let json = (try? JSONSerialization.jsonObject(with: Data(buffer: response.body))) as? [String: Any] ?? [:]
        return (response.status, json, response.headers)
    }

    static func jobCount(_ queue: JobQueue) async throws -> Int {
        try await queue.redis.send("ZCARD", queue.keys.jobIndex).int ?? 0
    }

    static var allCorpus: [(String, String)] {
        ["github", "gitea", "forgejo"].flatMap { forge in Corpus.files(forge).map { (forge, $0) } }
    }

    @Test func everyCorpusFileWithRightAndWrongSignature() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, queue in
            #expect(Self.allCorpus.count > 50)
            var expectedJobs = 0
            for (forge, file) in Self.allCorpus {
                let wrong = try await Self.post(client, forge: forge, file: file, secret: "wrong secret")
                #expect(wrong.status == .unauthorized, "\(forge)/\(file)")
                #expect((wrong.json["error"] as? String)?.contains("signature") == true)
                let right = try await Self.post(client, forge: forge, file: file)
                let event = Corpus.event(forge, file)
                if event == "ping" {
                    #expect(right.status == .ok)
                } else if ["push", "create", "release"].contains(event) {
                    #expect(right.status == .accepted && right.json["ignored"] as? String == "event '\(event)' is not routed", "\(forge)/\(file)")
                } else {
                    #expect(right.status == .accepted, "\(forge)/\(file): \(right.json)")
                    let ids = right.json["jobs"] as? [String] ?? []
                    // Closed PRs drop sessions and start no job (the catch-all rule does match them too).
                    #expect(ids.count == 1, "\(forge)/\(file)")
                    expectedJobs += ids.count
                    for id in ids {
                        let job = try #require(try await queue.job(id))
                        #expect(job["forge"] == forge && job["status"] == "queued" && job["agent"] == "dev")
                        #expect(job["prompt"]?.isEmpty == false)
                    }
                }
            }
            #expect(try await Self.jobCount(queue) == expectedJobs)
        }
    }

    @Test func rotatedSecretsBothValid() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, _ in
            let old = try await Self.post(client, forge: "forgejo", file: "HookPullRequest.json", secret: "rotated-out-soon")
            let new = try await Self.post(client, forge: "forgejo", file: "HookPullRequest.json")
            let other = try await Self.post(client, forge: "forgejo", file: "HookPullRequest.json", secret: "other")
            #expect(old.status == .accepted && new.status == .accepted && other.status == .unauthorized)
        }
    }

    @Test func badInputsAreRejectedAndLeaveNothingInRedis() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, queue in
            let good = try Corpus.body("github", "issue_comment.created.json")
            func check(
                _ status: HTTPResponse.Status, _ message: String, body: [UInt8], event: String = "issue_comment",
                tweak: (inout HTTPFields) -> Void = { _ in }
            )
                async throws
            {
                let r = try await Self.post(client, forge: "github", body: body, event: event, tweak: tweak)
                #expect(r.status == status, "\(message): \(r.json)")
                #expect((r.json["error"] as? String)?.contains(message) == true, "\(r.json)")
            }
            try await check(.badRequest, "empty body", body: [])
            try await check(.badRequest, "malformed JSON", body: Array(good.prefix(good.count / 2)))
            try await check(.badRequest, "must be a JSON object", body: Array("[1,2]".utf8))
            try await check(.badRequest, "malformed JSON", body: [0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d])  // invalid UTF-8
            var wrongType = try JSONSerialization.jsonObject(with: Data(good)) as! [String: Any]
            var issue = wrongType["issue"] as! [String: Any]
            issue["number"] = "one"
            wrongType["issue"] = issue
            try await check(
                .badRequest, "field 'issue.number' must be an integer", body: Array(try JSONSerialization.data(withJSONObject: wrongType)))
            var noRepo = try JSONSerialization.jsonObject(with: Data(good)) as! [String: Any]
            noRepo["repository"] = nil
            try await check(.badRequest, "field 'repository' is missing", body: Array(try JSONSerialization.data(withJSONObject: noRepo)))
            try await check(.unsupportedMediaType, "application/json", body: good) { $0[.contentType] = "application/x-www-form-urlencoded" }
            try await check(.unsupportedMediaType, "application/json", body: good) { $0[.contentType] = nil }
            try await check(.badRequest, "missing event header", body: good) { $0[HTTPField.Name("X-GitHub-Event")!] = nil }
            try await check(.badRequest, "missing delivery id", body: good) { $0[HTTPField.Name("X-GitHub-Delivery")!] = nil }
            try await check(.unauthorized, "missing signature header", body: good) { $0[HTTPField.Name("X-Hub-Signature-256")!] = nil }
            try await check(.unauthorized, "malformed signature", body: good) { $0[HTTPField.Name("X-Hub-Signature-256")!] = "md5=abc" }

            // A body one byte over the limit is 413; exactly at the limit is read.
            var padded = good
            while let last = padded.last, last != UInt8(ascii: "}") { padded.removeLast() }
            padded.removeLast()  // the closing brace
            let filler = Array(repeating: UInt8(ascii: " "), count: Self.maxBody - padded.count - 1)
            padded += filler + [UInt8(ascii: "}")]
            #expect(padded.count == Self.maxBody)
            let atLimit = try await Self.post(client, forge: "github", body: padded, event: "issue_comment")
            #expect(atLimit.status == .accepted, "\(atLimit.json)")
            #expect(try await Self.post(client, forge: "github", body: padded + [0x20], event: "issue_comment").status == .contentTooLarge)
            try await queue.redis.send("FLUSHALL")

            // Wrong path and unknown forge.
            let notFound = try await client.execute(uri: "/nope", method: .post, body: ByteBuffer(string: "{}"))
            #expect(notFound.status == .notFound)
            #expect(String(buffer: notFound.body).contains("error"))
            let unknownForge = try await client.execute(uri: "/webhooks/gitlab", method: .post, body: ByteBuffer(string: "{}"))
            #expect(unknownForge.status == .notFound && String(buffer: unknownForge.body).contains("no webhook endpoint for 'gitlab'"))
            #expect(try await queue.redis.send("DBSIZE").int == 0, "a rejected request left something in Redis")
        }
    }

    /// A forge with an `api:` section gets feedback on its jobs: what to post, and the comment to react to (the
    /// payload's `comment.id`); a forge without one gets none.
    @Test func jobsCarryWhatFeedbackNeeds() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        try await Self.withProducer(redis: redis, githubAPI: true) { client, queue in
            let github = try await Self.post(client, forge: "github", file: "issue_comment.created.json")
            let id = try #require((github.json["jobs"] as? [String])?.first, "\(github.json)")
            let job = try #require(try await queue.job(id))
            #expect(job["feedback"] == "reaction=eyes;comment=1;cost=1" && job["comment_id"] == "492700400" && job["comment_kind"] == "issue")
            let gitea = try await Self.post(client, forge: "gitea", file: "HookPullRequest.json")
            let otherID = try #require((gitea.json["jobs"] as? [String])?.first)
            let other = try #require(try await queue.job(otherID))
            #expect(other["feedback"] == nil && other["comment_id"] == nil)
        }
    }

    @Test func redeliveryMakesOneJob() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, queue in
            let first = try await Self.post(client, forge: "gitea", file: "HookPullRequest.json", delivery: "same-id")
            #expect(first.status == .accepted)
            let again = try await Self.post(client, forge: "gitea", file: "HookPullRequest.json", delivery: "same-id")
            #expect(again.status == .ok && again.json["duplicate"] as? Bool == true)
            #expect(again.json["jobs"] as? [String] == first.json["jobs"] as? [String])
            #expect(try await Self.jobCount(queue) == 1)
            #expect(try await queue.redis.send("LLEN", "hooks:queue:dev").int == 1)
        }
    }

    /// With persistence on (as in production), so a job the 503 request had left would still be there after the
    /// restart and the count below would catch it.
    @Test func redisDownIs503ThenRecovers() async throws {
        let redis = try RedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, queue in
            redis.stop()
            let down = try await Self.post(client, forge: "github", file: "issues.opened.json")
            #expect(down.status == .serviceUnavailable)
            #expect(down.headers[.retryAfter] == "5")
            try redis.start()
            var status = HTTPResponse.Status.serviceUnavailable
            for _ in 0..<40 where status != .accepted {
                status = try await Self.post(client, forge: "github", file: "issues.opened.json").status
                if status != .accepted { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(status == .accepted)
            #expect(try await Self.jobCount(queue) == 1, "the 503 request must not have left a job")
        }
    }

    /// Redis that hangs (stopped, not refusing): the request gets 503 within the command timeout instead of hanging.
    /// The enqueue may still land once Redis wakes (it was sent): the forge's redelivery is then a duplicate, never a
    /// second job.
    @Test func redisHangingIs503AndTheRedeliveryIsNotASecondJob() async throws {
        let redis = try RedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, queue in
            let pid = try #require(redis.pid)
            kill(pid, SIGSTOP)
            let started = ContinuousClock.now
            let hung = try await Self.post(client, forge: "github", file: "issues.opened.json")
            kill(pid, SIGCONT)
            #expect(hung.status == .serviceUnavailable && hung.headers[.retryAfter] == "5")
            #expect(ContinuousClock.now - started < .seconds(10), "the request waited for Redis far past the command timeout")
            var status = HTTPResponse.Status.serviceUnavailable
            for _ in 0..<40 where status == .serviceUnavailable {
                status = try await Self.post(client, forge: "github", file: "issues.opened.json").status
                if status == .serviceUnavailable { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(status == .accepted || status == .ok, "\(status)")
            #expect(try await Self.jobCount(queue) == 1)
        }
    }

    /// Redis out of memory under `noeviction` refuses writes: 503, and nothing half-written is left.
    @Test func redisFullIs503AndLeavesNothing() async throws {
        let redis = try RedisServer(extraArguments: ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction", "--appendonly", "yes"])
        defer { redis.stop() }
        try await Self.withProducer(redis: redis) { client, queue in
            // Small values: a big one's own query buffer would count as used memory and make a transient OOM.
            let filler = String(repeating: "x", count: 4096)
            var full = false
            for i in 0..<2000 where !full {
                do {
                    try await queue.redis.send("SET", "filler:\(i)", filler)
                } catch {
                    full = "\(error)".contains("OOM")
                }
            }
            #expect(full, "Redis never reported OOM")
            // The first refusal can be borderline (a client buffer freed a moment later brings Redis back under the
            // limit): put the limit well below what is used, so the state is unambiguous.
            let used =
                try await queue.redis.send("INFO", "memory").string?.split(separator: "\r\n")
                .first { $0.hasPrefix("used_memory:") }.flatMap { Int($0.dropFirst("used_memory:".count)) } ?? 0
            try await queue.redis.send("CONFIG", "SET", "maxmemory", String(used / 2))
            let refused = try await Self.post(client, forge: "github", file: "issues.opened.json")
            #expect(refused.status == .serviceUnavailable, "\(refused.status) \(refused.json)")
            #expect(try await Self.jobCount(queue) == 0)
            #expect(try await queue.redis.send("KEYS", "hooks:*").strings ?? [] == [], "the refused request left keys")
            _ = try await queue.redis.send("FLUSHALL")
            try await queue.redis.send("CONFIG", "SET", "maxmemory", "2mb")
            #expect(try await Self.post(client, forge: "github", file: "issues.opened.json").status == .accepted)
            #expect(try await Self.jobCount(queue) == 1)
        }
    }

    @Test func pathPrefixAndClosing() async throws {
        let redis = try RedisServer()
        defer { redis.stop() }
        try await Self.withProducer(redis: redis, prefix: "/forge-hooks") { client, queue in
            try await queue.redis.send(
                "HSET", "hooks:sessions", "dev:anbraten/test-repo:1", "s1", "boss:anbraten/test-repo:1", "s2", "dev:x/y:1", "keep")
            let r = try await Self.post(client, forge: "forgejo", file: "HookPullRequestMerged.json", path: "/forge-hooks/webhooks/forgejo")
            #expect(r.status == .accepted)
            #expect(r.json["dropped_sessions"] as? [String] == ["boss:anbraten/test-repo:1", "dev:anbraten/test-repo:1"])
            #expect(try await queue.redis.send("HKEYS", "hooks:sessions").strings == ["dev:x/y:1"])
            #expect(try await Self.post(client, forge: "forgejo", file: "HookPullRequest.json").status == .accepted)
        }
    }
}
