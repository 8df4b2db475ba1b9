import Foundation
import Shared
import Synchronization
import TestSupport
import Testing

@testable import WorkerCore

/// Replacing a drifted container on a real dockerd: runs in the old one finish, and workers that disagree on the spec
/// (a rolling upgrade) do not replace each other's container back and forth.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DriftTests {
    /// Workers a test declares alive (stands in for their leases).
    final class Alive: Sendable {
        private let names: Mutex<Set<String>>
        init(_ names: Set<String>) { self.names = Mutex(names) }
        func contains(_ name: String) -> Bool { names.withLock { $0.contains(name) } }
        func remove(_ name: String) { _ = names.withLock { $0.remove(name) } }
    }

    static func reconciler(_ env: WorkerEnvironment, worker: String, startedMs: Int64, alive: Alive) -> ContainerReconciler {
        ContainerReconciler(
            docker: env.docker, containerPrefix: env.prefix, hostID: env.hostID, logger: env.logger,
            owner: .init(worker: worker, startedMs: startedMs), isAlive: { alive.contains($0) })
    }

    /// Execs running in a container right now.
    static func runningExecs(_ env: WorkerEnvironment, _ container: String) async throws -> Int {
        try await env.reconciler().runningExecs(container)
    }

    static func retired(_ env: WorkerEnvironment) async throws -> [String] {
        try await env.reconciler().retired().map(\.name)
    }

    static func withEnv(_ agent: AgentSettings, _ name: String, _ value: String) -> AgentSettings {
        var changed = agent
        changed.environment[name] = value
        return changed
    }

    @Test func driftRetiresTheOldContainerAndTheRunInItFinishes() async throws {
        try await WorkerEnvironment.with { env in
            let before = try await env.reconciler().ensure(env.agent()).containerID
            let oldExecutor = env.executor(workerID: "old")
            // Long enough to outlast the other job's reconcile and run even on a loaded machine.
            let long = try await env.enqueue("long STUB_SLEEP=15", number: 1)
            let running = Task { try await env.runNext(oldExecutor) }
            try await WorkerProcessTests.waitFor("the long run to start") { try await Self.runningExecs(env, before) > 0 }

            // Another worker (or a restarted one) with one more env var: the container drifted.
            env.config.agents["dev"] = Self.withEnv(env.agent(), "RELEASE", "2")
            let reconciler = env.reconciler()
            await reconciler.setRetiredGrace(.zero)
            try await env.enqueue("quick", number: 2)
            let quick = try await env.runNext(env.executor(workerID: "new", reconciler: reconciler))
            #expect(quick["status"] == "succeeded", "\(quick)")
            #expect(quick["container_changes"]?.contains("env: RELEASE") == true, "\(quick)")
            let after = try #require(try await env.containerID())
            #expect(after != before)

            // The old container still runs the long turn, under its retired name; it is not removed while busy.
            #expect(try await env.queue.job(long)?["status"] == "running")
            let retired = try await Self.retired(env)
            #expect(retired.count == 1 && retired[0].hasPrefix("\(env.prefix)-dev.retired."), "\(retired)")
            #expect(try await reconciler.removeRetired().isEmpty, "a retired container with a run in it was removed")

            let finished = try await running.value
            #expect(finished["status"] == "succeeded" && finished["exit_code"] == "0", "the run in the old container was killed: \(finished)")
            #expect(try await reconciler.removeRetired() == retired)
            #expect(try await Self.retired(env).isEmpty)
            #expect(try await env.containerID() == after, "removing the retired container touched the live one")
        }
    }

    @Test func olderWorkerDefersToANewerLiveWorkersSpecAndNobodyFlaps() async throws {
        try await WorkerEnvironment.with { env in
            let alive = Alive(["w-old", "w-new"])
            let oldSpec = env.agent()
            let newSpec = Self.withEnv(oldSpec, "RELEASE", "2")
            let old = Self.reconciler(env, worker: "w-old", startedMs: 1_000, alive: alive)
            let new = Self.reconciler(env, worker: "w-new", startedMs: 2_000, alive: alive)

            let first = try await old.ensure(oldSpec)
            let second = try await new.ensure(newSpec)  // newer: replaces the older worker's container
            #expect(second.containerID != first.containerID && second.changes.contains { $0.hasPrefix("env: RELEASE") })
            for round in 0..<3 {
                await #expect(throws: ContainerDeferral.self, "round \(round)") { try await old.ensure(oldSpec) }
                let again = try await new.ensure(newSpec)
                #expect(again.containerID == second.containerID && again.changes.isEmpty, "round \(round): the container flapped")
            }
            #expect(await old.deferredAgents() == ["dev"])
            #expect(await new.deferredAgents().isEmpty)

            // The newer worker is gone (its lease lapsed): the older spec is the only one left and takes over.
            alive.remove("w-new")
            let third = try await old.ensure(oldSpec)
            #expect(third.containerID != second.containerID && third.changes.contains { $0.hasPrefix("spec: made from another") }, "\(third)")

            // A container without a creator (made by `containers rebuild` or by hand) never blocks a worker.
            let handMade = ContainerReconciler(docker: env.docker, containerPrefix: env.prefix, hostID: env.hostID, logger: env.logger)
            _ = try await handMade.ensure(newSpec, force: true)
            #expect(try await old.ensure(oldSpec).changes.contains { $0.hasPrefix("spec: made from another") })
        }
    }

    @Test func aDeferredJobGoesBackWithoutCountingAnAttemptAndRunsOnTheNewerWorker() async throws {
        try await WorkerEnvironment.with { env in
            let alive = Alive(["w-old", "w-new"])
            let oldR = Self.reconciler(env, worker: "w-old", startedMs: 1_000, alive: alive)
            let newR = Self.reconciler(env, worker: "w-new", startedMs: 2_000, alive: alive)
            let oldExecutor = env.executor(workerID: "w-old", reconciler: oldR)
            env.config.agents["dev"] = Self.withEnv(env.agent(), "RELEASE", "2")
            let newExecutor = env.executor(workerID: "w-new", reconciler: newR)
            _ = try await newR.ensure(env.agent())

            let id = try await env.enqueue("hello", number: 3)
            let deferred = try await env.runNext(oldExecutor)
            #expect(deferred["status"] == "queued" && deferred["attempts"] == "0", "\(deferred)")
            #expect(deferred["note"]?.contains("newest worker's spec wins") == true, "\(deferred)")
            #expect(try await env.client.send("ZSCORE", env.config.keys.delayed, id).string != nil, "not in the delayed set")
            #expect(try await env.client.send("LLEN", env.config.keys.processing("w-old")).int == 0)

            #expect(try await env.queue.promoteDue(now: Date().addingTimeInterval(6)) == 1)
            let ran = try await env.runNext(newExecutor)
            #expect(ran["status"] == "succeeded" && ran["attempts"] == "1" && ran["worker"] == "w-new", "\(ran)")
        }
    }
}
