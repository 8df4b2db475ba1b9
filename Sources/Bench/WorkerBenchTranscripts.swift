import ArgumentParser
import Foundation
import Shared
import WorkerCore

/// The extra latency transcript shipping adds to a job: one save after the run, one restore before a resume on
/// another host (the local copy missing). Uses `TranscriptStore` itself against the given Redis.
struct TranscriptsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transcripts", abstract: "Benchmark: transcript save and restore latency (100 KB and 10 MB).")

    @Option(help: "Redis URL (a scratch Redis: keys are written under a random prefix and deleted).")
    var redis = "redis://127.0.0.1:6379"
    @Option(help: "Repetitions per size.") var runs = 20

    func run() async throws {
        let client = RedisClient(configuration: try RedisConfiguration(url: redis), connections: 2)
        defer { client.shutdown() }
        var settings = QueueSettings()
        settings.transcriptMaxBytes = 64 << 20
        let prefix = "bench-\(UUID().uuidString.prefix(6).lowercased())"
        let queue = JobQueue(redis: client, keys: KeySchema(prefix: prefix), settings: settings)
        let store = TranscriptStore(queue: queue)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(prefix).path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var agent = AgentSettings(name: "bench", image: "none", credentialsDir: root + "/config", workDir: root + "/work")
        agent.user = "\(getuid()):\(getgid())"
        try AgentEnvironment.sync(agent)
        // Transcript writes are fenced by a running job: hold one for the whole benchmark.
        _ = try await queue.enqueue([NewJob(agent: "bench", session: SessionKey(agent: "bench", repository: "bench/repo", number: 1), fields: [])]
        )
        guard let held = try await queue.reserveAny(worker: "bench", agents: ["bench"]) else { throw ValidationError("no bench job reserved") }
        let fence = JobQueue.Fence(held, worker: "bench")
        print("transcript shipping, Redis \(client.configuration.endpointDescription), \(runs) runs each:")
        for size in [100 * 1024, 10 * 1024 * 1024] {
            let line = "{\"type\":\"assistant\",\"message\":\"" + String(repeating: "x", count: 200) + "\"}\n"
            let text = String(repeating: line, count: size / line.utf8.count + 1).prefix(size)
            let cwd = "/work/bench/repo/1"
            var saves = Latencies()
            var restores = Latencies()
            for i in 0..<runs {
                let sid = UUID().uuidString.lowercased()
                let path = TranscriptStore.localPath(agent, cwd: cwd, sessionID: sid)
                try TranscriptStore.writeOwned(Array((text + "\(i)\n").utf8), agent: agent, cwd: cwd, sessionID: sid)
                var t = ContinuousClock.now
                _ = try await store.save(session: "bench:bench/repo:\(i)", sessionID: sid, agent: agent, cwd: cwd, host: "a", fence: fence)
                saves.add(ContinuousClock.now - t)
                try FileManager.default.removeItem(atPath: path)  // "another host": no local copy
                t = ContinuousClock.now
                let restored = try await store.restore(session: "bench:bench/repo:\(i)", sessionID: sid, agent: agent, cwd: cwd)
                restores.add(ContinuousClock.now - t)
                guard case .restored = restored else { throw ValidationError("restore did not restore: \(restored)") }
                try await client.send("DEL", queue.keys.transcript("bench:bench/repo:\(i)"))
            }
            let label = size >= 1 << 20 ? "\(size >> 20) MB" : "\(size >> 10) KB"
            print(String(format: "  %-6@ save    p50 %7.2f ms  p99 %7.2f ms", label as NSString, saves.p50, saves.p99))
            print(String(format: "  %-6@ restore p50 %7.2f ms  p99 %7.2f ms", label as NSString, restores.p50, restores.p99))
        }
        try await client.deleteKeys(matching: "\(prefix):*")
    }
}
