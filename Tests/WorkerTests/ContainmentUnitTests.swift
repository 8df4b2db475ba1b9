import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// What the root worker does with paths an agent controls, on the real file system (no Docker): it never follows a
/// link, never blocks on a FIFO, never reads more than it allows, and says which path it refused.
@Suite(.timeLimit(.minutes(5))) struct AgentPathTests {
    /// A scratch tree: `agent/` stands for an agent's bind mount, `host/` for what the agent must never reach.
    final class Tree {
        let root: String
        init() throws {
            root = "/tmp/forge-hooks-paths-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: root + "/agent/work", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/agent/config/projects", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/agent/config/session-env", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/host/secret-dir", withIntermediateDirectories: true)
            chmod(root + "/host/secret-dir", 0o700)
            try "root's secret\n".write(toFile: root + "/host/secret.txt", atomically: true, encoding: .utf8)
            chmod(root + "/host/secret.txt", 0o600)
        }
        deinit { try? FileManager.default.removeItem(atPath: root) }

        var agent: AgentSettings {
            var a = AgentSettings(name: "dev", image: "i", credentialsDir: root + "/agent/config", workDir: root + "/agent/work")
            a.user = "4242:4242"
            return a
        }

        func owner(_ path: String) -> (UInt32, UInt32, mode_t) {
            var st = stat()
            lstat(path, &st)
            return (st.st_uid, st.st_gid, st.st_mode & 0o7777)
        }
    }

    @Test func sessionDirectoryIsCreatedAndOwnedByTheAgent() throws {
        let tree = try Tree()
        let dir = try AgentEnvironment.sessionDirectory(tree.agent, repository: "acme/widgets", number: 7)
        #expect(dir.container == "/work/acme/widgets/7" && dir.host == tree.root + "/agent/work/acme/widgets/7")
        for path in ["acme", "acme/widgets", "acme/widgets/7"] {
            let (uid, gid, _) = tree.owner(tree.root + "/agent/work/" + path)
            #expect(uid == 4242 && gid == 4242, "\(path)")
        }
    }

    @Test func aSymlinkedSessionDirectoryIsRefusedAndItsTargetUntouched() throws {
        let tree = try Tree()
        try FileManager.default.createDirectory(atPath: tree.root + "/agent/work/acme/widgets", withIntermediateDirectories: true)
        let before = tree.owner(tree.root + "/host/secret-dir")
        // At the session dir itself, and at a parent level the agent also owns.
        symlink(tree.root + "/host/secret-dir", tree.root + "/agent/work/acme/widgets/7")
        symlink(tree.root + "/host", tree.root + "/agent/work/evil")
        for (repo, number, bad) in [("acme/widgets", 7, "acme/widgets/7"), ("evil/secret-dir", 1, "evil")] {
            #expect {
                try AgentEnvironment.sessionDirectory(tree.agent, repository: repo, number: number)
            } throws: { error in
                "\(error)".contains("refused \(tree.root)/agent/work/\(bad): it is a symbolic link")
            }
        }
        #expect(tree.owner(tree.root + "/host/secret-dir") == before)
        #expect(!FileManager.default.fileExists(atPath: tree.root + "/host/secret-dir/1"))
    }

    @Test func aTranscriptThatIsALinkFIFOOrTooLargeIsNeverRead() throws {
        let tree = try Tree()
        let cwd = "/work/acme/widgets/1"
        let folder = tree.root + "/agent/config/projects/" + TranscriptStore.projectFolder(forCwd: cwd)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let sid = "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b40"
        let file = folder + "/\(sid).jsonl"

        try "{\"turn\":1}\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try TranscriptStore.readLocal(tree.agent, cwd: cwd, sessionID: sid, maxBytes: 100) == .contents(Array("{\"turn\":1}\n".utf8)))
        #expect(try TranscriptStore.readLocal(tree.agent, cwd: cwd, sessionID: sid, maxBytes: 5) == .tooLarge(bytes: 11))

        for (make, kind) in [
            ({ symlink(tree.root + "/host/secret.txt", file) }, "a symbolic link"), ({ symlink("/dev/zero", file) }, "a symbolic link"),
            ({ mkfifo(file, 0o600) }, "a FIFO"),
        ] as [(() -> Int32, String)] {
            unlink(file)
            #expect(make() == 0)
            let started = ContinuousClock.now
            #expect {
                try TranscriptStore.readLocal(tree.agent, cwd: cwd, sessionID: sid, maxBytes: 1 << 20)
            } throws: { error in
                "\(error)".contains("refused \(file): it is \(kind) where a regular file belongs")
            }
            #expect(ContinuousClock.now - started < .seconds(5), "blocked on \(kind)")  // blocked, it would never return
        }
        // The project folder itself swapped for a link.
        try FileManager.default.removeItem(atPath: folder)
        symlink(tree.root + "/host", folder)
        #expect(throws: AgentPathError.self) { try TranscriptStore.readLocal(tree.agent, cwd: cwd, sessionID: sid, maxBytes: 100) }
        // A session id that is a path never becomes one.
        #expect(throws: WorkerError.self) { try TranscriptStore.readLocal(tree.agent, cwd: cwd, sessionID: "../../../host/secret", maxBytes: 100) }
    }

    @Test func restoringOverALinkReplacesTheLinkNotItsTarget() throws {
        let tree = try Tree()
        let cwd = "/work/acme/widgets/2"
        let sid = "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b41"
        let folder = tree.root + "/agent/config/projects/" + TranscriptStore.projectFolder(forCwd: cwd)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        symlink(tree.root + "/host/secret.txt", folder + "/\(sid).jsonl")
        try TranscriptStore.writeOwned(Array("restored\n".utf8), agent: tree.agent, cwd: cwd, sessionID: sid)
        #expect(try String(contentsOfFile: tree.root + "/host/secret.txt", encoding: .utf8) == "root's secret\n")
        #expect(tree.owner(tree.root + "/host/secret.txt").0 == 0)
        let written = tree.owner(folder + "/\(sid).jsonl")
        #expect(written.0 == 4242 && written.2 == 0o600)
        #expect(try String(contentsOfFile: folder + "/\(sid).jsonl", encoding: .utf8) == "restored\n")
    }

    @Test func syncRefusesALinkedProjectsDirectory() throws {
        let tree = try Tree()
        try FileManager.default.removeItem(atPath: tree.root + "/agent/config/projects")
        symlink(tree.root + "/host/secret-dir", tree.root + "/agent/config/projects")
        #expect(throws: AgentPathError.self) { try AgentEnvironment.sync(tree.agent) }
        #expect(tree.owner(tree.root + "/host/secret-dir").0 == 0)
        #expect(AgentEnvironment.check(tree.agent).contains { $0.path.hasSuffix("/projects") && $0.issue == "is not a directory" })
    }
}

@Suite(.timeLimit(.minutes(5))) struct RunCgroupTests {
    @Test func findsCgroupV2FirstThenTheV1Freezer() {
        let hybrid = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            """
        #expect(RunCgroup.Hierarchy.detect(mountinfo: hybrid) == .init(version: .v2, mount: "/sys/fs/cgroup/unified"))
        let v1 = "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime shared:5 - cgroup cgroup rw,freezer\n"
        #expect(RunCgroup.Hierarchy.detect(mountinfo: v1) == .init(version: .v1Freezer, mount: "/sys/fs/cgroup/freezer"))
        // A cgroup mount of a sub-tree (a container's view) cannot reach other containers' cgroups.
        #expect(RunCgroup.Hierarchy.detect(mountinfo: "41 31 0:38 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n") == nil)
        #expect(RunCgroup.Hierarchy.detect(mountinfo: "") == nil)
    }

    @Test func readsAProcessCgroupPath() {
        let text = "9:name=systemd:/docker/c1\n6:freezer:/docker/c1\n4:memory:/docker/c1\n0::/docker/c1/sub\n"
        #expect(RunCgroup.Hierarchy.cgroupPath(in: text, version: .v2) == "/docker/c1/sub")
        #expect(RunCgroup.Hierarchy.cgroupPath(in: text, version: .v1Freezer) == "/docker/c1")
        #expect(RunCgroup.Hierarchy.cgroupPath(in: "4:memory:/x\n", version: .v1Freezer) == nil)
    }

    @Test func markersAreSafeCgroupNames() {
        let marker = RunCgroup.marker(jobID: "../x y/\u{0}z")
        #expect(!marker.contains("/") && !marker.contains(" ") && !marker.contains("\u{0}") && marker.hasPrefix("xyz."))
        let wrapped = RunCgroup.wrap(["claude", "-p", "--", "text; rm -rf /"], marker: marker)
        #expect(wrapped.prefix(2) == ["/bin/sh", "-c"] && wrapped.suffix(4) == ["claude", "-p", "--", "text; rm -rf /"])
        #expect(RunCgroup.jobID(ofMarker: marker) == "xyz")
        #expect(RunCgroup.jobID(ofMarker: RunCgroup.marker(jobID: "0mx3fhqk6-tbm4hp06ud")) == "0mx3fhqk6-tbm4hp06ud")
    }

    @Test func readsAProcessAge() throws {
        let child = try ChildProcess("/bin/sleep", ["30"])
        defer { child.terminate(signal: SIGKILL) }
        let young = try #require(RunCgroup.processAge(child.pid))
        #expect(young >= 0 && young < 5, "\(young)")
        let old = try #require(RunCgroup.processAge(1))
        #expect(old > young)
        #expect(RunCgroup.processAge(-1) == nil)
    }
}

@Suite(.timeLimit(.minutes(5))) struct AgentCommandConfigTests {
    static func load(_ command: String) throws -> AppConfig {
        try AppConfig.parse(yaml: "agents: {dev: {image: i, command: \(command)}}", file: "test.yaml", environment: [:])
    }

    @Test func thePromptMustBeOneWholeArgumentAndTheTemplateHasNoDoubleDash() throws {
        _ = try Self.load(#"[claude, -p, "{{prompt}}", --output-format, stream-json, --verbose]"#)
        for (command, says) in [
            (#"[claude, "-p{{prompt}}"]"#, "exactly once, as a whole argument"),
            (#"[claude, "--append-system-prompt={{prompt}}"]"#, "as a whole argument"),
            (#"[claude, -p]"#, "found none"), (#"[claude, "{{prompt}}", "{{prompt}}"]"#, "exactly once"),
            (#"[claude, -p, --, "{{prompt}}"]"#, "must not contain `--`"), (#"["{{prompt}}"]"#, "must start with the agent program"),
        ] {
            #expect {
                try Self.load(command)
            } throws: { error in
                "\(error)".contains("agents.dev.command") && "\(error)".contains(says)
            }
        }
    }

    @Test func agentDirectoriesMustNotOverlap() throws {
        _ = try AppConfig.parse(
            yaml:
                "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/a/work}, b: {image: i, credentials_dir: /srv/b/config, work_dir: /srv/b/work}}",
            file: "t.yaml", environment: [:])
        for yaml in [
            "agents: {a: {image: i, credentials_dir: /srv/a/work/config, work_dir: /srv/a/work}}",
            "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/w}, b: {image: i, credentials_dir: /srv/b/config, work_dir: /srv/w/}}",
            "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/a/work}, b: {image: i, credentials_dir: /srv/a/work/b, work_dir: /srv/b/work}}",
        ] {
            #expect {
                try AppConfig.parse(yaml: yaml, file: "t.yaml", environment: [:])
            } throws: { error in
                "\(error)".contains("overlap")
            }
        }
    }

    @Test func limitsParseAndAreValidated() throws {
        let config = try AppConfig.parse(yaml: "agents: {dev: {image: i, memory: 2g, pids_limit: 256}}", file: "t.yaml", environment: [:])
        #expect(config.agents["dev"]?.memoryBytes == 2 << 30 && config.agents["dev"]?.pidsLimit == 256)
        #expect(throws: ConfigError.self) { try AppConfig.parse(yaml: "agents: {dev: {image: i, memory: 12q}}", file: "t.yaml", environment: [:]) }
        #expect(throws: ConfigError.self) { try AppConfig.parse(yaml: "agents: {dev: {image: i, memory: 1m}}", file: "t.yaml", environment: [:]) }
        #expect(throws: ConfigError.self) { try AppConfig.parse(yaml: "agents: {dev: {image: i, pids_limit: 1}}", file: "t.yaml", environment: [:]) }
    }
}

@Suite struct HostCheckTests {
    @Test func ptraceIsolationIsSaidForEveryYamaSetting() {
        #expect(HostChecks.ptraceIsolation(scope: nil).hasPrefix("WARN  ptrace isolation: this kernel has no Yama"))
        #expect(HostChecks.ptraceIsolation(scope: "junk\n").hasPrefix("WARN  ptrace isolation: this kernel has no Yama"))
        let zero = HostChecks.ptraceIsolation(scope: "0\n")
        #expect(zero.hasPrefix("WARN  ptrace isolation: kernel.yama.ptrace_scope is 0") && zero.contains("sysctl -w kernel.yama.ptrace_scope=1"))
        #expect(HostChecks.ptraceIsolation(scope: "1\n").hasPrefix("ok    ptrace isolation: kernel.yama.ptrace_scope is 1"))
        #expect(HostChecks.ptraceIsolation(scope: "3").hasPrefix("ok    ptrace isolation: kernel.yama.ptrace_scope is 3"))
    }
}
