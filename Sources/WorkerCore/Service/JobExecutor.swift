import Foundation
import Logging
import Shared

/// What the executor needs from the container side: the agent's container, made to match its spec, and every
/// running container of this host (an earlier attempt may run in a retired one).
package protocol ContainerProvisioning: Sendable {
    func provision(_ agent: AgentSettings) async throws -> ContainerReconciler.Result
    func runningContainers() async throws -> [String]
}

extension ContainerReconciler: ContainerProvisioning {
    package func provision(_ agent: AgentSettings) async throws -> Result { try await ensure(agent) }
}

/// Runs the agent once, and kills what earlier attempts of a job left.
package protocol AgentRunning: Sendable {
    func run(
        fence: JobQueue.Fence, agent: AgentSettings, container: String, workingDir: String, prompt: String, resume: String?,
        newSessionID: String, control: RunControl
    ) async throws -> AgentRunner.Outcome
    func killLeftovers(jobID: String, agent: AgentSettings, container: String) async -> Int
}

extension AgentRunner: AgentRunning {}

/// Ships session transcripts between the host's files and Redis.
package protocol TranscriptStoring: Sendable {
    func restore(session: String, sessionID: String, agent: AgentSettings, cwd: String) async throws -> TranscriptStore.RestoreResult
    func save(session: String, sessionID: String, agent: AgentSettings, cwd: String, host: String, fence: JobQueue.Fence) async throws
        -> TranscriptStore.SaveResult
}

extension TranscriptStore: TranscriptStoring {}

/// Runs one reserved job end to end, in named steps: **prepare** (container, session directory, an earlier attempt's
/// leftovers) → **resolve the session** (stored id, transcript) → **run** (with one fresh retry when the stored
/// session is unknown to the CLI, and one more reconcile when the container went away) → **record** (or release on
/// shutdown, or nothing when the job was lost). Its edges are protocols, so every branch has a unit test with
/// in-memory twins; the real-Docker tests are the integration tier.
package struct JobExecutor: Sendable {
    let queue: JobQueue
    let containers: any ContainerProvisioning
    let runner: any AgentRunning
    let transcripts: any TranscriptStoring
    let agents: [String: AgentSettings]
    let workerID: String
    let hostID: String
    let logger: Logger

    /// After this many deferrals (5 s each) a job's attempt fails instead: see `ContainerDeferral`.
    static let maxDeferrals = 60

    package init(
        queue: JobQueue, containers: any ContainerProvisioning, runner: any AgentRunning, transcripts: (any TranscriptStoring)? = nil,
        agents: [String: AgentSettings], workerID: String, hostID: String, logger: Logger
    ) {
        self.queue = queue
        self.containers = containers
        self.runner = runner
        self.transcripts = transcripts ?? TranscriptStore(queue: queue)
        self.agents = agents
        self.workerID = workerID
        self.hostID = hostID
        self.logger = logger
    }

    /// One job's state between the steps.
    struct Context {
        let job: ReservedJob
        let agent: AgentSettings
        let fence: JobQueue.Fence
        let log: Logger
        var container: ContainerReconciler.Result
        let cwd: String
        var resume: String?
        var warnings: [String] = []
    }

    func execute(_ job: ReservedJob, control: RunControl) async {
        var log = logger
        log[metadataKey: "job.id"] = "\(job.id)"
        log[metadataKey: "agent"] = "\(job.agent)"
        log[metadataKey: "session"] = "\(job.session)"
        log[metadataKey: "attempt"] = "\(job.attempt)"
        log.info("job started")
        let started = ContinuousClock.now

        guard let agent = agents[job.agent] else {
            await finish(job, .failed(error: "agent '\(job.agent)' is not configured on worker \(workerID)", retryable: true), log: log)
            return
        }
        do {
            var context = try await prepare(job, agent: agent, log: log)
            try await resolveSession(&context)
            let (outcome, newSession) = try await runWithFallback(&context, control: control)
            switch outcome.aborted {
            case .lost:
                log.warning("this worker lost the job (its lease lapsed and the job was recovered): agent stopped, nothing recorded")
            case .shutdown:
                let released =
                    (try? await queue.release(job, worker: workerID, reason: "worker \(workerID) shut down during the run; re-queued")) ?? false
                log.notice("agent stopped for shutdown; job re-queued", metadata: ["released": "\(released)"])
            case .leaseUnconfirmed:
                // Given back once Redis answers, without counting the attempt — unless another worker recovered it
                // meanwhile (the release is fenced: then nothing is written).
                let released = await releaseWhenRedisAnswers(
                    job, reason: "worker \(workerID) could not renew its lease in time and stopped the run; re-queued", log: log)
                log.warning("agent stopped: the lease could not be renewed in time", metadata: ["released": "\(released)"])
            case nil:
                await record(context, outcome: outcome, newSession: newSession, started: started)
            }
        } catch let lost as AgentRunner.JobLost {
            log.warning("\(lost)")
        } catch let deferral as ContainerDeferral where (Int(job["deferrals"] ?? "") ?? 0) >= Self.maxDeferrals {
            // The newer worker keeps its lease but never takes the job (draining, stuck): stop bouncing it.
            log.error("job deferred \(Self.maxDeferrals) times; failing this attempt: \(deferral)")
            await finish(
                job, .failed(error: "deferred \(Self.maxDeferrals) times: \(StreamJSONParser.bounded(deferral.message, 1500))", retryable: true),
                log: log)
        } catch let deferral as ContainerDeferral {
            let released =
                (try? await queue.release(job, worker: workerID, reason: StreamJSONParser.bounded(deferral.message, 1000), delay: .seconds(5)))
                ?? false
            log.warning("job deferred: \(deferral)", metadata: ["released": "\(released)"])
        } catch {
            log.error("job failed before the agent could finish: \(error)")
            await finish(job, .failed(error: StreamJSONParser.bounded("\(error)", 2000), retryable: true), log: log)
        }
    }

    // MARK: Steps

    /// The container, the session's working directory, and — on a later attempt — whatever earlier attempts left
    /// running, in every container of the host (one may run in a container retired since).
    func prepare(_ job: ReservedJob, agent: AgentSettings, log: Logger) async throws -> Context {
        let container = try await containers.provision(agent)
        let cwd = try AgentEnvironment.sessionDirectory(agent, repository: job["repo"] ?? "", number: Int(job["number"] ?? "") ?? 0)
        if job.attempt > 1 {
            var killed = 0
            for other in (try? await containers.runningContainers()) ?? [container.containerID] {
                killed += await runner.killLeftovers(jobID: job.id, agent: agent, container: other)
            }
            if killed > 0 { log.notice("killed \(killed) leftover process(es) of an earlier attempt") }
        }
        return Context(
            job: job, agent: agent, fence: JobQueue.Fence(job, worker: workerID), log: log, container: container, cwd: cwd.container)
    }

    /// The stored session id (a UUID, or dropped), its transcript made local, and the run's fields on the job.
    func resolveSession(_ context: inout Context) async throws {
        let job = context.job
        context.resume = try await queue.sessionID(for: job.session)
        if let stored = context.resume, !AgentSessionID.isValid(stored) {
            // Written by hand or by an older worker: never let it reach a file name or a CLI argument.
            context.warnings.append(
                "stored session id '\(StreamJSONParser.bounded(stored, 80))' is not a UUID; dropped it and started a fresh session")
            try await queue.dropStaleSession(job.session, fence: context.fence)
            context.resume = nil
        }
        if let sessionID = context.resume {
            switch try await transcripts.restore(session: job.session, sessionID: sessionID, agent: context.agent, cwd: context.cwd) {
            case .restored(let bytes, let files):
                context.log.info("restored the session from Redis", metadata: ["bytes": "\(bytes)", "files": "\(files)"])
            case .skipped(let reason):
                context.warnings.append(
                    "the transcript of session \(sessionID) was not shipped (\(reason)); resuming only works on the host that ran it")
            case .localIsCurrent, .notStored: break
            }
        }
        let container = context.container
        try await queue.annotate(
            context.fence,
            [("host", hostID), ("container", String(container.containerID.prefix(12))), ("cwd", context.cwd)]
                + (container.changes.isEmpty ? [] : [("container_changes", container.changes.joined(separator: "; "))])
                + (context.resume.map { [("resumed_from", $0)] } ?? []))
    }

    /// Runs the agent; a container that went away before the exec is reconciled once more, and a stored session the
    /// CLI does not know is dropped and the turn run once more, fresh. Returns the outcome and the id a fresh session
    /// was started with.
    func runWithFallback(_ context: inout Context, control: RunControl) async throws -> (AgentRunner.Outcome, String) {
        var newSession = UUID().uuidString.lowercased()
        var outcome = try await runOnce(&context, resume: context.resume, newSession: newSession, control: control)
        // Not after a timeout: an agent that prints the not-found line could otherwise buy itself a second full run.
        if let stale = context.resume, outcome.resumeNotFound, outcome.aborted == nil, !outcome.timedOut {
            let warning =
                "session \(stale) was not found by the agent CLI (transcript missing under projects/ for \(context.cwd)); started a fresh session"
            context.log.warning("\(warning)")
            context.warnings.append(warning)
            try await queue.dropStaleSession(context.job.session, fence: context.fence)
            context.resume = nil
            newSession = UUID().uuidString.lowercased()
            outcome = try await runOnce(&context, resume: nil, newSession: newSession, control: control)
        }
        return (outcome, newSession)
    }

    private func runOnce(_ context: inout Context, resume: String?, newSession: String, control: RunControl) async throws -> AgentRunner.Outcome {
        let prompt = context.job["prompt"] ?? ""
        do {
            return try await runner.run(
                fence: context.fence, agent: context.agent, container: context.container.containerID, workingDir: context.cwd, prompt: prompt,
                resume: resume, newSessionID: newSession, control: control)
        } catch let gone as AgentRunner.ContainerGone {
            // Replaced (or removed) between the reconcile and the exec: reconcile again, once.
            context.log.notice("\(gone); reconciling again")
            context.container = try await containers.provision(context.agent)
            return try await runner.run(
                fence: context.fence, agent: context.agent, container: context.container.containerID, workingDir: context.cwd, prompt: prompt,
                resume: resume, newSessionID: newSession, control: control)
        }
    }

    /// The outcome on the job: fields, warnings, the session id and its shipped transcript, then finish.
    func record(_ context: Context, outcome: AgentRunner.Outcome, newSession: String, started: ContinuousClock.Instant) async {
        let (job, log) = (context.job, context.log)
        var warnings = context.warnings
        var fields: [(String, String)] = [
            ("exit_code", outcome.exitCode.map(String.init) ?? ""), ("duration_ms", String(Int(outcome.duration.seconds * 1000))),
            ("result_subtype", outcome.parsed.subtype ?? ""), ("is_error", outcome.parsed.isError.map { $0 ? "true" : "false" } ?? ""),
            ("cost_usd", Self.turnCost(outcome.parsed, resumed: context.resume != nil).map { String($0) } ?? ""),
            ("session_cost_usd", Self.money(outcome.parsed.costUSD).map { String($0) } ?? ""),
            ("num_turns", outcome.parsed.numTurns.map(String.init) ?? ""),
            ("result", StreamJSONParser.bounded(outcome.parsed.result ?? "", 2000)), ("tool_calls", String(outcome.parsed.toolCalls)),
            ("permission_denials", outcome.parsed.sawResult ? String(outcome.parsed.permissionDenials) : ""),
            ("denied_tools", outcome.parsed.deniedToolsSummary), ("cli_version", outcome.parsed.cliVersion ?? ""),
            ("model", outcome.parsed.model ?? ""), ("cli_tools", outcome.parsed.toolCount.map(String.init) ?? ""),
            ("mcp_servers", outcome.parsed.mcpServers.joined(separator: ", ")),
        ]
        if outcome.parsed.permissionDenials > 0 {
            let denied = outcome.parsed.deniedToolsSummary
            if outcome.parsed.permissionDenials >= outcome.parsed.toolCalls {
                warnings.append(
                    "every tool call of this run was denied (\(denied)): the agent could change nothing; allow what it needs with "
                        + "agents.\(context.agent.name).permissions (mode \(context.agent.permissions.mode) now)")
            } else {
                warnings.append(
                    "\(outcome.parsed.permissionDenials) of \(outcome.parsed.toolCalls) tool calls were denied (\(denied)); "
                        + "see agents.\(context.agent.name).permissions")
            }
        }
        if outcome.parsed.sawResult, outcome.parsed.turnCostUSD == nil, context.resume != nil {
            warnings.append(
                "this CLI does not report a turn's own cost (model_usage_since_last_result): cost_usd is unknown, session_cost_usd is the session's total"
            )
        }
        if outcome.timedOut { fields.append(("timed_out", "true")) }
        if let rejected = outcome.parsed.rejectedSessionID {
            warnings.append("the agent reported a session id that is not a UUID ('\(rejected)'); ignored")
        }
        if let why = outcome.containmentWarning { warnings.append(why) }
        if outcome.leftoversKilled > 0 {
            warnings.append("killed \(outcome.leftoversKilled) process(es) the agent left running after it exited")
            fields.append(("leftovers_killed", String(outcome.leftoversKilled)))
        }
        if outcome.straysKilled > 0 {
            warnings.append(
                "killed \(outcome.straysKilled) process(es) of the agent's uid running outside every run's cgroup (an escape attempt?)")
        }
        if outcome.refusedLogLines > 0 {
            warnings.append(
                "\(outcome.refusedLogLines) output line(s) not stored: Redis was near its maxmemory (queue.redis_headroom is kept for "
                    + "leases and results); raise maxmemory or lower queue.log_max_bytes / transcript caps")
        }
        if outcome.droppedLogLines > 0 {
            warnings.append(
                "output over queue.log_max_bytes was not stored: \(outcome.droppedLogLines) line(s), \(outcome.droppedLogBytes) bytes")
        }
        let sessionID = outcome.parsed.sessionID ?? (outcome.parsed.sawResult ? (context.resume ?? newSession) : nil)
        if let sessionID {
            do {
                let saved = try await transcripts.save(
                    session: job.session, sessionID: sessionID, agent: context.agent, cwd: context.cwd, host: hostID, fence: context.fence)
                if case .overCap(let bytes) = saved {
                    warnings.append("transcript is \(bytes) bytes, over queue.transcript_max_bytes: not shipped, so only this host can resume it")
                }
                if case .overBudget(let bytes) = saved {
                    warnings.append(
                        "the session (\(bytes) bytes) was not shipped: Redis was near its maxmemory (queue.redis_headroom is kept for leases "
                            + "and results), so only this host can resume it; raise maxmemory or lower the transcript caps")
                }
                if case .saved(_, _, let skipped) = saved, !skipped.isEmpty {
                    warnings.append(
                        "files of the session were not shipped, so a resume on another host lacks them: "
                            + skipped.prefix(5).joined(separator: "; ") + (skipped.count > 5 ? "; …" : ""))
                }
            } catch {
                log.error("could not ship the session transcript: \(error)")
                warnings.append("transcript not shipped: \(error)")
            }
        }
        if !warnings.isEmpty {
            fields.append(("warning", warnings.map { StreamJSONParser.bounded($0, 1000) }.prefix(10).joined(separator: "\n")))
        }
        let result: JobQueue.Outcome = outcome.succeeded ? .succeeded : .failed(error: outcome.errorSummary, retryable: true)
        await finish(job, result, sessionID: sessionID, fields: fields, log: log)
        var metadata: Logger.Metadata = [
            "outcome": "\(outcome.succeeded ? "succeeded" : "failed")", "exit_code": "\(outcome.exitCode.map(String.init) ?? "-")",
            "duration_ms": "\(Int((ContinuousClock.now - started).seconds * 1000))", "session_id": "\(sessionID ?? "-")",
        ]
        // Why it failed, in the worker's own log too: the job's `error` is overwritten by the next attempt.
        if !outcome.succeeded { metadata["error"] = "\(StreamJSONParser.bounded(outcome.errorSummary, 500))" }
        log.info("job finished", metadata: metadata)
    }

    /// The turn's own cost: what the CLI reports for this run (`model_usage_since_last_result`); without that, the
    /// running total only when the session is new (the CLI restores a resumed session's total from its transcript).
    static func turnCost(_ parsed: StreamJSONParser, resumed: Bool) -> Double? {
        if let turn = parsed.turnCostUSD { return money(turn) }
        return resumed ? nil : money(parsed.costUSD)
    }

    /// A figure the agent's output gave, kept only when it can be an amount: finite and not negative.
    static func money(_ value: Double?) -> Double? {
        guard let value, value.isFinite, value >= 0 else { return nil }
        return value
    }

    /// `queue.release`, retried while Redis does not answer (for about a minute; then the stranded-id sweep gives the
    /// job back, its attempt counted). Returns whether this worker still held the job.
    private func releaseWhenRedisAnswers(_ job: ReservedJob, reason: String, log: Logger) async -> Bool {
        var delay = Duration.milliseconds(200)
        for _ in 1...12 {
            do {
                return try await queue.release(job, worker: workerID, reason: reason)
            } catch {
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
        log.error("could not give the job back: Redis did not answer")
        return false
    }

    /// Records the outcome; retried while Redis is unreachable (the job stays in our processing list meanwhile).
    private func finish(
        _ job: ReservedJob, _ outcome: JobQueue.Outcome, sessionID: String? = nil, fields: [(String, String)] = [], log: Logger
    ) async {
        var delay = Duration.milliseconds(200)
        for attempt in 1...30 {
            do {
                let result = try await queue.finish(job, worker: workerID, outcome: outcome, sessionID: sessionID, fields: fields)
                if case .lost(let status, let holder) = result {
                    log.warning(
                        "result not recorded: this worker lost the job (lease expired)", metadata: ["status": "\(status)", "holder": "\(holder)"])
                } else if case .dead = result {
                    log.error("job is dead (no attempts left)", metadata: ["error": "\(fields.first { $0.0 == "error" }?.1 ?? "\(outcome)")"])
                }
                return
            } catch {
                log.error("cannot record the job's outcome (attempt \(attempt)): \(error)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
    }
}
