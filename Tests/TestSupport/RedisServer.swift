import Foundation
import Shared
import Synchronization

/// A throwaway `redis-server` on a free loopback port, for one test. Stopped (and its directory removed) by `stop()`.
public final class RedisServer: @unchecked Sendable {
    public private(set) var port: Int
    public let directory: URL
    private var process: ChildProcess? {
        didSet { if process != nil { started = true } }
    }
    private var started = false
    let extraArguments: [String]

    public static func binary() throws -> String {
        for path in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestSetupError("redis-server is not installed: run `apt-get install -y redis-server` (or `bash .ci/run`, which does)")
    }

    public init(extraArguments: [String] = []) throws {
        self.port = try freePort()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-test-\(UUID().uuidString)")
        self.extraArguments = extraArguments
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try start()
    }

    public var url: String { "redis://127.0.0.1:\(port)" }
    /// The server's pid (to freeze it with SIGSTOP: a Redis that hangs rather than refuses).
    public var pid: pid_t? { process?.pid }
    public var configuration: RedisConfiguration {
        var c = try! RedisConfiguration(url: url)
        c.connectTimeout = .milliseconds(500)
        c.commandTimeout = .seconds(5)
        return c
    }

    /// Starts redis-server on `port`. On first start, a port taken meanwhile by a parallel test is replaced by another.
    public func start() throws {
        for attempt in 0..<5 {
            let process = try ChildProcess(
                try Self.binary(),
                [
                    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", directory.path, "--daemonize", "no", "--loglevel", "warning",
                ] + extraArguments)
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline && process.isRunning {
                // Connectable *and* still ours: a port taken by another test's server would also accept.
                if canConnect(port: port), process.isRunning, usleep(20_000) == 0, process.isRunning {
                    self.process = process
                    return
                }
                usleep(10_000)
            }
            process.terminate()
            if !started && attempt < 4 {
                port = try freePort()
                continue
            }
            break
        }
        throw TestSetupError("redis-server did not start on port \(port)")
    }

    public func stop() {
        process?.terminate()
        process = nil
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// A client for this server.
    public func client(connections: Int = 4) -> RedisClient {
        RedisClient(configuration: configuration, connections: connections)
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Ports `freePort` gave out in this process: the kernel may offer one again while the child it was meant for has not
/// bound it yet (two sentinels of one cluster once got the same port).
private let portsGivenOut = Mutex<Set<Int>>([])

/// A loopback port free now and not given out before in this process.
public func freePort() throws -> Int {
    for _ in 0..<100 {
        let port = try ephemeralPort()
        if portsGivenOut.withLock({ $0.insert(port).inserted }) { return port }
    }
    throw TestSetupError("no free port that was not given out already")
}

private func ephemeralPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { ptr -> Int32 in
            guard bind(fd, ptr, len) == 0 else { return -1 }
            return getsockname(fd, ptr, &len)
        }
    }
    guard bound == 0 else { throw TestSetupError("no free port: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

public func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
