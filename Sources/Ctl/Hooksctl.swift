import ArgumentParser
import Foundation
import Shared

@main
struct Hooksctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hooksctl",
        abstract: "Inspect and repair forge-hooks state in Redis.",
        discussion: "Container commands (drift, rebuild, agent dirs) run on a worker host: see `Worker containers` and `Worker agent-env sync`.",
        subcommands: [
            Status.self, JobCommand.self, Jobs.self, Sessions.self, SessionCommand.self, Spend.self, Requeue.self, Purge.self, SendTestEvent.self,
        ])
}

/// Where Redis is: --redis/--prefix, or the config file's redis section, or FORGE_HOOKS_REDIS, or localhost.
struct Connection: ParsableArguments {
    @Option(help: "Redis URL (default: the config's redis.url or redis.sentinel, else $FORGE_HOOKS_REDIS, else redis://127.0.0.1:6379).")
    var redis: String?
    @Option(help: "Key prefix (default: the config's redis.prefix, else hooks).")
    var prefix: String?
    @Option(name: .shortAndLong, help: "Config file to read the Redis URL and prefix from.")
    var config: String?

    func open() throws -> (RedisClient, KeySchema) {
        var url = redis ?? ProcessInfo.processInfo.environment["FORGE_HOOKS_REDIS"] ?? "redis://127.0.0.1:6379"
        var keyPrefix = prefix ?? "hooks"
        var sentinel: RedisConfiguration.Sentinel?
        if let config {
            do {
                let loaded = try AppConfig.load(path: config, resolveSecrets: false)
                if redis == nil { (url, sentinel) = (loaded.redisURL, loaded.redisSentinel) }
                if prefix == nil { keyPrefix = loaded.keyPrefix }
            } catch {
                throw ValidationError("\(error)")
            }
        }
        var configuration: RedisConfiguration
        do {
            configuration = try RedisConfiguration(url: url)
        } catch {
            throw ValidationError("\(error)")
        }
        configuration.sentinel = sentinel  // the config's sentinels, unless --redis names a node
        return (RedisClient(configuration: configuration, connections: 2, name: "hooksctl"), KeySchema(prefix: keyPrefix))
    }
}

func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

/// A plain aligned table for terminals.
/// Cells are made terminal-safe: they hold forge and agent text.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows.map { $0.map { TerminalText.safe($0) } }
    let widths = header.indices.map { i in all.map { $0.indices.contains(i) ? $0[i].count : 0 }.max() ?? 0 }
    for (n, row) in all.enumerated() {
        print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        if n == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
    }
}

func age(_ iso: String?) -> String {
    guard let iso, let date = Timestamp.parse(iso) else { return "-" }
    return humanDuration(Date().timeIntervalSince(date))
}

func humanDuration(_ s: Double) -> String {
    if s < 1 { return "\(Int(s * 1000))ms" }
    if s < 120 { return "\(Int(s))s" }
    if s < 7200 { return "\(Int(s / 60))m" }
    if s < 172800 { return "\(Int(s / 3600))h" }
    return "\(Int(s / 86400))d"
}

/// Runs `body` with the queue core over a fresh client and always closes it; Redis errors become a clear message and
/// exit code 69.
func withQueue<T>(_ connection: Connection, _ body: (JobQueue) async throws -> T) async throws -> T {
    let (client, keys) = try connection.open()
    defer { client.shutdown() }
    do {
        return try await body(JobQueue(redis: client, keys: keys))
    } catch let error as RedisError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(69)
    }
}
