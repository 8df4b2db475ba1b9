import Foundation
import Metrics
import Synchronization

/// The webhook metrics, made once per label set: the metrics factory's own lookup costs a lock and several hashes
/// per call, which the handler would otherwise pay twice per request.
final class WebhookMetrics: Sendable {
    private struct Key: Hashable {
        let forge: String
        let event: String
        let outcome: String
    }

    private struct Cache {
        var counters: [Key: Counter] = [:]
        var timers: [String: Metrics.Timer] = [:]
    }

    private let cache = Mutex(Cache())
    let redisErrors = Counter(label: "redis_errors_total", dimensions: [("operation", "enqueue")])
    let enqueueDuration = Metrics.Timer(label: "enqueue_duration_seconds")

    /// Requests by forge, event and outcome. Labels come from signed requests (or are fixed), and the cache is
    /// bounded all the same.
    func requests(forge: String, event: String, outcome: String) -> Counter {
        let key = Key(forge: forge, event: event, outcome: outcome)
        return cache.withLock { cache in
            if let counter = cache.counters[key] { return counter }
            let counter = Counter(label: "webhook_requests_total", dimensions: [("forge", forge), ("event", event), ("outcome", outcome)])
            if cache.counters.count < 1000 { cache.counters[key] = counter }
            return counter
        }
    }

    func duration(outcome: String) -> Metrics.Timer {
        cache.withLock { cache in
            if let timer = cache.timers[outcome] { return timer }
            let timer = Metrics.Timer(label: "webhook_request_duration_seconds", dimensions: [("outcome", outcome)])
            cache.timers[outcome] = timer
            return timer
        }
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
