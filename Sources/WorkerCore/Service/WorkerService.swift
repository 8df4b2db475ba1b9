import Foundation
import Logging
import ServiceLifecycle
import Shared
import Synchronization

/// The worker process: N slots that reserve and run jobs, a heartbeat that keeps the lease, and maintenance (promote
/// due retries, recover dead workers' jobs, sweep). Returning means every slot has stopped and every job this worker
/// held was finished or given back.
///
/// Shutdown is two-phase: on SIGTERM slots stop reserving and running agents get `shutdownGrace` to finish; then
/// they are killed and their jobs re-queued without counting the attempt.
package final class WorkerService: Service {
    package struct Options: Sendable {
        var workerID: String
        var hostID: String
        var concurrency: Int
        var agents: [String]
        var shutdownGrace: Duration

        package init(workerID: String, hostID: String, concurrency: Int, agents: [String], shutdownGrace: Duration) {
            self.workerID = workerID
            self.hostID = hostID
            self.concurrency = concurrency
            self.agents = agents
            self.shutdownGrace = shutdownGrace
        }
    }

    let options: Options
    let queue: JobQueue
    let executor: JobExecutor
    let reconciler: ContainerReconciler
    let runner: AgentRunner
    let config: AppConfig
    let logger: Logger
    /// Posts reactions and status comments on the forges; nil when no forge has an API configured.
    let feedback: FeedbackService?
    private let state = ShutdownState()
    /// When the last confirmed lease renewal was sent: the heartbeat sets it, the watchdog and the slots read it.
    private let renewal = LastRenewal()

    package init(
        options: Options, queue: JobQueue, executor: JobExecutor, reconciler: ContainerReconciler, runner: AgentRunner, config: AppConfig,
        logger: Logger, feedback: FeedbackService? = nil
    ) {
        self.feedback = feedback
        self.options = options
        self.queue = queue
        self.executor = executor
        self.reconciler = reconciler
        self.runner = runner
        self.config = config
        self.logger = logger
    }

    package func run() async throws {
        let startedAt = Timestamp.iso()
        let info: [String: String] = [
            "host": options.hostID, "pid": String(getpid()), "agents": options.agents.joined(separator: ","), "slots": String(options.concurrency),
            "started_at": startedAt,
        ]
        // Redis answered the start-up ping; a reply lost now (a dropped connection) must not end the worker.
        try await retrying("register with Redis") {
            let sent = ContinuousClock.now
            try await queue.heartbeat(worker: options.workerID, info: info)
            renewal.set(sent)
        }
        // The lease is kept from now on: reconciling the containers below can take longer than it lasts.
        let background = Task { await self.backgroundLoop(info: info) }
        let feedbackLoop = Task { await self.feedback?.run() }
        let reclaimed = try await retrying("reclaim this worker's earlier jobs") { try await queue.recoverExpired(forcing: options.workerID) }
        if !reclaimed.isEmpty { logger.notice("re-queued jobs left by this worker's previous run", metadata: ["jobs": "\(reclaimed.map(\.jobID))"]) }

        for name in options.agents {
            guard let agent = config.agents[name] else { continue }
            do {
                let result = try await reconciler.ensure(agent)
                logger.info(
                    "agent container ready",
                    metadata: [
                        "agent": "\(name)", "container": "\(result.containerID.prefix(12))", "changes": "\(result.changes.joined(separator: "; "))",
                    ])
            } catch {
                logger.error("agent container not ready; its jobs will fail and retry until fixed: \(error)", metadata: ["agent": "\(name)"])
            }
        }
        do {
            let removed = try await reconciler.removeOrphans(configured: Set(config.agents.keys))
            if !removed.isEmpty { logger.notice("removed containers of agents no longer configured", metadata: ["containers": "\(removed)"]) }
        } catch {
            logger.warning("could not look for orphaned containers: \(error)")
        }

        let limiter = AgentLimiter(limits: config.agents.mapValues(\.concurrency))
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for slot in 0..<options.concurrency {
                    group.addTask { await self.slotLoop(slot, limiter: limiter) }
                }
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        background.cancel()
        _ = await background.value
        // What the last runs changed is posted now if the forge answers within a few seconds; otherwise it stays due in
        // Redis for the next worker (or this one's next start).
        if let feedback {
            feedback.finish()
            let last = Task {
                _ = await feedbackLoop.value
                await feedback.drain()
            }
            let deadline = Task {
                try? await Task.sleep(for: .seconds(5))
                last.cancel()
                feedbackLoop.cancel()
            }
            _ = await last.value
            deadline.cancel()
        }
        for attempt in 1...3 {
            do {
                try await queue.deregister(worker: options.workerID)
                break
            } catch {
                logger.warning("could not deregister (attempt \(attempt) of 3): \(error)")
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        logger.info("worker stopped")
    }

    /// Runs `body` until it succeeds, backing off from 100 ms to 2 s, for up to a minute; then its error stands.
    private func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(60)
        var backoff = Duration.milliseconds(100)
        while true {
            do {
                return try await body()
            } catch {
                guard ContinuousClock.now + backoff < deadline else { throw error }
                logger.warning("could not \(what) (retrying in \(backoff)): \(error)")
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(2))
            }
        }
    }

    private func beginShutdown() {
        guard state.beginShutdown() else { return }
        logger.notice("shutting down: no new jobs; running agents have \(options.shutdownGrace) to finish")
        let grace = options.shutdownGrace
        let state = self.state
        let logger = self.logger
        Task {
            try? await Task.sleep(for: grace)
            let running = state.abortAll()
            if running > 0 { logger.notice("grace period over: stopping \(running) running agent(s) and re-queueing their jobs") }
        }
    }

    private func slotLoop(_ slot: Int, limiter: AgentLimiter) async {
        let consumer = queue.makeConsumer(worker: options.workerID, name: "redis-\(options.workerID)-slot\(slot)")
        defer { consumer.close() }
        var backoff = Duration.milliseconds(250)
        let rotation = (0..<options.agents.count).map { options.agents[($0 + slot) % options.agents.count] }
        while !state.isStopping {
            // No new job while the lease may have lapsed: the watchdog would stop it at once, its attempt counted.
            if renewal.unconfirmed(lease: queue.settings.leaseDuration) {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            let deferred = await reconciler.deferredAgents()
            let claimed = await limiter.claim(deferred.isEmpty ? rotation : rotation.filter { !deferred.contains($0) })
            if claimed.isEmpty {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            let job: ReservedJob?
            do {
                job = try await consumer.reserve(agents: claimed, home: claimed[0])
                backoff = .milliseconds(250)
            } catch {
                await limiter.release(claimed)
                logger.error("cannot reserve jobs: \(error)", metadata: ["slot": "\(slot)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
                continue
            }
            guard let job else {
                await limiter.release(claimed)
                continue
            }
            await limiter.release(claimed.filter { $0 != job.agent })
            let control = RunControl()
            state.register(job.id, attempt: job.attempt, control)
            feedback?.nudge()
            await executor.execute(job, control: control)
            feedback?.nudge()
            state.unregister(job.id)
            await limiter.release([job.agent])
        }
    }

    /// Maintenance: promote due retries, recover dead workers' jobs, sweep. Its calls can be slow; the heartbeat has
    /// its own loop so they never delay the lease.
    private func backgroundLoop(info: [String: String]) async {
        let heartbeat = Task { await self.heartbeatLoop(info: info) }
        let settings = queue.settings
        var lastRecovery = ContinuousClock.now - settings.recoveryInterval
        var unheldLastTime: Set<String> = []
        while !Task.isCancelled {
            let now = ContinuousClock.now
            do {
                try await queue.promoteDue()
                if now - lastRecovery >= settings.recoveryInterval {
                    lastRecovery = now
                    // Ids listed as ours that no slot runs, twice in a row (a reserve in flight is gone by the next
                    // look): a reply was lost after Redis ran the move, or a finish gave up. Give them back.
                    let held = Set(state.held.map(\.id))
                    let unheld = Set(try await queue.processing(worker: options.workerID)).subtracting(held)
                    let stranded = unheld.intersection(unheldLastTime)
                    unheldLastTime = unheld.subtracting(stranded)
                    for (id, outcome) in try await queue.releaseStranded(worker: options.workerID, ids: Array(stranded).filter { !held.contains($0) })
                    {
                        logger.warning(
                            "gave back a job listed as this worker's that no slot runs", metadata: ["job.id": "\(id)", "outcome": "\(outcome)"])
                    }
                    for r in try await queue.recoverExpired() {
                        logger.notice(
                            "recovered a job from a dead worker",
                            metadata: ["job.id": "\(r.jobID)", "dead_worker": "\(r.worker)", "outcome": "\(r.outcome)"])
                    }
                    let dropped = try await queue.sweep()
                    if !dropped.isEmpty { logger.info("dropped idle sessions", metadata: ["sessions": "\(dropped)"]) }
                    do {
                        try await queue.pruneFeedback(agents: config.agents.keys.sorted())
                    } catch {
                        logger.warning("could not prune the forge-feedback lists: \(error)")
                    }
                    do {
                        _ = try await reconciler.removeRetired()
                    } catch {
                        logger.warning("could not look for retired containers: \(error)")
                    }
                    await reportContainers()
                    do {
                        _ = await runner.reapOrphans(containers: try await reconciler.runningContainers()) { [queue] jobID, marker in
                            await Self.isCurrentRun(queue: queue, jobID: jobID, marker: marker)
                        }
                    } catch {
                        logger.warning("could not look for orphaned runs: \(error)")
                    }
                }
            } catch {
                logger.error("maintenance failed: \(error)")
            }
            try? await Task.sleep(for: settings.promoteInterval)
        }
        heartbeat.cancel()
        _ = await heartbeat.value
    }

    /// Publishes each agent's container state on this host for the dashboard (it has no Docker access of its own).
    private func reportContainers() async {
        var reports: [ContainerReport] = []
        for name in options.agents {
            guard let agent = config.agents[name] else { continue }
            var report = ContainerReport(
                host: options.hostID, agent: name, state: .missing, containerID: "", differences: [], worker: options.workerID, checkedAt: Date())
            do {
                if let found = try await reconciler.inspect(agent) {
                    report.containerID = String(found.id.prefix(12))
                    report.differences = found.differences
                    report.state = found.differences.isEmpty ? .matches : .drifted
                }
            } catch {
                report.state = .unknown
                report.differences = ["\(error)"]
            }
            reports.append(report)
        }
        do {
            try await queue.reportContainers(reports)
        } catch {
            logger.info("could not publish container states: \(error)")
        }
    }

    /// Whether the run `marker` is its job's current run: the job is running and names this run (no `run` field at all:
    /// a record claimed by an older worker). A dead worker's run stops being current when recovery moves its job on —
    /// the lease is not judged here, so a heartbeat late by a moment never costs a live run. Any doubt (Redis
    /// unreachable) says yes.
    static func isCurrentRun(queue: JobQueue, jobID: String, marker: String) async -> Bool {
        do {
            guard let job = try await queue.runState(jobID) else { return false }
            return job.status == .running && (job.run.map { $0 == marker } ?? true)
        } catch {
            return true
        }
    }

    /// Renews the lease every `heartbeatInterval`, then checks that every job this worker runs still names it and its
    /// attempt. One that does not was recovered after the lease lapsed (a Redis outage longer than the lease, a
    /// stalled process) and may already run elsewhere: its agent is stopped at once and nothing of it is recorded.
    private func heartbeatLoop(info: [String: String]) async {
        let settings = queue.settings
        let watchdog = Task { await self.leaseWatchdog(renewed: renewal) }
        while !Task.isCancelled {
            var pause = settings.heartbeatInterval
            do {
                let sent = ContinuousClock.now
                try await queue.heartbeat(worker: options.workerID, info: info)
                renewal.set(sent)
                for id in try await queue.lostJobs(worker: options.workerID, held: state.held) where state.abort(id, reason: .lost) {
                    logger.warning("lost a running job (lease lapsed, job recovered): stopping its agent", metadata: ["job.id": "\(id)"])
                }
            } catch {
                logger.error("heartbeat failed: \(error)")
                pause = min(pause, .seconds(1))  // try again soon: slots wait for a confirmed lease
            }
            try? await Task.sleep(for: pause)
        }
        watchdog.cancel()
        _ = await watchdog.value
    }

    /// Stops every run once the lease may have lapsed: any other worker may then recover those jobs and run them again,
    /// so ours stop first. On its own clock — a heartbeat call to a Redis that hangs rather than refuses takes as long
    /// as the command timeout, which can be longer than the lease. Fires a little before the lease ends (a tenth of
    /// it, at most a second), counted from when the last confirmed renewal was sent.
    private func leaseWatchdog(renewed: LastRenewal) async {
        let lease = queue.settings.leaseDuration
        var stopped: Set<String> = []
        while !Task.isCancelled {
            try? await Task.sleep(for: min(queue.settings.heartbeatInterval / 2, .milliseconds(250)))
            guard renewed.unconfirmed(lease: lease) else {
                stopped.removeAll()
                continue
            }
            let since = ContinuousClock.now - renewed.get()
            // Not `.lost`: the lease may yet have held. The executor gives the job back (fenced, attempt not counted)
            // once Redis answers; if another worker took it meanwhile, the fence says so and nothing is written.
            for (id, _) in state.held where !stopped.contains(id) && state.abort(id, reason: .leaseUnconfirmed) {
                stopped.insert(id)
                logger.warning(
                    "lease not renewed for \(since): stopping the agent of a job another worker may recover once the lease (\(lease)) ends",
                    metadata: ["job.id": "\(id)"])
            }
        }
    }
}

/// When the last confirmed lease renewal was sent; shared by the heartbeat and its watchdog.
final class LastRenewal: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func set(_ value: ContinuousClock.Instant) { instant.withLock { $0 = value } }
    func get() -> ContinuousClock.Instant { instant.withLock { $0 } }

    /// Whether the lease may end within a tenth of it (at most 1 s): runs must stop, and no new one may start.
    func unconfirmed(lease: Duration) -> Bool { ContinuousClock.now - get() >= lease - min(lease / 10, .seconds(1)) }
}

/// Shared between the slots and the shutdown path.
final class ShutdownState: Sendable {
    private struct State {
        var stopping = false
        var abortedAll = false
        var running: [String: (attempt: Int, control: RunControl)] = [:]
    }

    private let state = Mutex(State())

    var isStopping: Bool { state.withLock { $0.stopping } }

    /// Returns false if shutdown had already begun.
    func beginShutdown() -> Bool {
        state.withLock { state in
            if state.stopping { return false }
            state.stopping = true
            return true
        }
    }

    func register(_ id: String, attempt: Int, _ control: RunControl) {
        let abortNow = state.withLock { state in
            state.running[id] = (attempt, control)
            return state.stopping && state.abortedAll
        }
        if abortNow { control.abort(.shutdown) }
    }

    func unregister(_ id: String) { state.withLock { $0.running[id] = nil } }

    /// Aborts every running job (and any registered later); returns how many were running.
    func abortAll() -> Int {
        let controls = state.withLock { state in
            state.abortedAll = true
            return state.running.values.map(\.control)
        }
        for c in controls { c.abort(.shutdown) }
        return controls.count
    }

    /// The jobs running now, with their attempts.
    var held: [(id: String, attempt: Int)] { state.withLock { $0.running.map { ($0.key, $0.value.attempt) } } }

    /// Stops the run of `id` (it was lost); returns whether it was running.
    @discardableResult
    func abort(_ id: String, reason: RunControl.Reason) -> Bool {
        let control = state.withLock { $0.running[id]?.control }
        control?.abort(reason)
        return control != nil
    }
}
