import Foundation
import Synchronization

/// A Unix-socket relay in front of the real Docker socket that can misbehave like a sick dockerd, for one worker only
/// (other tests keep the real engine): `stall()` stops moving bytes on every connection (dockerd frozen), `cut()`
/// closes every connection and refuses new ones (dockerd restarting); `heal()` ends either.
public final class DockerProxy: Sendable {
    public let path: String
    private let target: String
    private let listener: Int32
    private let stalled = Atomic<Bool>(false)
    private let down = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)

    public init(target: String = "/var/run/docker.sock") throws {
        self.target = target
        path = FileManager.default.temporaryDirectory.appendingPathComponent("docker-proxy-\(UUID().uuidString.prefix(8)).sock").path
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw TestSetupError("socket path too long for a Unix socket (\(path)); set TMPDIR to a shorter directory")
        }
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw TestSetupError("docker proxy cannot listen at \(path)") }
        Thread { [self] in acceptLoop() }.start()
    }

    /// `DOCKER_HOST` for a process that should go through the proxy.
    public var dockerHost: String { "unix://\(path)" }

    public func stall() { stalled.store(true, ordering: .relaxed) }
    public func cut() { down.store(true, ordering: .relaxed) }
    public func heal() {
        stalled.store(false, ordering: .relaxed)
        down.store(false, ordering: .relaxed)
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        unlink(path)
    }

    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    private func acceptLoop() {
        let target = self.target
        Relay.acceptLoop(
            listener: listener, isStopped: { [self] in stopped.load(ordering: .relaxed) }, isRefusing: { [self] in down.load(ordering: .relaxed) },
            connectServer: { Relay.connectSocket(family: AF_UNIX, Self.address(target)) }, pump: { [self] in pump(client: $0, server: $1) })
    }

    private func pump(client: Int32, server: Int32) {
        var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: server, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !stopped.load(ordering: .relaxed) && !down.load(ordering: .relaxed) {
            if stalled.load(ordering: .relaxed) {
                usleep(20_000)
                continue
            }
            if poll(&fds, 2, 100) < 0 { return }
            for entry in fds where entry.revents != 0 {
                let n = read(entry.fd, &buffer, buffer.count)
                if n <= 0 { return }
                if !Relay.forward(buffer, count: n, to: entry.fd == client ? server : client) { return }
            }
        }
    }
}
