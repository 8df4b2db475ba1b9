import CHiredis
import Foundation
import Synchronization

/// One hiredis context. **Not thread-safe**: it is owned by exactly one `RedisExecutor` thread.
///
/// Every call blocks the calling thread. A context that saw any error is freed at once (hiredis contexts
/// are unusable after an error) and the next call reconnects; consecutive failed connects back off
/// exponentially (up to one second) so a dead Redis is not hammered, and calls inside the back-off window
/// fail fast with the last connection error.
final class RedisConnection {
    let configuration: RedisConfiguration
    private var context: UnsafeMutablePointer<redisContext>?
    private var consecutiveConnectFailures = 0
    private var retryNotBefore: ContinuousClock.Instant?
    private var lastConnectError: RedisError?
    private var socketTimeout: Duration
    private let health: ConnectHealth
    /// The sentinel that answered last: asked first next time.
    private var preferredSentinel = 0
    /// With sentinels: the master this connection is on, and when the sentinels last confirmed it.
    private var connectedMaster: RedisConfiguration.Sentinel.Address?
    private var masterConfirmedAt = ContinuousClock.now
    private var failedAt: ContinuousClock.Instant?
    /// How often a connection in use asks the sentinels whether its node is still the master. A demoted master can
    /// keep answering as master for seconds (until the sentinels reconfigure it); this bounds how long a client keeps
    /// writing there once the sentinels have named another.
    static let masterRecheck: Duration = .seconds(1)

    init(configuration: RedisConfiguration, health: ConnectHealth = ConnectHealth()) {
        self.configuration = configuration
        self.socketTimeout = configuration.commandTimeout
        self.health = health
    }

    deinit { disconnect() }

    func disconnect() {
        if let context { redisFree(context) }
        context = nil
        connectedMaster = nil
    }

    // MARK: Connecting

    private func ensureConnected() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        if let context, let sentinel = configuration.sentinel, let connectedMaster, ContinuousClock.now - masterConfirmedAt >= Self.masterRecheck {
            // Still the master the sentinels name? One answer a second serves the whole pool (each connection asking
            // would open a sentinel connection per busy connection per second). If they cannot be asked, the working
            // connection is kept.
            switch health.sentinelCheck(within: Self.masterRecheck) {
            case .answered(let master, let at) where master == connectedMaster: masterConfirmedAt = at
            case .answered: disconnect()
            case .notNow: return context
            case .yours:
                do {
                    let master = try discoverMaster(sentinel)
                    health.sentinelsNamed(master)
                    if master != connectedMaster { disconnect() } else { masterConfirmedAt = .now }
                } catch {
                    health.sentinelsUnanswered()
                    masterConfirmedAt = .now
                }
            }
            if let context = self.context { return context }
        }
        if let context { return context }
        // In the back-off window a call fails fast, unless another connection of the pool connected since this one
        // failed (Redis is back: no need to wait out the rest).
        if let notBefore = retryNotBefore, ContinuousClock.now < notBefore, let lastConnectError, let failedAt,
            !health.someoneConnected(after: failedAt)
        {
            throw lastConnectError
        }
        do {
            let ctx = try connect()
            consecutiveConnectFailures = 0
            retryNotBefore = nil
            lastConnectError = nil
            context = ctx
            health.connected()
            return ctx
        } catch {
            consecutiveConnectFailures += 1
            let backoffMs = min(1000, 25 << min(consecutiveConnectFailures, 6))
            failedAt = .now
            retryNotBefore = ContinuousClock.now + .milliseconds(backoffMs)
            lastConnectError = error
            throw error
        }
    }

    private func connect() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let sentinel = configuration.sentinel else { return try open(configuration.endpoint, description: configuration.endpointDescription) }
        let master = try discoverMaster(sentinel)
        let description = "master '\(sentinel.masterName)' at \(master)"
        let ctx = try open(.tcp(host: master.host, port: master.port), description: description)
        // The sentinels' answer can be stale for a moment around a failover: only a node that says it is the master
        // is used. Anything else is dropped and asked about again after the back-off.
        let role: RedisReply
        do {
            role = try Self.roundTrip(ctx, [RedisCommand("ROLE")], endpoint: description)[0]
        } catch {
            redisFree(ctx)
            throw .connectionFailed(endpoint: description, reason: "\(error)")
        }
        if case .error(let message) = role, message.hasPrefix("NOPERM") {
            redisFree(ctx)
            throw .connectionFailed(
                endpoint: description,
                reason: "the Redis user may not run ROLE (\(message)); the client confirms the master with it, so grant it: "
                    + "ACL SETUSER <user> +role")
        }
        guard role.array?.first?.string == "master" else {
            redisFree(ctx)
            throw .connectionFailed(
                endpoint: description,
                reason:
                    "it answers ROLE with \(role.array?.first?.string ?? "\(role)"), not master: a failover is under way; asking the sentinels again")
        }
        // Shared with the pool only once the node confirmed it: a stale answer is not passed on.
        health.sentinelsNamed(master)
        connectedMaster = master
        masterConfirmedAt = .now
        return ctx
    }

    /// Asks the sentinels, the last one that answered first, where the master is.
    private func discoverMaster(_ sentinel: RedisConfiguration.Sentinel) throws(RedisError) -> RedisConfiguration.Sentinel.Address {
        var problems: [String] = []
        var unknown = 0
        var answered = 0
        let count = sentinel.addresses.count
        for step in 0..<count {
            let index = (preferredSentinel + step) % count
            let address = sentinel.addresses[index]
            let ctx: UnsafeMutablePointer<redisContext>
            do {
                ctx = try open(
                    .tcp(host: address.host, port: address.port), description: "sentinel \(address)", username: sentinel.username,
                    password: sentinel.password, database: 0)
            } catch {
                problems.append("\(address): \(Self.reason(error))")
                continue
            }
            defer { redisFree(ctx) }
            let reply: RedisReply
            do {
                reply = try Self.roundTrip(
                    ctx, [RedisCommand("SENTINEL", "get-master-addr-by-name", sentinel.masterName)], endpoint: "sentinel \(address)")[0]
            } catch {
                problems.append("\(address): \(Self.reason(error))")
                continue
            }
            answered += 1
            switch reply {
            case .array(let items) where items.count == 2:
                guard let host = items[0].string, let port = items[1].string.flatMap(Int.init) else { fallthrough }
                preferredSentinel = index
                return .init(host: host, port: port)
            case .null:
                unknown += 1
                problems.append("\(address): does not know master '\(sentinel.masterName)'")
            default:
                problems.append("\(address): answered \(reply)")
            }
        }
        if answered == 0 {
            throw .sentinelsUnreachable(
                sentinels: sentinel.addresses.map(\.description).joined(separator: ", "), reason: problems.joined(separator: "; "))
        }
        // Every sentinel that answered says it does not know the name: a configuration error, not an outage.
        if unknown > 0 && unknown == answered {
            throw .unknownMaster(name: sentinel.masterName, sentinels: sentinel.addresses.map(\.description).joined(separator: ", "))
        }
        throw .connectionFailed(
            endpoint: configuration.endpointDescription,
            reason:
                "no sentinel named a reachable master (\(problems.joined(separator: "; "))); check redis.sentinel.addresses and that the sentinels run"
        )
    }

    private static func reason(_ error: RedisError) -> String {
        switch error {
        case .connectionFailed(_, let reason), .connectionLost(_, let reason): return reason
        default: return "\(error)"
        }
    }

    private func open(
        _ target: RedisConfiguration.Endpoint, description endpoint: String, username: String?? = nil, password: String?? = nil,
        database: Int? = nil
    ) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        let username = username ?? configuration.username
        let password = password ?? configuration.password
        let database = database ?? configuration.database
        let tv = Self.timeval(configuration.connectTimeout)
        let made: UnsafeMutablePointer<redisContext>?
        switch target {
        case .tcp(let host, let port): made = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path): made = redisConnectUnixWithTimeout(path, tv)
        }
        guard let ctx = made else {
            throw .connectionFailed(endpoint: endpoint, reason: "out of memory allocating a hiredis context")
        }
        if ctx.pointee.err != 0 {
            let reason = Self.errorString(ctx)
            redisFree(ctx)
            throw .connectionFailed(endpoint: endpoint, reason: reason)
        }
        socketTimeout = configuration.commandTimeout
        redisSetTimeout(ctx, Self.timeval(socketTimeout))
        // Keep-alive is TCP only: on a unix socket it fails and leaves the context in an error state.
        if case .tcp = target { redisEnableKeepAlive(ctx) }
        do throws(RedisError) {
            if let password {
                var args = ["AUTH"]
                if let user = username { args.append(user) }
                args.append(password)
                if case .error(let message) = try Self.roundTrip(ctx, [RedisCommand(args)], endpoint: endpoint)[0] {
                    throw RedisError.connectionFailed(endpoint: endpoint, reason: "AUTH rejected: \(message)")
                }
            } else if let user = username {
                throw RedisError.connectionFailed(endpoint: endpoint, reason: "a username ('\(user)') was given without a password")
            }
            if database != 0 {
                let reply = try Self.roundTrip(ctx, [RedisCommand(["SELECT", String(database)])], endpoint: endpoint)[0]
                if case .error(let message) = reply {
                    throw RedisError.connectionFailed(endpoint: endpoint, reason: "SELECT \(database) rejected: \(message)")
                }
            }
        } catch {
            redisFree(ctx)
            if case .connectionLost(_, let reason) = error { throw .connectionFailed(endpoint: endpoint, reason: reason) }
            throw error
        }
        return ctx
    }

    // MARK: Commands

    /// Sends one command and reads its reply. Error replies are returned as `.error`, not thrown.
    func send(_ command: RedisCommand) throws(RedisError) -> RedisReply {
        try pipeline([command])[0]
    }

    /// Sends several commands in one write and reads all replies (one round trip).
    func pipeline(_ commands: [RedisCommand]) throws(RedisError) -> [RedisReply] {
        let ctx = try ensureConnected()
        do {
            let replies = try Self.roundTrip(ctx, commands, endpoint: configuration.endpointDescription)
            dropIfNotMaster(replies)
            return replies
        } catch {
            disconnect()
            throw error
        }
    }

    /// A node that answers READONLY (demoted to a replica), LOADING (restarting), MASTERDOWN (a replica cut off from
    /// its master) or UNBLOCKED (a blocked command ended by a role change) is not the master to use any more: the
    /// connection is dropped, and the next call finds the master again (through the sentinels, when configured).
    private func dropIfNotMaster(_ replies: [RedisReply]) {
        for case .error(let message) in replies
        where message.hasPrefix("READONLY") || message.hasPrefix("LOADING") || message.hasPrefix("MASTERDOWN") || message.hasPrefix("UNBLOCKED") {
            disconnect()
            return
        }
    }

    /// Runs a blocking command (BLMOVE, BRPOP…) whose server-side timeout is `blockingFor`: the socket timeout is
    /// raised above it for this call only, so a quiet queue is not mistaken for a dead connection.
    func blocking(_ command: RedisCommand, blockingFor: Duration) throws(RedisError) -> RedisReply {
        let ctx = try ensureConnected()
        let needed = blockingFor + configuration.commandTimeout
        redisSetTimeout(ctx, Self.timeval(needed))
        defer {
            if let context { redisSetTimeout(context, Self.timeval(socketTimeout)) }
        }
        do {
            let reply = try Self.roundTrip(ctx, [command], endpoint: configuration.endpointDescription)[0]
            dropIfNotMaster([reply])
            return reply
        } catch {
            disconnect()
            throw error
        }
    }

    private static func roundTrip(
        _ ctx: UnsafeMutablePointer<redisContext>,
        _ commands: [RedisCommand],
        endpoint: String
    ) throws(RedisError) -> [RedisReply] {
        for command in commands {
            let rc = command.withArgv { argc, argv, lens in redisAppendCommandArgv(ctx, argc, argv, lens) }
            if rc != REDIS_OK {
                throw .connectionLost(endpoint: endpoint, reason: errorString(ctx))
            }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            if redisGetReply(ctx, &raw) != REDIS_OK || raw == nil {
                throw .connectionLost(endpoint: endpoint, reason: errorString(ctx))
            }
            let reply = raw!.assumingMemoryBound(to: redisReply.self)
            replies.append(convert(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            guard let str = r.str else { return .bulk([]) }
            return .bulk(Array(UnsafeRawBufferPointer(start: str, count: r.len)))
        case REDIS_REPLY_STATUS:
            return .status(r.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: r.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            return .error(r.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: r.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let element = r.element[i] { items.append(convert(element)) } else { items.append(.null) }
            }
            return .array(items)
        default:
            return .error("unknown hiredis reply type \(r.type)")
        }
    }

    private static func errorString(_ ctx: UnsafeMutablePointer<redisContext>) -> String {
        let message = withUnsafeBytes(of: ctx.pointee.errstr) { raw -> String in
            let bytes = raw.bindMemory(to: UInt8.self)
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
        switch ctx.pointee.err {
        case REDIS_ERR_EOF: return message.isEmpty ? "server closed the connection" : message
        case REDIS_ERR_IO:
            // errno EAGAIN on a blocking socket with SO_RCVTIMEO means the reply did not arrive in time.
            if message.contains("Resource temporarily unavailable") { return "no reply within the command timeout" }
            return message.isEmpty ? "I/O error" : message
        default: return message.isEmpty ? "error \(ctx.pointee.err)" : message
        }
    }

    static func timeval(_ d: Duration) -> Glibc.timeval {
        let (seconds, attoseconds) = d.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

/// Shared by the connections of one pool: when one of them reconnects, the others skip the rest of their back-off
/// instead of failing fast against a Redis that is already back.
final class ConnectHealth: Sendable {
    private let lastConnect = Mutex<ContinuousClock.Instant?>(nil)
    private let sentinels = Mutex<SentinelState>(SentinelState())
    private struct SentinelState {
        var answer: (master: RedisConfiguration.Sentinel.Address, at: ContinuousClock.Instant)?
        var unansweredAt: ContinuousClock.Instant?
        var askingSince: ContinuousClock.Instant?
    }
    /// How long the others keep going while one connection asks; past that (slow or silent sentinels) each asks for
    /// itself again, as if alone, so a slow answer never stretches how long a demoted master is written to.
    static let askGrace: Duration = .milliseconds(250)

    func connected() { lastConnect.withLock { $0 = .now } }

    func someoneConnected(after instant: ContinuousClock.Instant) -> Bool {
        lastConnect.withLock { $0.map { $0 > instant } ?? false }
    }

    enum SentinelCheck {
        /// The master the sentinels named to a connection of the pool less than the recheck interval ago.
        case answered(RedisConfiguration.Sentinel.Address, at: ContinuousClock.Instant)
        /// Another connection started asking them a moment ago, or they did not answer it a moment ago: keep going.
        case notNow
        /// Ask them, then say what they answered (`sentinelsNamed`) or that they did not (`sentinelsUnanswered`).
        case yours
    }

    /// Whether a connection that wants to confirm its master should ask the sentinels: one of the pool asks at a
    /// time, and a recent answer serves all of them.
    func sentinelCheck(within age: Duration) -> SentinelCheck {
        sentinels.withLock { state in
            if let answer = state.answer, ContinuousClock.now - answer.at < age { return .answered(answer.master, at: answer.at) }
            let now = ContinuousClock.now
            if let since = state.askingSince, now - since < Self.askGrace { return .notNow }
            if let unanswered = state.unansweredAt, now - unanswered < age { return .notNow }
            state.askingSince = now
            return .yours
        }
    }

    /// The sentinels just named `master` (to one of the pool's connections).
    func sentinelsNamed(_ master: RedisConfiguration.Sentinel.Address) { sentinels.withLock { $0 = SentinelState(answer: (master, .now)) } }

    /// None of the sentinels answered: the pool keeps its connections and asks again after the recheck interval.
    func sentinelsUnanswered() {
        sentinels.withLock {
            $0.askingSince = nil
            $0.unansweredAt = .now
        }
    }
}
