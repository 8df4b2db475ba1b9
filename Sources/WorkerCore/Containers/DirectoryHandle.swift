import Foundation

/// An open directory descriptor: every file operation the root worker makes under a path the agent can write goes
/// through one of these, relative to a descriptor it already trusts, and never follows a link.
///
/// The agent (uid 1000 in its container) owns its bind mounts on the host and can swap any entry in them for a symlink,
/// FIFO, socket or device at any moment. Checking a path and then using it is a race it can win, so nothing here works
/// by path below the trusted root: each step is `openat`/`mkdirat`/`renameat` from the parent's descriptor with
/// `O_NOFOLLOW`, ownership is changed with `fchown` on the opened descriptor, and type and size come from `fstat` of
/// that same descriptor. Non-regular files are opened `O_NONBLOCK` (a FIFO never blocks the worker) and refused.
///
/// Blocking: these are plain system calls on local directories. Callers on the cooperative pool should hop off it
/// (`Offload.run`) for anything that reads or writes file contents.
final class DirectoryHandle: @unchecked Sendable {
    /// The descriptor; closed when the handle goes away.
    let fd: Int32
    /// The host path, for messages only: never used to reach the directory again.
    let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Opens a directory the operator configured (credentials dir, work dir). Symlinks in that path are the operator's
    /// own choice and are followed; everything below it is reached with `subdirectory` and friends.
    static func openTrusted(_ path: String) throws(AgentPathError) -> DirectoryHandle {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw AgentPathError(path: path, problem: .system("cannot open directory", errno)) }
        return DirectoryHandle(fd: fd, path: path)
    }

    /// Opens (optionally creates) the directory `name` below this one without following a link, and gives it to
    /// `owner` if it belongs to someone else.
    /// - Throws: `AgentPathError` naming the path when `name` is a link, a FIFO, a file… where a directory belongs.
    func subdirectory(_ name: String, create mode: mode_t? = nil, owner: (uid: UInt32, gid: UInt32)? = nil) throws(AgentPathError)
        -> DirectoryHandle
    {
        let child = try childPath(name)
        if let mode, mkdirat(fd, name, mode) != 0, errno != EEXIST {
            throw AgentPathError(path: child, problem: .system("cannot create directory", errno))
        }
        let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard sub >= 0 else {
            let code = errno
            if code == ENOENT { throw AgentPathError(path: child, problem: .missing) }
            if let kind = entryKind(name), kind != .directory {
                throw AgentPathError(path: child, problem: .unexpectedType(kind, expected: .directory))
            }
            throw AgentPathError(path: child, problem: .system("cannot open directory", code))
        }
        let handle = DirectoryHandle(fd: sub, path: child)
        if let owner { try handle.chownIfNeeded(owner) }
        return handle
    }

    /// Walks `components` (each one a single name) down from here, creating and owning each level as `subdirectory`.
    func descend(_ components: [String], create mode: mode_t? = nil, owner: (uid: UInt32, gid: UInt32)? = nil) throws(AgentPathError)
        -> DirectoryHandle
    {
        var current = self
        for component in components { current = try current.subdirectory(component, create: mode, owner: owner) }
        return current
    }

    /// Gives this directory (not what it contains) to `owner`, through its descriptor.
    @discardableResult
    func chownIfNeeded(_ owner: (uid: UInt32, gid: UInt32)) throws(AgentPathError) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw AgentPathError(path: path, problem: .system("cannot stat", errno)) }
        if st.st_uid == owner.uid && st.st_gid == owner.gid { return false }
        guard fchown(fd, owner.uid, owner.gid) == 0 else {
            throw AgentPathError(path: path, problem: .system("cannot chown to \(owner.uid):\(owner.gid) (run the worker as root)", errno))
        }
        return true
    }

    enum ReadResult: Equatable, Sendable {
        case missing
        case contents([UInt8])
        /// Larger than the cap (by `fstat`, or it grew past the cap while being read).
        case tooLarge(bytes: Int)
    }

    /// Reads the regular file `name` if it holds at most `maxBytes`: size is checked on the opened descriptor before
    /// reading, and at most `maxBytes + 1` bytes are ever read.
    /// - Throws: `AgentPathError` when `name` is a link, FIFO, socket, device or directory.
    func readRegularFile(_ name: String, maxBytes: Int) throws(AgentPathError) -> ReadResult {
        let child = try childPath(name)
        let file = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard file >= 0 else {
            let code = errno
            if code == ENOENT { return .missing }
            if let kind = entryKind(name), kind != .regularFile {
                throw AgentPathError(path: child, problem: .unexpectedType(kind, expected: .regularFile))
            }
            throw AgentPathError(path: child, problem: .system("cannot open", code))
        }
        defer { close(file) }
        var st = stat()
        guard fstat(file, &st) == 0 else { throw AgentPathError(path: child, problem: .system("cannot stat", errno)) }
        let kind = EntryKind(mode: st.st_mode)
        guard kind == .regularFile else { throw AgentPathError(path: child, problem: .unexpectedType(kind, expected: .regularFile)) }
        if Int(st.st_size) > maxBytes { return .tooLarge(bytes: Int(st.st_size)) }
        // Sized by what fstat says (an empty file costs nothing, whatever the cap), grown only if the file grows while
        // read, and never past the cap + 1.
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var total = 0
        while true {
            if total == bytes.count {
                if bytes.count > maxBytes { break }
                bytes.append(contentsOf: repeatElement(0, count: min(maxBytes + 1, max(bytes.count * 2, 4096)) - bytes.count))
            }
            let n = bytes.withUnsafeMutableBytes { read(file, $0.baseAddress! + total, $0.count - total) }
            if n < 0 {
                if errno == EINTR { continue }
                throw AgentPathError(path: child, problem: .system("cannot read", errno))
            }
            if n == 0 { break }
            total += n
        }
        if total > maxBytes { return .tooLarge(bytes: max(total, Int(st.st_size))) }
        return .contents(Array(bytes[..<total]))
    }

    /// Replaces `name` with `bytes` atomically: a fresh temp file (`O_EXCL | O_NOFOLLOW`) owned by `owner`, then
    /// `renameat` over the old entry — which replaces a link itself, never what it points to.
    func writeFileAtomically(_ name: String, bytes: [UInt8], mode: mode_t = 0o600, owner: (uid: UInt32, gid: UInt32)) throws(AgentPathError) {
        let child = try childPath(name)
        let temp = ".forge-hooks-\(UUID().uuidString.lowercased()).tmp"
        let file = openat(fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard file >= 0 else { throw AgentPathError(path: "\(path)/\(temp)", problem: .system("cannot create", errno)) }
        var failure: AgentPathError?
        if fchown(file, owner.uid, owner.gid) != 0 {
            failure = AgentPathError(path: child, problem: .system("cannot chown the new file to \(owner.uid):\(owner.gid)", errno))
        }
        var written = 0
        while failure == nil && written < bytes.count {
            let n = bytes.withUnsafeBytes { write(file, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { failure = AgentPathError(path: child, problem: .system("cannot write", errno)) } else { written += n }
        }
        close(file)
        if failure == nil && renameat(fd, temp, fd, name) != 0 {
            let code = errno
            if let kind = entryKind(name), kind != .regularFile, kind != .symlink {
                failure = AgentPathError(path: child, problem: .unexpectedType(kind, expected: .regularFile))
            } else {
                failure = AgentPathError(path: child, problem: .system("cannot replace", code))
            }
        }
        if let failure {
            unlinkat(fd, temp, 0)
            throw failure
        }
    }

    /// The names in this directory (not `.` and `..`), at most `limit` of them.
    func entries(limit: Int = 10_000) -> [String] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else { return [] }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while names.count < limit, let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The size of the regular file `name`, without following it; nil when it is missing or not a regular file.
    func regularFileSize(_ name: String) -> Int? {
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }

    /// What `name` is, without following it; nil when it does not exist.
    func entryKind(_ name: String) -> EntryKind? {
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return EntryKind(mode: st.st_mode)
    }

    private func childPath(_ name: String) throws(AgentPathError) -> String {
        let child = "\(path)/\(name)"
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.utf8.contains(0) else {
            throw AgentPathError(path: child, problem: .unsafeName)
        }
        return child
    }
}

/// What a directory entry is, as `lstat` sees it.
enum EntryKind: String, Sendable, Equatable {
    case directory = "a directory"
    case regularFile = "a regular file"
    case symlink = "a symbolic link"
    case fifo = "a FIFO"
    case socket = "a socket"
    case device = "a device"
    case other = "an unknown kind of file"

    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFDIR: self = .directory
        case S_IFREG: self = .regularFile
        case S_IFLNK: self = .symlink
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR, S_IFBLK: self = .device
        default: self = .other
        }
    }
}

/// A path under an agent's bind mounts that the worker refused to touch, or could not.
struct AgentPathError: Error, CustomStringConvertible, Equatable {
    package enum Problem: Equatable {
        case missing
        case unexpectedType(EntryKind, expected: EntryKind)
        case unsafeName
        case system(String, Int32)
    }

    let path: String
    let problem: Problem

    var description: String {
        switch problem {
        case .missing: return "\(path) does not exist"
        case .unexpectedType(let found, let expected):
            return
                "refused \(path): it is \(found.rawValue) where \(expected.rawValue) belongs, so the worker did not follow or open it "
                + "(the agent can write there: inspect it, then remove it to let the session continue)"
        case .unsafeName: return "refused \(path): not a single path component"
        case .system(let what, let code): return "\(what) \(path): \(String(cString: strerror(code)))"
        }
    }
}

/// Runs blocking work (file I/O) on a Dispatch thread instead of Swift's cooperative pool.
enum Offload {
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .utility).async { continuation.resume(with: Result { try work() }) }
        }
    }
}
