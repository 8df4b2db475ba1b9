/// Everything that can go wrong talking to Redis. Each description says what happened and what to do.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL could not be understood.
    case invalidURL(url: String, reason: String)
    /// No connection could be made (refused, unknown host, timed out, AUTH or SELECT rejected).
    case connectionFailed(endpoint: String, reason: String)
    /// An established connection broke or a reply did not arrive in time; the connection was discarded.
    case connectionLost(endpoint: String, reason: String)
    /// Redis answered with an error reply (`-ERR …`, `-WRONGTYPE …`, `-NOSCRIPT …`).
    case server(String)
    /// Redis answered something the caller did not expect.
    case unexpectedReply(command: String, reply: String)
    /// A MULTI/EXEC transaction was aborted (a watched key changed).
    case transactionAborted
    /// The client has been shut down.
    case shutdown
    /// No sentinel answered at all (wrong addresses, or all of them down).
    case sentinelsUnreachable(sentinels: String, reason: String)
    /// Sentinels answered but none knows the master name: a configuration error, not an outage.
    case unknownMaster(name: String, sentinels: String)
    /// A write was not acknowledged by enough replicas in time (`redis.replicas_ack`): it may be lost in a failover.
    case notReplicated(acknowledged: Int, wanted: Int)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason):
            return "invalid Redis URL '\(url)': \(reason). Use redis://[[user]:password@]host[:port][/db] or unix:///path/to/redis.sock"
        case .connectionFailed(let endpoint, let reason):
            return
                "cannot connect to Redis at \(endpoint): \(reason). Check that redis-server is running and the URL (host, port, password, db) is right"
        case .connectionLost(let endpoint, let reason):
            return "connection to Redis at \(endpoint) failed: \(reason). The connection was dropped and will be re-established on next use"
        case .server(let message):
            return "Redis error: \(message)"
        case .unexpectedReply(let command, let reply):
            return "unexpected Redis reply to \(command): \(reply)"
        case .transactionAborted:
            return "Redis transaction aborted because a watched key changed; retry the operation"
        case .shutdown:
            return "Redis client is shut down"
        case .sentinelsUnreachable(let sentinels, let reason):
            return "no sentinel answered (\(reason)); check redis.sentinel.addresses (\(sentinels)) and that the sentinels run"
        case .unknownMaster(let name, let sentinels):
            return
                "the sentinels (\(sentinels)) do not monitor a master named '\(name)': set redis.sentinel.master_name to the name in "
                + "their 'sentinel monitor' line (redis-cli -p 26379 SENTINEL MASTERS lists them)"
        case .notReplicated(let acknowledged, let wanted):
            return
                "the write reached the master but only \(acknowledged) of the \(wanted) replica(s) redis.replicas_ack asks for acknowledged it "
                + "in time; it could be lost in a failover, so it was not confirmed (check the replicas: redis-cli INFO replication)"
        }
    }

    /// True for errors where retrying later can help (Redis down or a dropped connection).
    public var isConnectionError: Bool {
        switch self {
        case .connectionFailed, .connectionLost, .shutdown, .notReplicated, .sentinelsUnreachable: return true
        case .server(let m): return m.hasPrefix("LOADING") || m.hasPrefix("BUSY") || m.hasPrefix("MASTERDOWN") || m.hasPrefix("READONLY")
        default: return false
        }
    }
}
