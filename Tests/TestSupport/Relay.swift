import Foundation

/// What the test relays (`FlakyRelay`, `DockerProxy`) share: accept connections on `listener`, connect each to the
/// server with `connectServer`, and run `pump` for the pair on a thread of its own; both sockets are closed after.
enum Relay {
    static func acceptLoop(
        listener: Int32, isStopped: @escaping () -> Bool, isRefusing: @escaping () -> Bool, connectServer: @escaping () -> Int32?,
        pump: @escaping @Sendable (_ client: Int32, _ server: Int32) -> Void
    ) {
        while !isStopped() {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if isStopped() { return }
                usleep(10_000)  // EINTR, ECONNABORTED, EMFILE…: not a reason to stop relaying
                continue
            }
            guard !isRefusing(), let server = connectServer() else {
                close(client)
                continue
            }
            Thread {
                pump(client, server)
                close(client)
                close(server)
            }.start()
        }
    }

    /// Connects a new socket of `family` to `address`; nil if the server is not there.
    static func connectSocket<Address>(family: Int32, _ address: Address) -> Int32? {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        var address = address
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) }
        }
        if connected == 0 { return fd }
        close(fd)
        return nil
    }

    /// Writes all `count` bytes of `buffer` to `fd`; false if the other side is gone.
    static func forward(_ buffer: [UInt8], count: Int, to fd: Int32) -> Bool {
        var sent = 0
        while sent < count {
            // MSG_NOSIGNAL: a peer killed mid-stream must not SIGPIPE the test process.
            let w = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
            if w <= 0 { return false }
            sent += w
        }
        return true
    }
}
