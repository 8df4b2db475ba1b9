import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// The fault-injection suite: real Worker processes, real Redis, real Docker, faults from outside. Each scenario ends
/// with `QueueInvariants`: every accepted job succeeded or is dead with a reason, no job or session had two runs alive
/// at once, sessions ran in order, and no queue key still holds an id.
@Suite(.serialized, .timeLimit(.minutes(5))) struct FaultSuiteTests {
    static let runLogYAML = "    env: {STUB_RUN_LOG: /work/runs.log}"

    static func runLog(_ env: WorkerEnvironment) -> String { env.agent().workDir + "/runs.log" }

    /// Enqueues `perSession` jobs on each of `sessions` issues; returns the ids per session in enqueue order.
    static func enqueueSessions(_ env: WorkerEnvironment, sessions: Int, perSession: Int, sleep: ClosedRange<Double>) async throws -> [[String]] {
        var ids = Array(repeating: [String](), count: sessions)
        for round in 0..<perSession {
            for s in 0..<sessions {
                let secs = String(format: "%.1f", Double.random(in: sleep))
                ids[s].append(try await env.enqueue("turn \(round) STUB_SLEEP=\(secs)", number: 100 + s))
            }
        }
        return ids
    }

    static func waitAllFinished(_ env: WorkerEnvironment, _ ids: [String], timeout: Duration) async throws {
        try await WorkerProcessTests.waitFor("every job to finish", timeout: timeout) {
            for id in ids {
                // The test's own connections may have been cut by a Redis restart: they reconnect on the next call.
                let status = try? await env.queue.job(id)?["status"]
                if status != "succeeded" && status != "dead" { return false }
            }
            return true
        }
    }

    /// Agent processes (the stub) left in any of the environment's containers, retired ones included.
    static func agentProcesses(_ env: WorkerEnvironment) async throws -> [String] {
        var found: [String] = []
        for container in try await env.docker.listContainers(label: "forge-hooks.host=\(env.hostID)") {
            guard container.state == "running" else { continue }
            let (_, ps) = try await env.docker.run(container: container.id, command: ["ps", "-o", "args"])
            found += ps.filter { $0.contains("claude") || $0.contains("STUB_") }
        }
        return found
    }

    /// SIGKILL workers at random moments while several sessions each run several jobs; restart each one, half under
    /// the same id (reclaims its jobs at once), half under a new id (its jobs wait for the lease). `FAULT_KILLS` sets
    /// the number of kills (the benchmark harness `scripts/bench-faults.sh` runs 50); CI runs 8. Prints the figures.
    @Test func sigkilledWorkersLoseNoJobAndNeverRunOneTwice() async throws {
        let kills = Int(ProcessInfo.processInfo.environment["FAULT_KILLS"] ?? "") ?? 8
        try await WorkerEnvironment.with(
            queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 20}", extraAgentYAML: Self.runLogYAML
        ) { env in
            let started = ContinuousClock.now
            let sessions = try await Self.enqueueSessions(env, sessions: 6, perSession: max(4, kills * 2 / 3), sleep: 0.4...1.4)
            var workers: [String: ChildProcess] = [:]
            var generation = 0
            for n in 0..<3 { workers["storm-\(n)"] = try WorkerProcessTests.startWorker(env, id: "storm-\(n)", concurrency: 2) }
            defer { for w in workers.values { w.terminate(signal: SIGKILL) } }
            for _ in 0..<kills {
                try await Task.sleep(for: .milliseconds(Int.random(in: 300...1500)))
                let victim = workers.keys.sorted().randomElement()!
                await workers.removeValue(forKey: victim)?.stop(signal: SIGKILL)
                generation += 1
                let next = Bool.random() ? victim : "storm-g\(generation)"
                workers[next] = try WorkerProcessTests.startWorker(env, id: next, concurrency: 2)
            }
            try await Self.waitAllFinished(env, Array(sessions.joined()), timeout: .seconds(180))
            for (_, w) in workers { #expect(await w.stop() == 0, "a worker did not stop cleanly") }
            workers.removeAll()
            // Killed workers' ids under new names wait for their lease, then anyone's recovery (none is left now).
            try await Task.sleep(for: .seconds(3))
            _ = try await env.queue.recoverExpired()
            let report = try await QueueInvariants.check(env, sessions: sessions, runLog: Self.runLog(env))
            print(
                "fault suite — SIGKILL storm: \(kills) kills in \(Int((ContinuousClock.now - started).seconds)) s\n\(report)")
            #expect(report.holds, "\(report)")
            #expect(report.succeeded + report.dead == report.jobs)
            let left = try await Self.agentProcesses(env)
            #expect(left.isEmpty, "agent processes outlived the storm: \(left)")
        }
    }

    /// A copy of the environment's config with `replace` applied (another Redis URL, another spec).
    static func variantConfig(_ env: WorkerEnvironment, name: String, _ replace: [(String, String)]) throws -> String {
        var yaml = try String(contentsOfFile: env.configPath, encoding: .utf8)
        for (old, new) in replace {
            guard yaml.contains(old) else { throw TestSetupError("config has no '\(old)'") }
            yaml = yaml.replacingOccurrences(of: old, with: new)
        }
        let path = env.root.appendingPathComponent(name).path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A worker SIGKILLed mid-run whose job is not tried again (out of attempts): nothing would ever kill its agent —
    /// no timer, no next attempt. Another worker's maintenance reaps it.
    @Test func anOrphanedRunIsKilledEvenWhenItsJobIsNotTriedAgain() async throws {
        try await WorkerEnvironment.with(queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 1}") { env in
            let id = try await env.enqueue("long STUB_SLEEP=120", number: 90)
            let doomed = try WorkerProcessTests.startWorker(env, id: "doomed", concurrency: 1)
            try await WorkerProcessTests.waitFor("the agent to start") {
                try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=120") }
            }
            await doomed.stop(signal: SIGKILL)
            let survivor = try WorkerProcessTests.startWorker(env, id: "survivor", concurrency: 1)
            defer { survivor.terminate() }
            try await WorkerProcessTests.waitFor("the job to be recovered as dead", timeout: .seconds(20)) {
                try await env.queue.job(id)?["status"] == "dead"
            }
            try await WorkerProcessTests.waitFor("the orphaned agent to be killed", timeout: .seconds(15)) {
                !(try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=120") })
            }
            let log = (try? String(contentsOfFile: env.root.appendingPathComponent("worker-survivor.log").path, encoding: .utf8)) ?? ""
            #expect(log.contains("killed an orphaned run"), "\(log.suffix(2000))")
        }
    }

    /// Redis stopped for longer than the lease while agents run, then back from its append-only file: runs cut off
    /// from Redis stop themselves, their jobs run again, and nothing is lost or run twice.
    @Test func redisDownLongerThanTheLeaseThenBackFromItsAOF() async throws {
        try await WorkerEnvironment.with(
            queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 10}", extraAgentYAML: Self.runLogYAML,
            redisArguments: ["--appendonly", "yes", "--appendfsync", "always"]
        ) { env in
            // Runs of 3.5–5 s: a loaded CI machine's `docker exec ps` can take seconds, and the look below must find
            // two alive at once. The container is made first: on such a machine that alone took 15 s.
            _ = try await env.reconciler().ensure(env.agent())
            let sessions = try await Self.enqueueSessions(env, sessions: 4, perSession: 2, sleep: 3.5...5.0)
            let worker = try WorkerProcessTests.startWorker(env, id: "aof", concurrency: 3)
            defer { worker.terminate() }
            try await WorkerProcessTests.waitFor("agents to run", timeout: .seconds(60)) {
                try await FaultTests.processes(env).filter { $0.contains("STUB_SLEEP") && !$0.contains(RunCgroup.wrapperName) }.count >= 2
            }
            env.redis.stop()
            try await Task.sleep(for: .seconds(4))  // the lease is 2 s
            #expect(worker.isRunning, "the worker must survive Redis going away\n\(env.workerLogTails())")
            try env.redis.start()
            try await WorkerProcessTests.waitFor("Redis to answer the test again") { (try? await env.client.send("PING")) != nil }
            try await Self.waitAllFinished(env, Array(sessions.joined()), timeout: .seconds(120))
            let status = await worker.stop()
            #expect(status == 0, "the worker's exit status: \(status)\n\(env.workerLogTails())")
            let report = try await QueueInvariants.check(env, sessions: sessions, runLog: Self.runLog(env))
            print("fault suite — Redis down 4 s (lease 2 s), back from AOF:\n\(report)")
            #expect(report.holds && report.succeeded == report.jobs, "\(report)\n\(env.workerLogTails())")
            // Results written after the outage are there, and sessions were kept across the restart.
            let first = try #require(try await env.queue.job(sessions[0][0]))
            let last = try #require(try await env.queue.job(sessions[0][1]))
            #expect(
                last["session_id"] != nil && last["session_id"] == first["session_id"],
                "the session was not kept: \(first) \(last)\n\(env.workerLogTails())")
            #expect(last["result"]?.contains("earlier turns: 0") == false, "\(last)")
        }
    }

    /// A run that finishes while Redis is down (shorter than the lease): its result is written once Redis is back —
    /// the job is not run again.
    @Test func aResultFinishedDuringAnOutageIsWrittenOnceRedisIsBack() async throws {
        // The run lasts 3 s: long enough to be seen by `docker exec ps` polls on a loaded machine (a 1 s run could
        // start and end between two), well inside the 10 s lease with Redis down for the rest of it plus a second.
        try await WorkerEnvironment.with(
            queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 10s, heartbeat: 1s}", extraAgentYAML: Self.runLogYAML,
            redisArguments: ["--appendonly", "yes", "--appendfsync", "always"]
        ) { env in
            let id = try await env.enqueue("short STUB_SLEEP=3", number: 93)
            let worker = try WorkerProcessTests.startWorker(env, id: "pending-result", concurrency: 1)
            defer { worker.terminate() }
            try await WorkerProcessTests.waitFor("the agent to start") {
                try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=3 ") && !$0.contains("forge-hooks-run") }
            }
            env.redis.stop()
            try await WorkerProcessTests.waitFor("the agent to finish while Redis is down") {
                !(try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=3 ") })
            }
            try await Task.sleep(for: .seconds(1))
            try env.redis.start()
            try await Self.waitAllFinished(env, [id], timeout: .seconds(30))
            // The restart cut every pooled connection of the test's client: each fails once, then reconnects.
            var answered = 0
            try await WorkerProcessTests.waitFor("Redis to answer on every connection") {
                answered = (try? await env.client.send("PING")) != nil ? answered + 1 : 0
                return answered >= 8
            }
            let job = try #require(try await env.queue.job(id))
            #expect(job["status"] == "succeeded" && job["attempts"] == "1" && job["result"]?.contains("turn 1") == true, "\(job)")
            #expect(QueueInvariants.readRuns(Self.runLog(env)).count == 1, "the job ran again")
            // The scenario happened: the result was written while Redis was down, and retried until it was back.
            #expect(env.workerLogTails(bytes: 20_000).contains("cannot record the job's outcome"), "\(env.workerLogTails())")
        }
    }

    /// Redis restarted (from its AOF) between a reserve and its claim: the moved id is still in the processing list,
    /// and the claim then runs it.
    @Test func redisRestartedBetweenReserveAndClaim() async throws {
        try await WorkerEnvironment.with(redisArguments: ["--appendonly", "yes", "--appendfsync", "always"]) { env in
            let id = try await env.enqueue("hello", number: 91)
            let keys = env.config.keys
            #expect(try await env.client.send("LMOVE", keys.queue("dev"), keys.processing("w"), "RIGHT", "LEFT").string == id)
            env.redis.stop()
            try env.redis.start()
            // Every pooled connection of the test's client was cut: each fails once, then reconnects.
            var answered = 0
            try await WorkerProcessTests.waitFor("Redis to answer again") {
                answered = (try? await env.client.send("PING")) != nil ? answered + 1 : 0
                return answered >= 8
            }
            #expect(try await env.client.send("LRANGE", keys.processing("w"), "0", "-1").strings == [id])
            guard case .running(let job) = try await env.queue.claim(id, worker: "w") else {
                Issue.record("the claim after the restart did not run the job")
                return
            }
            await env.executor(workerID: "w").execute(job, control: RunControl())
            let report = try await QueueInvariants.check(env, sessions: [[id]], runLog: nil)
            #expect(report.holds && report.succeeded == 1, "\(report)")
        }
    }

    /// Replies lost after Redis executed the command (a relay drops the connection instead of forwarding them) while
    /// two workers run jobs: reserves, claims, finishes and heartbeats lose their answers at random. Stranded ids are
    /// given back, fenced writes keep stale results out, and every job ends once the network is good again.
    @Test func lostRepliesLoseNoJobAndRunNoneTwice() async throws {
        try await WorkerEnvironment.with(
            queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 20}", extraAgentYAML: Self.runLogYAML
        ) { env in
            let relay = try FlakyRelay(targetPort: env.redis.port)
            defer { relay.stop() }
            let config = try Self.variantConfig(env, name: "relay.yaml", [(env.redis.url, relay.url)])
            let sessions = try await Self.enqueueSessions(env, sessions: 4, perSession: 5, sleep: 0.2...0.8)
            relay.dropRate = 0.02
            let workers = try (0..<2).map { try WorkerProcessTests.startWorker(env, id: "lossy-\($0)", concurrency: 2, config: config) }
            defer { for w in workers { w.terminate(signal: SIGKILL) } }
            try await Task.sleep(for: .seconds(8))
            relay.dropRate = 0
            try await Self.waitAllFinished(env, Array(sessions.joined()), timeout: .seconds(120))
            for (n, w) in workers.enumerated() {
                let log = (try? String(contentsOfFile: env.root.appendingPathComponent("worker-lossy-\(n).log").path, encoding: .utf8)) ?? ""
                #expect(await w.stop() == 0, "a worker did not stop cleanly: \(log.suffix(3000))")
            }
            let report = try await QueueInvariants.check(env, sessions: sessions, runLog: Self.runLog(env))
            print("fault suite — lost replies: \(relay.dropped) replies dropped\n\(report)")
            #expect(relay.dropped > 0, "the relay never dropped a reply: the scenario did not happen")
            #expect(report.holds, "\(report)")
        }
    }

    /// A rolling upgrade on one host: a worker with a newer spec (one more env var) starts while an older worker
    /// runs jobs. No run is killed by the container change, the container is not replaced back and forth, and every
    /// job succeeds.
    @Test func aRollingUpgradeKillsNoRunAndDoesNotFlap() async throws {
        // A lease long enough that a loaded machine never lets one lapse: any second attempt here is the container's fault.
        try await WorkerEnvironment.with(queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 8s, heartbeat: 1s}", extraAgentYAML: Self.runLogYAML) {
            env in
            let newer = try Self.variantConfig(
                env, name: "newer.yaml", [(Self.runLogYAML, "    env: {STUB_RUN_LOG: /work/runs.log, RELEASE: \"2\"}")])
            let sessions = try await Self.enqueueSessions(env, sessions: 4, perSession: 4, sleep: 0.8...1.5)
            let old = try WorkerProcessTests.startWorker(env, id: "v1", concurrency: 2)
            defer { old.terminate() }
            try await WorkerProcessTests.waitFor("the old worker's agents to run") {
                try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP") }
            }
            let new = try WorkerProcessTests.startWorker(env, id: "v2", concurrency: 2, config: newer)
            defer { new.terminate() }
            try await Self.waitAllFinished(env, Array(sessions.joined()), timeout: .seconds(120))
            let report = try await QueueInvariants.check(env, sessions: sessions, runLog: Self.runLog(env))
            print("fault suite — rolling upgrade:\n\(report)")
            #expect(report.holds && report.succeeded == report.jobs, "\(report)")
            var containers = Set<String>()
            var changes = 0
            let logs = ["v1", "v2"].map {
                (try? String(contentsOfFile: env.root.appendingPathComponent("worker-\($0).log").path, encoding: .utf8)) ?? ""
            }
            for id in sessions.joined() {
                let job = try #require(try await env.queue.job(id))
                let lines = logs.joined(separator: "\n").split(separator: "\n").filter { $0.contains(id) }.joined(separator: "\n")
                #expect(job["exit_code"] == "0" && job["attempts"] == "1", "a run was killed: \(job)\n\(lines)")
                containers.insert(job["container"] ?? "")
                if job["container_changes"] != nil { changes += 1 }
            }
            #expect(changes <= 1 && containers.count <= 2, "the container was replaced \(changes) times (\(containers.count) containers)")
            // The scenario happened: the newer worker ran jobs, and the older one deferred to its spec.
            let byNew = try await sessions.joined().asyncFilter { try await env.queue.job($0)?["worker"] == "v2" }
            #expect(!byNew.isEmpty, "the newer worker ran no job")
            let oldLog = (try? String(contentsOfFile: env.root.appendingPathComponent("worker-v1.log").path, encoding: .utf8)) ?? ""
            #expect(oldLog.contains("job deferred"), "the older worker never deferred: \(oldLog.suffix(1500))")
        }
    }

    /// Ten agents at once on one worker, all past their timeout at the same moment: every one is killed on time
    /// (control calls never wait behind the exec streams), and nothing of them is left.
    ///
    /// Judged from the jobs, not by watching `docker exec ps`: on a loaded machine a look at ten containers' processes
    /// can take longer than the runs (one run of this test waited for ten alive at once while all ten were killed).
    @Test func tenConcurrentAgentsAllTimedOutAreAllKilledOnTime() async throws {
        try await WorkerEnvironment.with(
            timeout: "6s", queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 1}", agentConcurrency: 10
        ) { env in
            _ = try await env.reconciler().ensure(env.agent())
            var ids: [String] = []
            for n in 0..<10 { ids.append(try await env.enqueue("stuck STUB_SLEEP=300", number: 200 + n)) }
            let worker = try WorkerProcessTests.startWorker(env, id: "ten", concurrency: 10)
            defer { worker.terminate() }
            try await Self.waitAllFinished(env, ids, timeout: .seconds(90))
            // Each run (exec start to exit) ended within 6 s of its timeout. Uncut, the stub sleeps 300 s, and a kill
            // that never came would show as the worker's 10 s wait for the exec on top of the timeout.
            var spans: [(start: Date, end: Date)] = []
            for id in ids {
                let job = try #require(try await env.queue.job(id))
                #expect(job["status"] == "dead" && job["timed_out"] == "true", "\(job)")
                let ran = try #require(job["duration_ms"].flatMap { Int($0) }, "\(job)")
                #expect(ran < 12_000, "a run with a 6 s timeout ran \(ran) ms: \(job)")
                let end = try #require(job["finished_at"].flatMap(Timestamp.parse), "\(job)")
                spans.append((end.addingTimeInterval(-Double(ran) / 1000), end))
            }
            // The ten timeouts fell together: one moment had every run alive.
            let lastStart = spans.map(\.start).max()!
            let firstEnd = spans.map(\.end).min()!
            #expect(lastStart < firstEnd, "the runs did not overlap: the last started \(lastStart), the first ended \(firstEnd)")
            #expect(!(try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=300") }))
        }
    }

    /// The worker's own maintenance promotes due retries (no test calls `promoteDue`), and a graceful stop removes
    /// every trace of its registration.
    @Test func theWorkerPromotesItsRetriesAndAGracefulStopDeregisters() async throws {
        try await WorkerEnvironment.with(queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 3}") { env in
            let id = try await env.enqueue("always STUB_FAIL", number: 92)
            let worker = try WorkerProcessTests.startWorker(env, id: "maint", concurrency: 1)
            try await WorkerProcessTests.waitFor("three attempts and the dead list", timeout: .seconds(30)) {
                try await env.queue.job(id)?["status"] == "dead"
            }
            #expect(try await env.queue.job(id)?["attempts"] == "3")
            let keys = env.config.keys
            #expect(try await env.client.send("EXISTS", keys.worker("maint"), keys.lease("maint")).int == 2)
            #expect(try await env.client.send("ZSCORE", keys.workers, "maint").string != nil)
            #expect(await worker.stop() == 0)
            #expect(try await env.client.send("EXISTS", keys.worker("maint"), keys.lease("maint"), keys.processing("maint")).int == 0)
            #expect(try await env.client.send("ZSCORE", keys.workers, "maint").string == nil, "still listed in \(keys.workers)")
        }
    }

    /// A worker that reaches Docker through a `DockerProxy` the test can freeze or cut.
    static func workerBehindDockerProxy(_ env: WorkerEnvironment, id: String, concurrency: Int) throws -> (DockerProxy, ChildProcess) {
        let proxy = try DockerProxy()
        do {
            return (proxy, try WorkerProcessTests.startWorker(env, id: id, concurrency: concurrency, environment: ["DOCKER_HOST": proxy.dockerHost]))
        } catch {
            proxy.stop()
            throw error
        }
    }

    /// dockerd frozen while an agent runs, then while a job is being reconciled: the worker waits it out and both
    /// jobs succeed on their first attempt — its lease does not depend on Docker, so nothing is recovered or re-run.
    @Test func aStalledDockerdDelaysJobsButLosesAndRepeatsNone() async throws {
        try await WorkerEnvironment.with(extraAgentYAML: Self.runLogYAML) { env in
            let (proxy, worker) = try Self.workerBehindDockerProxy(env, id: "stall", concurrency: 2)
            defer {
                worker.terminate()
                proxy.stop()
            }
            let duringExec = try await env.enqueue("during the exec STUB_SLEEP=4", number: 300)  // long enough for the ps polls to see it
            try await WorkerProcessTests.waitFor("the agent to start") {
                try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=4 ") }
            }
            proxy.stall()
            try await Task.sleep(for: .seconds(4))
            let duringReconcile = try await env.enqueue("during the reconcile", number: 301)
            try await Task.sleep(for: .seconds(2))
            #expect(try await env.queue.job(duringExec)?["status"] == "running", "the frozen engine must delay the job, not fail it")
            proxy.heal()
            try await Self.waitAllFinished(env, [duringExec, duringReconcile], timeout: .seconds(60))
            let report = try await QueueInvariants.check(env, sessions: [[duringExec], [duringReconcile]], runLog: Self.runLog(env))
            #expect(report.holds && report.succeeded == 2 && report.attempts == 2, "\(report)")
        }
    }

    /// dockerd going away mid-run (every connection cut and new ones refused, as while it restarts): the attempt
    /// fails — its agent killed through cgroupfs, which needs no dockerd — the job is retried until the engine is
    /// back, then succeeds; no two runs overlap.
    @Test func dockerdGoingAwayMidRunRetriesTheJobOnceItIsBack() async throws {
        try await WorkerEnvironment.with(
            queueYAML: "{retry_base: 200ms, retry_max: 1s, lease: 2s, heartbeat: 500ms, max_attempts: 20}", extraAgentYAML: Self.runLogYAML
        ) { env in
            let (proxy, worker) = try Self.workerBehindDockerProxy(env, id: "cut", concurrency: 1)
            defer {
                worker.terminate()
                proxy.stop()
            }
            let id = try await env.enqueue("long STUB_SLEEP=60", number: 302)
            try await WorkerProcessTests.waitFor("the agent to start") {
                try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=60 ") && !$0.contains("forge-hooks-run") }
            }
            proxy.cut()
            try await WorkerProcessTests.waitFor("the cut-off run's agent to be killed", timeout: .seconds(5)) {
                !(try await FaultTests.processes(env).contains { $0.contains("STUB_SLEEP=60 ") })
            }
            #expect(worker.isRunning, "the worker must survive the engine going away")
            // Back with a job that can finish: the retry of the same job must succeed.
            _ = try await env.client.send("HSET", env.config.keys.job(id), "prompt", "short STUB_SLEEP=1")
            try await Task.sleep(for: .seconds(2))
            proxy.heal()
            try await Self.waitAllFinished(env, [id], timeout: .seconds(60))
            let report = try await QueueInvariants.check(env, sessions: [[id]], runLog: Self.runLog(env))
            #expect(report.holds && report.succeeded == 1 && report.attempts >= 2, "\(report)")
        }
    }
}

extension Sequence where Element: Sendable {
    func asyncFilter(_ keep: (Element) async throws -> Bool) async rethrows -> [Element] {
        var kept: [Element] = []
        for element in self where try await keep(element) { kept.append(element) }
        return kept
    }
}
