import Foundation
import Logging
import Shared

/// Runs one reserved job end to end: container reconcile, session lookup, the agent run (with one fresh retry when
/// the stored session is unknown to the CLI), and the final record — or a release on shutdown.
struct JobExecutor: Sendable {
    let queue: JobQueue
    let reconciler: ContainerReconciler
    let runner: AgentRunner
    let agents: [String: AgentSettings]
    let workerID: String
    let hostID: String
    let logger: Logger

    /// After this many deferrals (5 s each) a job's attempt fails instead: see `ContainerDeferral`.
    static let maxDeferrals = 60

    func execute(_ job: ReservedJob, control: RunControl) async {
        var log = logger
        log[metadataKey: "job.id"] = "\(job.id)"
        log[metadataKey: "agent"] = "\(job.agent)"
        log[metadataKey: "session"] = "\(job.session)"
        log[metadataKey: "attempt"] = "\(job.attempt)"
        log.info("job started")
        let started = ContinuousClock.now
        let fence = JobQueue.Fence(job, worker: workerID)

        guard let agent = agents[job.agent] else {
            await finish(job, .failed(error: "agent '\(job.agent)' is not configured on worker \(workerID)", retryable: true), log: log)
            return
        }
        do {
            var container = try await reconciler.ensure(agent)
            let repo = job["repo"] ?? ""
            let number = Int(job["number"] ?? "") ?? 0
            let cwd = try AgentEnvironment.sessionDirectory(agent, repository: repo, number: number)
            if job.attempt > 1 {
                // In every container of the host: an earlier attempt may still run in one retired since.
                var killed = 0
                for other in (try? await reconciler.runningContainers()) ?? [container.containerID] {
                    killed += await runner.killLeftovers(jobID: job.id, agent: agent, container: other)
                }
                if killed > 0 { log.notice("killed \(killed) leftover process(es) of an earlier attempt") }
            }
            var resume = try await queue.sessionID(for: job.session)
            var warnings: [String] = []
            if let stored = resume, !AgentSessionID.isValid(stored) {
                // Written by hand or by an older worker: never let it reach a file name or a CLI argument.
                warnings.append("stored session id '\(StreamJSONParser.bounded(stored, 80))' is not a UUID; dropped it and started a fresh session")
                try await queue.dropStaleSession(job.session, fence: fence)
                resume = nil
            }
            let transcripts = TranscriptStore(queue: queue)
            if let sessionID = resume {
                switch try await transcripts.restore(session: job.session, sessionID: sessionID, agent: agent, cwd: cwd.container) {
                case .restored(let bytes): log.info("restored the session transcript from Redis", metadata: ["bytes": "\(bytes)"])
                case .skipped(let reason):
                    warnings.append("the transcript of session \(sessionID) was not shipped (\(reason)); resuming only works on the host that ran it")
                case .localIsCurrent, .notStored: break
                }
            }
            try await queue.annotate(
                fence,
                [("host", hostID), ("container", String(container.containerID.prefix(12))), ("cwd", cwd.container)]
                    + (container.changes.isEmpty ? [] : [("container_changes", container.changes.joined(separator: "; "))])
                    + (resume.map { [("resumed_from", $0)] } ?? []))
            var newSession = UUID().uuidString.lowercased()
            var outcome: AgentRunner.Outcome
            do {
                outcome = try await runner.run(
                    fence: fence, agent: agent, container: container.containerID, workingDir: cwd.container, prompt: job["prompt"] ?? "",
                    resume: resume, newSessionID: newSession, control: control)
            } catch let gone as AgentRunner.ContainerGone {
                // Replaced (or removed) between the reconcile and the exec: reconcile again, once.
                log.notice("\(gone); reconciling again")
                container = try await reconciler.ensure(agent)
                outcome = try await runner.run(
                    fence: fence, agent: agent, container: container.containerID, workingDir: cwd.container, prompt: job["prompt"] ?? "",
                    resume: resume, newSessionID: newSession, control: control)
            }
            // Not after a timeout: an agent that prints the not-found line could otherwise buy itself a second full run.
            if let stale = resume, outcome.resumeNotFound, outcome.aborted == nil, !outcome.timedOut {
                let warning =
                    "session \(stale) was not found by the agent CLI (transcript missing under projects/ for \(cwd.container)); started a fresh session"
                log.warning("\(warning)")
                warnings.append(warning)
                try await queue.dropStaleSession(job.session, fence: fence)
                resume = nil
                newSession = UUID().uuidString.lowercased()
                outcome = try await runner.run(
                    fence: fence, agent: agent, container: container.containerID, workingDir: cwd.container, prompt: job["prompt"] ?? "",
                    resume: nil, newSessionID: newSession, control: control)
            }
            if outcome.aborted == .lost {
                log.warning("this worker lost the job (its lease lapsed and the job was recovered): agent stopped, nothing recorded")
                return
            }
            if outcome.aborted != nil {
                let released =
                    (try? await queue.release(job, worker: workerID, reason: "worker \(workerID) shut down during the run; re-queued")) ?? false
                log.notice("agent stopped for shutdown; job re-queued", metadata: ["released": "\(released)"])
                return
            }
            var fields: [(String, String)] = [
                ("exit_code", outcome.exitCode.map(String.init) ?? ""), ("duration_ms", String(Int(outcome.duration.seconds * 1000))),
                ("result_subtype", outcome.parsed.subtype ?? ""), ("is_error", outcome.parsed.isError.map { $0 ? "true" : "false" } ?? ""),
                ("cost_usd", outcome.parsed.costUSD.map { String($0) } ?? ""), ("num_turns", outcome.parsed.numTurns.map(String.init) ?? ""),
                ("result", StreamJSONParser.bounded(outcome.parsed.result ?? "", 2000)),
            ]
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
            if outcome.droppedLogLines > 0 {
                warnings.append(
                    "output over queue.log_max_bytes was not stored: \(outcome.droppedLogLines) line(s), \(outcome.droppedLogBytes) bytes")
            }
            let sessionID = outcome.parsed.sessionID ?? (outcome.parsed.sawResult ? (resume ?? newSession) : nil)
            if let sessionID {
                do {
                    let saved = try await transcripts.save(
                        session: job.session, sessionID: sessionID, agent: agent, cwd: cwd.container, host: hostID, fence: fence)
                    if case .overCap(let bytes) = saved {
                        warnings.append("transcript is \(bytes) bytes, over queue.transcript_max_bytes: not shipped, so only this host can resume it")
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
            log.info(
                "job finished",
                metadata: [
                    "outcome": "\(outcome.succeeded ? "succeeded" : "failed")", "exit_code": "\(outcome.exitCode.map(String.init) ?? "-")",
                    "duration_ms": "\(Int((ContinuousClock.now - started).seconds * 1000))", "session_id": "\(sessionID ?? "-")",
                ])
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
