import Foundation
import Testing

@testable import WorkerCore

/// The Docker client against a fake engine on a unix socket that answers a response head and then stalls, as a
/// dockerd stopped mid-answer would.
@Suite(.timeLimit(.minutes(5))) struct DockerClientTests {
    /// Accepts connections on `path`; each gets a 200 head promising a body it never sends.
    final class StallingEngine: @unchecked Sendable {
        let path: String
        private let fd: Int32

        init() throws {
            let path = "/tmp/fake-dockerd-\(UUID().uuidString.prefix(8)).sock"
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            self.path = path
            self.fd = fd
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                let bytes = Array(path.utf8)
                for (i, b) in bytes.enumerated() { raw[i] = b }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
            Thread.detachNewThread {
                while true {
                    let client = accept(fd, nil, nil)
                    if client < 0 { return }
                    // Read the request head (best effort), answer a head, then hold the connection silent.
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    _ = read(client, &buffer, buffer.count)
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
                    _ = head.withCString { write(client, $0, strlen($0)) }
                }
            }
        }

        deinit {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
            unlink(path)
        }
    }

    @Test func aStalledAnswerFailsTheCallInsteadOfHangingIt() async throws {
        let engine = try StallingEngine()
        let docker = DockerClient(socketPath: engine.path)
        let started = ContinuousClock.now
        await #expect {
            try await docker.call(.GET, "/containers/x/json", timeout: .seconds(1))
        } throws: { error in
            "\(error)".contains("no complete answer within")
        }
        // 1 s when alone; other suites' synchronous helpers can hold both cooperative threads of this 2-core
        // machine for seconds. What matters is that the call ends instead of hanging.
        #expect(ContinuousClock.now - started < .seconds(15))
        await docker.shutdown()
    }

    @Test func thePoolHasRoomForEveryStreamAndTheControlCalls() {
        for streams in [1, 2, 8, 10, 64] {
            #expect(DockerClient.poolSize(streams: streams) >= 2 * streams + 4, "\(streams) streams")
        }
    }
}
