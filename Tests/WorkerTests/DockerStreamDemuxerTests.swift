import Foundation
import Shared
import Testing

@testable import WorkerCore

@Suite(.timeLimit(.minutes(5))) struct DemuxerTests {
    static func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let n = UInt32(payload.count)
        return [stream, 0, 0, 0, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + payload
    }

    @Test func framesSplitAtEveryPossibleByte() {
        let bytes = Self.frame(1, "{\"type\":\"system\"}\nhalf a ") + Self.frame(2, "warning: x\n") + Self.frame(1, "line\nlast without newline")
        // Feed the same stream cut at every position, and byte by byte: the lines must come out the same.
        let expected: [(DockerStreamDemuxer.Stream, String)] = [
            (.stdout, "{\"type\":\"system\"}"), (.stderr, "warning: x"), (.stdout, "half a line"), (.stdout, "last without newline"),
        ]
        for cut in 0...bytes.count {
            var d = DockerStreamDemuxer()
            var out = d.feed(bytes[..<cut])
            out += d.feed(bytes[cut...])
            out += d.finish()
            #expect(out.map(\.0) == expected.map(\.0) && out.map(\.1) == expected.map(\.1), "cut at \(cut)")
        }
        var d = DockerStreamDemuxer()
        var out: [(DockerStreamDemuxer.Stream, String)] = []
        for b in bytes { out += d.feed([b]) }
        out += d.finish()
        #expect(out.map(\.1) == expected.map(\.1))
    }

    @Test func largeFrameAndEmptyFrame() {
        let big = String(repeating: "x", count: 100_000)
        var d = DockerStreamDemuxer()
        let out = d.feed(Self.frame(1, "") + Self.frame(1, big + "\n"))
        #expect(out.count == 1 && out[0].1.count == 100_000)
    }

    @Test func aLineOverTheCapKeepsItsHeadAndTheNextLineIsIntact() {
        let long = String(repeating: "x", count: 100)
        let bytes = Self.frame(1, long) + Self.frame(1, long + "\nnext\n") + Self.frame(2, "err\n")
        for cut in 0...bytes.count {
            var d = DockerStreamDemuxer(maxLineBytes: 16)
            var out = d.feed(bytes[..<cut])
            out += d.feed(bytes[cut...])
            out += d.finish()
            #expect(
                out.map(\.1) == [String(repeating: "x", count: 16) + DockerStreamDemuxer.cutMarker(dropped: 184), "next", "err"], "cut at \(cut)")
        }
    }

    @Test func anEndlessLineHoldsAtMostTheCap() {
        // 64 MiB without a newline, in 64 KiB frames: nothing comes out until the end, and what is held stays at the cap.
        var d = DockerStreamDemuxer(maxLineBytes: 1 << 20)
        let chunk = Self.frame(1, String(repeating: "y", count: 64 << 10))
        for _ in 0..<1024 { #expect(d.feed(chunk).isEmpty) }
        let last = d.finish()
        #expect(last.count == 1 && last[0].1.utf8.count == (1 << 20) + DockerStreamDemuxer.cutMarker(dropped: 63 << 20).utf8.count)
    }
}
