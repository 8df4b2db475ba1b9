import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// The real `Worker` binary against real Redis and Docker: concurrency, crash recovery, graceful shutdown.
@Suite(.serialized, .timeLimit(.minutes(5))) struct WorkerProcessTests {
    static func startWorker(
        _ env: WorkerEnvironment, id: String, concurrency: Int = 4, config: String? = nil, environment: [String: String] = [:],
        arguments: [String] = []
    ) throws -> ChildProcess {
        try ChildProcess(
            env.workerBinary,
            ["--config", config ?? env.configPath, "--worker-id", id, "--host-id", env.hostID, "--concurrency", String(concurrency)] + arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            output: env.root.appendingPathComponent("worker-\(id).log").path)
    }

    static func waitFor(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSetupError("timed out waiting for \(what)")
    }

    static func statuses(_ env: WorkerEnvironment, _ ids: [String]) async throws -> [String] {
        var out: [String] = []
        for id in ids { out.append(try await env.queue.job(id)?["status"] ?? "missing") }
        return out
    }

    @Test func sessionsRunInParallelAndEachSessionInOrder() async throws {
        try await WorkerEnvironment.with { env in
            var ids: [String: [String]] = [:]
            for round in 0..<3 {
                for number in [1, 2] {
                    ids[String(number), default: []].append(try await env.enqueue("round \(round) STUB_SLEEP=1", number: number))
                }
            }
            let worker = try Self.startWorker(env, id: "par")
            defer { worker.terminate() }
            let all = ids.values.flatMap { $0 }
            try await Self.waitFor("6 jobs to succeed", timeout: .seconds(60)) {
                try await Self.statuses(env, all).allSatisfy { $0 == "succeeded" }
            }
            var spans: [String: [(String, Date, Date)]] = [:]
            for (session, list) in ids {
                for id in list {
                    let job = try #require(try await env.queue.job(id))
                    spans[session, default: []].append((id, Timestamp.parse(job["started_at"]!)!, Timestamp.parse(job["finished_at"]!)!))
                }
            }
            for (session, list) in spans {
                let byStart = list.sorted { $0.1 < $1.1 }
                #expect(byStart.map(\.0) == ids[session], "session \(session) ran out of order")
                for (a, b) in zip(byStart, byStart.dropFirst()) { #expect(a.2 <= b.1, "session \(session) overlapped") }
            }
            let one = spans["1"]!, two = spans["2"]!
            #expect(one.contains { a in two.contains { b in a.1 < b.2 && b.1 < a.2 } }, "the two sessions never ran at the same time")
            // Every turn of a session resumed the one before.
            let last = try #require(try await env.queue.job(ids["1"]!.last!))
            #expect(last["result"]?.contains("earlier turns: 2") == true, "\(last)")
        }
    }

    /// `--metrics-listen` serves Prometheus text; a port another worker already took is an error in the log, not a
    /// worker that stops (metrics are not worth losing the jobs).
    /// A worker that finds Redis without maxmemory, or evicting keys, says what to set (and runs on).
    @Test func aWorkerAdvisesOnRedisMemorySettings() async throws {
        try await WorkerEnvironment.with(redisArguments: ["--maxmemory-policy", "allkeys-lru"]) { env in
            let worker = try Self.startWorker(env, id: "advice", concurrency: 1)
            defer { worker.terminate() }
            let log = env.root.appendingPathComponent("worker-advice.log")
            try await Self.waitFor("the worker's advice") {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                return text.contains("Redis has no maxmemory") && text.contains("maxmemory-policy is allkeys-lru")
            }
            let id = try await env.enqueue("hello", number: 6)
            try await Self.waitFor("a job to succeed") { try await Self.statuses(env, [id]) == ["succeeded"] }
        }
    }

    @Test func metricsAreServedAndATakenPortDoesNotStopTheWorker() async throws {
        try await WorkerEnvironment.with { env in
            let port = try freePort()
            let first = try Self.startWorker(env, id: "metrics-1", concurrency: 1, arguments: ["--metrics-listen", "127.0.0.1:\(port)"])
            defer { first.terminate() }
            try await Self.waitFor("the first worker's /metrics") {
                (try? await DockerFixture.shell("curl -sf http://127.0.0.1:\(port)/metrics").0) == 0
            }
            let second = try Self.startWorker(env, id: "metrics-2", concurrency: 1, arguments: ["--metrics-listen", "127.0.0.1:\(port)"])
            defer { second.terminate() }
            let log = env.root.appendingPathComponent("worker-metrics-2.log")
            try await Self.waitFor("the second worker to say its port is taken") {
                ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("metrics not served on 127.0.0.1:\(port)")
            }
            let id = try await env.enqueue("hello", number: 5)
            try await Self.waitFor("a job to succeed with both workers up") { try await Self.statuses(env, [id]) == ["succeeded"] }
            #expect(first.isRunning && second.isRunning)
        }
    }

    @Test func workerKilledMidRunIsRecoveredByAnother() async throws {
        try await WorkerEnvironment.with { env in
            let first = try await env.enqueue("long STUB_SLEEP=5", number: 5)
            let a = try Self.startWorker(env, id: "A")
            try await Self.waitFor("worker A to run the job") { try await env.queue.job(first)?["status"] == "running" }
            #expect(try await env.queue.job(first)?["worker"] == "A")
            await a.stop(signal: SIGKILL)

            let b = try Self.startWorker(env, id: "B")
            defer { b.terminate() }
            try await Self.waitFor("worker B to finish the job", timeout: .seconds(40)) {
                try await env.queue.job(first)?["status"] == "succeeded"
            }
            let job = try #require(try await env.queue.job(first))
            #expect(job["worker"] == "B" && job["attempts"] == "2", "\(job)")
            #expect(job["error"] == nil)
            let session = try #require(try await env.queue.sessionID(for: "dev:acme/widgets:5"))
            #expect(job["session_id"] == session)
            #expect(try await env.client.send("LLEN", "hooks:processing:A").int == 0)

            // The session is consistent: the next turn resumes it and sees the earlier turn.
            let next = try await env.enqueue("and then", number: 5)
            try await Self.waitFor("the next turn") { try await env.queue.job(next)?["status"] == "succeeded" }
            let turn2 = try #require(try await env.queue.job(next))
            #expect(turn2["resumed_from"] == session && turn2["result"]?.contains("earlier turns: 1") == true, "\(turn2)")
        }
    }

    @Test func sigtermGivesRunningJobsBackAndLosesNothing() async throws {
        try await WorkerEnvironment.with { env in
            let slow = try await env.enqueue("slow STUB_SLEEP=20", number: 8)
            let queued = try await env.enqueue("queued behind", number: 9)
            let worker = try Self.startWorker(env, id: "graceful", concurrency: 1)
            try await Self.waitFor("the slow job to run") { try await env.queue.job(slow)?["status"] == "running" }
            let stopAt = ContinuousClock.now
            kill(worker.pid, SIGTERM)
            let code = await worker.exited()
            #expect(code == 0, "worker exit code \(code)")
            #expect(ContinuousClock.now - stopAt < .seconds(12), "shutdown took longer than the grace period allows")
            let job = try #require(try await env.queue.job(slow))
            #expect(job["status"] == "queued" && job["attempts"] == "0", "\(job)")
            #expect(try await env.queue.job(queued)?["status"] == "queued")
            #expect(Set(try await env.client.send("LRANGE", "hooks:queue:dev", "0", "-1").strings ?? []) == [slow, queued])
            #expect(try await env.client.send("EXISTS", "hooks:processing:graceful", "hooks:lease:graceful").int == 0)
            // Nothing of the stopped agent is left in the container.
            let container = try #require(try await env.containerID())
            let (_, ps) = try await env.docker.run(container: container, command: ["ps", "-o", "args"])
            #expect(!ps.contains { $0.contains("sleep 20") }, "\(ps)")
        }
    }

    @Test func workerRidesOutARedisOutage() async throws {
        try await WorkerEnvironment.with { env in
            let worker = try Self.startWorker(env, id: "outage", concurrency: 1)
            defer { worker.terminate() }
            let before = try await env.enqueue("before the outage", number: 40)
            try await Self.waitFor("the first job") { try await env.queue.job(before)?["status"] == "succeeded" }
            env.redis.stop()
            try await Task.sleep(for: .seconds(2))
            #expect(worker.isRunning, "the worker must survive Redis going away")
            try env.redis.start()
            // The test's own pooled connection was dropped too: like any client, retry once Redis answers.
            var after: String?
            try await Self.waitFor("Redis to answer the test again") {
                after = try? await env.enqueue("after the outage", number: 40)
                return after != nil
            }
            let afterID = try #require(after)
            try await Self.waitFor("a job after Redis came back", timeout: .seconds(30)) {
                (try? await env.queue.job(afterID)?["status"]) == "succeeded"
            }
            // (This test Redis runs without persistence, so its data is gone after the restart; with the
            // production config — append-only file — sessions survive too.)
        }
    }
}
