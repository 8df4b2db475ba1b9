import Foundation
import TestSupport
import Testing

@testable import Shared

@Suite(.timeLimit(.minutes(5))) struct RedisClientTests {
    @Test func roundTripsBinarySafeValues() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client()
        let value: [UInt8] = [0, 1, 13, 10, 0xff, 0xfe, 0x80, 0, 36, 42, 13, 10]
        try await redis.send(RedisCommand(bytes: [Array("SET".utf8), Array("k\0\r\n".utf8), value]))
        let got = try await redis.send(RedisCommand(bytes: [Array("GET".utf8), Array("k\0\r\n".utf8)]))
        #expect(got.bytes == value)
        #expect(try await redis.send("STRLEN", "k\0\r\n").int == value.count)
        try await redis.send("SET", "empty", "")
        #expect(try await redis.send("GET", "empty") == .bulk([]))
        #expect(try await redis.send("GET", "missing") == .null)
    }

    @Test func typedReplies() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client()
        #expect(try await redis.send("SET", "a", "1") == .status("OK"))
        #expect(try await redis.send("INCRBY", "a", "41") == .integer(42))
        try await redis.send("RPUSH", "l", "x", "y")
        #expect(try await redis.send("LRANGE", "l", "0", "-1").strings == ["x", "y"])
        await #expect(throws: RedisError.server("WRONGTYPE Operation against a key holding the wrong kind of value")) {
            try await redis.send("INCR", "l")
        }
        // An error reply does not break the connection.
        #expect(try await redis.send("GET", "a").string == "42")
    }

    @Test func pipelinesInOneRoundTrip() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client(connections: 1)
        let commands = (0..<500).map { RedisCommand("RPUSH", "p", "v\($0)") } + [RedisCommand("BOGUS"), RedisCommand("LLEN", "p")]
        let replies = try await redis.pipeline(commands)
        #expect(replies.count == 502)
        #expect(replies[499] == .integer(500))
        if case .error(let message) = replies[500] { #expect(message.contains("unknown command")) } else { Issue.record("expected an error reply") }
        #expect(replies[501] == .integer(500))
    }

    @Test func concurrentCallersArePipelinedAndEachGetsItsOwnReply() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client(connections: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 {
                group.addTask {
                    if i % 7 == 0 {
                        await #expect(throws: RedisError.self) { try await redis.send("NOSUCHCOMMAND", String(i)) }
                    } else {
                        let n = try await redis.send("INCRBY", "k\(i % 5)", String(i)).int
                        #expect(n != nil)
                        try await redis.send("SET", "v\(i)", String(i))
                        #expect(try await redis.send("GET", "v\(i)").string == String(i))
                    }
                }
            }
            try await group.waitForAll()
        }
        let expected = (0..<300).filter { $0 % 7 != 0 }.reduce(0, +)
        var total = 0
        for k in 0..<5 { total += try await redis.send("GET", "k\(k)").int ?? 0 }
        #expect(total == expected)
    }

    @Test func multiExecIsAtomicAndReportsRefusedCommands() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client()
        let results = try await redis.transaction([RedisCommand("SET", "t", "1"), RedisCommand("INCR", "t"), RedisCommand("GET", "t")])
        #expect(results == [.status("OK"), .integer(2), .bulk(Array("2".utf8))])
        // A command Redis refuses while queueing aborts the whole transaction: nothing runs.
        await #expect {
            try await redis.transaction([RedisCommand("SET", "t", "99"), RedisCommand("NOSUCHCOMMAND")])
        } throws: { error in
            "\(error)".contains("EXECABORT") && "\(error)".contains("NOSUCHCOMMAND")
        }
        #expect(try await redis.send("GET", "t").string == "2")
    }

    @Test func scriptsReloadAfterFlush() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client(connections: 1)
        let script = RedisScript(name: "t", source: "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try await redis.evaluate(script, keys: ["n"], arguments: ["5"]) == .integer(5))
        try await redis.send("SCRIPT", "FLUSH")
        #expect(try await redis.evaluate(script, keys: ["n"], arguments: ["5"]) == .integer(10))
        let failing = RedisScript(name: "f", source: "return redis.error_reply('nope')")
        await #expect { try await redis.evaluate(failing) } throws: { "\($0)".contains("nope") }
    }

    @Test func blockingCommandOutlivesCommandTimeout() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        var config = server.configuration
        config.commandTimeout = .milliseconds(200)
        let redis = RedisClient(configuration: config, connections: 1)
        let start = ContinuousClock.now
        let reply = try await redis.blocking(RedisCommand("BLMOVE", "src", "dst", "RIGHT", "LEFT", "0.6"), timeout: .milliseconds(600))
        #expect(reply == .null)
        #expect(ContinuousClock.now - start >= .milliseconds(550))
        // The ordinary timeout is back in force afterwards, and the connection still works.
        try await redis.send("LPUSH", "src", "job")
        #expect(try await redis.blocking(RedisCommand("BLMOVE", "src", "dst", "RIGHT", "LEFT", "1"), timeout: .seconds(1)).string == "job")
    }

    @Test func unreachableRedisIsAClearErrorAndRecovers() async throws {
        let server = try RedisServer()
        defer { server.stop() }
        let redis = server.client(connections: 2)
        try await redis.ping()
        server.stop()
        do {
            try await redis.ping()
            Issue.record("ping succeeded with Redis stopped")
        } catch {
            #expect(error.isConnectionError)
            #expect("\(error)".contains("127.0.0.1:\(server.port)"))
        }
        // While it is down, every call fails fast with a connection error (no hang, no crash).
        for _ in 0..<5 {
            await #expect(throws: RedisError.self) { try await redis.send("GET", "x") }
        }
        try server.start()
        // Reconnects on its own once Redis is back (back-off is at most one second).
        let deadline = ContinuousClock.now + .seconds(5)
        var recovered = false
        while ContinuousClock.now < deadline {
            if (try? await redis.ping()) != nil { recovered = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(recovered)
        try await redis.send("SET", "after", "ok")
        #expect(try await redis.send("GET", "after").string == "ok")
    }

    @Test func connectionRefusedNamesTheEndpoint() async throws {
        let port = try freePort()
        let redis = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(port)"), connections: 1)
        await #expect {
            try await redis.ping()
        } throws: { error in
            guard let e = error as? RedisError, case .connectionFailed(let endpoint, let reason) = e else { return false }
            return endpoint == "127.0.0.1:\(port)" && reason.contains("refused")
        }
    }

    @Test func authAndSelectOnEveryConnect() async throws {
        let server = try RedisServer(extraArguments: ["--requirepass", "hunter2"])
        defer { server.stop() }
        var config = server.configuration
        config.password = "hunter2"
        config.database = 5
        let redis = RedisClient(configuration: config, connections: 1)
        try await redis.send("SET", "where", "db5")
        // Kill our connection server-side: the next call reconnects, re-authenticates and re-selects db 5.
        try await redis.send("CLIENT", "KILL", "TYPE", "normal")
        _ = try? await redis.send("PING")
        #expect(try await redis.send("GET", "where").string == "db5")

        var wrong = server.configuration
        wrong.password = "wrong"
        await #expect {
            try await RedisClient(configuration: wrong, connections: 1).ping()
        } throws: { "\($0)".contains("AUTH rejected") }
    }

    @Test func unixSocket() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let sock = dir.appendingPathComponent("r.sock").path
        let server = try RedisServer(extraArguments: ["--unixsocket", sock])
        defer { server.stop() }
        let redis = RedisClient(configuration: try RedisConfiguration(url: "unix://\(sock)?db=1"), connections: 1)
        try await redis.send("SET", "via", "socket")
        #expect(try await redis.send("GET", "via").string == "socket")
    }
}
