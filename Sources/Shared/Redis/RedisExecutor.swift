import Foundation

/// A fixed set of dedicated OS threads, each owning one `RedisConnection`, serving a shared FIFO of work items.
///
/// hiredis calls block; running them here keeps them off Swift's cooperative thread pool. Work items are
/// closures that receive the executing thread's connection; they must not escape it.
final class RedisExecutor: @unchecked Sendable {
    typealias Work = @Sendable (RedisConnection) -> Void

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Work] = []
    private var head = 0
    private var isShutdown = false
    private var threads: [Thread] = []

    init(configuration: RedisConfiguration, threads count: Int, name: String) {
        precondition(count > 0)
        let health = ConnectHealth()
        for i in 0..<count {
            let thread = Thread { [self] in self.serve(RedisConnection(configuration: configuration, health: health)) }
            thread.name = "\(name)-\(i)"
            thread.stackSize = 1 << 20
            threads.append(thread)
            thread.start()
        }
    }

    /// Queues `work`; returns false (work not queued) once shut down.
    func submit(_ work: @escaping Work) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if isShutdown { return false }
        queue.append(work)
        condition.signal()
        return true
    }

    /// Stops the threads after the queued work has run; connections are closed.
    func shutdown() {
        condition.lock()
        isShutdown = true
        condition.broadcast()
        condition.unlock()
    }

    private func serve(_ connection: RedisConnection) {
        while true {
            condition.lock()
            while head == queue.count && !isShutdown { condition.wait() }
            if head == queue.count {  // shut down and drained
                condition.unlock()
                connection.disconnect()
                return
            }
            let work = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.unlock()
            work(connection)
        }
    }
}
