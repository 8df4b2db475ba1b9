import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// A prompt-injected agent attacks the root worker from inside its container (uid 1000), through the stub CLI's
/// hostile modes, on real Docker and real Redis. After each attack the host is untouched, nothing of the host reaches
/// Redis, the job says what happened, and the worker goes on taking jobs.
@Suite(.serialized, .timeLimit(.minutes(5))) struct HostileAgentTests {
    /// A root-owned directory and file on the host that the agent must never reach.
    struct Victim {
        let dir: String
        let file: String
        static let secret = "host secret \(UUID().uuidString)"

        init(_ env: WorkerEnvironment) throws {
            dir = env.root.appendingPathComponent("victim").path
            file = dir + "/secret.txt"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            chmod(dir, 0o700)
            try Self.secret.write(toFile: file, atomically: true, encoding: .utf8)
            chmod(file, 0o600)
        }

        var state: [String] {
            [dir, file].map { path in
                var st = stat()
                lstat(path, &st)
                return "\(st.st_uid):\(st.st_gid):\(String(st.st_mode, radix: 8))"
            } + [(try? String(contentsOfFile: file, encoding: .utf8)) ?? "unreadable"]
        }
    }

    /// Every value stored under the test's Redis, as text.
    static func redisDump(_ env: WorkerEnvironment) async throws -> String {
        var out = ""
        for key in try await env.client.send("KEYS", "*").strings ?? [] {
            switch try await env.client.send("TYPE", key).string {
            case "hash": out += (try await env.client.send("HGETALL", key).strings ?? []).joined(separator: "\n")
            case "list": out += (try await env.client.send("LRANGE", key, "0", "-1").strings ?? []).joined(separator: "\n")
            case "string": out += try await env.client.send("GET", key).string ?? ""
            default: break
            }
        }
        return out
    }

    /// The worker still runs an ordinary job afterwards.
    static func stillServes(_ env: WorkerEnvironment, number: Int = 99, worker: Bool = false) async throws {
        let id = try await env.enqueue("an ordinary job", number: number)
        if worker {
            try await WorkerProcessTests.waitFor("an ordinary job after the attack") {
                ["succeeded", "failed", "dead"].contains(try await env.queue.job(id)?["status"] ?? "")
            }
        } else {
            _ = try await env.runNext(env.executor())
        }
        let job = try await env.queue.job(id) ?? [:]
        #expect(job["status"] == "succeeded", "the worker stopped serving: \(job)")
    }

    @Test func aSessionDirSymlinkedToTheHostIsRefusedAndTheHostDirKeepsItsOwner() async throws {
        try await WorkerEnvironment.with { env in
            let victim = try Victim(env)
            let before = victim.state
            try await env.enqueue("swap my cwd STUB_SYMLINK_CWD=\(victim.dir)", number: 5)
            let first = try await env.runNext(env.executor())
            #expect(first["status"] == "succeeded", "\(first)")
            #expect(first["warning"] == nil, "the run was not contained: \(first)")
            var st = stat()
            #expect(lstat(env.agent().workDir + "/acme/widgets/5", &st) == 0 && st.st_mode & S_IFMT == S_IFLNK, "the attack did not happen")

            try await env.enqueue("next turn on the same issue", number: 5)
            let second = try await env.runNext(env.executor())
            #expect(second["status"] == "failed", "\(second)")
            #expect(second["error"]?.contains("refused \(env.agent().workDir)/acme/widgets/5: it is a symbolic link") == true, "\(second)")
            #expect(victim.state == before, "the host directory changed")
            try await Self.stillServes(env)
        }
    }

    @Test func aTranscriptSwappedForALinkAFIFOOrDevZeroShipsNothing() async throws {
        try await WorkerEnvironment.with { env in
            let victim = try Victim(env)
            let before = victim.state
            // The container exists before the clock starts: creating it can take seconds on a loaded CI machine.
            _ = try await env.reconciler().provision(env.agent())
            for (number, attack) in [
                (11, "STUB_SYMLINK_TRANSCRIPT=\(victim.file)"), (12, "STUB_SYMLINK_TRANSCRIPT=/dev/zero"), (13, "STUB_FIFO_TRANSCRIPT"),
            ] {
                let started = ContinuousClock.now
                try await env.enqueue("end of turn \(attack)", number: number)
                let job = try await env.runNext(env.executor())
                #expect(ContinuousClock.now - started < .seconds(15), "\(attack): the worker blocked")
                #expect(job["status"] == "succeeded", "\(attack): \(job)")
                #expect(job["warning"]?.contains("transcript not shipped: refused") == true, "\(attack): \(job)")
                let stored = try await env.client.send("HGETALL", "hooks:transcript:dev:acme/widgets:\(number)").hash ?? [:]
                #expect(stored["data"] == nil, "\(attack): something was shipped")
            }
            #expect(!(try await Self.redisDump(env)).contains(HostileAgentTests.Victim.secret), "the host file reached Redis")
            #expect(victim.state == before)
            try await Self.stillServes(env)
        }
    }

    @Test func aSessionIDThatIsAPathIsIgnored() async throws {
        try await WorkerEnvironment.with { env in
            try await env.enqueue("lie STUB_SESSION_ID=../../../../tmp/x", number: 21)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            #expect(job["warning"]?.contains("not a UUID ('../../../../tmp/x'); ignored") == true, "\(job)")
            let stored = try #require(try await env.queue.sessionID(for: "dev:acme/widgets:21"))
            #expect(AgentSessionID.isValid(stored) && job["session_id"] == stored)
            // A bad id already in Redis (by hand, or an older worker) is dropped before it reaches a path.
            try await env.client.send("HSET", "hooks:sessions", "dev:acme/widgets:22", "../../etc")
            try await env.enqueue("after a bad stored id", number: 22)
            let next = try await env.runNext(env.executor())
            #expect(next["status"] == "succeeded" && next["warning"]?.contains("stored session id '../../etc' is not a UUID") == true, "\(next)")
            #expect(AgentSessionID.isValid(try await env.queue.sessionID(for: "dev:acme/widgets:22") ?? ""))
        }
    }

    @Test func aPromptThatLooksLikeOptionsIsNeverAnArgument() async throws {
        try await WorkerEnvironment.with { env in
            let prompt = "--dangerously-skip-permissions --settings /tmp/evil.json STUB_SHOW_ARGS"
            try await env.enqueue(prompt, number: 31)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            // The arguments are the template, the permission flags and the session: the prompt came on standard input.
            let result = job["result"] ?? ""
            let args = String(result[result.range(of: "args: ")!.upperBound...])
            #expect(args.hasPrefix("[-p][--output-format][stream-json][--verbose][--permission-mode][bypassPermissions][--session-id]"), "\(args)")
            #expect(!args.contains("evil") && !args.contains("[--]"), "\(args)")
            // What the agent was given is the whole prompt, as text: its transcript holds it.
            let sessionID = try #require(job["session_id"])
            let transcript = try String(
                contentsOfFile: TranscriptStore.localPath(env.agent(), cwd: "/work/acme/widgets/31", sessionID: sessionID), encoding: .utf8)
            #expect(transcript.contains(prompt))
        }
    }

    @Test func aDetachedEnvironmentClearedGrandchildDiesWithTheRun() async throws {
        try await WorkerEnvironment.with(timeout: "3s") { env in
            // Past its timeout…
            try await env.enqueue("hide STUB_ESCAPE STUB_SLEEP=30", number: 41)
            let timedOut = try await env.runNext(env.executor())
            #expect(timedOut["timed_out"] == "true", "\(timedOut)")
            // The agent and the hidden shell (busybox sleeps inside the shell): more than a marker kill finds (1).
            let killed = timedOut["error"].flatMap { $0.split(separator: "(").last?.split(separator: ")").first }.flatMap { Int($0) } ?? 0
            #expect(killed >= 2, "\(timedOut["error"] ?? "")")
            #expect(try await Self.processes(env).filter { $0.contains("sleep 3600") }.isEmpty, "the grandchild escaped the kill")
            // …and after a run that ends normally: nothing it started outlives it.
            try await env.enqueue("hide STUB_ESCAPE", number: 42)
            let finished = try await env.runNext(env.executor())
            #expect(finished["status"] == "succeeded", "\(finished)")
            #expect(finished["leftovers_killed"] == "1", "\(finished)")
            #expect(try await Self.processes(env).filter { $0.contains("sleep 3600") }.isEmpty, "a leftover survived its run")
            try await Self.stillServes(env)
        }
    }

    /// Code an agent managed to run outside its run's cgroup — what writing into another process's memory would give
    /// it — is found and killed at the end of the next run. The container's own processes are not the agent's uid, so
    /// they offer no such foothold.
    @Test func anAgentProcessOutsideEveryRunCgroupIsKilled() async throws {
        try await WorkerEnvironment.with { env in
            try await env.enqueue("first", number: 71)
            _ = try await env.runNext(env.executor())
            let container = try #require(try await env.containerID())
            let inspect = try #require(try await env.docker.inspectContainer(container))
            #expect(inspect.config.user == "65534:65534")
            // A stray of the agent's uid in the container's own cgroup, as an injected process would be.
            let exec = try await env.docker.createExec(
                container: container, command: ["sh", "-c", "sleep 777 </dev/null >/dev/null 2>&1 &"], user: env.agent().user, workingDir: nil,
                env: [])
            try await env.docker.startExec(exec) { _ in }
            #expect(try await Self.processes(env).contains { $0.contains("sleep 777") })
            try await env.enqueue("next", number: 72)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            #expect(job["warning"]?.contains("outside every run's cgroup") == true, "\(job)")
            #expect(!(try await Self.processes(env).contains { $0.contains("sleep 777") }), "the stray survived")
            #expect(try await Self.processes(env).contains { $0.contains("sleep infinity") }, "the keeper was killed")
        }
    }

    /// The stray sweep spares exactly the processes of the container's execs (their pids from Docker), for as long as
    /// they run, and nothing else: not what they fork, and not a young child of the runtime's shim made with
    /// `clone(CLONE_PARENT)` — which the old rule ("spare a young process whose parent is outside the container")
    /// spared, and which code injected into a waiting wrapper used to outlive every run end. Maintenance sweeps too.
    @Test func theStraySweepSparesExactlyTheContainersExecs() async throws {
        try await WorkerEnvironment.with { env in
            let container = try await env.reconciler().ensure(env.agent()).containerID
            let runner = AgentRunner(docker: env.docker, queue: env.queue, logger: env.logger)
            guard case .success(let (_, directory)) = await runner.containment(container: container) else {
                Issue.record("no cgroup containment here")
                return
            }
            let session = try AgentEnvironment.sessionDirectory(env.agent(), repository: "acme/widgets", number: 62)
            let source = DockerFixture.repositoryRoot.appendingPathComponent("Tests/Fixtures/clone-parent.c").path
            let (code, out) = try await DockerFixture.shell(
                "gcc -static -O2 -o '\(session.host)/clone-parent' '\(source)' && chown 1000:1000 '\(session.host)/clone-parent'")
            try #require(code == 0, "cannot build the helper (gcc and libc6-dev are needed): \(out)")
            // An exec of the agent's uid that keeps running (it is spared), a process it forks, and a CLONE_PARENT child
            // of the shim made by a short exec (neither is an exec's own process).
            let exec = try await env.docker.createExec(
                container: container, command: ["sh", "-c", "sleep 778 & exec sleep 779"], user: env.agent().user, workingDir: nil, env: [])
            Task { try? await env.docker.startExec(exec) { _ in } }
            let escaper = try await env.docker.createExec(
                container: container, command: [session.container + "/clone-parent"], user: env.agent().user, workingDir: nil, env: [])
            try await env.docker.startExec(escaper) { _ in }
            try await WorkerProcessTests.waitFor("the exec, its child and the clone") {
                let ps = try await Self.processes(env)
                return ["sleep 778", "sleep 779", "sleep 781"].allSatisfy { name in ps.contains { $0.contains(name) } }
            }
            let killed = await runner.sweepStrays(container: container, directory: directory, uid: env.agent().uid)
            var ps = try await Self.processes(env)
            #expect(killed == 2, "killed \(killed): \(ps)")
            #expect(!ps.contains { $0.contains("sleep 778") } && !ps.contains { $0.contains("sleep 781") }, "a stray was spared: \(ps)")
            #expect(ps.contains { $0.contains("sleep 779") }, "the running exec was killed: \(ps)")
            #expect(ps.contains { $0.contains("sleep infinity") }, "the keeper was killed")
            // Maintenance's look at the host's containers sweeps strays of any agent too.
            try await env.docker.startExec(
                try await env.docker.createExec(
                    container: container, command: [session.container + "/clone-parent"], user: env.agent().user, workingDir: nil, env: [])
            ) { _ in }
            try await WorkerProcessTests.waitFor("the second clone") { try await Self.processes(env).contains { $0.contains("sleep 781") } }
            let reaped = await runner.reapOrphans(containers: [container]) { _, _ in true }
            ps = try await Self.processes(env)
            #expect(reaped == 1 && !ps.contains { $0.contains("sleep 781") } && ps.contains { $0.contains("sleep 779") }, "\(reaped): \(ps)")
        }
    }

    /// Where no cgroup hierarchy is reachable the worker falls back to the environment-marker kill, says so on the job,
    /// and still kills what a run left behind that kept its environment.
    @Test func withoutCgroupsTheMarkerKillRunsAfterEveryRunAndTheJobSaysSo() async throws {
        try await WorkerEnvironment.with { env in
            // A plain background child keeps the run's environment; the marker kill finds it.
            try await env.enqueue("leave a child STUB_BACKGROUND", number: 91)
            let job = try await env.runNext(env.executor(contained: false))
            #expect(job["status"] == "succeeded", "\(job)")
            #expect(job["warning"]?.contains("was not put in its own cgroup") == true, "\(job)")
            #expect(job["leftovers_killed"] == "1", "\(job)")
            #expect(!(try await Self.processes(env).contains { $0.contains("sleep 3599") }), "the leftover survived")
        }
    }

    /// What runs in the agent's container now. (Looked up each time: a parallel test that rebuilds the stub image makes
    /// the next job recreate the container.)
    static func processes(_ env: WorkerEnvironment) async throws -> [String] {
        let container = try #require(try await env.containerID())
        let (code, lines) = try await env.docker.run(container: container, command: ["ps", "-o", "pid,args"])
        #expect(code == 0, "\(lines)")
        return lines
    }

    /// A run cannot ptrace or read the memory of another process of its uid (another run's, a waiting wrapper), nor
    /// make a user namespace: the containers' seccomp profile refuses it (Docker's default profile allowed ptrace).
    @Test func aRunCannotPtraceOrReadAnotherProcessOfItsUid() async throws {
        try await WorkerEnvironment.with { env in
            try AgentEnvironment.sync(env.agent())
            let directory = try AgentEnvironment.sessionDirectory(env.agent(), repository: "acme/widgets", number: 61)
            let source = DockerFixture.repositoryRoot.appendingPathComponent("Tests/Fixtures/ptrace-probe.c").path
            let (code, out) = try await DockerFixture.shell(
                "gcc -static -O2 -o '\(directory.host)/probe' '\(source)' && chown 1000:1000 '\(directory.host)/probe'")
            try #require(code == 0, "cannot build the probe (gcc and libc6-dev are needed): \(out)")
            try await env.enqueue("probe STUB_RUN=\(directory.container)/probe", number: 61)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            let result = job["result"] ?? ""
            for line in ["ptrace-attach denied EPERM", "ptrace-seize denied EPERM", "process_vm_readv denied", "unshare-user denied"] {
                #expect(result.contains(line), "\(line): \(result)")
            }
        }
    }

    /// An agent that floods its log cannot fill Redis: past `maxmemory × (1 − queue.redis_headroom)` logs and
    /// transcripts are refused (the job says so), and every later job is still claimed, renewed and recorded.
    @Test func aFloodCannotFillRedisAndJobsStillFinish() async throws {
        try await WorkerEnvironment.with(
            queueYAML: "{log_max_bytes: 33554432, log_max_lines: 1000000, redis_headroom: 0.25, lease: 2s, heartbeat: 500ms}",
            redisArguments: ["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"], agentConcurrency: 1
        ) { env in
            try await env.enqueue("flood STUB_FLOOD=12", number: 54)
            let flooded = try await env.runNext(env.executor())
            #expect(flooded["status"] == "succeeded", "\(flooded)")
            let warning = flooded["warning"] ?? ""
            #expect(warning.contains("not stored: Redis was near its maxmemory"), "\(warning)")
            #expect(Int(flooded["log_refused"] ?? "") ?? 0 > 1000, "\(flooded)")
            let info = try await env.client.send("INFO", "memory").string ?? ""
            let used = Int(info.firstMatch(of: /used_memory:(\d+)/)?.1 ?? "") ?? .max
            #expect(used < 8 << 20, "used_memory \(used)")
            // Other work goes on: claimed, run, recorded.
            for number in 55...57 {
                try await env.enqueue("after the flood", number: number)
                let job = try await env.runNext(env.executor())
                #expect(job["status"] == "succeeded" && job["result"]?.contains("earlier turns: 0") == true, "\(job)")
            }
        }
    }

    /// A burst of tens of thousands of short lines must not take earlier lines with it: Lua's `unpack` fails past a
    /// few thousand values, so one oversized append would have dropped its whole batch, the line before it included.
    @Test func aBurstOfShortLinesCannotEraseTheLinesBeforeIt() async throws {
        try await WorkerEnvironment.with(queueYAML: "{log_max_lines: 100000, log_max_bytes: 16777216, lease: 2s, heartbeat: 500ms}") { env in
            // In the sink: one batch of 60,001 lines, as the demultiplexer can hand over.
            let id = try await env.enqueue("direct", number: 52)
            let job = try #require(try await env.queue.reserveAny(worker: "w", agents: ["dev"]))
            #expect(job.id == id)
            let sink = OutputSink(queue: env.queue, fence: JobQueue.Fence(job, worker: "w"))
            await sink.add([(.stdout, "before the burst")] + Array(repeating: (.stdout, "x"), count: 60_000))
            _ = await sink.finish()
            let log = try await env.client.send("LRANGE", "hooks:log:\(id)", "0", "-1").strings ?? []
            #expect(log.first == "before the burst" && log.count == 60_001, "\(log.count) lines, first \(log.first ?? "none")")
            // In the script: one append of 20,000 lines.
            #expect(try await env.queue.appendLog(JobQueue.Fence(job, worker: "w"), lines: Array(repeating: "y", count: 20_000)) == .stored)
            #expect(try await env.client.send("LLEN", "hooks:log:\(id)").int == 80_001)
            _ = try await env.queue.finish(job, worker: "w", outcome: .succeeded)

            // And from an agent, end to end.
            let burst = try await env.enqueue("burst STUB_SHORT_LINES=60000", number: 53)
            let done = try await env.runNext(env.executor())
            #expect(done["status"] == "succeeded", "\(done)")
            let lines = try await env.client.send("LRANGE", "hooks:log:\(burst)", "0", "-1").strings ?? []
            #expect(lines.contains("before the burst") && lines.filter { $0 == "x" }.count == 60_000, "\(lines.count) lines")
        }
    }

    @Test func aHugeLineAndAFloodAreCutAndTheLogSaysSo() async throws {
        try await WorkerEnvironment.with(queueYAML: "{log_max_bytes: 262144}") { env in
            let id = try await env.enqueue("spam STUB_LONG_LINE=64 STUB_FLOOD=32", number: 51)
            let job = try await env.runNext(env.executor())
            #expect(job["status"] == "succeeded", "\(job)")
            #expect(job["warning"]?.contains("output over queue.log_max_bytes was not stored") == true, "\(job)")
            let log = try await env.client.send("LRANGE", "hooks:log:\(id)", "0", "-1").strings ?? []
            let bytes = log.reduce(0) { $0 + $1.utf8.count }
            #expect(bytes < 262_144 + 70_000, "the log holds \(bytes) bytes")
            #expect(log.allSatisfy { $0.utf8.count <= OutputSink.logLineMaxBytes + 100 })
            #expect(log.contains { $0.contains("[forge-hooks] log truncated") })
            #expect(
                log.last?.contains("\"type\":\"result\"") == true || log.dropLast().last?.contains("\"type\":\"result\"") == true, "\(log.suffix(2))")
            let memory = try await env.client.send("MEMORY", "USAGE", "hooks:log:\(id)", "SAMPLES", "0").int ?? 0
            #expect(memory < 1 << 20, "the log takes \(memory) bytes in Redis")
        }
    }

    /// The real Worker binary's resident memory while an agent prints one 128 MiB line and then 64 MiB of lines:
    /// it stays within ~30 MB of what the worker holds idle.
    @Test func theWorkerBinaryStaysSmallWhileAnAgentFloodsIt() async throws {
        // A generous timeout: on a loaded 2-core machine 384 MiB through Docker can take far longer than usual.
        try await WorkerEnvironment.with(timeout: "150s") { env in
            let worker = try WorkerProcessTests.startWorker(env, id: "rss", concurrency: 1)
            defer { worker.terminate() }
            let warm = try await env.enqueue("warm up", number: 61)
            try await WorkerProcessTests.waitFor("the warm-up job") { try await env.queue.job(warm)?["status"] == "succeeded" }
            let idle = Self.residentBytes(worker.pid)
            let peak = PeakSampler(pid: worker.pid)
            let flood = try await env.enqueue("spam STUB_LONG_LINE=128 STUB_FLOOD=64", number: 62)
            try await WorkerProcessTests.waitFor("the flood job", timeout: .seconds(180)) {
                ["succeeded", "failed", "dead"].contains(try await env.queue.job(flood)?["status"] ?? "")
            }
            let highest = await peak.stop()
            let job = try #require(try await env.queue.job(flood))
            #expect(job["status"] == "succeeded", "\(job)")
            print("worker RSS while flooded: idle \(idle >> 20) MiB, peak \(highest >> 20) MiB")
            #expect(idle > 0 && highest > 0)
            #expect(highest - idle < 30 << 20, "idle \(idle >> 20) MiB, peak \(highest >> 20) MiB")
            let logBytes = try await env.client.send("MEMORY", "USAGE", "hooks:log:\(flood)", "SAMPLES", "0").int ?? 0
            #expect(logBytes < 4 << 20, "the job's log takes \(logBytes) bytes in Redis")
            try await Self.stillServes(env, number: 63, worker: true)
        }
    }

    /// VmRSS of a process, in bytes (0 if unreadable).
    static func residentBytes(_ pid: pid_t) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    /// Samples a process's VmRSS every 10 ms until stopped; returns the highest.
    final class PeakSampler: @unchecked Sendable {
        private let task: Task<Int, Never>
        init(pid: pid_t) {
            task = Task.detached {
                var highest = 0
                while !Task.isCancelled {
                    highest = max(highest, HostileAgentTests.residentBytes(pid))
                    try? await Task.sleep(for: .milliseconds(10))
                }
                return highest
            }
        }
        func stop() async -> Int {
            task.cancel()
            return await task.value
        }
    }
}
