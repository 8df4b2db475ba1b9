import ArgumentParser
import Foundation
import Logging
import Shared
import WorkerCore

/// Dispatch overhead: from a job reserved to the agent process running (its first output line), through the
/// worker's own code path (reconcile → session dir → exec). Warm = the container matches; drift = the spec changed
/// before every job, so each one retires the container and creates and starts a new one.
struct DispatchBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatch", abstract: "Benchmark: reserve → agent started, warm and with container drift (prints p50/p99).")

    @OptionGroup var common: WorkerOptions
    @Option(help: "The agent to run (its image should be the stub).") var agent = "dev"
    @Option(help: "Warm jobs.") var warm = 50
    @Option(help: "Jobs with drift (container recreated each time).") var drift = 10

    func run() async throws {
        let (config, logger) = try common.load()
        guard var settings = config.agents[agent] else { throw ValidationError("no agent '\(agent)' in \(common.config)") }
        let rig = BenchRig(config: config, logger: logger, docker: try common.docker())
        let (queue, reconciler, runner) = (rig.queue, rig.reconciler, rig.runner)

        func measure(_ n: Int, drifting: Bool) async throws -> Latencies {
            var samples = Latencies()
            for i in 0..<n {
                if drifting { settings.environment["FORGE_HOOKS_BENCH"] = String(i) }
                let job = NewJob(
                    agent: settings.name, session: SessionKey(agent: settings.name, repository: "bench/repo", number: 1 + i % 5),
                    fields: [("repo", "bench/repo"), ("number", String(1 + i % 5)), ("prompt", "noop")])
                _ = try await queue.enqueue([job])
                guard let reserved = try await queue.reserveAny(worker: "bench", agents: [settings.name]) else { continue }
                let t0 = ContinuousClock.now
                let container = try await reconciler.ensure(settings)
                let cwd = try AgentEnvironment.sessionDirectory(settings, repository: "bench/repo", number: 1 + i % 5)
                let outcome = try await runner.run(
                    fence: JobQueue.Fence(reserved, worker: "bench"), agent: settings, container: container.containerID,
                    workingDir: cwd.container, prompt: "noop",
                    resume: nil, newSessionID: UUID().uuidString.lowercased(), control: RunControl())
                _ = try await queue.finish(reserved, worker: "bench", outcome: .succeeded)
                guard let first = outcome.firstOutputAt, outcome.succeeded else {
                    throw WorkerError("bench run failed: \(outcome.errorSummary)")
                }
                samples.add(first - t0)
            }
            return samples
        }

        do {
            _ = try await reconciler.ensure(settings)  // create once, outside the warm figures
            let warmSamples = try await measure(warm, drifting: false)
            let driftSamples = try await measure(drift, drifting: true)
            print("dispatch overhead, reserve → agent's first output line (\(agent), image \(settings.image)):")
            print(
                String(
                    format: "  warm  (container matches): n=%3d  p50 %7.1f ms  p99 %7.1f ms", warmSamples.count, warmSamples.p50, warmSamples.p99))
            print(
                String(
                    format: "  drift (recreate each job): n=%3d  p50 %7.1f ms  p99 %7.1f ms", driftSamples.count, driftSamples.p50, driftSamples.p99))
        } catch {
            try? await rig.tearDown(agent: agent, keys: false)
            throw error
        }
        try await rig.tearDown(agent: agent, keys: true)
    }
}
