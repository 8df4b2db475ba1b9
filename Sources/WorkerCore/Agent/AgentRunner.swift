import Foundation
import Logging
import Shared
import Synchronization

/// Runs the agent CLI once inside its container (docker exec semantics through the Engine API) and reports what
/// happened. Output lines go to the job's capped log in Redis while the agent runs.
package struct AgentRunner: Sendable {
    let docker: DockerClient
    let queue: JobQueue
    let logger: Logger
    /// Where run cgroups are made; nil when this worker cannot reach cgroupfs (then the marker kill is all there is).
    var cgroups: RunCgroup.Hierarchy? = .detect()
    /// When each exec was first seen created but not started (shared by copies of this runner).
    let unstartedExecs = UnstartedExecs()

    package init(docker: DockerClient, queue: JobQueue, logger: Logger) {
        self.docker = docker
        self.queue = queue
        self.logger = logger
    }

    package struct Outcome: Sendable {
        var exitCode: Int?
        var parsed = StreamJSONParser()
        var timedOut = false
        var aborted: RunControl.Reason?
        /// The run could not be put in its cgroup; it was killed before the agent started.
        var containmentFailed: String?
        /// Why this run was not contained in a cgroup (set when the worker fell back to the marker kill).
        var containmentWarning: String?
        var stderrTail: [String] = []
        var duration: Duration = .zero
        /// When the run was cut (timed out, stopped, not contained), from the exec's start; nil when it ended itself.
        var cutAfter: Duration?
        var killedProcesses = 0
        /// Processes the run left behind after its agent exited, killed with the run's cgroup.
        var leftoversKilled = 0
        /// Processes of the agent's uid found outside every run's cgroup after this run, and killed.
        var straysKilled = 0
        /// Output the job's log did not store (over `queue.log_max_bytes`).
        package var droppedLogLines = 0
        var droppedLogBytes = 0
        /// Output lines Redis refused, being near its `maxmemory`.
        var refusedLogLines = 0
        /// When the agent's first output line arrived (the process is running).
        package var firstOutputAt: ContinuousClock.Instant?

        package var succeeded: Bool { !timedOut && aborted == nil && containmentFailed == nil && exitCode == 0 && parsed.isError != true }

        /// The CLI did not know the `--resume` id.
        var resumeNotFound: Bool {
            exitCode != 0
                && (parsed.errors.contains { $0.contains(StreamJSONParser.noConversation) }
                    || stderrTail.contains { $0.contains(StreamJSONParser.noConversation) })
        }

        package var errorSummary: String {
            if timedOut {
                return "timed out after \(StatusComment.span((cutAfter ?? duration).seconds)); agent processes killed (\(killedProcesses))"
            }
            if aborted == .lost { return "stopped: this worker lost the job (lease lapsed; recovered elsewhere)" }
            if aborted == .leaseUnconfirmed { return "stopped: this worker could not renew its lease in time" }
            if aborted != nil { return "stopped by worker shutdown" }
            if let containmentFailed { return "the run could not be contained, so the agent was not started: \(containmentFailed)" }
            if let first = parsed.errors.first { return first }
            if parsed.isError == true, let r = parsed.result { return StreamJSONParser.bounded(r, 500) }
            if let last = stderrTail.last(where: { !$0.isEmpty }) {
                return "exit \(exitCode.map(String.init) ?? "?"): \(StreamJSONParser.bounded(last, 500))"
            }
            if !parsed.sawResult { return "exit \(exitCode.map(String.init) ?? "?") without a result line" }
            return "exit \(exitCode.map(String.init) ?? "?")"
        }
    }

    /// The command for one run: the agent's template, its permission flags, then `--resume <id>` or `--session-id
    /// <new id>`. The prompt is not an argument: it is the run's standard input (a file the worker writes, read-only to
    /// the agent), so it has no `execve` size limit and forge text can never be read as an option or a subcommand.
    package static func command(template: [String], permissions: AgentSettings.Permissions, resume: String?, newSessionID: String) -> [String] {
        var command = template.filter { $0 != AgentSettings.promptPlaceholder } + permissions.arguments
        if let resume { command += ["--resume", resume] } else { command += ["--session-id", newSessionID] }
        return command
    }

    /// Writes the run's prompt where its wrapper reads it (`<credentials_dir>/run/<marker>.prompt`, `root:<gid>` 0440:
    /// the agent can read it, not change it), atomically and without following links.
    static func writePrompt(_ prompt: String, agent: AgentSettings, marker: String) throws {
        let run = try DirectoryHandle.openTrusted(agent.credentialsDir).subdirectory(AgentSettings.promptFolder, create: 0o750, owner: (0, agent.gid))
        try run.writeFileAtomically("\(marker).prompt", bytes: Array(prompt.utf8), mode: 0o440, owner: (0, agent.gid))
    }

    static func removePrompt(agent: AgentSettings, marker: String) {
        guard let run = try? DirectoryHandle.openTrusted(agent.credentialsDir).subdirectory(AgentSettings.promptFolder) else { return }
        unlinkat(run.fd, "\(marker).prompt", 0)
    }

    /// Kills what an earlier attempt of this job left running in the container (its worker died mid-run), so two
    /// agents never work on the same job at once: the attempt's run cgroups and any agent-uid process outside every
    /// run cgroup, or — where runs are not contained — every process carrying the job's marker. Returns how many
    /// processes were killed.
    package func killLeftovers(jobID: String, agent: AgentSettings, container: String) async -> Int {
        if case .success(let (hierarchy, directory)) = await containment(container: container) {
            let prefix = String(RunCgroup.marker(jobID: jobID).split(separator: ".").first ?? "") + "."
            let runs =
                (try? await Offload.run {
                    RunCgroup.existing(under: directory, hierarchy: hierarchy, markerPrefix: prefix).reduce(0) { $0 + $1.killAll() }
                }) ?? 0
            return runs + (await sweepStrays(container: container, directory: directory, uid: agent.uid))
        }
        return await kill(pattern: "^FORGE_HOOKS_RUN=\(jobID)\\.", container: container, user: agent.user)
    }

    /// Kills runs in `containers` that no live worker owns: run cgroups and waiting wrappers whose job is no longer
    /// running, names another run (a new attempt, on this host or another), or is held by a worker whose lease lapsed.
    /// They are what a SIGKILLed worker leaves: an agent nobody times out, or a wrapper stopped forever. `isCurrent`
    /// answers from Redis; on any doubt it says true and the run is left for the next look. Returns how many
    /// processes were killed.
    func reapOrphans(containers: [String], isCurrent: @Sendable (_ jobID: String, _ marker: String) async -> Bool) async -> Int {
        var killed = 0
        for container in containers {
            guard case .success(let (hierarchy, directory)) = await containment(container: container) else { continue }
            let found =
                (try? await Offload.run { () -> ([RunCgroup], [(pid: Int32, marker: String)]) in
                    (RunCgroup.existing(under: directory, hierarchy: hierarchy, markerPrefix: nil), RunCgroup.waitingWrappers(under: directory))
                })
            guard let (cgroups, wrappers) = found else { continue }
            for cgroup in cgroups where await !isCurrent(RunCgroup.jobID(ofMarker: cgroup.marker), cgroup.marker) {
                let n = (try? await Offload.run { cgroup.killAll() }) ?? 0
                if n > 0 {
                    logger.warning(
                        "killed an orphaned run: its worker is gone or its job moved on", metadata: ["run": "\(cgroup.marker)", "processes": "\(n)"])
                }
                killed += n
            }
            // Agent processes outside every run that no exec is: swept here too, not only when a run of that agent ends.
            let strays = await sweepStrays(container: container, directory: directory, uid: nil)
            if strays > 0 {
                logger.warning(
                    "killed agent processes found outside every run cgroup", metadata: ["container": "\(container)", "count": "\(strays)"])
                killed += strays
            }
            for wrapper in wrappers where await !isCurrent(RunCgroup.jobID(ofMarker: wrapper.marker), wrapper.marker) {
                let gone =
                    (try? await Offload.run { RunCgroup.wrapperMarker(wrapper.pid) == wrapper.marker && Foundation.kill(wrapper.pid, SIGKILL) == 0 })
                    ?? false
                if gone { killed += 1 }
            }
        }
        return killed
    }

    /// Kills the processes in the container's own cgroup (outside every run) of `uid` (nil: any but root's and the
    /// keeper's) that are not the process of one of the container's execs. Only Docker puts a process there — an exec
    /// (a run's wrapper until the worker adopts it, an operator's `docker exec`) — so whatever is not an exec's own pid
    /// was forked or injected from one: a stray, however young and whoever its parent. The execs' pids come from
    /// Docker; while one of them is still starting (no pid yet) nothing is killed, and the next sweep (at the next
    /// run's end, or maintenance) looks again. Returns how many were killed.
    func sweepStrays(container: String, directory: String, uid: UInt32?) async -> Int {
        let candidates = (try? await Offload.run { RunCgroup.strayCandidates(under: directory, uid: uid) }) ?? []
        if candidates.isEmpty { return 0 }
        guard let spared = await execPIDs(container: container) else { return 0 }
        let targets = candidates.filter { !spared.contains($0) }
        if targets.isEmpty { return 0 }
        return (try? await Offload.run { RunCgroup.killStrays(targets, under: directory, uid: uid) }) ?? 0
    }

    /// The host pids of the container's running execs, or nil when Docker does not answer or an exec may be starting
    /// (running without a pid yet, or created and not ended).
    func execPIDs(container: String) async -> Set<Int32>? {
        guard let details = try? await docker.inspectContainer(container) else { return nil }
        var pids = Set<Int32>()
        var starting = false
        var unstarted: [String] = []
        for id in details.execIDs {
            guard let state = try? await docker.inspectExec(id, timeout: .seconds(5)) else { return nil }
            if state.running {
                if state.pid > 0 { pids.insert(Int32(state.pid)) } else { starting = true }
            } else if state.exitCode == nil {
                unstarted.append(id)
            }
        }
        // Created and not started yet: maybe starting now, or never to be (a worker cut off between create and start).
        // Waited for 30 s, then no longer: one such exec must not turn the sweep off for good.
        if unstartedExecs.anyRecent(unstarted, in: container, within: .seconds(30)) { starting = true }
        return starting ? nil : pids
    }

    /// Whether runs in this container can be put in cgroups: the hierarchy and the container's cgroup directory, or
    /// why not.
    func containment(container: String) async -> Result<(RunCgroup.Hierarchy, String), RunCgroup.SetupError> {
        guard let cgroups else {
            return .failure(.system("no cgroup hierarchy is mounted where the worker runs (/proc/self/mountinfo)"))
        }
        let inspect: ContainerDetails?
        do { inspect = try await docker.inspectContainer(container) } catch { return .failure(.system("\(error)")) }
        guard let inspect, !inspect.id.isEmpty, inspect.state.pid > 0 else { return .failure(.system("container \(container) is not running")) }
        return RunCgroup.probe(hierarchy: cgroups, containerID: inspect.id, containerPID: inspect.state.pid).map { (cgroups, $0) }
    }

    /// This worker no longer holds the job (its lease lapsed and the job was recovered): nothing ran.
    struct JobLost: Error, CustomStringConvertible {
        let jobID: String
        var description: String { "job \(jobID) is no longer held by this worker (recovered after its lease lapsed); not run" }
    }

    /// The container went away (or stopped) between the reconcile and the exec: nothing ran.
    struct ContainerGone: Error, CustomStringConvertible {
        let container: String
        let docker: DockerError
        var description: String { "container \(container.prefix(12)) is gone or stopped (\(docker.message))" }
    }

    /// Runs the agent once for the job `fence` names; the job's log is written only while the fence holds.
    package func run(
        fence: JobQueue.Fence, agent: AgentSettings, container: String, workingDir: String, prompt: String, resume: String?,
        newSessionID: String, control: RunControl
    ) async throws -> Outcome {
        let jobID = fence.jobID
        let marker = RunCgroup.marker(jobID: jobID)
        var outcome = Outcome()
        let base = Self.command(template: agent.command, permissions: agent.permissions, resume: resume, newSessionID: newSessionID)
        var hierarchy: RunCgroup.Hierarchy?
        var containerDirectory: String?
        switch await containment(container: container) {
        case .success(let (h, directory)):
            hierarchy = h
            containerDirectory = directory
        case .failure(let why):
            outcome.containmentWarning =
                "this run was not put in its own cgroup (\(why)); a process the agent detaches can escape the timeout kill"
            logger.warning("run not contained", metadata: ["job.id": "\(jobID)", "reason": "\(why)"])
        }
        let command = hierarchy != nil ? RunCgroup.wrap(base, marker: marker) : RunCgroup.uncontained(base, marker: marker)
        // Recorded before the exec exists: a run whose marker the job does not name is an orphan to every worker.
        guard try await queue.annotate(fence, [("run", marker)]) else { throw JobLost(jobID: jobID) }
        try await Offload.run { try Self.writePrompt(prompt, agent: agent, marker: marker) }
        defer { Self.removePrompt(agent: agent, marker: marker) }
        let exec: String
        do {
            exec = try await docker.createExec(
                container: container, command: command, user: agent.user, workingDir: workingDir,
                env: ["FORGE_HOOKS_RUN=\(marker)", "CLAUDE_CONFIG_DIR=\(agent.configDir)"])
        } catch {
            let status = error.status
            if status == 404 || status == 409 { throw ContainerGone(container: container, docker: error) }
            throw error
        }
        let sink = OutputSink(queue: queue, fence: fence)
        let adopted = AdoptedCgroup()
        let started = ContinuousClock.now
        enum Ending: Sendable { case finished, streamFailed(String), timedOut, aborted(RunControl.Reason), containmentFailed(String) }
        let docker = self.docker
        let ending: Ending = await withTaskGroup(of: Ending?.self) { group in
            group.addTask {
                do {
                    try await docker.startExec(exec) { lines in await sink.add(lines) }
                    return .finished
                } catch {
                    return Task.isCancelled ? nil : .streamFailed("\(error)")
                }
            }
            if let hierarchy, let containerDirectory {
                group.addTask {
                    switch await Self.adopt(exec: exec, marker: marker, hierarchy: hierarchy, containerDirectory: containerDirectory, docker: docker)
                    {
                    case .success(let cgroup):
                        adopted.set(cgroup)
                        return nil
                    case .failure(let error): return .containmentFailed("\(error)")
                    }
                }
            }
            group.addTask {
                do { try await Task.sleep(for: agent.timeout) } catch { return nil }
                return .timedOut
            }
            group.addTask { await control.wait().map { .aborted($0) } }
            var first: Ending?
            while first == nil, let next = await group.next() { first = next }
            group.cancelAll()
            return first ?? .finished
        }
        switch ending {
        case .finished: break
        case .timedOut: outcome.timedOut = true
        case .aborted(let reason): outcome.aborted = reason
        case .containmentFailed(let message): outcome.containmentFailed = message
        case .streamFailed(let message): logger.warning("lost the agent's output stream", metadata: ["job.id": "\(jobID)", "error": "\(message)"])
        }
        let cgroup = adopted.get()
        let cut = outcome.timedOut || outcome.aborted != nil || outcome.containmentFailed != nil
        if cut { outcome.cutAfter = ContinuousClock.now - started }
        let containment = hierarchy.flatMap { h in containerDirectory.map { (hierarchy: h, directory: $0) } }
        /// Kills what of this run is alive: its cgroup; never adopted (contained, but cut before its move: the agent
        /// never started, the wrapper execs it only inside its run cgroup), its waiting wrapper, from the host, with no
        /// agent-uid helper outside every run cgroup; uncontained, what carries its environment marker.
        func killRun() async -> Int {
            if let cgroup { return (try? await Offload.run { cgroup.killAll() }) ?? 0 }
            if let (hierarchy, directory) = containment {
                return (try? await Offload.run { RunCgroup.killUnadopted(under: directory, hierarchy: hierarchy, marker: marker) }) ?? 0
            }
            return await kill(pattern: "^FORGE_HOOKS_RUN=\(marker)$", container: container, user: agent.user)
        }
        // Cut before its adoption (a short timeout, or a Docker slow to start the exec), the wrapper waits, stopped, for
        // a cgroup that will never come, or has not started yet: killed now, and again while the exec still runs.
        if cut { outcome.killedProcesses += await killRun() }
        let sweepUnadopted = cut && cgroup == nil && containment != nil
        // The exit code arrives once the process is gone.
        var state = DockerClient.ExecState(running: true, exitCode: nil, pid: 0, containerID: nil)
        let deadline = ContinuousClock.now + .seconds(10)
        var stopped = false
        var lastSweep = ContinuousClock.now
        repeat {
            if sweepUnadopted, ContinuousClock.now - lastSweep > .milliseconds(100) {
                lastSweep = .now
                outcome.killedProcesses += await killRun()
            }
            do {
                state = try await docker.inspectExec(exec, timeout: .seconds(2))
                // Cut before adoption, the exec's own process is the wrapper — or whatever was injected into it, which
                // may have rewritten the command line the marker kill looks for. Docker's pid is not forgeable: killed
                // while it is still in the container's own cgroup (never in a run's: that would be another run).
                if sweepUnadopted, state.running, state.pid > 0, let (_, directory) = containment {
                    let pid = Int32(state.pid)
                    if (try? await Offload.run { RunCgroup.killStrays([pid], under: directory, uid: nil) }) == 1 {
                        outcome.killedProcesses += 1
                    }
                }
            } catch {
                // The stream ended and the engine does not answer (dockerd restarting, gone or frozen): the output is
                // lost whatever the agent does now, so it must not go on unsupervised. Stop it at once. (An HTTP
                // error answer is asked again.)
                if error.status == 0, !stopped, let cgroup {
                    stopped = true
                    logger.warning(
                        "the output stream ended and Docker does not answer: stopping the run", metadata: ["job.id": "\(jobID)", "error": "\(error)"])
                    outcome.killedProcesses += (try? await Offload.run { cgroup.killAll() }) ?? 0
                }
            }
            if state.running { try? await Task.sleep(for: .milliseconds(25)) }
        } while state.running && ContinuousClock.now < deadline
        // Whatever the run started and left behind dies with it: the container is long-lived and shared. (Uncontained,
        // the environment marker is all there is to find it by: a process that cleared its environment escapes.)
        let killed = await killRun()
        if cut && cgroup == nil { outcome.killedProcesses += killed } else { outcome.leftoversKilled = killed }
        // Anything of the agent's uid outside every run cgroup got there by injecting into a process that was not in one.
        if let (_, directory) = containment {
            let strays = await sweepStrays(container: container, directory: directory, uid: agent.uid)
            if strays > 0 {
                outcome.straysKilled = strays
                logger.warning("killed agent processes found outside every run cgroup", metadata: ["job.id": "\(jobID)", "count": "\(strays)"])
            }
        }
        outcome.exitCode = state.exitCode
        outcome.duration = ContinuousClock.now - started
        let (parsed, stderr, firstAt) = await sink.finish()
        outcome.parsed = parsed
        outcome.stderrTail = stderr
        outcome.firstOutputAt = firstAt
        (outcome.droppedLogLines, outcome.droppedLogBytes, outcome.refusedLogLines) = await (
            sink.droppedLines, sink.droppedBytes, sink.refusedLines
        )
        return outcome
    }

    /// Finds the exec's stopped wrapper, then moves it into its run cgroup.
    ///
    /// The wrapper is looked for in the container's own `cgroup.procs` on the host (a local read every 2 ms) by its
    /// exact command line with this run's marker, and confirmed against the exec's `Pid` from Docker once it is there.
    /// Polling Docker instead slowed the exec start itself (about +20 ms at 5 ms intervals, +60 ms at 2 ms).
    private static func adopt(
        exec: String, marker: String, hierarchy: RunCgroup.Hierarchy, containerDirectory: String, docker: DockerClient
    ) async -> Result<RunCgroup, RunCgroup.SetupError> {
        let deadline = ContinuousClock.now + .seconds(10)
        var lastDockerLook = ContinuousClock.now
        while ContinuousClock.now < deadline {
            let found = (try? await Offload.run { RunCgroup.waitingWrapper(under: containerDirectory, marker: marker) }) ?? nil
            if found != nil || ContinuousClock.now - lastDockerLook > .milliseconds(250) {
                lastDockerLook = .now
                guard let state = try? await docker.inspectExec(exec) else { return .failure(.system("cannot inspect exec \(exec.prefix(12))")) }
                if !state.running && state.exitCode != nil { return .failure(.system("the exec ended before it could be contained")) }
                if state.pid > 0, let container = state.containerID, found == nil || found == Int32(state.pid) {
                    return (try? await Offload.run { RunCgroup.adopt(pid: state.pid, marker: marker, hierarchy: hierarchy, containerID: container) })
                        ?? .failure(.system("cgroup set-up did not run"))
                }
            }
            do { try await Task.sleep(for: .milliseconds(5)) } catch { return .failure(.system("cancelled")) }
        }
        return .failure(.system("the exec's wrapper did not appear within 10 s"))
    }

    /// SIGKILLs every process in the container that carries this run's marker in its environment (the agent and all
    /// its children), until none is left. Works without seeing the host's pids. Runs as the agent's own user: root in
    /// the container lacks CAP_SYS_PTRACE and cannot read another user's /proc/<pid>/environ. Returns how many were killed.
    /// `pattern` is a grep regex over the `FORGE_HOOKS_RUN=…` line.
    func kill(pattern: String, container: String, user: String) async -> Int {
        // stderr silenced first: a `< /proc/N/environ` that fails (a process gone, or not ours) prints before any
        // 2> of its own applies, and Docker may deliver that stderr after the count on stdout.
        let script = """
            exec 2>/dev/null
            n=0
            for round in 1 2 3 4 5 6 7 8 9 10; do
              found=0
              for d in /proc/[0-9]*; do
                [ "$d" = "/proc/$$" ] && continue
                if tr '\\0' '\\n' < "$d/environ" 2>/dev/null | grep -q '\(pattern)'; then
                  kill -9 "${d#/proc/}" 2>/dev/null && found=$((found+1))
                fi
              done
              n=$((n+found))
              [ "$found" = 0 ] && break
              sleep 0.1
            done
            echo "$n"
            """
        do {
            let (_, lines) = try await docker.run(container: container, command: ["sh", "-c", script], user: user)
            return lines.compactMap { Int($0) }.last ?? 0
        } catch {
            logger.error("could not kill the agent's processes", metadata: ["container": "\(container)", "error": "\(error)"])
            return 0
        }
    }
}

/// Execs seen created but not started, with when each was first seen.
final class UnstartedExecs: Sendable {
    private let seen = Mutex<[String: [String: ContinuousClock.Instant]]>([:])

    /// Notes `ids` of `container` (forgetting its execs no longer listed) and says whether any was first seen less
    /// than `within` ago.
    func anyRecent(_ ids: [String], in container: String, within: Duration, now: ContinuousClock.Instant = .now) -> Bool {
        seen.withLock { seen in
            var mine = (seen[container] ?? [:]).filter { ids.contains($0.key) }
            for id in ids where mine[id] == nil { mine[id] = now }
            seen[container] = mine.isEmpty ? nil : mine
            return ids.contains { now - mine[$0]! < within }
        }
    }
}

/// The run cgroup once the adopting task has made it.
final class AdoptedCgroup: Sendable {
    private let value = Mutex<RunCgroup?>(nil)
    func set(_ cgroup: RunCgroup) { value.withLock { $0 = cgroup } }
    func get() -> RunCgroup? { value.withLock { $0 } }
}

/// Collects an agent's output: parses stream-json, keeps a stderr tail, and appends lines to the job's Redis log in
/// small batches so `redis-cli LRANGE hooks:log:<id> 0 -1` follows a running job.
///
/// Bounded whatever the agent prints: a stored line keeps at most `logLineMaxBytes`, the job's log at most
/// `queue.log_max_bytes` (then one note says so and only the final `result` line is still stored), the stderr tail
/// 20 lines of 1,000 characters. The parser sees each line up to the demuxer's cap.
actor OutputSink {
    static let logLineMaxBytes = 64 << 10
    static let maxLinesPerFlush = 1000
    static let lineOverheadBytes = 64

    let queue: JobQueue
    let fence: JobQueue.Fence
    private let maxBytes: Int
    private var parser = StreamJSONParser()
    private var stderrTail: [String] = []
    private var pending: [String] = []
    private var pendingBytes = 0
    private var lastFlush = ContinuousClock.now
    private var firstLineAt: ContinuousClock.Instant?
    private var storedBytes = 0
    private(set) var droppedLines = 0
    private(set) var droppedBytes = 0
    /// Lines Redis refused because it was near its `maxmemory` (`queue.redis_headroom`).
    private(set) var refusedLines = 0

    init(queue: JobQueue, fence: JobQueue.Fence) {
        self.queue = queue
        self.fence = fence
        self.maxBytes = queue.settings.logMaxBytes
    }

    func add(_ lines: [(DockerStreamDemuxer.Stream, String)]) async {
        if firstLineAt == nil { firstLineAt = .now }
        for (stream, line) in lines {
            // A burst of short lines arrives in one batch: sent to Redis 1,000 lines at a time at most.
            if pending.count >= Self.maxLinesPerFlush { await flush() }
            if stream == .stdout {
                let wasResult = parser.sawResult
                parser.consume(line)
                store(line, always: parser.sawResult && !wasResult)
            } else {
                stderrTail.append(StreamJSONParser.bounded(line, 1000))
                if stderrTail.count > 20 { stderrTail.removeFirst() }
                store("stderr: \(line)", always: false)
            }
        }
        if pending.count >= 50 || pendingBytes >= 256 << 10 || ContinuousClock.now - lastFlush > .milliseconds(200) { await flush() }
    }

    /// Queues a line for the log if the byte budget allows (`always`: the result line, stored even past the budget).
    private func store(_ line: String, always: Bool) {
        var line = line
        if line.utf8.count > Self.logLineMaxBytes {
            let cut = line.utf8.count - Self.logLineMaxBytes
            line = String(decoding: line.utf8.prefix(Self.logLineMaxBytes), as: UTF8.self) + " … [log line cut: \(cut) more bytes not stored]"
        }
        // Each stored line costs Redis more than its bytes: charge an overhead, so a flood of empty lines is bounded too.
        let size = line.utf8.count + Self.lineOverheadBytes
        if storedBytes + size > maxBytes && !always {
            if droppedLines == 0 {
                let note =
                    "[forge-hooks] log truncated: this job's output passed queue.log_max_bytes (\(maxBytes) bytes); "
                    + "later lines are counted, not stored (the final result line still is)"
                pending.append(note)
                pendingBytes += note.utf8.count
            }
            droppedLines += 1
            droppedBytes += line.utf8.count
            return
        }
        storedBytes += size
        pending.append(line)
        pendingBytes += size
    }

    private func flush() async {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending = []
        pendingBytes = 0
        lastFlush = .now
        if (try? await queue.appendLog(fence, lines: batch)) == .overBudget { refusedLines += batch.count }
    }

    func finish() async -> (StreamJSONParser, [String], ContinuousClock.Instant?) {
        if droppedLines > 0 {
            pending.append("[forge-hooks] log truncated: \(droppedLines) line(s), \(droppedBytes) bytes of output not stored")
        }
        await flush()
        return (parser, stderrTail, firstLineAt)
    }
}
