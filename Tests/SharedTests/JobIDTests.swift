import Foundation
import Shared
import Testing

@Suite struct JobIDTests {
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
