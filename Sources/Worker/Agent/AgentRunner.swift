import Foundation
import Logging
import Shared

/// Runs the agent CLI once inside its container (docker exec semantics through the Engine API) and reports what
/// happened. Output lines go to the job's capped log in Redis while the agent runs.
struct AgentRunner: Sendable {
    let docker: DockerClient
    let queue: JobQueue
    let logger: Logger

    struct Outcome: Sendable {
        var exitCode: Int?
        var parsed = StreamJSONParser()
        var timedOut = false
        var aborted: RunControl.Reason?
        var stderrTail: [String] = []
        var duration: Duration = .zero
        var killedProcesses = 0
        /// When the agent's first output line arrived (the process is running).
        var firstOutputAt: ContinuousClock.Instant?

        var succeeded: Bool { !timedOut && aborted == nil && exitCode == 0 && parsed.isError != true }

        /// The CLI did not know the `--resume` id.
        var resumeNotFound: Bool {
            exitCode != 0
                && (parsed.errors.contains { $0.contains(StreamJSONParser.noConversation) }
                    || stderrTail.contains { $0.contains(StreamJSONParser.noConversation) })
        }

        var errorSummary: String {
            if timedOut { return "timed out after \(duration.seconds.rounded())s; agent processes killed (\(killedProcesses))" }
            if aborted != nil { return "stopped by worker shutdown" }
            if let first = parsed.errors.first { return first }
            if parsed.isError == true, let r = parsed.result { return String(r.prefix(500)) }
            if let last = stderrTail.last(where: { !$0.isEmpty }) { return "exit \(exitCode.map(String.init) ?? "?"): \(last.prefix(500))" }
            if !parsed.sawResult { return "exit \(exitCode.map(String.init) ?? "?") without a result line" }
            return "exit \(exitCode.map(String.init) ?? "?")"
        }
    }

    /// The command for one run: the agent's template with `{{prompt}}` filled in, plus `--resume <id>` or
    /// `--session-id <new id>`.
    static func command(template: [String], prompt: String, resume: String?, newSessionID: String) -> [String] {
        var command = template.map { $0.replacingOccurrences(of: "{{prompt}}", with: prompt) }
        if let resume { command += ["--resume", resume] } else { command += ["--session-id", newSessionID] }
        return command
    }

    /// Kills what an earlier attempt of this job left running in the container (its worker died mid-run), so two
    /// agents never work on the same job at once. Returns how many processes were killed.
    func killLeftovers(jobID: String, agent: AgentSettings, container: String) async -> Int {
        await kill(pattern: "^FORGE_HOOKS_RUN=\(jobID)\\.", container: container, user: agent.user)
    }

    func run(
        jobID: String, agent: AgentSettings, container: String, workingDir: String, prompt: String, resume: String?, newSessionID: String,
        control: RunControl
    ) async throws -> Outcome {
        let marker = "\(jobID).\(UUID().uuidString.prefix(8))"
        let command = Self.command(template: agent.command, prompt: prompt, resume: resume, newSessionID: newSessionID)
        let exec = try await docker.createExec(
            container: container, command: command, user: agent.user, workingDir: workingDir,
            env: ["FORGE_HOOKS_RUN=\(marker)", "CLAUDE_CONFIG_DIR=\(agent.configDir)"])
        let sink = OutputSink(queue: queue, jobID: jobID)
        let started = ContinuousClock.now
        enum Ending: Sendable { case finished, streamFailed(String), timedOut, aborted(RunControl.Reason) }
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
        var outcome = Outcome()
        switch ending {
        case .finished: break
        case .timedOut: outcome.timedOut = true
        case .aborted(let reason): outcome.aborted = reason
        case .streamFailed(let message): logger.warning("lost the agent's output stream", metadata: ["job.id": "\(jobID)", "error": "\(message)"])
        }
        if outcome.timedOut || outcome.aborted != nil {
            outcome.killedProcesses = await kill(pattern: "^FORGE_HOOKS_RUN=\(marker)$", container: container, user: agent.user)
        }
        // The exit code arrives once the process is gone.
        var state = try await docker.inspectExec(exec)
        let deadline = ContinuousClock.now + .seconds(10)
        while state.running && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(25))
            state = try await docker.inspectExec(exec)
        }
        outcome.exitCode = state.exitCode
        outcome.duration = ContinuousClock.now - started
        let (parsed, stderr, firstAt) = await sink.finish()
        outcome.parsed = parsed
        outcome.stderrTail = stderr
        outcome.firstOutputAt = firstAt
        return outcome
    }

    /// SIGKILLs every process in the container that carries this run's marker in its environment (the agent and all
    /// its children), until none is left. Works without seeing the host's pids. Runs as the agent's own user: root in
    /// the container lacks CAP_SYS_PTRACE and cannot read another user's /proc/<pid>/environ. Returns how many were killed.
    /// `pattern` is a grep regex over the `FORGE_HOOKS_RUN=…` line.
    func kill(pattern: String, container: String, user: String) async -> Int {
        let script = """
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
            return Int(lines.last ?? "") ?? 0
        } catch {
            logger.error("could not kill the agent's processes", metadata: ["container": "\(container)", "error": "\(error)"])
            return 0
        }
    }
}

/// Collects an agent's output: parses stream-json, keeps a stderr tail, and appends lines to the job's Redis log in
/// small batches so `redis-cli LRANGE hooks:log:<id> 0 -1` follows a running job.
actor OutputSink {
    let queue: JobQueue
    let jobID: String
    private var parser = StreamJSONParser()
    private var stderrTail: [String] = []
    private var pending: [String] = []
    private var lastFlush = ContinuousClock.now
    private var firstLineAt: ContinuousClock.Instant?

    init(queue: JobQueue, jobID: String) {
        self.queue = queue
        self.jobID = jobID
    }

    func add(_ lines: [(DockerStreamDemuxer.Stream, String)]) async {
        if firstLineAt == nil { firstLineAt = .now }
        for (stream, line) in lines {
            if stream == .stdout {
                parser.consume(line)
                pending.append(line)
            } else {
                stderrTail.append(line)
                if stderrTail.count > 20 { stderrTail.removeFirst() }
                pending.append("stderr: \(line)")
            }
        }
        if pending.count >= 50 || ContinuousClock.now - lastFlush > .milliseconds(200) { await flush() }
    }

    private func flush() async {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending = []
        lastFlush = .now
        try? await queue.appendLog(jobID, lines: batch)
    }

    func finish() async -> (StreamJSONParser, [String], ContinuousClock.Instant?) {
        await flush()
        return (parser, stderrTail, firstLineAt)
    }
}
