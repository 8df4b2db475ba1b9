import Testing

@testable import Shared

@Suite(.timeLimit(.minutes(5))) struct RedisConfigurationTests {
    @Test func parsesTCPURLs() throws {
        let plain = try RedisConfiguration(url: "redis://localhost")
        #expect(plain.endpoint == .tcp(host: "localhost", port: 6379))
        #expect(plain.database == 0 && plain.password == nil && plain.username == nil)

        let full = try RedisConfiguration(url: "redis://alice:s%40cret@10.0.0.5:6380/3")
        #expect(full.endpoint == .tcp(host: "10.0.0.5", port: 6380))
        #expect(full.username == "alice" && full.password == "s@cret" && full.database == 3)

        let passwordOnly = try RedisConfiguration(url: "redis://:pw@h:1/")
        #expect(passwordOnly.username == nil && passwordOnly.password == "pw" && passwordOnly.database == 0)

        let v6 = try RedisConfiguration(url: "redis://[::1]:7000/2")
        #expect(v6.endpoint == .tcp(host: "::1", port: 7000) && v6.database == 2)
    }

    @Test func parsesUnixURLs() throws {
        let sock = try RedisConfiguration(url: "unix:///run/redis/redis.sock")
        #expect(sock.endpoint == .unix(path: "/run/redis/redis.sock"))
        let withDB = try RedisConfiguration(url: "unix://:pw@/tmp/r.sock?db=4")
        #expect(withDB.endpoint == .unix(path: "/tmp/r.sock") && withDB.database == 4 && withDB.password == "pw")
    }

    @Test(arguments: [
        ("localhost:6379", "missing scheme"),
        ("http://localhost", "unknown scheme 'http'"),
        ("redis://", "missing host"),
        ("redis://h:notaport", "port 'notaport'"),
        ("redis://h:70000", "port '70000'"),
        ("redis://h/abc", "database 'abc'"),
        ("unix://relative.sock", "absolute path"),
        ("rediss://h", "TLS"),
        ("redis://h?foo=1", "unknown query parameter"),
    ])
    func rejectsBadURLs(url: String, expected: String) {
        #expect {
            try RedisConfiguration(url: url)
        } throws: { error in
            let text = "\(error)"
            return text.contains(expected) && text.contains("Use redis://")
        }
    }

    @Test func redactsPasswords() {
        #expect(RedisConfiguration.redact("redis://u:secret@h:1") == "redis://u:***@h:1")
        #expect(RedisConfiguration.redact("redis://secret@h") == "redis://***@h")
        #expect(RedisConfiguration.redact("redis://h:1") == "redis://h:1")
        let error = RedisError.invalidURL(url: RedisConfiguration.redact("redis://u:secret@h:x"), reason: "r")
        #expect(!"\(error)".contains("secret"))
    }
}
