import Foundation
import Shared

/// Reads the agent CLI's `--output-format stream-json` lines: the session id from the `system/init` line, and the
/// final `result` line (subtype, is_error, cost, turns, result text, errors).
struct StreamJSONParser: Sendable {
    var sessionID: String?
    var sawResult = false
    var subtype: String?
    var isError: Bool?
    var costUSD: Double?
    var numTurns: Int?
    var result: String?
    var errors: [String] = []
    /// A `session_id` the agent printed that is not a UUID (bounded, for the job's warning); it is never used.
    var rejectedSessionID: String?

    static let noConversation = "No conversation found with session ID"

    mutating func consume(_ line: String) {
        // Only `system` and `result` lines carry what is read here; most lines are neither, and a full JSON parse of
        // each would cost more than the rest of the output path.
        guard line.utf8.first == UInt8(ascii: "{"), Self.mayCarryTypeOfInterest(line) else { return }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
        let type = object["type"] as? String
        if let sid = object["session_id"] as? String, !sid.isEmpty, type == "system" || type == "result" {
            if AgentSessionID.isValid(sid) {
                sessionID = sid.lowercased()
            } else if rejectedSessionID == nil {
                rejectedSessionID = Self.bounded(sid, 120)
            }
        }
        guard type == "result" else { return }
        sawResult = true
        subtype = object["subtype"] as? String
        isError = (object["is_error"] as? NSNumber)?.boolValue
        costUSD = (object["total_cost_usd"] as? NSNumber)?.doubleValue
        numTurns = (object["num_turns"] as? NSNumber)?.intValue
        result = (object["result"] as? String).map { Self.bounded($0, Self.resultMaxCharacters) }
        errors = ((object["errors"] as? [Any]) ?? []).prefix(10).map { Self.bounded("\($0)", 1000) }
    }

    private static let result = Array("\"result\"".utf8)
    private static let system = Array("\"system\"".utf8)

    /// Whether the line holds a `"result"` or `"system"` token at all (a cheap scan before the parse).
    static func mayCarryTypeOfInterest(_ line: String) -> Bool {
        var line = line
        return line.withUTF8 { bytes in
            guard var p = bytes.baseAddress else { return false }
            let end = p + bytes.count
            while end - p >= 8, let q = memchr(p, Int32(UInt8(ascii: "\"")), end - p) {
                let at = UnsafePointer(q.assumingMemoryBound(to: UInt8.self))
                if end - at >= 8 && at[7] == UInt8(ascii: "\"") && (memcmp(at, result, 8) == 0 || memcmp(at, system, 8) == 0) { return true }
                p = at + 1
            }
            return false
        }
    }

    /// How much of the result text is kept, in bytes (the job record stores less).
    static let resultMaxCharacters = 16 * 1024

    /// At most `limit` UTF-8 bytes (cut on a scalar boundary), with a marker when cut. Bytes, not characters: one
    /// `Character` can hold a megabyte of combining marks.
    static func bounded(_ text: String, _ limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var scalars = String.UnicodeScalarView()
        var used = 0
        for scalar in text.unicodeScalars {
            let size = UTF8.width(scalar)
            if used + size > limit { break }
            scalars.append(scalar)
            used += size
        }
        return String(scalars) + "… [cut at \(limit) bytes]"
    }
}
