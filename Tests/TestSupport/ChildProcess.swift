import Foundation

/// A child process started with posix_spawn and reaped with waitpid. (Foundation's `Process.waitUntilExit` can hang
/// when called from a Swift concurrency thread on Linux, so tests do not use it.)
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    private var reaped = false
    private let lock = NSLock()

    /// Starts `path` with `arguments`; stdout/stderr go to `output` (a file path) or /dev/null.
    public init(_ path: String, _ arguments: [String], environment: [String: String]? = nil, output: String? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let out = output ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of the test process: a listening socket it holds (an in-process server) would otherwise live on
        // in every child and keep its port taken after the test closed it.
        // (glibc ≥ 2.34 has the call; Swift's Glibc module does not declare it.)
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = environment ?? ProcessInfo.processInfo.environment
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        // Threads of a Swift process block most signals; a child inherits that mask and would ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestSetupError("cannot start \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// Sends `signal` and waits for the process to exit; returns its wait status.
    @discardableResult
    public func terminate(signal: Int32 = SIGTERM) -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        if reaped { return 0 }
        kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        reaped = true
        return status
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }

    /// Waits for the process to exit on its own; returns the exit code (or 128+signal).
    public func wait() -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        reaped = true
        let code = (status >> 8) & 0xff
        let sig = status & 0x7f
        return sig != 0 ? 128 + sig : code
    }

    /// `terminate`, with the wait on a thread of its own: async tests must not hold a thread of the cooperative pool
    /// (two of them on this machine) while a worker shuts down.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) async -> Int32 {
        await withCheckedContinuation { continuation in Thread { continuation.resume(returning: self.terminate(signal: signal)) }.start() }
    }

    /// `wait`, with the wait on a thread of its own.
    public func exited() async -> Int32 {
        await withCheckedContinuation { continuation in Thread { continuation.resume(returning: self.wait()) }.start() }
    }

    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        if reaped { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            reaped = true
            return false
        }
        return true
    }

    deinit { terminate() }
}
