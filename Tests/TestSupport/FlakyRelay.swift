import Foundation
import Synchronization

/// A TCP relay on a loopback port in front of a server (Redis) that loses replies: with probability `dropRate`, a chunk
/// coming back from the server is thrown away and both sides of that connection are closed — the command was
/// forwarded and executed, the client never learns its result. One thread per connection; `stop()` ends them all.
public final class FlakyRelay: Sendable {
    public let port: Int
    private let listener: Int32
    private let target: Int
    private let rate = Mutex<Double>(0)
    private let stopped = Atomic<Bool>(false)
    private let drops = Atomic<Int>(0)

    /// Replies dropped so far.
    public var dropped: Int { drops.load(ordering: .relaxed) }

    public var dropRate: Double {
        get { rate.withLock { $0 } }
        set { rate.withLock { $0 = newValue } }
    }

    public init(targetPort: Int) throws {
        target = targetPort
        port = try freePort()
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw TestSetupError("relay cannot listen on \(port)") }
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public var url: String { "redis://127.0.0.1:\(port)" }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    static func loopback(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        let target = self.target
        Relay.acceptLoop(
            listener: listener, isStopped: { [self] in stopped.load(ordering: .relaxed) }, isRefusing: { false },
            connectServer: { Relay.connectSocket(family: AF_INET, Self.loopback(target)) }, pump: { [self] in pump(client: $0, server: $1) })
    }

    private func pump(client: Int32, server: Int32) {
        var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: server, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !stopped.load(ordering: .relaxed) {
            if poll(&fds, 2, 200) < 0 { return }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                let n = read(entry.fd, &buffer, buffer.count)
                if n <= 0 { return }
                let fromServer = index == 1
                if fromServer && Double.random(in: 0..<1) < dropRate {
                    drops.add(1, ordering: .relaxed)
                    return
                }
                if !Relay.forward(buffer, count: n, to: fromServer ? client : server) { return }
            }
        }
    }
}
