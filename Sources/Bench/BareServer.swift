import ArgumentParser
import Hummingbird

/// The comparison point for the producer benchmark: a Hummingbird route that only reads the body and answers 202.
struct BareServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bare-server", abstract: "A bare Hummingbird route that reads the body.")

    @Option var port = 18081

    func run() async throws {
        let router = Router()
        router.post("/webhooks/:forge") { request, _ -> HTTPResponse.Status in
            var request = request
            _ = try await request.collectBody(upTo: 1 << 20)
            return .accepted
        }
        router.get("/") { _, _ in "ok" }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        try await app.runService()
    }
}
