import Foundation

/// What `Worker smoke-check` says about the host beyond the agents' directories.
package enum HostChecks {
    /// Yama's `ptrace_scope` (the file's text, nil when the kernel has no Yama) as a smoke-check line. At 0, runs of
    /// one agent may write into each other's processes — another run's wrapper waiting for its cgroup included, so
    /// code can get outside every run (docs/security.md, "Known gap"). Not a failure: the worker still runs.
    package static func ptraceIsolation(scope: String?) -> String {
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
