import ArgumentParser
import Foundation
import Logging
import Shared
import WorkerCore

/// Agent output through the worker: ordinary stream-json throughput against a bare `docker exec` of the same
/// output, and the worker's resident memory while an agent prints one endless line and then a flood.
struct OutputBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "output",
        abstract: "Benchmark: agent output through a job vs a bare docker exec, and worker memory under a hostile flood (stub image).")

    @OptionGroup var common: WorkerOptions
    @Option(help: "The agent to run (its image must be the stub).") var agent = "dev"
    @Option(help: "MiB of ~1 KB stream-json lines per throughput run.") var mib = 32
    @Option(help: "Throughput runs of each kind.") var runs = 5
    @Option(help: "MiB of one line without a newline (0 = skip).") var lineMib = 1024
    @Option(help: "MiB of flood output (0 = skip).") var floodMib = 10240

    func run() async throws {
        let (config, logger) = try common.load()
        guard var settings = config.agents[agent] else { throw ValidationError("no agent '\(agent)' in \(common.config)") }
        settings.timeout = .seconds(3600)
        let rig = BenchRig(config: config, logger: logger, docker: try common.docker())
        let (redis, queue, reconciler, runner) = (rig.redis, rig.queue, rig.reconciler, rig.runner)

        do {
            let container = try await reconciler.ensure(settings).containerID
            let cwd = try AgentEnvironment.sessionDirectory(settings, repository: "bench/repo", number: 1)
            func job(_ prompt: String) async throws -> (AgentRunner.Outcome, Double, String) {
                let new = NewJob(
                    agent: settings.name, session: SessionKey(agent: settings.name, repository: "bench/repo", number: 1),
                    fields: [("repo", "bench/repo"), ("number", "1"), ("prompt", prompt)])
                _ = try await queue.enqueue([new])
                guard let reserved = try await queue.reserveAny(worker: "bench", agents: [settings.name]) else {
                    throw WorkerError("bench job was not reserved")
                }
                let t0 = ContinuousClock.now
                let outcome = try await runner.run(
                    fence: JobQueue.Fence(reserved, worker: "bench"), agent: settings, container: container, workingDir: cwd.container,
                    prompt: prompt, resume: nil,
                    newSessionID: UUID().uuidString.lowercased(), control: RunControl())
                let seconds = (ContinuousClock.now - t0).seconds
                _ = try await queue.finish(reserved, worker: "bench", outcome: .succeeded)
                guard outcome.succeeded else { throw WorkerError("bench run failed: \(outcome.errorSummary)") }
                return (outcome, seconds, reserved.id)
            }

            print("agent output, \(agent) (image \(settings.image)), Redis \(redis.configuration.endpointDescription):")
            var bare = Latencies()
            var through = Latencies()
            let prompt = "STUB_FLOOD=\(mib)"
            // The same command a job runs, its prompt on standard input as the worker gives it.
            let command =
                ["/bin/sh", "-c", "printf '%s\\n' \"$0\" | exec \"$@\"", prompt]
                + AgentRunner.command(template: settings.command, permissions: settings.permissions, resume: nil, newSessionID: UUID().uuidString)
            for _ in 0..<runs {
                bare.add(.seconds(try Self.timeDockerExec(container: container, user: settings.user, cwd: cwd.container, command: command)))
                through.add(.seconds(try await job(prompt).1))
            }
            print(
                String(
                    format: "  %d MiB of ~1 KB stream-json lines, median of %d: bare docker exec %.2f s, through a job %.2f s (×%.2f)", mib,
                    runs, bare.p50 / 1000, through.p50 / 1000, through.p50 / bare.p50))

            for (label, size, hostile) in [
                ("one line without a newline", lineMib, "STUB_LONG_LINE"), ("a flood of 1 KB lines", floodMib, "STUB_FLOOD"),
            ]
            where size > 0 {
                let idle = Self.residentBytes()
                let sampler = Task.detached {
                    var highest = 0
                    while !Task.isCancelled {
                        highest = max(highest, Self.residentBytes())
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    return highest
                }
                let (outcome, seconds, id) = try await job("\(hostile)=\(size)")
                sampler.cancel()
                let peak = max(await sampler.value, Self.residentBytes())
                let stored = try await redis.send("MEMORY", "USAGE", queue.keys.log(id), "SAMPLES", "0").int ?? 0
                print(
                    String(
                        format: "  %@ of %d MiB: %.1f s; worker RSS idle %d MiB, peak %d MiB (+%d MiB); log in Redis %d KiB, %d lines not stored",
                        label, size, seconds, idle >> 20, peak >> 20, (peak - idle) >> 20, stored >> 10, outcome.droppedLogLines))
            }
        } catch {
            try? await rig.tearDown(agent: agent, keys: false)
            throw error
        }
        try await rig.tearDown(agent: agent, keys: true)
    }

    /// Seconds for `docker exec` (the CLI) of `command`, output thrown away.
    static func timeDockerExec(container: String, user: String, cwd: String, command: [String]) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["docker", "exec", "-u", user, "-w", cwd, "-e", "CLAUDE_CONFIG_DIR=/tmp", container] + command
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let t0 = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw WorkerError("docker exec failed (\(process.terminationStatus)); is the docker CLI installed?")
        }
        return (ContinuousClock.now - t0).seconds
    }

    /// This process's VmRSS in bytes.
    static func residentBytes() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }
}
