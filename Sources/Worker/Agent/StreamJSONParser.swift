import Foundation

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

    static let noConversation = "No conversation found with session ID"

    mutating func consume(_ line: String) {
        guard line.first == "{", let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
        let type = object["type"] as? String
        if let sid = object["session_id"] as? String, !sid.isEmpty, type == "system" || type == "result" { sessionID = sid }
        guard type == "result" else { return }
        sawResult = true
        subtype = object["subtype"] as? String
        isError = (object["is_error"] as? NSNumber)?.boolValue
        costUSD = (object["total_cost_usd"] as? NSNumber)?.doubleValue
        numTurns = (object["num_turns"] as? NSNumber)?.intValue
        result = object["result"] as? String
        errors = (object["errors"] as? [Any])?.map { "\($0)" } ?? []
    }
}
