import Crypto
import Foundation

/// The seccomp profile of every agent container: what no agent process may ask the kernel for, on top of dropped
/// capabilities and `no-new-privileges`.
///
/// Docker's default profile lets a process `ptrace` and `process_vm_readv/writev` another of the same uid. All runs of
/// an agent share its uid and container, so a run could take over another's wrapper before the worker moves it into
/// its cgroup, and live on outside every run's cgroup (docs/security.md). This profile denies those calls outright,
/// and with them the kernel interfaces an unprivileged process can still reach that a coding agent never needs:
/// user namespaces (`unshare`, `setns`, namespace flags of `clone`; `clone3` answers "not implemented", so the C
/// library falls back to `clone`, whose flags can be checked), the kernel keyring, `bpf`, `perf_event_open`,
/// `userfaultfd`, `io_uring`, `kcmp`, `personality` changes, and the privileged calls (mounts, modules, clocks,
/// reboot, swap…) that the dropped capabilities already refuse. Everything else is allowed: it is written as a
/// deny list, not a copy of Docker's allow list. A denied call fails with EPERM (`clone3` with ENOSYS).
package enum SeccompProfile {
    /// Denied with EPERM.
    static let denied = [
        // One process reading or steering another: the reason for this profile.
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
        // Namespaces and mounts.
        "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
        "fspick", "mount_setattr",
        // The kernel keyring, eBPF, performance counters, userfaultfd, io_uring.
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
        "io_uring_register",
        // Kernel modules, kexec, reboot, swap, accounting, clocks, quotas, handles, raw I/O, NUMA, obsolete calls.
        "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms", "kexec_load",
        "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "stime", "syslog", "quotactl", "quotactl_fd", "lookup_dcookie", "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm",
        "vm86", "vm86old", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "move_pages", "mbind", "set_mempolicy",
        "migrate_pages", "fanotify_init", "vhangup",
    ]

    /// `clone` flags that make new namespaces (denied when set).
    static let namespaceFlags: [UInt64] = [
        0x0002_0000,  // CLONE_NEWNS
        0x0200_0000,  // CLONE_NEWCGROUP
        0x0400_0000,  // CLONE_NEWUTS
        0x0800_0000,  // CLONE_NEWIPC
        0x1000_0000,  // CLONE_NEWUSER
        0x2000_0000,  // CLONE_NEWPID
        0x4000_0000,  // CLONE_NEWNET
    ]

    /// The profile as Docker takes it in `HostConfig.SecurityOpt` (`seccomp=<this>`), compact and stable.
    package static let json: String = {
        var rules: [[String: Any]] = [
            ["names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1],
            ["names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38],
        ]
        // clone(flags, …) on x86-64 and arm64 takes the flags first: each namespace flag set is a denial.
        for flag in namespaceFlags {
            rules.append([
                "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [["index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"]],
            ])
        }
        // personality(2) only with the values programs use (Linux, and the query); not READ_IMPLIES_EXEC and friends.
        rules.append([
            "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
            "args": [["index": 0, "value": 0x0400_0000, "valueTwo": 0x0400_0000, "op": "SCMP_CMP_MASKED_EQ"]],  // READ_IMPLIES_EXEC
        ])
        let profile: [String: Any] = [
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": rules,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: profile, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }()

    /// The `SecurityOpt` entry.
    package static var securityOpt: String { "seccomp=" + json }

    /// A short hash of the profile, for the spec label and messages.
    static var digest: String {
        SHA256.hash(data: Array(json.utf8)).prefix(6).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}
