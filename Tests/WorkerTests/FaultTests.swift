import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// Faults around a running job, with the real Worker binary, Docker and Redis.
@Suite(.serialized, .timeLimit(.minutes(5))) struct FaultTests {
    /// What runs in the agent's container, or nothing while there is no running container yet (a worker may have
    /// created it and not started it yet).
    static func processes(_ env: WorkerEnvironment) async throws -> [String] {
        guard try await env.docker.inspectContainer("\(env.prefix)-dev")?.state.running == true else { return [] }
        do {
            return try await HostileAgentTests.processes(env)
        } catch let error as DockerError where error.status == 404 || error.status == 409 {
            return []  // replaced or stopped between the two calls
        }
    }

    /// A worker frozen past its lease (as in a long stall) comes back to find its job recovered and taken by another
    /// worker: it must stop its agent at once and record nothing, so one job never has two live runs.
    @Test func aWorkerThatLostItsLeaseStopsItsRunAndWritesNothing() async throws {
        try await WorkerEnvironment.with { env in
            let id = try await env.enqueue("long turn STUB_SLEEP=30", number: 81)
            let worker = try WorkerProcessTests.startWorker(env, id: "frozen", concurrency: 1)
            defer { worker.terminate() }
            try await WorkerProcessTests.waitFor("the job to run") { try await env.queue.job(id)?["status"] == "running" }
            try await WorkerProcessTests.waitFor("the agent to start") {
                try await Self.processes(env).contains { $0.contains("STUB_SLEEP=30") }
            }
            kill(worker.pid, SIGSTOP)
            // Under load an earlier attempt may have timed out already: the frozen worker holds whichever it runs now.
            let held = Int(try await env.queue.job(id)?["attempts"] ?? "") ?? 0
            try await Task.sleep(for: .seconds(3))  // the lease is 2 s
            let recovered = try await env.queue.recoverExpired()
            #expect(recovered.map(\.jobID) == [id])
            let taken = try #require(try await env.queue.reserveAny(worker: "other", agents: ["dev"]))
            #expect(taken.id == id && taken.attempt == held + 1)
            let before = try #require(try await env.queue.job(id))
            kill(worker.pid, SIGCONT)

            try await WorkerProcessTests.waitFor("the stale run's agent to be stopped", timeout: .seconds(15)) {
                !(try await Self.processes(env).contains { $0.contains("STUB_SLEEP=30") })
            }
            try await Task.sleep(for: .seconds(1))
            let record = try #require(try await env.queue.job(id))
            #expect(record["status"] == "running" && record["worker"] == "other" && record["attempts"] == String(held + 1), "\(record)")
            // Nothing the stale run could write (result, exit code, duration, session) changed after "other" took it.
            let changed = Set(record.keys).union(before.keys).filter { record[$0] != before[$0] }
            #expect(changed.isEmpty, "the stale worker wrote \(changed.sorted()): \(record)")
            let log = (try? String(contentsOfFile: env.root.appendingPathComponent("worker-frozen.log").path, encoding: .utf8)) ?? ""
            #expect(log.contains("lost a running job"), "\(log.suffix(2000))")
        }
    }

    /// Redis hangs (not refuses) for longer than the lease: the worker cannot renew it, so it stops its run itself —
    /// before anyone could recover the job and run it twice — and once Redis answers the job is given back and runs
    /// to success on a new attempt.
    @Test func aWorkerCutOffFromRedisStopsItsRunBeforeTheLeaseCanBeTaken() async throws {
        try await WorkerEnvironment.with { env in
            // Long enough that only the worker's own lease check can end it while Redis hangs.
            let id = try await env.enqueue("turn STUB_SLEEP=40", number: 82)
            let worker = try WorkerProcessTests.startWorker(env, id: "cut-off", concurrency: 1)
            defer { worker.terminate() }
            try await WorkerProcessTests.waitFor("the agent to start") {
                try await Self.processes(env).contains { $0.contains("STUB_SLEEP=40") }
            }
            let redisPID = try #require(env.redis.pid)
            kill(redisPID, SIGSTOP)
            var stoppedWhileCutOff = false
            do {
                try await WorkerProcessTests.waitFor("the run to be stopped while Redis hangs", timeout: .seconds(20)) {
                    !(try await Self.processes(env).contains { $0.contains("STUB_SLEEP=40") })
                }
                stoppedWhileCutOff = true
            } catch {}
            kill(redisPID, SIGCONT)
            #expect(stoppedWhileCutOff, "the agent kept running with its lease unrenewable")
            // The next attempt need not take as long.
            try await WorkerProcessTests.waitFor("Redis to answer the test again") {
                (try? await env.client.send("HSET", env.config.keys.job(id), "prompt", "turn STUB_SLEEP=1")) != nil
            }
            try await WorkerProcessTests.waitFor("the job to succeed on a new attempt", timeout: .seconds(60)) {
                try await env.queue.job(id)?["status"] == "succeeded"
            }
            // Given back by the worker itself once Redis answered: the stopped attempt is not counted.
            #expect(try await env.queue.job(id)?["attempts"] == "1")
            let log = (try? String(contentsOfFile: env.root.appendingPathComponent("worker-cut-off.log").path, encoding: .utf8)) ?? ""
            #expect(log.contains("lease not renewed"), "\(log.suffix(2000))")
        }
    }
}
