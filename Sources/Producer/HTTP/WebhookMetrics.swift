import Foundation
import Metrics

/// The webhook metrics, made once per label set: the metrics factory's own lookup costs a lock and several hashes
/// per call, which the handler would otherwise pay twice per request.
final class WebhookMetrics: @unchecked Sendable {
    private struct Key: Hashable {
        let forge: String
        let event: String
        let outcome: String
    }

    private let lock = NSLock()
    private var counters: [Key: Counter] = [:]
    private var timers: [String: Metrics.Timer] = [:]
    let redisErrors = Counter(label: "redis_errors_total", dimensions: [("operation", "enqueue")])
    let enqueueDuration = Metrics.Timer(label: "enqueue_duration_seconds")

    /// Requests by forge, event and outcome. Labels come from signed requests (or are fixed), and the cache is
    /// bounded all the same.
    func requests(forge: String, event: String, outcome: String) -> Counter {
        let key = Key(forge: forge, event: event, outcome: outcome)
        lock.lock()
        defer { lock.unlock() }
        if let counter = counters[key] { return counter }
        let counter = Counter(label: "webhook_requests_total", dimensions: [("forge", forge), ("event", event), ("outcome", outcome)])
        if counters.count < 1000 { counters[key] = counter }
        return counter
    }

    func duration(outcome: String) -> Metrics.Timer {
        lock.lock()
        defer { lock.unlock() }
        if let timer = timers[outcome] { return timer }
        let timer = Metrics.Timer(label: "webhook_request_duration_seconds", dimensions: [("outcome", outcome)])
        timers[outcome] = timer
        return timer
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
