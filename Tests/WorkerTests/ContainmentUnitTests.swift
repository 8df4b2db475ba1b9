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
            try FileManager.default.createDirectory(atPath: root + "/agent/config/state/projects", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/agent/config/state/session-env", withIntermediateDirectories: true)
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
        let folder = tree.root + "/agent/config/state/projects/" + TranscriptStore.projectFolder(forCwd: cwd)
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
        let folder = tree.root + "/agent/config/state/projects/" + TranscriptStore.projectFolder(forCwd: cwd)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        symlink(tree.root + "/host/secret.txt", folder + "/\(sid).jsonl")
        try TranscriptStore.writeOwned(Array("restored\n".utf8), agent: tree.agent, cwd: cwd, sessionID: sid)
        #expect(try String(contentsOfFile: tree.root + "/host/secret.txt", encoding: .utf8) == "root's secret\n")
        #expect(tree.owner(tree.root + "/host/secret.txt").0 == 0)
        let written = tree.owner(folder + "/\(sid).jsonl")
        #expect(written.0 == 4242 && written.2 == 0o600)
        #expect(try String(contentsOfFile: folder + "/\(sid).jsonl", encoding: .utf8) == "restored\n")
    }

    /// The agent owns its state dir and can swap `projects/` for a link: the check says so, and sync follows nothing —
    /// it moves the link aside and makes the directory again, so one run cannot stop every later job of the agent.
    @Test func aLinkedProjectsDirectoryIsMovedAsideNeverFollowed() throws {
        let tree = try Tree()
        let projects = tree.root + "/agent/config/state/projects"
        try FileManager.default.removeItem(atPath: projects)
        symlink(tree.root + "/host/secret-dir", projects)
        #expect(AgentEnvironment.check(tree.agent).contains { $0.path.hasSuffix("/projects") && $0.issue == "is not a directory" })
        let changes = try AgentEnvironment.sync(tree.agent)
        #expect(changes.contains { $0.hasPrefix("moved a symbolic link at \(projects) aside to projects.refused-") }, "\(changes)")
        #expect(tree.owner(tree.root + "/host/secret-dir").0 == 0 && tree.owner(tree.root + "/host/secret-dir").2 == 0o700)
        var st = stat()
        #expect(lstat(projects, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR && st.st_uid == 4242)
        let aside = try FileManager.default.contentsOfDirectory(atPath: tree.root + "/agent/config/state").filter {
            $0.hasPrefix("projects.refused-")
        }
        #expect(aside.count == 1)
        #expect(AgentEnvironment.check(tree.agent).isEmpty, "\(AgentEnvironment.check(tree.agent))")
    }

    /// The layout before state_dir kept projects/ and session-env/ in the credentials dir, and an OAuth login there.
    @Test func syncMovesTheOldLayoutIntoTheStateDirAndKeepsPromptsRoots() throws {
        let tree = try Tree()
        try FileManager.default.removeItem(atPath: tree.root + "/agent/config/state")
        let old = tree.root + "/agent/config/projects/-work-acme-widgets-1"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
        try "{}\n".write(toFile: old + "/s.jsonl", atomically: true, encoding: .utf8)
        try "{\"token\":1}".write(toFile: tree.root + "/agent/config/.credentials.json", atomically: true, encoding: .utf8)
        let changes = try AgentEnvironment.sync(tree.agent)
        #expect(changes.contains { $0.hasPrefix("moved") && $0.hasSuffix("/state/projects") }, "\(changes)")
        #expect(FileManager.default.fileExists(atPath: tree.root + "/agent/config/state/projects/-work-acme-widgets-1/s.jsonl"))
        #expect(!FileManager.default.fileExists(atPath: tree.root + "/agent/config/projects"))
        let login = tree.owner(tree.root + "/agent/config/state/.credentials.json")
        #expect(login.0 == 4242 && login.2 == 0o600)
        // The prompts' folder is root's: the agent reads a prompt there, it cannot change one.
        #expect(tree.owner(tree.root + "/agent/config/run") == (0, 4242, 0o750))
        #expect(tree.owner(tree.root + "/agent/config/state").0 == 4242)
        #expect(AgentEnvironment.check(tree.agent).isEmpty, "\(AgentEnvironment.check(tree.agent))")
        #expect(try AgentEnvironment.sync(tree.agent).isEmpty)
        // Prompt files a killed worker left are swept once older than the agent's timeout (and a margin); a running
        // run's is kept.
        let run = tree.root + "/agent/config/run"
        for name in ["old.prompt", "new.prompt"] { try "p".write(toFile: run + "/" + name, atomically: false, encoding: .utf8) }
        var twoHoursAgo = utimbuf(actime: time(nil) - 7200, modtime: time(nil) - 7200)
        utime(run + "/old.prompt", &twoHoursAgo)
        #expect(try AgentEnvironment.sync(tree.agent) == ["removed 1 prompt file(s) in \(run) left by runs that ended without their worker"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: run) == ["new.prompt"])
        // An agent-owned run/ (made by hand) is taken back.
        chown(tree.root + "/agent/config/run", 4242, 4242)
        #expect(AgentEnvironment.check(tree.agent).contains { $0.path.hasSuffix("/run") })
        try AgentEnvironment.sync(tree.agent)
        #expect(tree.owner(tree.root + "/agent/config/run").0 == 0)
    }

    /// What ships with a session: its folder's and memory's regular UTF-8 files within the caps; never a link's target,
    /// never a FIFO, never more than a cap.
    @Test func theSessionsFilesAreCollectedWithinTheirCapsAndNoLinkIsFollowed() throws {
        let tree = try Tree()
        let sid = "0b7e3a2c-59f1-4f6e-9c1d-3d2a8f1e7b42"
        let folder = tree.root + "/agent/config/state/projects/-work-acme-widgets-3"
        for dir in ["\(sid)/tool-results", "\(sid)/subagents", "memory", "other-session"] {
            try FileManager.default.createDirectory(atPath: folder + "/" + dir, withIntermediateDirectories: true)
        }
        try String(repeating: "x", count: 40_000).write(toFile: folder + "/\(sid)/tool-results/a.txt", atomically: true, encoding: .utf8)
        try "{}".write(toFile: folder + "/\(sid)/subagents/agent-1.jsonl", atomically: true, encoding: .utf8)
        try "{}".write(toFile: folder + "/\(sid)/subagents/agent-1.meta.json", atomically: true, encoding: .utf8)
        try "notes".write(toFile: folder + "/memory/MEMORY.md", atomically: true, encoding: .utf8)
        try "not this session".write(toFile: folder + "/other-session/x.txt", atomically: true, encoding: .utf8)
        try String(repeating: "y", count: 5000).write(toFile: folder + "/\(sid)/tool-results/big.txt", atomically: true, encoding: .utf8)
        try Data([0xff, 0xfe, 0x00]).write(to: URL(fileURLWithPath: folder + "/\(sid)/tool-results/binary.txt"))
        symlink(tree.root + "/host/secret.txt", folder + "/\(sid)/tool-results/link.txt")
        mkfifo(folder + "/\(sid)/tool-results/fifo.txt", 0o600)
        symlink(tree.root + "/host", folder + "/\(sid)/subagents/dirlink")

        let handle = try #require(try TranscriptStore.projectDirectory(tree.agent, cwd: "/work/acme/widgets/3", create: false))
        // Returning at all shows the FIFO never blocked it (the suite's time limit is the bound).
        let (files, skipped) = TranscriptStore.collectFiles(in: handle, sessionID: sid, perFile: 4500, total: 50_000, maxCount: 10)
        #expect(files.map(\.path) == ["\(sid)/subagents/agent-1.jsonl", "\(sid)/subagents/agent-1.meta.json", "memory/MEMORY.md"], "\(skipped)")
        #expect(skipped.contains { $0.hasPrefix("\(sid)/tool-results/a.txt: 40000 bytes, over queue.session_file_max_bytes") })
        #expect(skipped.contains { $0.contains("binary.txt: not UTF-8") })
        #expect(skipped.contains { $0.contains("link.txt: a symbolic link") } && skipped.contains { $0.contains("fifo.txt: a FIFO") })
        #expect(skipped.contains { $0.contains("dirlink: a symbolic link") })
        #expect(!files.contains { String(decoding: $0.bytes, as: UTF8.self).contains("secret") })
        let wide = TranscriptStore.collectFiles(in: handle, sessionID: sid, perFile: 1 << 20, total: 41_000, maxCount: 10)
        #expect(wide.files.first?.path == "\(sid)/subagents/agent-1.jsonl" || wide.files.contains { $0.path.hasSuffix("a.txt") })
        #expect(wide.skipped.contains { $0.contains("over queue.session_files_max_bytes") })
        // However many entries the agent makes, the walk looks at a bounded number, and reading one costs its size.
        for i in 0..<40 { #expect(FileManager.default.createFile(atPath: folder + "/memory/empty-\(i).md", contents: nil)) }
        let bounded = TranscriptStore.collectFiles(in: handle, sessionID: sid, perFile: 4 << 20, total: 50_000, maxCount: 500, maxEntries: 25)
        #expect(bounded.files.count < 25 && bounded.skipped.contains { $0.contains("more than 25 entries") }, "\(bounded.skipped)")
        #expect(bounded.skipped.count <= 21)
        let memory = try TranscriptStore.projectDirectory(tree.agent, cwd: "/work/acme/widgets/3", create: false)!.subdirectory("memory")
        guard case .contents(let empty) = try memory.readRegularFile("empty-0.md", maxBytes: 4 << 20) else { throw TestSetupError("unread") }
        #expect(empty.isEmpty && empty.capacity < 64 << 10, "an empty file held \(empty.capacity) bytes")
    }

    /// A login the operator kept to root is never handed to the agent; a credentials dir an older version gave the
    /// agent is taken back.
    @Test func syncCopiesOnlyALoginTheAgentCouldReadAndReclaimsTheCredentialsDir() throws {
        let tree = try Tree()
        let login = tree.root + "/agent/config/.credentials.json"
        try "{\"secret\":1}".write(toFile: login, atomically: true, encoding: .utf8)
        chmod(login, 0o600)
        chown(tree.root + "/agent/config", 4242, 4242)
        #expect(AgentEnvironment.check(tree.agent).contains { $0.issue.hasPrefix("owned by the agent's uid") })
        let changes = try AgentEnvironment.sync(tree.agent)
        #expect(!FileManager.default.fileExists(atPath: tree.root + "/agent/config/state/.credentials.json"), "\(changes)")
        #expect(tree.owner(tree.root + "/agent/config").0 == 0 && tree.owner(tree.root + "/agent/config").1 == 4242)
        chown(login, 4242, 4242)
        try AgentEnvironment.sync(tree.agent)
        #expect(FileManager.default.fileExists(atPath: tree.root + "/agent/config/state/.credentials.json"))
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
}

@Suite(.timeLimit(.minutes(5))) struct AgentCommandConfigTests {
    static func load(_ command: String) throws -> AppConfig {
        try AppConfig.parse(yaml: "agents: {dev: {image: i, command: \(command)}}", file: "test.yaml", environment: [:])
    }

    @Test func theTemplateLeavesPromptSessionAndPermissionsToTheWorker() throws {
        // An older config's whole `{{prompt}}` argument is accepted and dropped: the prompt goes on standard input.
        let old = try Self.load(#"[claude, -p, "{{prompt}}", --output-format, stream-json, --verbose]"#)
        #expect(old.agents["dev"]?.command == ["claude", "-p", "--output-format", "stream-json", "--verbose"])
        _ = try Self.load(#"[claude, -p, --output-format, stream-json, --verbose]"#)
        for (command, says) in [
            (#"[claude, "-p{{prompt}}"]"#, "puts {{prompt}} inside an argument"),
            (#"[claude, "--append-system-prompt={{prompt}}"]"#, "inside an argument"),
            (#"[claude, -p, --]"#, "must not contain `--`"), (#"["{{prompt}}"]"#, "must start with the agent program"),
            (#"[claude, -p, --dangerously-skip-permissions]"#, "permissions instead"),
            (#"[claude, -p, "--permission-mode=acceptEdits"]"#, "permissions instead"),
            (#"[claude, -p, --allowedTools, Bash]"#, "permissions instead"), (#"[claude, -p, --resume, x]"#, "sets it for every run"),
            (#"[claude, -p, --session-id, x]"#, "sets it for every run"),
        ] {
            #expect {
                try Self.load(command)
            } throws: { error in
                "\(error)".contains("agents.dev.command") && "\(error)".contains(says)
            }
        }
    }

    @Test func permissionsBecomeTheCLIsOwnFlags() throws {
        let config = try AppConfig.parse(
            yaml:
                "agents: {a: {image: i}, b: {image: i, permissions: {mode: acceptEdits, allowed_tools: [Bash, \"Bash(git:*)\"], disallowed_tools: WebFetch}}}",
            file: "t.yaml", environment: [:])
        #expect(config.agents["a"]?.permissions.arguments == ["--permission-mode", "bypassPermissions"])
        #expect(
            config.agents["b"]?.permissions.arguments == [
                "--permission-mode", "acceptEdits", "--allowedTools", "Bash,Bash(git:*)", "--disallowedTools", "WebFetch",
            ])
        let bypass = try AppConfig.parse(yaml: "agents: {a: {image: i, permissions: {mode: bypass}}}", file: "t.yaml", environment: [:])
        #expect(bypass.agents["a"]?.permissions.mode == "bypassPermissions")
        for (yaml, says) in [
            ("{mode: yolo}", "not a permission mode"), ("{allowed_tools: [\"a,b\"]}", "not a tool name"),
            ("{allowed_tools: [--x]}", "not a tool name"),
            ("{modes: x}", "unknown key"),
        ] {
            #expect {
                try AppConfig.parse(yaml: "agents: {a: {image: i, permissions: \(yaml)}}", file: "t.yaml", environment: [:])
            } throws: { error in
                "\(error)".contains("agents.a.permissions") && "\(error)".contains(says)
            }
        }
    }

    @Test func agentDirectoriesMustNotOverlap() throws {
        // The default layout: the state dir inside the agent's own credentials dir.
        let config = try AppConfig.parse(
            yaml: "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/a/work}}", file: "t.yaml", environment: [:])
        #expect(config.agents["a"]?.stateDir == "/srv/a/config/state")
        _ = try AppConfig.parse(
            yaml:
                "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/a/work}, b: {image: i, credentials_dir: /srv/b/config, work_dir: /srv/b/work}}",
            file: "t.yaml", environment: [:])
        for yaml in [
            "agents: {a: {image: i, credentials_dir: /srv/a/work/config, work_dir: /srv/a/work}}",
            "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/w}, b: {image: i, credentials_dir: /srv/b/config, work_dir: /srv/w/}}",
            "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/a/work}, b: {image: i, credentials_dir: /srv/a/work/b, work_dir: /srv/b/work}}",
            // a state dir is the agent's: nothing else may sit in it, and it may not be the prompts' run/
            "agents: {a: {image: i, credentials_dir: /srv/a/config, state_dir: /srv/a/work/state, work_dir: /srv/a/work}}",
            "agents: {a: {image: i, credentials_dir: /srv/a/config, work_dir: /srv/a/work}, b: {image: i, credentials_dir: /srv/b/config, state_dir: /srv/a/config/state/b, work_dir: /srv/b/work}}",
        ] {
            #expect {
                try AppConfig.parse(yaml: yaml, file: "t.yaml", environment: [:])
            } throws: { error in
                "\(error)".contains("overlap")
            }
        }
        // Inside its own credentials dir, a state dir is one plain name the CLI does not read as managed policy.
        for name in ["run", ".claude", "managed-settings.d", "CLAUDE.md", "a/b"] {
            #expect {
                try AppConfig.parse(
                    yaml: "agents: {a: {image: i, credentials_dir: /srv/a/config, state_dir: /srv/a/config/\(name), work_dir: /srv/a/work}}",
                    file: "t.yaml", environment: [:])
            } throws: { error in
                "\(error)".contains("agents.a.state_dir") && "\(error)".contains("is not allowed")
            }
        }
    }

    @Test func limitsParseAndAreValidated() throws {
        let config = try AppConfig.parse(yaml: "agents: {dev: {image: i, memory: 2g, pids_limit: 256}}", file: "t.yaml", environment: [:])
        #expect(config.agents["dev"]?.memoryBytes == 2 << 30 && config.agents["dev"]?.pidsLimit == 256)
        #expect(throws: ConfigError.self) { try AppConfig.parse(yaml: "agents: {dev: {image: i, memory: 12q}}", file: "t.yaml", environment: [:]) }
        #expect(throws: ConfigError.self) { try AppConfig.parse(yaml: "agents: {dev: {image: i, memory: 1m}}", file: "t.yaml", environment: [:]) }
        #expect(throws: ConfigError.self) { try AppConfig.parse(yaml: "agents: {dev: {image: i, pids_limit: 1}}", file: "t.yaml", environment: [:]) }
        // Not root, and not the container's keeper, whose processes a run must not reach.
        #expect {
            try AppConfig.parse(yaml: "agents: {dev: {image: i, user: \"65534:65534\"}}", file: "t.yaml", environment: [:])
        } throws: { error in
            "\(error)".contains("agents.dev.user") && "\(error)".contains("keeper")
        }
    }
}

@Suite struct UnstartedExecTests {
    /// An exec created and never started holds the stray sweep back for 30 s, not for good.
    @Test func anUnstartedExecHoldsTheSweepBackOnlyForAWhile() {
        let execs = UnstartedExecs()
        let start = ContinuousClock.now
        #expect(execs.anyRecent(["e1"], in: "c", within: .seconds(30), now: start))
        #expect(execs.anyRecent(["e1"], in: "c", within: .seconds(30), now: start + .seconds(29)))
        #expect(!execs.anyRecent(["e1"], in: "c", within: .seconds(30), now: start + .seconds(31)))
        // A new one starts its own wait; another container's are its own.
        #expect(execs.anyRecent(["e1", "e2"], in: "c", within: .seconds(30), now: start + .seconds(32)))
        #expect(execs.anyRecent(["e9"], in: "d", within: .seconds(30), now: start + .seconds(40)))
        #expect(!execs.anyRecent(["e1"], in: "c", within: .seconds(30), now: start + .seconds(40)))
        #expect(!execs.anyRecent([], in: "c", within: .seconds(30), now: start + .seconds(41)))
    }
}

@Suite struct HostCheckTests {
    /// The worker refuses to start when neither the engine's seccomp nor Yama keeps runs from ptracing each other.
    @Test func withoutSeccompOrYamaTheWorkerRefusesToStart() {
        #expect(HostChecks.ptraceBarrier(engineSecurityOptions: ["name=seccomp,profile=default"], yamaScope: nil) == nil)
        #expect(HostChecks.ptraceBarrier(engineSecurityOptions: [], yamaScope: "1\n") == nil)
        let refused = HostChecks.ptraceBarrier(engineSecurityOptions: ["name=apparmor"], yamaScope: "0\n")
        #expect(refused?.contains("kernel.yama.ptrace_scope is 0") == true && refused?.contains("sysctl -w kernel.yama.ptrace_scope=1") == true)
        #expect(HostChecks.ptraceBarrier(engineSecurityOptions: [], yamaScope: nil)?.contains("is missing") == true)
        #expect(HostChecks.seccompLine(engineSecurityOptions: [], yamaScope: nil).hasPrefix("FAIL  seccomp"))
        #expect(HostChecks.seccompLine(engineSecurityOptions: [], yamaScope: "2").hasPrefix("WARN  seccomp"))
        #expect(HostChecks.seccompLine(engineSecurityOptions: ["name=seccomp,profile=default"]).hasPrefix("ok    seccomp"))
        #expect(HostChecks.ptraceIsolation(scope: nil, seccomp: true).hasPrefix("WARN  ptrace isolation: the agent containers' seccomp profile"))
        #expect(HostChecks.ptraceIsolation(scope: nil, seccomp: true).contains("/proc/<pid>/mem"))
        #expect(HostChecks.ptraceIsolation(scope: "1", seccomp: true).hasPrefix("ok    ptrace isolation: kernel.yama.ptrace_scope is 1"))
    }

    @Test func ptraceIsolationIsSaidForEveryYamaSetting() {
        #expect(HostChecks.ptraceIsolation(scope: nil).hasPrefix("WARN  ptrace isolation: this kernel has no Yama"))
        #expect(HostChecks.ptraceIsolation(scope: "junk\n").hasPrefix("WARN  ptrace isolation: this kernel has no Yama"))
        let zero = HostChecks.ptraceIsolation(scope: "0\n")
        #expect(zero.hasPrefix("WARN  ptrace isolation: kernel.yama.ptrace_scope is 0") && zero.contains("sysctl -w kernel.yama.ptrace_scope=1"))
        #expect(HostChecks.ptraceIsolation(scope: "1\n").hasPrefix("ok    ptrace isolation: kernel.yama.ptrace_scope is 1"))
        #expect(HostChecks.ptraceIsolation(scope: "3").hasPrefix("ok    ptrace isolation: kernel.yama.ptrace_scope is 3"))
    }
}
