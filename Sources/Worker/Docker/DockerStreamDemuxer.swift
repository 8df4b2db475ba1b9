/// Splits Docker's multiplexed exec/attach stream into stdout and stderr lines.
///
/// Frames are `[stream(1 = stdout, 2 = stderr), 0, 0, 0, size (UInt32 big-endian)] payload`; a frame may span
/// several network chunks and a chunk may hold several frames. Lines may also span frames; `finish()` flushes a last
/// unterminated line.
struct DockerStreamDemuxer {
    enum Stream: UInt8, Sendable { case stdout = 1, stderr = 2 }

    private var pending: [UInt8] = []
    private var partialLines: [Stream: [UInt8]] = [:]

    /// Feeds raw bytes; returns every complete line now available, in order.
    mutating func feed<C: Collection>(_ bytes: C) -> [(Stream, String)] where C.Element == UInt8 {
        pending.append(contentsOf: bytes)
        var out: [(Stream, String)] = []
        var offset = 0
        while pending.count - offset >= 8 {
            let header = pending[offset..<offset + 8]
            let size = header.dropFirst(4).reduce(0) { $0 << 8 | Int($1) }
            guard pending.count - offset - 8 >= size else { break }
            let stream = Stream(rawValue: header[header.startIndex]) ?? .stdout
            let payload = pending[(offset + 8)..<(offset + 8 + size)]
            offset += 8 + size
            var line = partialLines[stream] ?? []
            for byte in payload {
                if byte == UInt8(ascii: "\n") {
                    out.append((stream, String(decoding: line, as: UTF8.self)))
                    line.removeAll(keepingCapacity: true)
                } else {
                    line.append(byte)
                }
            }
            partialLines[stream] = line
        }
        if offset > 0 { pending.removeFirst(offset) }
        return out
    }

    /// Any unterminated last lines.
    mutating func finish() -> [(Stream, String)] {
        var out: [(Stream, String)] = []
        for stream in [Stream.stdout, .stderr] {
            if let line = partialLines[stream], !line.isEmpty { out.append((stream, String(decoding: line, as: UTF8.self))) }
        }
        partialLines = [:]
        return out
    }
}
