/// One command as its arguments, kept in a single contiguous buffer so building argv for hiredis costs one allocation.
/// Arguments are binary-safe.
public struct RedisCommand: Sendable, CustomStringConvertible {
    private var buffer: [UInt8] = []
    private var ends: [Int] = []

    public init(_ arguments: [String]) {
        buffer.reserveCapacity(arguments.reduce(0) { $0 + $1.utf8.count })
        ends.reserveCapacity(arguments.count)
        for argument in arguments { append(argument) }
    }

    public init(_ arguments: String...) { self.init(arguments) }

    public init(bytes arguments: [[UInt8]]) {
        for argument in arguments { append(bytes: argument) }
    }

    public mutating func append(_ argument: String) {
        buffer.append(contentsOf: argument.utf8)
        ends.append(buffer.count)
    }

    public mutating func append(bytes argument: [UInt8]) {
        buffer.append(contentsOf: argument)
        ends.append(buffer.count)
    }

    public mutating func append(contentsOf arguments: [String]) {
        for argument in arguments { append(argument) }
    }

    public var count: Int { ends.count }

    /// The command name, for error messages.
    public var name: String {
        guard let first = ends.first else { return "" }
        return String(decoding: buffer[0..<first], as: UTF8.self).uppercased()
    }

    public var description: String { name }

    /// Calls `body` with argc/argv/argvlen pointing into the buffer (valid only during the call).
    func withArgv<R>(_ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
        let lengths: [Int] = ends.indices.map { i in ends[i] - (i == 0 ? 0 : ends[i - 1]) }
        // A zero-length buffer has no base address; hiredis needs a valid pointer even for "".
        let storage = buffer.isEmpty ? [0] : buffer
        return storage.withUnsafeBufferPointer { raw in
            let base = UnsafeRawPointer(raw.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = ends.indices.map { i in base + (i == 0 ? 0 : ends[i - 1]) }
            return argv.withUnsafeMutableBufferPointer { argvBuf in
                lengths.withUnsafeBufferPointer { lens in
                    body(Int32(ends.count), argvBuf.baseAddress!, lens.baseAddress!)
                }
            }
        }
    }
}
