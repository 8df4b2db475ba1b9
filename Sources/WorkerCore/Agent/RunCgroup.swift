import Foundation
import Shared

/// Every process of one agent run lives in its own cgroup below its container's, so the run can be killed whole.
///
/// An agent can hide from anything it controls: `setsid` leaves the exec's session and process group, `env -i` drops an
/// environment marker, a double fork reparents to the container's init and loses the process tree. It cannot leave a
/// cgroup: that needs write access to cgroupfs, which the container does not have. So each run's exec starts under a
/// few lines of `sh` that stop themselves until the worker (root on the host, in the host's PID namespace) has moved
/// the exec's process into `<container cgroup>/forge-hooks-run-<marker>`; only then does the shell `exec` the agent,
/// and everything it ever starts is born inside. A kill freezes the cgroup, SIGKILLs what is in it and thaws it (or
/// writes `cgroup.kill` on cgroup v2), until it is empty. The same is done after every run, so nothing a run started
/// outlives it in the long-lived container.
///
/// Works with cgroup v2 (unified, `cgroup.kill`/`cgroup.freeze`) and v1 (the `freezer` hierarchy). Where neither is
/// reachable (a worker in a container without the host's PID namespace and cgroupfs), `Hierarchy.detect` answers nil
/// and the runner falls back to the environment-marker kill, saying so on the job.
package struct RunCgroup: Sendable {
    /// Where the worker manipulates cgroups.
    package struct Hierarchy: Sendable, Equatable {
        package enum Version: Sendable, Equatable { case v2, v1Freezer }
        package let version: Version
        /// Mount point of the hierarchy on the host.
        package let mount: String

        /// The first usable hierarchy in `/proc/self/mountinfo`: cgroup v2 first, else the v1 freezer.
        package static func detect(mountinfo: String? = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) -> Hierarchy? {
            guard let mountinfo else { return nil }
            var v2: Hierarchy?
            var freezer: Hierarchy?
            for line in mountinfo.split(separator: "\n") {
                // `<id> <parent> <maj:min> <root> <mount point> <options> [optional…] - <fstype> <source> <super options>`
                let halves = line.components(separatedBy: " - ")
                guard halves.count == 2 else { continue }
                let left = halves[0].split(separator: " ")
                let right = halves[1].split(separator: " ")
                guard left.count >= 5, right.count >= 1, left[3] == "/" else { continue }
                let mount = String(left[4])
                if right[0] == "cgroup2", v2 == nil { v2 = Hierarchy(version: .v2, mount: mount) }
                if right[0] == "cgroup", right.count >= 3, right[2].split(separator: ",").contains("freezer"), freezer == nil {
                    freezer = Hierarchy(version: .v1Freezer, mount: mount)
                }
            }
            return v2 ?? freezer
        }

        /// The cgroup path of `pid` in this hierarchy, from `/proc/<pid>/cgroup` (nil if unreadable).
        func cgroupPath(ofPID pid: Int) -> String? {
            guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
            return Self.cgroupPath(in: text, version: version)
        }

        static func cgroupPath(in text: String, version: Version) -> String? {
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard fields.count == 3 else { continue }
                switch version {
                case .v2 where fields[0] == "0" && fields[1].isEmpty: return String(fields[2])
                case .v1Freezer where fields[1].split(separator: ",").contains("freezer"): return String(fields[2])
                default: continue
                }
            }
            return nil
        }
    }

    /// The prefix of every run cgroup's name; the rest is the run marker.
    static let namePrefix = "forge-hooks-run-"

    let hierarchy: Hierarchy
    /// The run cgroup's directory on the host.
    let directory: String

    /// The agent command wrapped so it starts only once its shell sits in the run cgroup named after `marker`. The
    /// wrapper forks nothing before that (only shell built-ins), so no process of the run is born outside.
    static func wrap(_ command: [String], marker: String) -> [String] {
        ["/bin/sh", "-c", script(marker: marker), wrapperName] + command
    }

    static let wrapperName = "forge-hooks-run"

    /// Where a run's prompt file is inside the container: the worker writes it in the read-only credentials dir's
    /// `run/` and the wrapper makes it the agent's standard input. (A marker is `[A-Za-z0-9.-]`: safe in quotes.)
    static func promptPath(marker: String) -> String { "\(AgentSettings.policyMount)/\(AgentSettings.promptFolder)/\(marker).prompt" }

    /// The command of a run that is not contained: the same standard input, no cgroup wait.
    static func uncontained(_ command: [String], marker: String) -> [String] {
        ["/bin/sh", "-c", "exec \"$@\" < '\(promptPath(marker: marker))'", "forge-hooks-run-uncontained"] + command
    }

    static func script(marker: String) -> String {
        "until { ok=; while IFS= read -r l; do case $l in *'/\(namePrefix)\(marker)') ok=1;; esac; done < /proc/$$/cgroup; [ -n \"$ok\" ]; }; "
            + "do kill -STOP $$; done; exec \"$@\" < '\(promptPath(marker: marker))'"
    }

    /// Whether `pid` runs exactly the wrapper (waiting to be adopted): it only reads its cgroup and stops itself, and
    /// it can run the agent only inside a run cgroup, which nobody but the worker can make.
    static func isWaitingWrapper(_ pid: Int32, marker expected: String? = nil) -> Bool {
        // An agent process chooses its own arguments: read no more than a wrapper's command line could need.
        guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/cmdline") else { return false }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: 16 << 10) else { return false }
        let args = data.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard args.count >= 4, args[0] == "/bin/sh", args[1] == "-c", args[3] == wrapperName,
            let start = args[2].range(of: "*'/\(namePrefix)"), let end = args[2].range(of: "') ok=1;;")
        else { return false }
        let marker = String(args[2][start.upperBound..<end.lowerBound])
        return (expected == nil || marker == expected) && args[2] == script(marker: marker)
    }

    /// The marker a wrapper waits for, if `pid` runs exactly the wrapper.
    static func wrapperMarker(_ pid: Int32) -> String? {
        guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/cmdline") else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: 16 << 10) else { return nil }
        let args = data.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard args.count >= 3, let start = args[2].range(of: "*'/\(namePrefix)"), let end = args[2].range(of: "') ok=1;;"),
            start.upperBound <= end.lowerBound
        else { return nil }
        let marker = String(args[2][start.upperBound..<end.lowerBound])
        return isWaitingWrapper(pid, marker: marker) ? marker : nil
    }

    /// Processes in the container's own cgroup that look like wrappers (stopped or not: one an agent injected into
    /// keeps the wrapper's command line), with the marker each names.
    static func waitingWrappers(under containerDirectory: String) -> [(pid: Int32, marker: String)] {
        let text = (try? String(contentsOfFile: containerDirectory + "/cgroup.procs", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { Int32($0) }.compactMap { pid in wrapperMarker(pid).map { (pid, $0) } }
    }

    /// The marker of a run cgroup (its directory name without the prefix).
    var marker: String { String((directory as NSString).lastPathComponent.dropFirst(Self.namePrefix.count)) }

    /// The job id a marker was made from (everything before the random suffix).
    static func jobID(ofMarker marker: String) -> String { marker.split(separator: ".").dropLast().joined(separator: ".") }

    /// The pid of the stopped wrapper of the run `marker` in the container's own cgroup, if it is there yet.
    static func waitingWrapper(under containerDirectory: String, marker: String) -> Int32? {
        let text = (try? String(contentsOfFile: containerDirectory + "/cgroup.procs", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { Int32($0) }.first { processState(Int($0)) == "T" && isWaitingWrapper($0, marker: marker) }
    }

    /// Processes in the container's own cgroup — outside every run cgroup — of `uid` (nil: of any uid but root's and
    /// the keeper's). The container's keeper runs as another uid and the worker's own execs (ps) as root, so such a
    /// process is an exec Docker is running (a run's wrapper before it is adopted) or got out of a run (e.g. by
    /// writing into another process's memory). `AgentRunner.sweepStrays` spares the execs' own pids and kills the rest.
    static func strayCandidates(under containerDirectory: String, uid: UInt32?) -> [Int32] {
        let keeper = UInt32(ContainerSpec.keeperUser.split(separator: ":").first ?? "") ?? 65534
        let text = (try? String(contentsOfFile: containerDirectory + "/cgroup.procs", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { Int32($0) }.filter { pid in
            guard let owner = processUID(pid) else { return false }
            return uid.map { owner == $0 } ?? (owner != 0 && owner != keeper)
        }
    }

    /// SIGKILLs those of `pids` that are still candidates (in the container's own cgroup, of `uid`): a pid is read again
    /// just before the kill, so one reused meanwhile is not hit. Returns how many were killed. Blocking.
    static func killStrays(_ pids: [Int32], under containerDirectory: String, uid: UInt32?) -> Int {
        let still = Set(strayCandidates(under: containerDirectory, uid: uid))
        return pids.filter { still.contains($0) && Foundation.kill($0, SIGKILL) == 0 }.count
    }

    /// The real uid of `pid` on the host, from `/proc/<pid>/status`.
    static func processUID(_ pid: Int32) -> UInt32? { statusField(pid, "Uid:").flatMap { UInt32($0) } }

    /// The first value of a `/proc/<pid>/status` line (`Uid:`).
    private static func statusField(_ pid: Int32, _ name: String) -> Substring? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) })
        else { return nil }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first
    }

    /// A marker safe as a cgroup name: the job id's `[a-z0-9-]` characters plus a random suffix.
    static func marker(jobID: String) -> String {
        let safe = String(jobID.unicodeScalars.filter { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-") }.prefix(40))
        return "\(safe).\(UUID().uuidString.prefix(8).lowercased())"
    }

    enum SetupError: Error, CustomStringConvertible {
        case foreignProcess(pid: Int, cgroup: String?, container: String)
        case system(String)
        var description: String {
            switch self {
            case .foreignProcess(let pid, let cgroup, let container):
                return "exec pid \(pid) is not in container \(container.prefix(12))'s cgroup (\(cgroup ?? "unreadable")): "
                    + "the worker does not see the host's PID namespace; run it on the host (or with pid: host and cgroupfs)"
            case .system(let message): return message
            }
        }
    }

    /// Whether the worker can contain runs of this container: its init process is visible and sits in a cgroup whose
    /// directory exists here and is writable. Returns the container's cgroup directory, or why not.
    static func probe(hierarchy: Hierarchy, containerID: String, containerPID: Int) -> Result<String, SetupError> {
        guard let path = hierarchy.cgroupPath(ofPID: containerPID), path.contains(containerID) else {
            return .failure(.foreignProcess(pid: containerPID, cgroup: hierarchy.cgroupPath(ofPID: containerPID), container: containerID))
        }
        let dir = hierarchy.mount + path
        guard access(dir, W_OK) == 0 else { return .failure(.system("cannot write \(dir): \(String(cString: strerror(errno)))")) }
        return .success(dir)
    }

    /// Moves the stopped wrapper `pid` (a process of container `containerID`) into a new run cgroup and lets it go on.
    static func adopt(pid: Int, marker: String, hierarchy: Hierarchy, containerID: String) -> Result<RunCgroup, SetupError> {
        // The pid comes from Docker; make sure it is that container's process before root moves or signals it.
        guard let path = hierarchy.cgroupPath(ofPID: pid), path.contains(containerID) else {
            return .failure(.foreignProcess(pid: pid, cgroup: hierarchy.cgroupPath(ofPID: pid), container: containerID))
        }
        // Move it only once it has stopped itself: its first look at its cgroup then always precedes the move, so the
        // SIGCONT below can never arrive before a `kill -STOP` and leave it stopped for good.
        var stopped = false
        for _ in 0..<500 {
            if processState(pid) == "T" { stopped = true; break }
            usleep(2000)
        }
        guard stopped else { return .failure(.system("the run's wrapper (pid \(pid)) did not reach its stop within 1 s")) }
        let parent = hierarchy.mount + path
        let directory = parent + "/" + namePrefix + marker
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
            return .failure(.system("cannot create cgroup \(directory): \(String(cString: strerror(errno)))"))
        }
        let cgroup = RunCgroup(hierarchy: hierarchy, directory: directory)
        guard cgroup.write("cgroup.procs", "\(pid)") else {
            let message = "cannot move pid \(pid) into \(directory): \(String(cString: strerror(errno)))"
            rmdir(directory)
            return .failure(.system(message))
        }
        Foundation.kill(pid_t(pid), SIGCONT)
        // A sibling process of the same uid may have stopped the wrapper again between its look and our move: while it
        // still runs the wrapper and is stopped, wake it (bounded: 200 ms).
        for _ in 0..<100 {
            guard isWaitingWrapper(Int32(pid)) else { break }
            if processState(pid) == "T" { Foundation.kill(pid_t(pid), SIGCONT) }
            usleep(2000)
        }
        return .success(cgroup)
    }

    /// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T`…), nil when the process is gone.
    static func processState(_ pid: Int) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].first { $0 != " " }
    }

    /// The run cgroups left under a container's cgroup directory by earlier attempts of a job (`markerPrefix` is
    /// `<job id>.`), or by every run when nil.
    static func existing(under containerDirectory: String, hierarchy: Hierarchy, markerPrefix: String?) -> [RunCgroup] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: containerDirectory)) ?? []
        return names.filter { $0.hasPrefix(namePrefix + (markerPrefix ?? "")) }.map {
            RunCgroup(hierarchy: hierarchy, directory: containerDirectory + "/" + $0)
        }
    }

    /// Kills what a run cut short before its adoption left: its wrapper, waiting in the container's own cgroup (it has
    /// not run the agent: it execs only inside a run cgroup), and the run's cgroup should an adoption have got that
    /// far. Returns how many processes were killed. Blocking; call it off the cooperative pool.
    static func killUnadopted(under containerDirectory: String, hierarchy: Hierarchy, marker: String) -> Int {
        var killed = 0
        for cgroup in existing(under: containerDirectory, hierarchy: hierarchy, markerPrefix: marker) { killed += cgroup.killAll() }
        for wrapper in waitingWrappers(under: containerDirectory) where wrapper.marker == marker {
            if Foundation.kill(wrapper.pid, SIGKILL) == 0 { killed += 1 }
        }
        return killed
    }

    /// The pids in the cgroup now.
    var pids: [Int32] {
        ((try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    /// SIGKILLs every process in the cgroup — frozen first, so none can fork meanwhile — until it is empty, then
    /// removes it. Returns how many processes were killed. Blocking (short sleeps); call it off the cooperative pool.
    @discardableResult
    func killAll(deadline: Duration = .seconds(5)) -> Int {
        var killed = Set<Int32>()
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            let before = pids
            if before.isEmpty { break }
            switch hierarchy.version {
            case .v2:
                if FileManager.default.fileExists(atPath: directory + "/cgroup.kill") {
                    killed.formUnion(before)
                    _ = write("cgroup.kill", "1")
                } else {
                    _ = write("cgroup.freeze", "1")
                    for _ in 0..<50 where !(read("cgroup.events") ?? "").contains("frozen 1") { usleep(2000) }
                    for pid in pids { if Foundation.kill(pid, SIGKILL) == 0 { killed.insert(pid) } }
                    _ = write("cgroup.freeze", "0")
                }
            case .v1Freezer:
                _ = write("freezer.state", "FROZEN")
                for _ in 0..<50 where read("freezer.state") == "FREEZING" { usleep(2000) }
                for pid in pids { if Foundation.kill(pid, SIGKILL) == 0 { killed.insert(pid) } }
                _ = write("freezer.state", "THAWED")
            }
            usleep(10_000)
        }
        if pids.isEmpty { rmdir(directory) }
        return killed.count
    }

    private func write(_ file: String, _ value: String) -> Bool {
        let fd = open(directory + "/" + file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { Foundation.write(fd, $0, strlen($0)) } >= 0
    }

    private func read(_ file: String) -> String? {
        (try? String(contentsOfFile: directory + "/" + file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
