import Foundation

/// What `Worker smoke-check` says about the host beyond the agents' directories, and what the worker refuses to run
/// without.
package enum HostChecks {
    /// Whether one run of an agent is kept from ptracing another: the agent containers' seccomp profile (the engine
    /// must support seccomp: `name=seccomp` in its security options), or Yama at 1 or more. Nil when isolated,
    /// otherwise why not and what to do — the worker refuses to start then.
    package static func ptraceBarrier(engineSecurityOptions: [String], yamaScope: String?) -> String? {
        let seccomp = engineSecurityOptions.contains { $0.hasPrefix("name=seccomp") }
        let yama = yamaScope.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        if seccomp || yama >= 1 { return nil }
        return "nothing keeps an agent's runs from ptracing each other: the Docker engine has no seccomp support (its security "
            + "options: \(engineSecurityOptions.isEmpty ? "none" : engineSecurityOptions.joined(separator: "; "))) and Yama's "
            + "kernel.yama.ptrace_scope is \(yamaScope.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "missing"). "
            + "Run dockerd with seccomp (a kernel with CONFIG_SECCOMP and a docker built with it), or set "
            + "sysctl -w kernel.yama.ptrace_scope=1 (and in /etc/sysctl.d/)"
    }

    /// The smoke-check line for the agent containers' seccomp profile.
    package static func seccompLine(engineSecurityOptions: [String], yamaScope: String? = nil) -> String {
        let fatal = ptraceBarrier(engineSecurityOptions: engineSecurityOptions, yamaScope: yamaScope) != nil
        return engineSecurityOptions.contains { $0.hasPrefix("name=seccomp") }
            ? "ok    seccomp: agent containers get the worker's profile (\(SeccompProfile.digest)): no ptrace or process_vm_* between runs, "
                + "no user namespaces, keyring, bpf or io_uring"
            : (fatal ? "FAIL" : "WARN")
                + "  seccomp: the Docker engine does not support seccomp (security options: \(engineSecurityOptions.joined(separator: "; "))): "
                + "agent containers run without the worker's profile"
    }

    /// Yama's `ptrace_scope` (the file's text, nil when the kernel has no Yama) as a smoke-check line. At 0, runs of
    /// one agent may write into each other's processes — another run's wrapper waiting for its cgroup included, so
    /// code can get outside every run (docs/security.md, "Known gap"). Not a failure: the worker still runs.
    package static func ptraceIsolation(scope: String?, seccomp: Bool = false) -> String {
        let level = scope.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        if seccomp, (level ?? 0) < 1 {
            return "WARN  ptrace isolation: the agent containers' seccomp profile denies ptrace and process_vm_*, but without Yama "
                + "(kernel.yama.ptrace_scope \(level.map(String.init) ?? "missing")) one run can still write into another's memory through "
                + "/proc/<pid>/mem, a waiting run's wrapper included (docs/security.md, Known gap); set sysctl -w kernel.yama.ptrace_scope=1"
        }
        guard let text = scope?.trimmingCharacters(in: .whitespacesAndNewlines), let level = Int(text) else {
            return "WARN  ptrace isolation: this kernel has no Yama (/proc/sys/kernel/yama/ptrace_scope), so runs of one "
                + "agent can write into each other's processes, a waiting run's wrapper included (docs/security.md, Known gap)"
        }
        if level >= 1 {
            return "ok    ptrace isolation: kernel.yama.ptrace_scope is \(level): an agent's runs cannot write into each other's processes"
        }
        return "WARN  ptrace isolation: kernel.yama.ptrace_scope is 0, so runs of one agent can write into each other's processes, "
            + "a waiting run's wrapper included (docs/security.md, Known gap); set it to 1: sysctl -w kernel.yama.ptrace_scope=1 "
            + "(and in /etc/sysctl.d/ to keep it)"
    }
}
