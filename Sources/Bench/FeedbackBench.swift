import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import Shared
import Synchronization
import WorkerCore

/// Forge feedback's costs: what marking jobs due adds to the queue's reserve → finish cycle (the scripts check a
/// field and write a zset entry; the feedback loop's own claim and settle calls are not in this figure), and how soon
/// a job's status comment shows its end — from `finish` until the stand-in forge (Gitea dialect, answering after
/// `--forge-latency-ms`) has applied the edit — with the real feedback loop and client; then how fast one account
/// works through jobs finished back to back.
struct FeedbackBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feedback", abstract: "Queue cost of feedback, and finish → comment latency against a local stand-in forge.")

    @Option(help: "Redis URL (use a scratch Redis: the bench writes under its own random prefix and deletes it).")
    var redis = "redis://127.0.0.1:6379"
    @Option(help: "Jobs per queue-cost run.") var jobs = 5000
    @Option(help: "Jobs whose comment latency is measured.") var commented = 300
    @Option(help: "How long the stand-in forge takes to answer each call (ms).") var forgeLatencyMs = 20
    @Option(help: "Jobs finished per second while the latency is measured (then all at once, for the drain rate).") var rate = 10

    func run() async throws {
        let client = RedisClient(configuration: try RedisConfiguration(url: redis), connections: 4)
        try await client.ping()
        let prefix = "bench-\(UUID().uuidString.prefix(8).lowercased())"
        var settings = QueueSettings()
        settings.reserveBlockTimeout = .milliseconds(200)
        let queue = JobQueue(redis: client, keys: KeySchema(prefix: prefix), settings: settings)
        print("hooks-bench feedback: \(jobs) jobs per queue run, \(commented) commented jobs, forge answers in \(forgeLatencyMs) ms")

        // 1. The queue's cost: reserve → finish with and without a `feedback` field, 4 consumers; alternated, twice.
        for withFeedback in [false, true, false, true] {
            var fields: [(String, String)] = [("repo", "bench/repo"), ("number", "1"), ("forge", "gitea")]
            if withFeedback { fields.append(("feedback", FeedbackSettings().jobField)) }
            for i in 0..<jobs {
                let job = NewJob(agent: "bench", session: SessionKey(agent: "bench", repository: "bench/repo", number: i), fields: fields)
                _ = try await queue.enqueue([job])
            }
            let drain = try await drainBenchJobs(queue, jobs: jobs, consumers: 4, blocking: false)
            print(
                String(
                    format: "reserve→finish, %@: %7.0f jobs/s   p50 %6.3f ms   p99 %6.3f ms", withFeedback ? "feedback on " : "feedback off",
                    Double(jobs) / drain.elapsed.seconds, drain.p50, drain.p99))
            try await client.deleteKeys(matching: "\(prefix):*")
        }

        // 2. finish → comment edited, through the real feedback loop and client.
        let forge = StandInForge(latency: .milliseconds(forgeLatencyMs))
        let port = try await forge.start()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let account = ForgeAccount(
            api: ForgeAPIClient(forge: .gitea, baseURL: "http://127.0.0.1:\(port)/api/v1", token: "bench-token", http: http))
        var logger = Logger(label: "feedback-bench")
        logger.logLevel = .error
        let feedback = FeedbackService(
            queue: queue, accounts: ["bench": [.gitea: account]], agents: ["bench"], workerID: "bench-worker", botLogins: ["bench-bot"],
            defaultMaxAttempts: 5, logger: logger)
        let loop = Task { await feedback.run() }
        // Paced: one job every 1/rate s, each reserved (its "working" comment due), run 300 ms, finished.
        var paced = Latencies()
        let pacedIDs = try await runJobs(
            commented, every: .milliseconds(1000 / max(1, rate)), run: .milliseconds(300), queue: queue, feedback: feedback, offset: 0)
        try await waitForComments(forge, pacedIDs.keys)
        for (id, finished) in pacedIDs { if let seen = forge.finished(id) { paced.add(seen - finished) } }
        print(
            String(
                format: "finish→comment edited (runs of 300 ms, %d jobs/s): p50 %6.1f ms   p99 %6.1f ms   (%d of %d jobs)", rate, paced.p50,
                paced.p99, paced.count, pacedIDs.count))
        // Back to back (runs of 5 ms, no pause between jobs): how fast one account works through them.
        let callsBefore = forge.calls
        let burstStart = ContinuousClock.now
        let burstIDs = try await runJobs(commented, every: .zero, run: .milliseconds(5), queue: queue, feedback: feedback, offset: commented)
        try await waitForComments(forge, burstIDs.keys)
        let burst = ContinuousClock.now - burstStart
        print(
            String(
                format: "%d jobs back to back: all comments final in %.2f s (%.0f jobs/s, %.2f forge calls per job, one account)", burstIDs.count,
                burst.seconds, Double(burstIDs.count) / burst.seconds, Double(forge.calls - callsBefore) / Double(max(1, burstIDs.count))))
        loop.cancel()
        _ = await loop.value
        try await client.deleteKeys(matching: "\(prefix):*")
        try await http.shutdown()
        client.shutdown()
        await forge.stop()
    }
}

extension FeedbackBench {
    /// Enqueues, reserves and finishes `count` jobs with feedback, one every `every`; returns when each finished.
    func runJobs(_ count: Int, every: Duration, run: Duration, queue: JobQueue, feedback: FeedbackService, offset: Int) async throws
        -> [String: ContinuousClock.Instant]
    {
        var finishedAt: [String: ContinuousClock.Instant] = [:]
        for i in offset..<(offset + count) {
            let started = ContinuousClock.now
            let job = NewJob(
                agent: "bench", session: SessionKey(agent: "bench", repository: "bench/repo", number: i),
                fields: [("repo", "bench/repo"), ("number", String(i + 1)), ("forge", "gitea"), ("feedback", FeedbackSettings().jobField)])
            _ = try await queue.enqueue([job])
            guard let reserved = try await queue.reserveAny(worker: "bench-worker", agents: ["bench"]) else { continue }
            feedback.nudge()
            try await Task.sleep(for: run)  // the agent's run
            _ = try await queue.finish(reserved, worker: "bench-worker", outcome: .succeeded)
            finishedAt[reserved.id] = .now
            feedback.nudge()
            let spent = ContinuousClock.now - started
            if every > spent { try await Task.sleep(for: every - spent) }
        }
        return finishedAt
    }

    func waitForComments(_ forge: StandInForge, _ ids: Dictionary<String, ContinuousClock.Instant>.Keys) async throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while ids.contains(where: { forge.finished($0) == nil }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }
}

/// A forge that answers the calls feedback makes (Gitea dialect) after a fixed delay, and notes when each job's
/// comment first says the job finished.
final class StandInForge: Sendable {
    private let latency: Duration
    private let state = Mutex<(calls: Int, nextID: Int, finished: [String: ContinuousClock.Instant])>((0, 1, [:]))
    private let task = Mutex<Task<Void, any Error>?>(nil)

    init(latency: Duration) { self.latency = latency }

    var calls: Int { state.withLock { $0.calls } }
    func finished(_ id: String) -> ContinuousClock.Instant? { state.withLock { $0.finished[id] } }

    func start() async throws -> Int {
        let router = Router()
        router.get("/api/v1/user") { _, _ in try await self.answer(#"{"login":"bench-bot"}"#) }
        router.get("/api/v1/repos/:owner/:repo/issues/:number/comments") { _, _ in try await self.answer("[]") }
        router.post("/api/v1/repos/:owner/:repo/issues/:number/comments") { request, _ in try await self.comment(request) }
        router.patch("/api/v1/repos/:owner/:repo/issues/comments/:id") { request, _ in try await self.comment(request) }
        router.post("/api/v1/repos/:owner/:repo/issues/comments/:id/reactions") { _, _ in try await self.answer("{}") }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "stand-in-forge")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            }, logger: logger)
        task.withLock { $0 = Task { try await app.runService(gracefulShutdownSignals: []) } }
        var port = 0
        for await p in ports { port = p }
        return port
    }

    func stop() async {
        let running = task.withLock { $0 }
        running?.cancel()
        _ = try? await running?.value
    }

    private func comment(_ request: Request) async throws -> Response {
        var request = request
        let body = String(buffer: try await request.collectBody(upTo: 1 << 20))
        try await Task.sleep(for: latency)  // the forge's work; the edit counts as applied once it answers
        let now = ContinuousClock.now
        let id = state.withLock { s -> Int in
            s.nextID += 1
            // `<!-- forge-hooks job=<id> agent=…`: the first "finished" version of each job's comment.
            if body.contains("finished job"), let start = body.range(of: "job=")?.upperBound,
                let end = body[start...].firstIndex(of: " ")
            {
                let job = String(body[start..<end])
                if s.finished[job] == nil { s.finished[job] = now }
            }
            return s.nextID
        }
        return try await answer(#"{"id":\#(id),"body":"","user":{"login":"bench-bot"}}"#, status: .created, delayed: false)
    }

    private func answer(_ json: String, status: HTTPResponse.Status = .ok, delayed: Bool = true) async throws -> Response {
        state.withLock { $0.calls += 1 }
        if delayed { try await Task.sleep(for: latency) }
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}
