import Foundation
import Logging
import Testing

@testable import Shared
@testable import TestSupport
@testable import WorkerCore

/// `JobExecutor`'s branches with in-memory twins for the container side, the agent and the transcripts — real Redis
/// for the queue (its scripts are the behaviour). Milliseconds each; the real-Docker tests are the integration tier.
@Suite(.timeLimit(.minutes(5))) struct JobExecutorTests {
    actor FakeContainers: ContainerProvisioning {
        var provisions = 0
        var failure: (any Error)?
        var running = ["c1"]
        init(failure: (any Error)? = nil, running: [String] = ["c1"]) {
            self.failure = failure
            self.running = running
        }
        func provision(_ agent: AgentSettings) async throws -> ContainerReconciler.Result {
            provisions += 1
            if let failure { throw failure }
            return .init(containerID: "c\(provisions)", changes: [])
        }
        func runningContainers() async throws -> [String] { running }
    }

    actor FakeRunner: AgentRunning {
        enum Step {
            case outcome(AgentRunner.Outcome)
            case error(any Error)
        }
        var steps: [Step]
        var calls: [(container: String, resume: String?, newSession: String)] = []
        var leftoversLookedIn: [String] = []
        init(_ steps: [Step]) { self.steps = steps }

        func run(
            fence: JobQueue.Fence, agent: AgentSettings, container: String, workingDir: String, prompt: String, resume: String?,
            newSessionID: String, control: RunControl
        ) async throws -> AgentRunner.Outcome {
            calls.append((container, resume, newSessionID))
            guard !steps.isEmpty else { throw TestSetupError("the agent was run more often than the test expected") }
            switch steps.removeFirst() {
            case .outcome(let outcome): return outcome
            case .error(let error): throw error
            }
        }

        func killLeftovers(jobID: String, agent: AgentSettings, container: String) async -> Int {
            leftoversLookedIn.append(container)
            return 0
        }
    }

    struct NoTranscripts: TranscriptStoring {
        func restore(session: String, sessionID: String, agent: AgentSettings, cwd: String) async throws -> TranscriptStore.RestoreResult {
            .notStored
        }
        func save(session: String, sessionID: String, agent: AgentSettings, cwd: String, host: String, fence: JobQueue.Fence) async throws
            -> TranscriptStore.SaveResult
        { .noTranscript }
    }

    static func succeeded(session: String) -> AgentRunner.Outcome {
        var outcome = AgentRunner.Outcome()
        outcome.exitCode = 0
        outcome.parsed.consume(#"{"type":"result","subtype":"success","is_error":false,"session_id":"\#(session)","result":"done"}"#)
        return outcome
    }

    static func notFound(_ session: String, timedOut: Bool = false) -> AgentRunner.Outcome {
        var outcome = AgentRunner.Outcome()
        outcome.exitCode = 1
        outcome.timedOut = timedOut
        outcome.parsed.consume(
            #"{"type":"result","subtype":"error_during_execution","is_error":true,"session_id":"\#(session)","errors":["No conversation found with session ID: \#(session)"]}"#
        )
        return outcome
    }

    static func aborted(_ reason: RunControl.Reason) -> AgentRunner.Outcome {
        var outcome = AgentRunner.Outcome()
        outcome.aborted = reason
        return outcome
    }

    /// A queue on a throwaway Redis, an agent with throwaway directories, and the executor over the twins.
    struct Rig {
        let redis: RedisServer
        let client: RedisClient
        let queue: JobQueue
        let root: URL
        let agent: AgentSettings
        let session = "dev:acme/widgets:7"

        init() throws {
            redis = try RedisServer()
            client = redis.client()
            queue = JobQueue(redis: client, settings: QueueSettings())
            root = FileManager.default.temporaryDirectory.appendingPathComponent("executor-\(UUID().uuidString.prefix(8))")
            agent = AgentSettings(name: "dev", image: "unused", credentialsDir: root.path + "/config", workDir: root.path + "/work")
            try AgentEnvironment.sync(agent)
        }

        func executor(_ containers: FakeContainers, _ runner: FakeRunner) -> JobExecutor {
            JobExecutor(
                queue: queue, containers: containers, runner: runner, transcripts: NoTranscripts(), agents: ["dev": agent], workerID: "w",
                hostID: "h", logger: Logger(label: "executor-test"))
        }

        /// Enqueues one job (with `fields`, on issue `number`) and reserves it as worker `w`.
        func reserve(_ fields: [(String, String)] = [], number: Int = 7) async throws -> ReservedJob {
            let job = NewJob(
                agent: "dev", session: SessionKey(agent: "dev", repository: "acme/widgets", number: number),
                fields: [("repo", "acme/widgets"), ("number", String(number)), ("prompt", "hello")] + fields)
            _ = try await queue.enqueue([job])
            return try #require(try await queue.reserveAny(worker: "w", agents: ["dev"]))
        }

        func record(_ id: String) async throws -> [String: String] { try await queue.job(id) ?? [:] }

        func tearDown() {
            client.shutdown()
            redis.stop()
            try? FileManager.default.removeItem(at: root)
        }
    }

    static func withRig(_ body: (Rig) async throws -> Void) async throws {
        let rig = try Rig()
        defer { rig.tearDown() }
        try await body(rig)
    }

    @Test func aStoredSessionTheCLIDoesNotKnowIsDroppedAndTheTurnRunsFreshOnce() async throws {
        try await Self.withRig { rig in
            let stale = UUID().uuidString.lowercased()
            try await rig.client.send("HSET", rig.queue.keys.sessions, rig.session, stale)
            let fresh = UUID().uuidString.lowercased()
            let runner = FakeRunner([.outcome(Self.notFound(stale)), .outcome(Self.succeeded(session: fresh))])
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(), runner).execute(job, control: RunControl())

            let calls = await runner.calls
            #expect(calls.count == 2 && calls[0].resume == stale && calls[1].resume == nil)
            let record = try await rig.record(job.id)
            #expect(record["status"] == "succeeded" && record["session_id"] == fresh, "\(record)")
            #expect(record["warning"]?.contains("was not found by the agent CLI") == true, "\(record)")
            #expect(try await rig.queue.sessionID(for: rig.session) == fresh)
        }
    }

    @Test func aNotFoundLineAfterATimeoutBuysNoSecondRun() async throws {
        try await Self.withRig { rig in
            try await rig.client.send("HSET", rig.queue.keys.sessions, rig.session, UUID().uuidString.lowercased())
            let runner = FakeRunner([.outcome(Self.notFound("x", timedOut: true))])
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(), runner).execute(job, control: RunControl())
            #expect(await runner.calls.count == 1)
            let record = try await rig.record(job.id)
            #expect(record["status"] == "failed" && record["timed_out"] == "true", "\(record)")
        }
    }

    @Test func aStoredSessionIDThatIsNotAUUIDIsNeverPassedOn() async throws {
        try await Self.withRig { rig in
            try await rig.client.send("HSET", rig.queue.keys.sessions, rig.session, "../../etc/passwd")
            let runner = FakeRunner([.outcome(Self.succeeded(session: UUID().uuidString.lowercased()))])
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(), runner).execute(job, control: RunControl())
            #expect(await runner.calls.first?.resume == nil)
            #expect(try await rig.record(job.id)["warning"]?.contains("is not a UUID") == true)
        }
    }

    @Test func shutdownGivesTheJobBackWithoutCountingTheAttempt() async throws {
        try await Self.withRig { rig in
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(), FakeRunner([.outcome(Self.aborted(.shutdown))])).execute(job, control: RunControl())
            let record = try await rig.record(job.id)
            #expect(record["status"] == "queued" && record["attempts"] == "0", "\(record)")
            #expect(try await rig.client.send("LRANGE", rig.queue.keys.queue("dev"), "0", "-1").strings == [job.id])
        }
    }

    @Test func aRunStoppedOnAnUnconfirmedLeaseIsGivenBackUncounted() async throws {
        try await Self.withRig { rig in
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(), FakeRunner([.outcome(Self.aborted(.leaseUnconfirmed))])).execute(job, control: RunControl())
            let record = try await rig.record(job.id)
            #expect(record["status"] == "queued" && record["attempts"] == "0", "\(record)")
            #expect(record["note"]?.contains("could not renew its lease") == true, "\(record)")
        }
    }

    /// What the orphan reaper kills by: a run is current only while its job runs and names it.
    @Test func aRunIsCurrentOnlyWhileItsJobRunsAndNamesIt() async throws {
        try await Self.withRig { rig in
            let job = try await rig.reserve()
            let jobKey = rig.queue.keys.job(job.id)
            // Claimed, no run set up yet: the claim cleared the marker, so no earlier run counts.
            #expect(await !WorkerService.isCurrentRun(queue: rig.queue, jobID: job.id, marker: "\(job.id).old"))
            try await rig.client.send("HSET", jobKey, "run", "\(job.id).aaaa")
            #expect(await WorkerService.isCurrentRun(queue: rig.queue, jobID: job.id, marker: "\(job.id).aaaa"))
            #expect(await !WorkerService.isCurrentRun(queue: rig.queue, jobID: job.id, marker: "\(job.id).bbbb"))
            // A record claimed by an older worker has no `run` field: its run is left alone.
            try await rig.client.send("HDEL", jobKey, "run")
            #expect(await WorkerService.isCurrentRun(queue: rig.queue, jobID: job.id, marker: "\(job.id).bbbb"))
            try await rig.client.send("HSET", jobKey, "status", "succeeded")
            #expect(await !WorkerService.isCurrentRun(queue: rig.queue, jobID: job.id, marker: "\(job.id).bbbb"))
            #expect(await !WorkerService.isCurrentRun(queue: rig.queue, jobID: "no-such-job", marker: "no-such-job.cccc"))
        }
    }

    @Test func aLostJobRecordsNothing() async throws {
        try await Self.withRig { rig in
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(), FakeRunner([.outcome(Self.aborted(.lost))])).execute(job, control: RunControl())
            let record = try await rig.record(job.id)
            #expect(record["status"] == "running" && record["finished_at"] == nil && record["exit_code"] == nil, "\(record)")
        }
    }

    @Test func aContainerGoneBeforeTheExecIsReconciledOnceMore() async throws {
        try await Self.withRig { rig in
            let gone = AgentRunner.ContainerGone(container: "c1", docker: DockerError(status: 404, message: "No such container", operation: "exec"))
            let containers = FakeContainers()
            let runner = FakeRunner([.error(gone), .outcome(Self.succeeded(session: UUID().uuidString.lowercased()))])
            let job = try await rig.reserve()
            await rig.executor(containers, runner).execute(job, control: RunControl())
            #expect(await containers.provisions == 2)
            #expect(await runner.calls.map(\.container) == ["c1", "c2"])
            #expect(try await rig.record(job.id)["status"] == "succeeded")
        }
    }

    @Test func aDeferredJobGoesToDelayedUncountedUntilTheCap() async throws {
        try await Self.withRig { rig in
            let deferral = ContainerDeferral(agent: "dev", message: "a newer worker's spec wins")
            let runner = FakeRunner([])
            let job = try await rig.reserve()
            await rig.executor(FakeContainers(failure: deferral), runner).execute(job, control: RunControl())
            let record = try await rig.record(job.id)
            #expect(record["status"] == "queued" && record["attempts"] == "0" && record["deferrals"] == "1", "\(record)")
            #expect(try await rig.client.send("ZSCORE", rig.queue.keys.delayed, job.id).string != nil)
            #expect(await runner.calls.isEmpty)

            let capped = try await rig.reserve([("deferrals", String(JobExecutor.maxDeferrals))], number: 8)
            await rig.executor(FakeContainers(failure: deferral), runner).execute(capped, control: RunControl())
            let failed = try await rig.record(capped.id)
            #expect(failed["status"] == "failed" && failed["error"]?.hasPrefix("deferred \(JobExecutor.maxDeferrals) times") == true, "\(failed)")
        }
    }

    @Test func aLaterAttemptKillsEarlierAttemptsInEveryContainerOfTheHost() async throws {
        try await Self.withRig { rig in
            let first = try await rig.reserve()
            let fail = FakeRunner([.outcome(Self.notFound("x", timedOut: true))])
            await rig.executor(FakeContainers(), fail).execute(first, control: RunControl())
            #expect(await fail.leftoversLookedIn.isEmpty, "a first attempt has nothing earlier to kill")
            #expect(try await rig.queue.promoteDue(now: Date().addingTimeInterval(3600)) == 1)
            let second = try #require(try await rig.queue.reserveAny(worker: "w", agents: ["dev"]))
            #expect(second.attempt == 2)
            let runner = FakeRunner([.outcome(Self.succeeded(session: UUID().uuidString.lowercased()))])
            await rig.executor(FakeContainers(running: ["c1", "retired-one"]), runner).execute(second, control: RunControl())
            #expect(await runner.leftoversLookedIn == ["c1", "retired-one"])
        }
    }
}
