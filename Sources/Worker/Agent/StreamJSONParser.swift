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
        guard line.first == "{", let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
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
