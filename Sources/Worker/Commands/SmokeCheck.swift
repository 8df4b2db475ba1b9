import ArgumentParser
import Foundation
import Logging
import Shared
import WorkerCore

extension WorkerCommand {
    struct SmokeCheck: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "smoke-check",
            abstract:
                "Verify each agent's directories (credentials read-only, state and work writable by the agent uid) and the host's run containment.")

        @OptionGroup var common: WorkerOptions

        func run() async throws {
            let (config, _) = try common.load()
            var failed = false
            for (name, agent) in config.agents.sorted(by: { $0.key < $1.key }) {
                let problems = AgentEnvironment.check(agent)
                if problems.isEmpty {
                    print(
                        "ok    \(name): state \(agent.stateDir) (read-write at \(agent.configDir) = CLAUDE_CONFIG_DIR), credentials "
                            + "\(agent.credentialsDir) (read-only at \(AgentSettings.policyMount); prompts in its \(AgentSettings.promptFolder)/), "
                            + "work \(agent.workDir) (read-write at \(agent.workMount)), usable by \(agent.user)")
                    print("ok    \(name): permissions \(agent.permissions.arguments.joined(separator: " "))")
                    for note in AgentEnvironment.layoutNotes(agent) { print("WARN  \(name): \(note)") }
                } else {
                    failed = true
                    for p in problems { print("FAIL  \(name): \(p)") }
                }
            }
            // Not a failure: the worker still runs, but a run's detached processes could outlive its kill.
            if let hierarchy = RunCgroup.Hierarchy.detect() {
                let kind = hierarchy.version == .v2 ? "cgroup v2" : "cgroup v1 freezer"
                print("ok    run containment: each run gets its own cgroup (\(kind) at \(hierarchy.mount))")
            } else {
                print(
                    "WARN  run containment: no cgroup hierarchy is reachable from this worker; a process an agent detaches can "
                        + "outlive its run (run the worker on the host, or give its container pid: host, cgroup: host and /sys/fs/cgroup)")
            }
            let yama = try? String(contentsOfFile: "/proc/sys/kernel/yama/ptrace_scope", encoding: .utf8)
            let options = try? await common.withDocker { docker in try await docker.securityOptions() }
            if let options {
                print(HostChecks.seccompLine(engineSecurityOptions: options, yamaScope: yama))
                if HostChecks.ptraceBarrier(engineSecurityOptions: options, yamaScope: yama) != nil { failed = true }
            } else {
                print("WARN  seccomp: the Docker engine did not answer, so whether it applies the agents' seccomp profile is unknown")
            }
            print(HostChecks.ptraceIsolation(scope: yama, seccomp: options?.contains { $0.hasPrefix("name=seccomp") } ?? false))
            if failed { throw ExitCode(1) }
        }
    }
}
