import Foundation

/// Lets someone outside a run ask it to stop: worker shutdown past its grace period, or the job lost (this worker's
/// lease lapsed and the job was recovered, so another run may already have it).
final class RunControl: @unchecked Sendable {
    enum Reason: Sendable, Equatable { case shutdown, lost }

    private let lock = NSLock()
    private var reason: Reason?
    private var waiters: [UUID: CheckedContinuation<Reason?, Never>] = [:]

    func abort(_ r: Reason) {
        lock.lock()
        if reason == nil { reason = r }
        let pending = waiters
        waiters = [:]
        lock.unlock()
        for (_, c) in pending { c.resume(returning: r) }
    }

    /// Returns the reason once aborted, or nil if the waiting task is cancelled first.
    func wait() async -> Reason? {
        let id = UUID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Reason?, Never>) in
                lock.lock()
                if let reason {
                    lock.unlock()
                    c.resume(returning: reason)
                } else if Task.isCancelled {
                    lock.unlock()
                    c.resume(returning: nil)
                } else {
                    waiters[id] = c
                    lock.unlock()
                }
            }
        } onCancel: {
            lock.lock()
            let c = waiters.removeValue(forKey: id)
            lock.unlock()
            c?.resume(returning: nil)
        }
    }
}
