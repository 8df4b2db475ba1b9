import Foundation

/// Where and how to reach Redis: parsed from a URL, validated once at start-up.
///
/// Accepted forms:
/// - `redis://[[user]:password@]host[:port][/db]` (TCP; default port 6379, db 0)
/// - `unix:///path/to/redis.sock[?db=N]` (also `redis+unix://` / `redis-socket://`), with optional
///   `user:password@` before the path: `unix://:secret@/run/redis.sock`
public struct RedisConfiguration: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    /// Sentinels that name the master: when set, `endpoint` is not used; every (re)connect asks them.
    public struct Sentinel: Sendable, Equatable {
        public var masterName: String
        /// `host:port` of each sentinel, asked in order (the last one that answered first).
        public var addresses: [Address]
        /// The sentinels' own password (`requirepass` in sentinel.conf), if they have one.
        public var username: String?
        public var password: String?

        public struct Address: Sendable, Equatable, CustomStringConvertible {
            public var host: String
            public var port: Int
            public init(host: String, port: Int) {
                self.host = host
                self.port = port
            }
            public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
        }

        public init(masterName: String, addresses: [Address], username: String? = nil, password: String? = nil) {
            self.masterName = masterName
            self.addresses = addresses
            self.username = username
            self.password = password
        }
    }

    public var endpoint: Endpoint
    public var sentinel: Sentinel?
    public var username: String?
    public var password: String?
    public var database: Int
    /// How long establishing a connection may take.
    public var connectTimeout: Duration
    /// How long one ordinary command may take before the connection is declared broken.
    public var commandTimeout: Duration

    public init(
        endpoint: Endpoint,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Duration = .seconds(2),
        commandTimeout: Duration = .seconds(5)
    ) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    /// Parses a Redis URL.
    /// - Throws: `RedisError.invalidURL` naming what is wrong and showing the accepted forms.
    public init(url string: String) throws(RedisError) {
        let trimmed = string.trimmingCharacters(in: .whitespaces)
        func bad(_ why: String) -> RedisError {
            .invalidURL(url: RedisConfiguration.redact(trimmed), reason: why)
        }
        guard let schemeEnd = trimmed.range(of: "://") else {
            throw bad("missing scheme")
        }
        let scheme = trimmed[..<schemeEnd.lowerBound].lowercased()
        var rest = String(trimmed[schemeEnd.upperBound...])

        // Query (only `db=` is understood).
        var queryDB: Int?
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...]
            rest = String(rest[..<q])
            for pair in query.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, kv[0] == "db" || kv[0] == "database" else {
                    throw bad("unknown query parameter '\(pair.split(separator: "=").first ?? "")' (only db=N is understood)")
                }
                guard let n = Int(kv[1]), n >= 0 else { throw bad("database '\(kv[1])' is not a non-negative integer") }
                queryDB = n
            }
        }

        // Credentials.
        var user: String?
        var pass: String?
        if let at = rest.lastIndex(of: "@") {
            let cred = String(rest[..<at])
            rest = String(rest[rest.index(after: at)...])
            if let colon = cred.firstIndex(of: ":") {
                let u = String(cred[..<colon])
                let p = String(cred[cred.index(after: colon)...])
                user = u.isEmpty ? nil : u.removingPercentEncoding ?? u
                pass = p.isEmpty ? nil : p.removingPercentEncoding ?? p
            } else if !cred.isEmpty {
                // `redis://secret@host` is the common legacy spelling of a password alone.
                pass = cred.removingPercentEncoding ?? cred
            }
        }

        switch scheme {
        case "redis":
            var hostPort = rest
            var db = queryDB ?? 0
            if let slash = hostPort.firstIndex(of: "/") {
                let path = hostPort[hostPort.index(after: slash)...]
                hostPort = String(hostPort[..<slash])
                if !path.isEmpty {
                    guard let n = Int(path), n >= 0 else { throw bad("database '\(path)' is not a non-negative integer") }
                    db = n
                }
            }
            var host = hostPort
            var port = 6379
            if hostPort.hasPrefix("[") {  // [::1]:6379
                guard let close = hostPort.firstIndex(of: "]") else { throw bad("unterminated IPv6 address") }
                host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
                let after = hostPort[hostPort.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw bad("port '\(after.dropFirst())' is not 1-65535") }
                    port = p
                } else if !after.isEmpty {
                    throw bad("unexpected '\(after)' after the IPv6 address")
                }
            } else if let colon = hostPort.lastIndex(of: ":") {
                host = String(hostPort[..<colon])
                let p = hostPort[hostPort.index(after: colon)...]
                guard let n = Int(p), (1...65535).contains(n) else { throw bad("port '\(p)' is not a number from 1 to 65535") }
                port = n
            }
            guard !host.isEmpty else { throw bad("missing host") }
            self.init(endpoint: .tcp(host: host, port: port), username: user, password: pass, database: db)
        case "unix", "redis+unix", "redis-socket":
            guard rest.hasPrefix("/"), rest.count > 1 else {
                throw bad("a unix socket URL needs an absolute path, e.g. unix:///run/redis/redis.sock")
            }
            self.init(endpoint: .unix(path: rest), username: user, password: pass, database: queryDB ?? 0)
        case "rediss":
            throw bad(
                "TLS (rediss://) is not supported by the hiredis build in use; reach Redis over a private network, a unix socket or a TLS tunnel")
        default:
            throw bad("unknown scheme '\(scheme)'")
        }
    }

    /// The URL with any password replaced by `***`, safe to log.
    public static func redact(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url.lastIndex(of: "@"), at > schemeEnd.upperBound else { return url }
        let cred = url[schemeEnd.upperBound..<at]
        if let colon = cred.firstIndex(of: ":") {
            return String(url[..<schemeEnd.upperBound]) + cred[..<colon] + ":***" + url[at...]
        }
        return String(url[..<schemeEnd.upperBound]) + "***" + url[at...]
    }

    /// A loggable description of the endpoint (never the password).
    public var endpointDescription: String {
        if let sentinel {
            return "master '\(sentinel.masterName)' via sentinels \(sentinel.addresses.map(\.description).joined(separator: ","))"
        }
        switch endpoint {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}
