import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// The agent run and the session lifecycle, through a real container and the stub CLI.
@Suite(.serialized, .timeLimit(.minutes(5))) struct AgentRunTests {
    @Test func secondJobResumesTheFirstSession() async throws {
        try await WorkerEnvironment.with() { env in
            let executor = env.executor()
            try await env.enqueue("first turn", number: 7)
            let first = try await env.runNext(executor)
            let sessionID = try #require(first["session_id"])
            #expect(first["status"] == "succeeded" && first["result"]?.contains("earlier turns: 0") == true)
            #expect(try await env.queue.sessionID(for: "dev:acme/widgets:7") == sessionID)

            let secondID = try await env.enqueue("second turn", number: 7)
            let second = try await env.runNext(executor)
            #expect(second["status"] == "succeeded", "\(second)")
            #expect(second["resumed_from"] == sessionID)
            #expect(second["session_id"] == sessionID)
            #expect(second["result"]?.contains("turn 2 of session \(sessionID); earlier turns: 1") == true, "\(second)")
            #expect(second["cwd"] == "/work/acme/widgets/7")
            // The job's log holds the agent's stream-json lines, readable with redis-cli.
            let log = try await env.client.send("LRANGE", "hooks:log:\(secondID)", "0", "-1").strings ?? []
            #expect(log.first?.contains("\"subtype\":\"init\"") == true && log.last?.contains("\"type\":\"result\"") == true, "\(log)")
        }
    }

    @Test func staleSessionFallsBackToAFreshOneWithAWarning() async throws {
        try await WorkerEnvironment.with() { env in
            try await env.client.send("HSET", "hooks:sessions", "dev:acme/widgets:3", "00000000-dead-beef-0000-000000000000")
            let id = try await env.enqueue("after a lost transcript", number: 3)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            #expect(job["warning"]?.contains("session 00000000-dead-beef-0000-000000000000 was not found") == true, "\(job)")
            let fresh = try #require(job["session_id"])
            #expect(fresh != "00000000-dead-beef-0000-000000000000")
            #expect(try await env.queue.sessionID(for: "dev:acme/widgets:3") == fresh)
            #expect(job["result"]?.contains("earlier turns: 0") == true)
            let log = try await env.client.send("LRANGE", "hooks:log:\(id)", "0", "-1").strings ?? []
            #expect(log.contains { $0.contains("No conversation found with session ID: 00000000-dead-beef-0000-000000000000") })
            #expect(log.contains { $0.contains("\"type\":\"result\"") && $0.contains(fresh) })
        }
    }

    @Test func timeoutKillsTheAgentAndEverythingItStarted() async throws {
        try await WorkerEnvironment.with(timeout: "2s") { env in
            try await env.enqueue("think hard STUB_SLEEP=30")
            let job = try await env.runNext(env.executor())
            // The run's own duration (exec start to exit), not the wall clock: creating the container first can take
            // many seconds on a loaded CI machine. Uncut, the stub sleeps 30 s.
            let ran = try #require(job["duration_ms"].flatMap { Int($0) }, "\(job)")
            #expect(ran < 10_000, "the run was not cut at its 2 s timeout: it ran \(ran) ms")
            #expect(job["status"] == "failed", "\(job)")
            #expect(job["timed_out"] == "true")
            #expect(job["error"]?.contains("timed out") == true)
            #expect(job["attempts"] == "1" && job["retry_at"] != nil)
            // Nothing of the run is left in the container: no sleep, no stub shell.
            let container = try #require(try await env.containerID())
            let (_, ps) = try await env.docker.run(container: container, command: ["ps", "-o", "pid,args"])
            #expect(!ps.contains { $0.contains("STUB_SLEEP") || $0.contains("sleep 30") }, "left behind: \(ps)")
        }
    }

    /// A run cut before the worker has put it in its cgroup (a timeout shorter than the exec's start, or a Docker slow
    /// to start it) leaves a wrapper waiting, stopped, for a cgroup that never comes. It must be killed at once, not
    /// after the 10 s the worker waits for an exec to end. The timeouts sweep the window between the exec's start
    /// and its adoption, wherever the machine's load puts it.
    @Test func aRunCutBeforeItIsContainedEndsAtOnce() async throws {
        try await WorkerEnvironment.with { env in
            let container = try await env.reconciler().ensure(env.agent()).containerID
            var slowest: (ms: Int, timeout: Int) = (0, 0)
            for timeout in stride(from: 10, through: 400, by: 15) {
                env.config.agents["dev"]!.timeout = .milliseconds(timeout)
                let executor = env.executor()
                let job = try await env.enqueue("cut STUB_SLEEP=30", number: 500 + timeout)
                let fields = try await env.runNext(executor)
                #expect(fields["timed_out"] == "true", "\(fields)")
                let ran = try #require(fields["duration_ms"].flatMap { Int($0) }, "\(job): \(fields)")
                if ran > slowest.ms { slowest = (ran, timeout) }
            }
            // Left waiting until the exec wait gives up, a run takes over 10 s; killed at once, well under a second on
            // an idle machine.
            #expect(slowest.ms < 9_000, "a run cut after \(slowest.timeout) ms took \(slowest.ms) ms to end")
            let (_, ps) = try await env.docker.run(container: container, command: ["ps", "-o", "pid,stat,args"])
            #expect(!ps.contains { $0.contains(RunCgroup.wrapperName) || $0.contains("STUB_SLEEP") }, "left behind: \(ps)")
        }
    }

    /// Without cgroups, a timed-out run is killed by its environment marker at the cut, not only after the worker's
    /// 10 s wait for the exec to end.
    @Test func anUncontainedRunIsKilledAtItsTimeout() async throws {
        try await WorkerEnvironment.with(timeout: "2s") { env in
            try await env.enqueue("think hard STUB_SLEEP=30")
            let job = try await env.runNext(env.executor(contained: false))
            #expect(job["timed_out"] == "true", "\(job)")
            let ran = try #require(job["duration_ms"].flatMap { Int($0) }, "\(job)")
            #expect(ran < 9_000, "a run with a 2 s timeout ran \(ran) ms: the marker kill waited for the exec")
            #expect(job["error"]?.contains("timed out after 2 s") == true, "\(job)")
        }
    }

    @Test func failedRunIsRetriedThenDead() async throws {
        try await WorkerEnvironment.with(queueYAML: "{max_attempts: 2, retry_base: 100ms, retry_max: 200ms}") { env in
            let id = try await env.enqueue("please STUB_FAIL")
            let executor = env.executor()
            let first = try await env.runNext(executor)
            #expect(first["status"] == "failed" && first["error"]?.contains("stub failure") == true, "\(first)")
            #expect(first["session_id"] != nil, "a failed run that created a session still stores it")
            try await Task.sleep(for: .milliseconds(300))
            try await env.queue.promoteDue()
            let second = try await env.runNext(executor)
            #expect(second["status"] == "dead")
            #expect(try await env.client.send("LRANGE", "hooks:dead", "0", "-1").strings == [id])
        }
    }

    @Test func crashedAgentFailsTheAttemptAndLaterJobsWaitForItsRetry() async throws {
        try await WorkerEnvironment.with { env in
            let executor = env.executor()
            let first = try await env.enqueue("please STUB_CRASH", number: 21)
            let crashed = try await env.runNext(executor)
            #expect(crashed["status"] == "failed", "\(crashed)")
            #expect(crashed["exit_code"] == "137", "\(crashed)")
            #expect(crashed["error"]?.contains("137") == true, "\(crashed)")
            #expect(crashed["retry_at"] != nil)
            // A later job of the same issue does not overtake the failed one: it waits for the retry.
            let second = try await env.enqueue("after the crash", number: 21)
            #expect(try await env.queue.reserveAny(worker: executor.workerID, agents: ["dev"]) == nil)
            #expect(try await env.queue.job(second)?["status"] == "waiting")
            #expect(try await env.queue.job(second)?["waiting_for"] == first)
        }
    }
}
