import Foundation
import Shared

/// A Sentinel-managed Redis on loopback for one test: a master, a replica, and three sentinels (quorum 2) that declare
/// the master down after `downAfter` and fail over to the replica.
public final class SentinelCluster: @unchecked Sendable {
    public static let masterName = "forge-hooks-test"
    public let master: RedisServer
    public let replica: RedisServer
    public private(set) var sentinelPorts: [Int] = []
    public let downAfter: Duration
    private var sentinels: [ChildProcess] = []
    private let directory: URL

    public init(downAfter: Duration = .seconds(3)) async throws {
        self.downAfter = downAfter
        master = try RedisServer()
        replica = try RedisServer(extraArguments: ["--replicaof", "127.0.0.1", String(master.port)])
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sentinels-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for index in 0..<3 {
            let port = try freePort()
            let conf = directory.appendingPathComponent("sentinel-\(index).conf")
            try """
            port \(port)
            bind 127.0.0.1
            daemonize no
            dir \(directory.path)
            logfile \(directory.appendingPathComponent("sentinel-\(index).log").path)
            sentinel resolve-hostnames no
            sentinel monitor \(Self.masterName) 127.0.0.1 \(master.port) 2
            sentinel down-after-milliseconds \(Self.masterName) \(Int(downAfter.components.seconds * 1000 + downAfter.components.attoseconds / 1_000_000_000_000_000))
            sentinel failover-timeout \(Self.masterName) 4000
            sentinel parallel-syncs \(Self.masterName) 1
            """.write(to: conf, atomically: true, encoding: .utf8)
            sentinels.append(try ChildProcess(try RedisServer.binary(), [conf.path, "--sentinel"]))
            sentinelPorts.append(port)
        }
        // Ready once every sentinel knows the replica and the two other sentinels (they find each other by hello
        // messages every 2 s), and the replica is in sync.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if try await ready() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSetupError("the sentinels did not settle: \(log())")
    }

    private func ready() async throws -> Bool {
        for port in sentinelPorts {
            let (_, replicas) = try await DockerFixture.shell(
                "redis-cli -p \(port) SENTINEL replicas \(Self.masterName) 2>/dev/null | grep -c '^ip$'")
            let (_, others) = try await DockerFixture.shell("redis-cli -p \(port) SENTINEL sentinels \(Self.masterName) 2>/dev/null | grep -c '^ip$'")
            if Int(replicas.trimmingCharacters(in: .whitespacesAndNewlines)) != 1 || Int(others.trimmingCharacters(in: .whitespacesAndNewlines)) != 2
            {
                return false
            }
        }
        let (_, link) = try await DockerFixture.shell("redis-cli -p \(replica.port) INFO replication | grep -c 'master_link_status:up'")
        return link.trimmingCharacters(in: .whitespacesAndNewlines) == "1"
    }

    /// The sentinel part of a config file.
    public var yaml: String {
        "sentinel: {master_name: \(Self.masterName), addresses: [\(sentinelPorts.map { "\"127.0.0.1:\($0)\"" }.joined(separator: ", "))]}"
    }

    public var sentinelConfiguration: RedisConfiguration.Sentinel {
        .init(masterName: Self.masterName, addresses: sentinelPorts.map { .init(host: "127.0.0.1", port: $0) })
    }

    /// A client configuration that finds the master through the sentinels.
    public var configuration: RedisConfiguration {
        var c = master.configuration
        c.sentinel = sentinelConfiguration
        return c
    }

    /// The port the sentinels name as the master now.
    public func masterPort() async throws -> Int? { try await named(by: sentinelPorts[0]) }

    /// The master's port as the sentinel on `sentinel` names it.
    private func named(by sentinel: Int) async throws -> Int? {
        let (_, out) = try await DockerFixture.shell("redis-cli -p \(sentinel) SENTINEL get-master-addr-by-name \(Self.masterName)")
        return out.split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Whether every sentinel names `port` as the master: the failover is over and known to all. (One sentinel's answer
    /// can run ahead: the leader names the promoted replica while its failover is still in progress.)
    public func allName(_ port: Int) async throws -> Bool {
        for sentinel in sentinelPorts {
            if try await named(by: sentinel) != port { return false }
        }
        return true
    }

    /// Waits until the first sentinel names `port` as the master, or every one does (`everySentinel`).
    public func waitForMaster(_ port: Int, everySentinel: Bool = false, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if everySentinel ? try await allName(port) : try await masterPort() == port { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSetupError("the sentinels never \(everySentinel ? "all named" : "promoted") 127.0.0.1:\(port): \(log())")
    }

    /// What the sentinels logged (for failure messages).
    public func log() -> String {
        (0..<sentinels.count).map {
            "sentinel \($0):\n"
                + ((try? String(contentsOf: directory.appendingPathComponent("sentinel-\($0).log"), encoding: .utf8)) ?? "").suffix(4000)
        }
        .joined(separator: "\n---\n")
    }

    public func stop() {
        for sentinel in sentinels { sentinel.terminate() }
        sentinels = []
        master.stop()
        replica.stop()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
