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
