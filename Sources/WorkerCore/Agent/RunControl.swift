import Foundation
import Synchronization

/// Lets someone outside a run ask it to stop: worker shutdown past its grace period, or the job lost (this worker's
/// lease lapsed and the job was recovered, so another run may already have it).
package final class RunControl: Sendable {
    /// `lost`: the job was recovered by another worker. `leaseUnconfirmed`: this worker could not renew its lease in
    /// time, so another worker may recover it. `shutdown`: the worker stops.
    enum Reason: Sendable, Equatable { case shutdown, lost, leaseUnconfirmed }

    private struct State {
        var reason: Reason?
        var waiters: [UUID: CheckedContinuation<Reason?, Never>] = [:]
    }

    private let state = Mutex(State())

    package init() {}

    func abort(_ r: Reason) {
        let pending = state.withLock { state in
            if state.reason == nil { state.reason = r }
            defer { state.waiters = [:] }
            return state.waiters
        }
        for (_, c) in pending { c.resume(returning: r) }
    }

    /// Returns the reason once aborted, or nil if the waiting task is cancelled first.
    func wait() async -> Reason? {
        let id = UUID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Reason?, Never>) in
                let answer: Reason?? = state.withLock { state in
                    if let reason = state.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = c
                    return .none
                }
                if let answer { c.resume(returning: answer) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }
}
