import ArgumentParser
import Foundation
import Hummingbird
import Shared

/// The producer benchmark's reference routes: `bare` reads the body and answers 202; `--enqueue` also makes the one
/// Redis call the producer makes per webhook (the queue core's enqueue, with a job like the benchmark's), without
/// verifying, parsing or routing — the ceiling the producer could reach on this machine with a handler that cost
/// nothing.
struct BareServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bare-server", abstract: "A bare Hummingbird route that reads the body.")

    @Option(help: "Port to listen on (127.0.0.1).") var port = 18081
    @Option(help: "With --enqueue: the Redis URL.") var redis = "redis://127.0.0.1:6379"
    @Flag(help: "Enqueue one job per request through the queue core, as the producer does.") var enqueue = false
    @Option(help: "With --enqueue: Redis connections (the producer's default, producer.redis_connections, is 2).") var connections = 2

    func run() async throws {
        let router = Router()
        let queue = enqueue ? JobQueue(redis: RedisClient(configuration: try RedisConfiguration(url: redis), connections: connections)) : nil
        let prompt = String(repeating: "lorem ipsum dolor sit amet, consectetur adipiscing elit. ", count: 45)
        let deliveries = Counter()
        router.post("/webhooks/:forge") { request, _ -> HTTPResponse.Status in
            var request = request
            _ = try await request.collectBody(upTo: 1 << 20)
            if let queue {
                let delivery = "bare-\(deliveries.increment())"
                let job = NewJob(
                    agent: "dev", session: SessionKey(agent: "dev", repository: "Codertocat/Hello-World", number: 1),
                    fields: [
                        ("forge", "github"), ("event", "issue_comment"), ("action", "created"), ("repo", "Codertocat/Hello-World"),
                        ("number", "1"), ("is_pull_request", "0"), ("delivery", delivery), ("sender", "Codertocat"), ("rule", "rules[0]"),
                        ("url", "https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400"),
                        ("title", "Spelling error in the README file"), ("prompt", prompt),
                    ])
                _ = try await queue.enqueue([job], delivery: (forge: "github", id: delivery))
            }
            return .accepted
        }
        router.get("/") { _, _ in "ok" }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        try await app.runService()
    }
}
