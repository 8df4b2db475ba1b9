import Foundation

/// A fixed set of dedicated OS threads, each owning one `RedisConnection`, serving a shared FIFO of work items.
///
/// hiredis calls block; running them here keeps them off Swift's cooperative thread pool. Work items are
/// closures that receive the executing thread's connection (they must not escape it), or single commands: a thread
/// that finds several single commands waiting writes them in one batch and reads the replies back in order
/// (automatic pipelining), so under load one round trip serves many callers.
final class RedisExecutor: @unchecked Sendable {
    typealias Work = @Sendable (RedisConnection) -> Void
    typealias Completion = @Sendable (Result<RedisReply, RedisError>) -> Void

    private enum Item {
        case work(Work)
        case command(RedisCommand, Completion)
    }

    /// At most this many queued commands go out in one batch.
    static let maxBatch = 64

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Item] = []
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
        queue.append(.work(work))
        condition.signal()
        return true
    }

    /// Queues one command; `completion` runs on the Redis thread. Returns false (not queued) once shut down.
    func submit(_ command: RedisCommand, completion: @escaping Completion) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if isShutdown { return false }
        queue.append(.command(command, completion))
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
            let first = queue[head]
            head += 1
            var batch: [(RedisCommand, Completion)] = []
            if case .command(let command, let completion) = first {
                batch.append((command, completion))
                while head < queue.count, batch.count < Self.maxBatch, case .command(let c, let done) = queue[head] {
                    batch.append((c, done))
                    head += 1
                }
            }
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.unlock()
            if case .work(let work) = first {
                work(connection)
                continue
            }
            do throws(RedisError) {
                let replies = try connection.pipeline(batch.map(\.0))
                for (item, reply) in zip(batch, replies) { item.1(.success(reply)) }
            } catch {
                for item in batch { item.1(.failure(error)) }
            }
        }
    }
}
