import Foundation
import Shared
import Testing

@Suite(.timeLimit(.minutes(5))) struct JobIDTests {
    @Test func shapeOrderAndUniqueness() {
        let id = JobID.make()
        #expect(id.count == 20 && id.wholeMatch(of: /[0-9a-z]{9}-[0-9a-z]{10}/) != nil, "\(id)")
        // Sortable by creation time, millisecond resolution.
        let early = JobID.make(now: Date(timeIntervalSince1970: 1_700_000_000))
        let later = JobID.make(now: Date(timeIntervalSince1970: 1_700_000_000.002))
        #expect(early < later)
        #expect(JobID.make(now: Date(timeIntervalSince1970: 0)).hasPrefix("000000000-"))
        // The time part is the milliseconds in base 36.
        #expect(Int(early.prefix(9), radix: 36) == 1_700_000_000_000)
        let many = Set((0..<20_000).map { _ in JobID.make(now: Date(timeIntervalSince1970: 1_700_000_000)) })
        #expect(many.count == 20_000)
    }
}

@Suite(.timeLimit(.minutes(5))) struct TimestampTests {
    /// The hand-written formatter writes Foundation's ISO 8601 format. Foundation truncates the binary fraction
    /// (x.185 may come out as .184), the formatter the nearest millisecond below the decimal value: equal text where
    /// the fraction is exact in binary, the same instant within a millisecond elsewhere.
    @Test func isoMatchesFoundation() throws {
        let style = Date.ISO8601FormatStyle().year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
            .timeZone(separator: .omitted)
        let exact = [0, 0.5, 0.25, 59.75, 951_782_400.5, 1_795_853_741.125, 4_102_444_799.875, -1.5].map { Date(timeIntervalSince1970: $0) }
        for date in exact { #expect(Timestamp.iso(date) == date.formatted(style)) }
        #expect(Timestamp.iso(Date(timeIntervalSince1970: 1_795_853_741.069)) == "2026-11-28T08:15:41.069Z")
        var g = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let date = Date(timeIntervalSince1970: Double(g.next(upperBound: UInt64(4_102_444_800_000))) / 1000)
            let ours = try #require(Timestamp.parse(Timestamp.iso(date)))
            let theirs = try #require(Timestamp.parse(date.formatted(style)))
            #expect(abs(ours.timeIntervalSince(theirs)) < 0.0015 && abs(ours.timeIntervalSince(date)) < 0.0015, "\(date.timeIntervalSince1970)")
        }
    }
}
