import Foundation

/// How long to wait before the next attempt of a failed job: exponential back-off with full jitter on top of a floor.
///
/// delay(n) = min(maximum, base × factor^(n−1)) scaled by a random factor in [1 − jitter, 1].
public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts: Int
    public var base: Duration
    public var factor: Double
    public var maximum: Duration
    /// 0 = no jitter, 1 = full jitter.
    public var jitter: Double

    public init(maxAttempts: Int, base: Duration, factor: Double = 2, maximum: Duration, jitter: Double = 0.5) {
        self.maxAttempts = maxAttempts
        self.base = base
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
    }

    /// 5 attempts; 10 s, 20 s, 40 s, 80 s (each scaled by a random 0.5–1×), capped at 10 minutes.
    public static let exponentialJitter = RetryPolicy(maxAttempts: 5, base: .seconds(10), maximum: .seconds(600))

    /// The wait after attempt number `attempt` (1-based) failed.
    public func delay(afterAttempt attempt: Int) -> Duration {
        var rng = SystemRandomNumberGenerator()
        return delay(afterAttempt: attempt, using: &rng)
    }

    public func delay<G: RandomNumberGenerator>(afterAttempt attempt: Int, using rng: inout G) -> Duration {
        let exponent = Double(max(0, attempt - 1))
        let raw = base.seconds * pow(factor, exponent)
        let capped = min(raw, maximum.seconds)
        let scale = jitter > 0 ? Double.random(in: (1 - jitter)...1, using: &rng) : 1
        return .milliseconds(Int64(capped * scale * 1000))
    }

    /// Whether another attempt follows attempt number `attempt`.
    public func shouldRetry(afterAttempt attempt: Int, maxAttempts override: Int? = nil) -> Bool {
        attempt < (override ?? maxAttempts)
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
