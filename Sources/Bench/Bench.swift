import ArgumentParser
import Foundation
import Shared
import Synchronization

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hooks-bench",
        abstract: "Benchmark harnesses: print figures for this machine.",
        subcommands: [
            QueueBench.self, BareServer.self, DispatchBench.self, OutputBench.self, TranscriptsBench.self, DashboardSeed.self, FeedbackBench.self,
        ])
}

/// Enqueues N no-op jobs, then drains them with K consumers through the worker's own code path
/// (`QueueConsumer.reserve` + `JobQueue.finish`), and prints throughput and latency percentiles.
struct QueueBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "queue", abstract: "Enqueue and drain no-op jobs against a Redis.")

    @Option(help: "Redis URL (use a scratch Redis: the bench writes under its own random prefix and deletes it).")
    var redis = "redis://127.0.0.1:6379"
    @Option(help: "Number of jobs.") var jobs = 20_000
    @Option(help: "Concurrent consumers (each with its own connection, like worker slots).") var consumers = 8
    @Option(help: "Concurrent enqueuers.") var producers = 8
    @Option(help: "Distinct sessions the jobs are spread over.") var sessions = 1000
    @Flag(help: "Finish every job with a cost_usd field, as a real run does (adds it to hooks:spend:d:<day>).") var cost = false

    func run() async throws {
        let config = try RedisConfiguration(url: redis)
        let client = RedisClient(configuration: config, connections: max(producers, 4))
        let prefix = "bench-\(UUID().uuidString.prefix(8).lowercased())"
        var settings = QueueSettings()
        settings.reserveBlockTimeout = .milliseconds(200)
        let queue = JobQueue(redis: client, keys: KeySchema(prefix: prefix), settings: settings)
        try await client.ping()
        print(
            "hooks-bench queue: \(jobs) jobs, \(producers) enqueuers, \(consumers) consumers, \(sessions) sessions, Redis \(config.endpointDescription)"
        )

        // Phase 1: enqueue.
        let enqueueLatencies = LatencyRecorder()
        let enqueueStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in 0..<producers {
                group.addTask {
                    var i = p
                    while i < jobs {
                        let job = NewJob(
                            agent: "bench", session: SessionKey(agent: "bench", repository: "bench/repo", number: 1 + i % sessions),
                            fields: [("prompt", "noop"), ("repo", "bench/repo")])
                        let t = ContinuousClock.now
                        _ = try await queue.enqueue([job])
                        await enqueueLatencies.add(ContinuousClock.now - t)
                        i += producers
                    }
                }
            }
            try await group.waitForAll()
        }
        let enqueueElapsed = ContinuousClock.now - enqueueStart

        // Phase 2: drain with K consumers.
        let drain = try await drainBenchJobs(
            queue, jobs: jobs, consumers: consumers, blocking: true, finishFields: cost ? [("cost_usd", "0.0123")] : [])

        let enq = await enqueueLatencies.summary()
        print(String(format: "enqueue      : %8.0f jobs/s   p50 %6.3f ms   p99 %6.3f ms", Double(jobs) / enqueueElapsed.seconds, enq.p50, enq.p99))
        print(String(format: "reserve→ack  : %8.0f jobs/s   p50 %6.3f ms   p99 %6.3f ms", Double(jobs) / drain.elapsed.seconds, drain.p50, drain.p99))
        print(
            String(
                format: "end-to-end   : %8.0f jobs/s   (%d jobs enqueued and drained in %.2f s)",
                Double(jobs) / (enqueueElapsed + drain.elapsed).seconds, jobs, (enqueueElapsed + drain.elapsed).seconds))

        // Clean up everything under the bench prefix.
        try await client.deleteKeys(matching: "\(prefix):*")
        client.shutdown()
    }
}

/// A thread-safe counter: jobs drained by the queue benchmark, delivery ids of the bare server.
final class Counter: Sendable {
    private let count = Mutex(0)

    var value: Int { count.withLock { $0 } }

    /// Adds one and returns the new value.
    @discardableResult
    func increment() -> Int {
        count.withLock {
            $0 += 1
            return $0
        }
    }
}
