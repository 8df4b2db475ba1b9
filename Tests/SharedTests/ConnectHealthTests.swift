import Foundation
import Testing

@testable import Shared

/// How a pool's connections share the sentinels' answer: one asks at a time, a fresh answer serves all, and silent
/// sentinels are not asked by every connection at once.
@Suite struct ConnectHealthTests {
    let master = RedisConfiguration.Sentinel.Address(host: "10.0.0.1", port: 6379)

    @Test func oneConnectionAsksAndItsAnswerServesThePool() {
        let health = ConnectHealth()
        guard case .yours = health.sentinelCheck(within: .seconds(1)) else { Issue.record("nobody was asked to ask"); return }
        // While it asks, the others keep going.
        guard case .notNow = health.sentinelCheck(within: .seconds(1)) else { Issue.record("a second connection asked too"); return }
        health.sentinelsNamed(master)
        guard case .answered(let named, _) = health.sentinelCheck(within: .seconds(1)) else { Issue.record("the answer was not shared"); return }
        #expect(named == master)
        // Older than the recheck interval, the answer is asked for again.
        guard case .yours = health.sentinelCheck(within: .zero) else { Issue.record("a stale answer was used"); return }
    }

    @Test func silentSentinelsAreAskedOncePerIntervalAndASlowAskIsTakenOver() async throws {
        let health = ConnectHealth()
        guard case .yours = health.sentinelCheck(within: .seconds(5)) else { Issue.record("nobody was asked to ask"); return }
        health.sentinelsUnanswered()
        // Unanswered: the pool keeps its connections until the interval is over, then one asks again.
        guard case .notNow = health.sentinelCheck(within: .seconds(5)) else { Issue.record("asked again at once"); return }
        guard case .yours = health.sentinelCheck(within: .zero) else { Issue.record("never asked again"); return }
        // That ask hangs: the others wait for it, but past the grace another connection asks for itself.
        guard case .notNow = health.sentinelCheck(within: .zero) else { Issue.record("a second connection asked too"); return }
        try await Task.sleep(for: ConnectHealth.askGrace + .milliseconds(50))
        guard case .yours = health.sentinelCheck(within: .zero) else { Issue.record("a slow ask held up the pool"); return }
    }
}
