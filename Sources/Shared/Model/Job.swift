import Foundation

/// The lifecycle states a job record's `status` field takes.
public enum JobStatus: String, Sendable, CaseIterable {
    /// On its agent's queue (or just taken off it).
    case queued
    /// Parked behind an earlier job of the same session; put back on the queue when that one ends.
    case waiting
    /// A worker runs it.
    case running
    /// Finished successfully.
    case succeeded
    /// An attempt failed; a retry is scheduled (`retry_at`).
    case failed
    /// Out of attempts (or not retryable); its id is on the dead list.
    case dead
}

/// A job to be created by the producer.
public struct NewJob: Sendable {
    public var id: String
    public var agent: String
    public var session: SessionKey
    /// Everything else the record holds (`forge`, `event`, `repo`, `number`, `delivery`, `prompt`, …).
    public var fields: [(String, String)]

    public init(id: String = JobID.make(), agent: String, session: SessionKey, fields: [(String, String)]) {
        self.id = id
        self.agent = agent
        self.session = session
        self.fields = fields
    }
}

/// A job a worker has reserved: its record as it was when the attempt started.
public struct ReservedJob: Sendable {
    public let id: String
    public let attempt: Int
    public let fields: [String: String]

    public var agent: String { fields["agent"] ?? "" }
    public var session: String { fields["session"] ?? "" }
    public var maxAttempts: Int? { fields["max_attempts"].flatMap { Int($0) } }
    public subscript(_ field: String) -> String? { fields[field] }
}

/// Job ids: time-ordered (sortable by creation), short, URL- and shell-safe: `<ms base36>-<10 random base36>`.
public enum JobID {
    public static func make(now: Date = Date()) -> String {
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: 20)
        out[9] = UInt8(ascii: "-")
        var ms = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        for i in stride(from: 8, through: 0, by: -1) where ms > 0 {
            out[i] = alphabet[Int(ms % 36)]
            ms /= 36
        }
        // One draw from the system generator (a syscall) gives the ten random digits: 36^10 < 2^52 < 2^64.
        var rng = SystemRandomNumberGenerator()
        var random = rng.next(upperBound: UInt64(3_656_158_440_062_976))  // 36^10
        for i in 10..<20 {
            out[i] = alphabet[Int(random % 36)]
            random /= 36
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
}

/// Timestamps as stored in job records: ISO 8601 UTC with milliseconds, readable in redis-cli.
public enum Timestamp {
    /// `2026-11-28T08:15:41.069Z`: milliseconds truncated, as Foundation's ISO 8601 style writes them. Written by
    /// hand: the format style costs a calendar and a formatter per call, and the producer writes one per webhook.
    public static func iso(_ date: Date = Date()) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(ms >= 0 ? ms / 1000 : (ms - 999) / 1000)
        let fraction = Int(ms - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: 24)
        func put(_ value: Int, at offset: Int, digits: Int) {
            var v = value
            for k in stride(from: offset + digits - 1, through: offset, by: -1) {
                out[k] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, at: 0, digits: 4)
        put(Int(parts.tm_mon) + 1, at: 5, digits: 2)
        put(Int(parts.tm_mday), at: 8, digits: 2)
        put(Int(parts.tm_hour), at: 11, digits: 2)
        put(Int(parts.tm_min), at: 14, digits: 2)
        put(Int(parts.tm_sec), at: 17, digits: 2)
        put(fraction, at: 20, digits: 3)
        for (offset, byte) in [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")] as [(Int, Unicode.Scalar)] {
            out[offset] = UInt8(byte.value)
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func milliseconds(_ date: Date = Date()) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    /// A zset score as whole milliseconds; nil when it is not a finite number in range (a score written by hand as
    /// `inf` or `1e300` must not crash a reader).
    public static func score(_ text: String?) -> Int64? {
        guard let text, let value = Double(text), value.isFinite, abs(value) < 9.0e15 else { return nil }
        return Int64(value)
    }

    /// A millisecond score as a date; nil as for `score`.
    public static func date(score text: String?) -> Date? {
        score(text).map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    public static func parse(_ text: String) -> Date? {
        try? Date(
            text, strategy: .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}
