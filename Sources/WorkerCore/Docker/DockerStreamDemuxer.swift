import Foundation

/// Splits Docker's multiplexed exec/attach stream into stdout and stderr lines, holding at most `maxLineBytes` of
/// any one line.
///
/// Frames are `[stream(1 = stdout, 2 = stderr), 0, 0, 0, size (UInt32 big-endian)] payload`; a frame may span
/// several network chunks and a chunk may hold several frames. Payload bytes are consumed as they arrive (a frame is
/// never buffered whole), and lines may span frames. The agent controls these bytes: a line longer than
/// `maxLineBytes` — one gigabyte without a newline, say — keeps its first `maxLineBytes` and is emitted with a
/// `cutMarker` note when its newline finally comes; the rest is counted, not stored. `finish()` flushes a last
/// unterminated line.
struct DockerStreamDemuxer {
    enum Stream: UInt8, Sendable { case stdout = 1, stderr = 2 }

    /// Default cap of one line: large enough for the CLI's final `result` line, small against the worker's memory.
    static let defaultMaxLineBytes = 1 << 20

    let maxLineBytes: Int
    private var header: [UInt8] = []
    private var frameStream: Stream = .stdout
    private var frameRemaining = 0
    private var partial: [[UInt8]] = [[], []]
    private var dropped: [Int] = [0, 0]

    init(maxLineBytes: Int = Self.defaultMaxLineBytes) {
        self.maxLineBytes = max(1, maxLineBytes)
        header.reserveCapacity(8)
    }

    /// The note that ends a line cut at the cap.
    static func cutMarker(dropped: Int) -> String { " … [line cut: \(dropped) more bytes not kept]" }

    /// Feeds raw bytes; returns every complete line now available, in order.
    mutating func feed<C: Collection>(_ bytes: C) -> [(Stream, String)] where C.Element == UInt8 {
        var out: [(Stream, String)] = []
        if let done: Void = bytes.withContiguousStorageIfAvailable({ feed(buffer: $0, into: &out) }) {
            _ = done
        } else {
            Array(bytes).withUnsafeBufferPointer { feed(buffer: $0, into: &out) }
        }
        return out
    }

    private mutating func feed(buffer: UnsafeBufferPointer<UInt8>, into out: inout [(Stream, String)]) {
        var i = 0
        while i < buffer.count {
            if frameRemaining == 0 {
                let need = 8 - header.count
                let take = min(need, buffer.count - i)
                header.append(contentsOf: buffer[i..<(i + take)])
                i += take
                if header.count == 8 {
                    frameStream = Stream(rawValue: header[0]) ?? .stdout
                    frameRemaining = header[4...].reduce(0) { $0 << 8 | Int($1) }
                    header.removeAll(keepingCapacity: true)
                }
                continue
            }
            let take = min(frameRemaining, buffer.count - i)
            consume(UnsafeBufferPointer(rebasing: buffer[i..<(i + take)]), stream: frameStream, into: &out)
            frameRemaining -= take
            i += take
        }
    }

    private mutating func consume(_ payload: UnsafeBufferPointer<UInt8>, stream: Stream, into out: inout [(Stream, String)]) {
        let s = stream == .stdout ? 0 : 1
        var start = 0
        while start < payload.count {
            let rest = payload.count - start
            let found = memchr(payload.baseAddress! + start, Int32(UInt8(ascii: "\n")), rest)
            let end = found.map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - payload.baseAddress! } ?? payload.count
            append(UnsafeBufferPointer(rebasing: payload[start..<end]), to: s)
            guard found != nil else { break }
            out.append((stream, takeLine(s)))
            start = end + 1
        }
    }

    private mutating func append(_ bytes: UnsafeBufferPointer<UInt8>, to s: Int) {
        let room = maxLineBytes - partial[s].count
        if bytes.count <= room {
            partial[s].append(contentsOf: bytes)
        } else {
            if room > 0 { partial[s].append(contentsOf: bytes[0..<room]) }
            dropped[s] += bytes.count - max(0, room)
        }
    }

    private mutating func takeLine(_ s: Int) -> String {
        var line = String(decoding: partial[s], as: UTF8.self)
        if dropped[s] > 0 { line += Self.cutMarker(dropped: dropped[s]) }
        partial[s].removeAll(keepingCapacity: partial[s].capacity <= 64 << 10)
        dropped[s] = 0
        return line
    }

    /// Any unterminated last lines.
    mutating func finish() -> [(Stream, String)] {
        var out: [(Stream, String)] = []
        for (s, stream) in [(0, Stream.stdout), (1, .stderr)] where !partial[s].isEmpty || dropped[s] > 0 {
            out.append((stream, takeLine(s)))
        }
        return out
    }
}
