import Shared

/// Latency samples in milliseconds and their percentiles: the one summary every harness prints.
struct Latencies: Sendable {
    private(set) var milliseconds: [Double] = []

    var count: Int { milliseconds.count }

    mutating func add(_ duration: Duration) { milliseconds.append(duration.seconds * 1000) }

    /// The nearest-rank percentile (`p` from 0 to 1); 0 when there is no sample.
    func percentile(_ p: Double) -> Double {
        let sorted = milliseconds.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    var p50: Double { percentile(0.50) }
    var p99: Double { percentile(0.99) }
}

/// `Latencies` shared by concurrent tasks.
actor LatencyRecorder {
    private var latencies = Latencies()
    func add(_ duration: Duration) { latencies.add(duration) }
    func summary() -> (p50: Double, p99: Double) { (latencies.p50, latencies.p99) }
}

/// Reserves and finishes (succeeded) agent `bench`'s jobs with `consumers` concurrent slots until `jobs` are done, as a
/// worker's slots do: with the worker's blocking consumer (`QueueConsumer`, a connection each), or polling
/// `reserveAny`. Returns the wall time and each reserve → finish cycle's latency.
/// `finishFields` go with every finish (e.g. a run's `cost_usd`, which also adds it to the day's spend).
func drainBenchJobs(
    _ queue: JobQueue, jobs: Int, consumers: Int, blocking: Bool, finishFields: [(String, String)] = []
) async throws -> (elapsed: Duration, p50: Double, p99: Double) {
    let cycles = LatencyRecorder()
    let done = Counter()
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for c in 0..<consumers {
            let worker = "bench-\(c)"
            let consumer = blocking ? queue.makeConsumer(worker: worker) : nil
            group.addTask {
                defer { consumer?.close() }
                while done.value < jobs {
                    let t = ContinuousClock.now
                    let reserved =
                        if let consumer { try await consumer.reserve(agents: ["bench"], home: "bench") } else {
                            try await queue.reserveAny(worker: worker, agents: ["bench"])
                        }
                    guard let job = reserved else { continue }
                    _ = try await queue.finish(job, worker: worker, outcome: .succeeded, fields: finishFields)
                    await cycles.add(ContinuousClock.now - t)
                    done.increment()
                }
            }
        }
        try await group.waitForAll()
    }
    let elapsed = ContinuousClock.now - start
    let summary = await cycles.summary()
    return (elapsed, summary.p50, summary.p99)
}
