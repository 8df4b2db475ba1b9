import Foundation

/// An async Redis client over hiredis: a small pool of connections, each on its own dedicated thread.
///
/// Calls are served in FIFO order by whichever connection is free. Error replies (`-ERR …`) are thrown as
/// `RedisError.server` by `send`, `evaluate` and `transaction`; `pipeline` returns them in place.
/// Blocking commands (BLMOVE…) tie up a connection for their whole timeout: give each blocking consumer its own
/// client with `RedisClient(configuration:connections: 1)`, as `makeDedicated()` does.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let executor: RedisExecutor

    public init(configuration: RedisConfiguration, connections: Int = 4, name: String = "redis") {
        self.configuration = configuration
        self.executor = RedisExecutor(configuration: configuration, threads: max(1, connections), name: name)
    }

    deinit { executor.shutdown() }

    /// A new client with one connection of its own, for a blocking consumer.
    public func makeDedicated(name: String = "redis-blocking") -> RedisClient {
        RedisClient(configuration: configuration, connections: 1, name: name)
    }

    /// Closes all connections once queued calls have run; later calls fail with `RedisError.shutdown`.
    public func shutdown() { executor.shutdown() }

    /// Runs `body` on a Redis thread with its connection. The body blocks that thread, never the caller's.
    func withConnection<T: Sendable>(_ body: @escaping @Sendable (RedisConnection) throws(RedisError) -> T) async throws(RedisError) -> T {
        let result: Result<T, RedisError> = await withCheckedContinuation { continuation in
            let queued = executor.submit { connection in
                do throws(RedisError) {
                    continuation.resume(returning: .success(try body(connection)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            if !queued { continuation.resume(returning: .failure(.shutdown)) }
        }
        return try result.get()
    }

    // MARK: Commands

    /// Sends one command; an error reply is thrown as `RedisError.server`.
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RedisReply {
        let reply = try await single(command)
        if case .error(let message) = reply { throw .server(message) }
        return reply
    }

    /// One command through the executor's batching path; error replies are returned, not thrown.
    func single(_ command: RedisCommand) async throws(RedisError) -> RedisReply {
        let result: Result<RedisReply, RedisError> = await withCheckedContinuation { continuation in
            let queued = executor.submit(command) { continuation.resume(returning: $0) }
            if !queued { continuation.resume(returning: .failure(.shutdown)) }
        }
        return try result.get()
    }

    @discardableResult
    public func send(_ arguments: String...) async throws(RedisError) -> RedisReply {
        try await send(RedisCommand(arguments))
    }

    @discardableResult
    public func send(_ arguments: [String]) async throws(RedisError) -> RedisReply {
        try await send(RedisCommand(arguments))
    }

    /// Sends all commands in one write and returns every reply in order (error replies included, not thrown).
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply] {
        if commands.isEmpty { return [] }
        return try await withConnection { connection throws(RedisError) in try connection.pipeline(commands) }
    }

    /// Runs the commands atomically as MULTI … EXEC in one round trip and returns EXEC's replies.
    /// - Throws: `RedisError.server` if Redis refused a queued command (nothing was executed),
    ///   `RedisError.transactionAborted` if a WATCHed key changed.
    public func transaction(_ commands: [RedisCommand]) async throws(RedisError) -> [RedisReply] {
        let all = [RedisCommand("MULTI")] + commands + [RedisCommand("EXEC")]
        let replies = try await pipeline(all)
        switch replies.last! {
        case .array(let results): return results
        case .null: throw .transactionAborted
        case .error(let message):
            // EXECABORT: name the queued command Redis refused, which is what the caller needs to fix.
            let refused = zip(commands, replies.dropFirst().dropLast()).first { if case .error = $0.1 { true } else { false } }
            if let (command, reply) = refused, case .error(let why) = reply { throw .server("\(message) (\(command.name): \(why))") }
            throw .server(message)
        case let other: throw .unexpectedReply(command: "EXEC", reply: "\(other)")
        }
    }

    /// Runs a Lua script by EVALSHA, loading it with SCRIPT LOAD first if Redis answers NOSCRIPT (after a restart
    /// or SCRIPT FLUSH). An error reply (including one raised by the script) is thrown as `RedisError.server`.
    /// `binaryArguments` follow `arguments` as raw bytes (binary-safe, e.g. file contents).
    @discardableResult
    public func evaluate(
        _ script: RedisScript, keys: [String] = [], arguments: [String] = [], binaryArguments: [[UInt8]] = []
    ) async throws(RedisError) -> RedisReply {
        var command = RedisCommand("EVALSHA", script.sha1, String(keys.count))
        command.append(contentsOf: keys)
        command.append(contentsOf: arguments)
        for bytes in binaryArguments { command.append(bytes: bytes) }
        var reply = try await single(command)
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            let retry = command
            reply = try await withConnection { connection throws(RedisError) in
                let loaded = try connection.send(RedisCommand("SCRIPT", "LOAD", script.source))
                if case .error = loaded { return loaded }
                return try connection.send(retry)
            }
        }
        if case .error(let message) = reply { throw .server(message) }
        return reply
    }

    /// `evaluate`, then `WAIT replicas timeout` on the same connection (WAIT counts the replicas that have every
    /// write this connection made): the script's writes are confirmed only once `replicas` replicas have them.
    /// - Throws: `RedisError.notReplicated` when fewer acknowledged in time (the writes are on the master, maybe not
    ///   on any replica).
    public func evaluateReplicated(
        _ script: RedisScript, arguments: [String], replicas: Int, timeout: Duration
    ) async throws(RedisError) -> RedisReply {
        let (reply, acknowledged) = try await evaluateAndWait(script, arguments: arguments, replicas: replicas, timeout: timeout)
        guard acknowledged >= replicas else { throw .notReplicated(acknowledged: acknowledged, wanted: replicas) }
        return reply
    }

    /// `evaluate` and `WAIT replicas timeout` on one connection: the script's reply and how many replicas have its
    /// writes (the caller decides what too few means: its writes are on the master either way). Without `when`, the two
    /// go in one pipelined round trip; with it, WAIT is sent only if `when(reply)` says the script wrote something that
    /// must be replicated (a claim), so a call that changed nothing does not wait. A WAIT that errors counts as none.
    public func evaluateAndWait(
        _ script: RedisScript, arguments: [String], replicas: Int, timeout: Duration,
        when: (@Sendable (RedisReply) -> Bool)? = nil
    ) async throws(RedisError) -> (reply: RedisReply, acknowledged: Int) {
        let command = RedisCommand(["EVALSHA", script.sha1, "0"] + arguments)
        let milliseconds = Int64(timeout.seconds * 1000)
        let wait = RedisCommand("WAIT", String(replicas), String(max(1, milliseconds)))
        let result = try await withConnection { connection throws(RedisError) -> (RedisReply, Int) in
            func run() throws(RedisError) -> (RedisReply, Int) {
                guard let when else {
                    let replies = try connection.pipeline([command, wait])
                    return (replies[0], replies[1].int ?? 0)
                }
                let reply = try connection.send(command)
                guard when(reply) else { return (reply, replicas) }
                return (reply, try connection.send(wait).int ?? 0)
            }
            var result = try run()
            if case .error(let message) = result.0, message.hasPrefix("NOSCRIPT") {
                let loaded = try connection.send(RedisCommand("SCRIPT", "LOAD", script.source))
                if case .error = loaded { return (loaded, 0) }
                result = try run()
            }
            return result
        }
        if case .error(let message) = result.0 { throw .server(message) }
        return result
    }

    /// Runs a blocking command whose server-side timeout is `timeout`; the connection's socket timeout is raised
    /// above it for this call. Use on a dedicated client: the connection is busy for up to `timeout`.
    public func blocking(_ command: RedisCommand, timeout: Duration) async throws(RedisError) -> RedisReply {
        let reply = try await withConnection { connection throws(RedisError) in try connection.blocking(command, blockingFor: timeout) }
        if case .error(let message) = reply { throw .server(message) }
        return reply
    }

    /// PING; succeeds only if Redis answers.
    public func ping() async throws(RedisError) {
        let reply = try await send("PING")
        guard reply == .status("PONG") else { throw .unexpectedReply(command: "PING", reply: "\(reply)") }
    }
}

extension RedisClient {
    /// Every key matching `pattern`, by SCAN (never KEYS, which blocks Redis).
    public func scanKeys(matching pattern: String) async throws(RedisError) -> [String] {
        var cursor = "0"
        var keys: [String] = []
        repeat {
            let reply = try await send("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            cursor = reply.array?.first?.string ?? "0"
            keys += reply.array?.last?.strings ?? []
        } while cursor != "0"
        return keys
    }

    /// Deletes every key matching `pattern` (bench and test clean-up).
    public func deleteKeys(matching pattern: String) async throws(RedisError) {
        let keys = try await scanKeys(matching: pattern)
        for start in stride(from: 0, to: keys.count, by: 500) {
            try await send(["UNLINK"] + keys[start..<min(start + 500, keys.count)])
        }
    }
}
