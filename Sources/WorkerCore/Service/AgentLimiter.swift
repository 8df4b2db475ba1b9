/// Per-agent concurrency on one worker. A slot claims capacity on every agent it is about to reserve from, then keeps
/// the one it got a job for and gives the rest back — so a limit is never exceeded, even by racing slots.
actor AgentLimiter {
    private var limits: [String: Int]
    private var inUse: [String: Int] = [:]

    init(limits: [String: Int]) { self.limits = limits }

    /// Claims one unit on each of `agents` that has room; returns those claimed (in the given order).
    func claim(_ agents: [String]) -> [String] {
        var claimed: [String] = []
        for agent in agents where inUse[agent, default: 0] < limits[agent, default: 1] {
            inUse[agent, default: 0] += 1
            claimed.append(agent)
        }
        return claimed
    }

    func release(_ agents: [String]) {
        for agent in agents { inUse[agent, default: 1] -= 1 }
    }
}
