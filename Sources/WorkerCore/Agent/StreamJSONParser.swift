import Foundation
import Shared

/// Reads the agent CLI's `--output-format stream-json` lines: the session id and what the CLI says about itself
/// (version, model, tools, MCP servers) from the `system/init` line, tool calls from `assistant` lines, and the final
/// `result` line (subtype, is_error, costs, turns, result text, errors, permission denials).
struct StreamJSONParser: Sendable {
    var sessionID: String?
    /// From the init line: `claude_code_version`, `model`, how many tools, and each MCP server as `name (status)`.
    var cliVersion: String?
    var model: String?
    var toolCount: Int?
    var mcpServers: [String] = []
    /// Tool calls the model made (`tool_use` blocks in assistant lines, subagents' included).
    var toolCalls = 0
    /// `permission_denials` of the result line: how many, and the tools denied (in order, repeated).
    var permissionDenials = 0
    var deniedTools: [String] = []
    /// The turn's own cost: the sum of `model_usage_since_last_result[*].costUSD` (print mode has one result per run).
    /// Nil when the CLI does not report it; `costUSD` is then the session's running total only.
    var turnCostUSD: Double?
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
        guard line.utf8.first == UInt8(ascii: "{") else { return }
        toolCalls += Self.count(Self.toolUse, in: line)
        // Only `system` and `result` lines carry what is read below; most lines are neither, and a full JSON parse of
        // each would cost more than the rest of the output path.
        guard Self.mayCarryTypeOfInterest(line) else { return }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
        let type = object["type"] as? String
        if type == "system", object["subtype"] as? String == "init" {
            cliVersion = (object["claude_code_version"] as? String).map { Self.bounded($0, 40) }
            model = (object["model"] as? String).map { Self.bounded($0, 80) }
            toolCount = (object["tools"] as? [Any])?.count
            mcpServers = ((object["mcp_servers"] as? [Any]) ?? []).prefix(20).compactMap { item in
                guard let server = item as? [String: Any], let name = server["name"] as? String else { return nil }
                return Self.bounded(name, 60) + ((server["status"] as? String).map { " (\(Self.bounded($0, 20)))" } ?? "")
            }
        }
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
        let denials = (object["permission_denials"] as? [Any]) ?? []
        permissionDenials = denials.count
        deniedTools = denials.prefix(50).map { Self.bounded((($0 as? [String: Any])?["tool_name"] as? String) ?? "?", 60) }
        if let usage = object["model_usage_since_last_result"] as? [String: Any] {
            let costs = usage.values.compactMap { (($0 as? [String: Any])?["costUSD"] as? NSNumber)?.doubleValue }
            turnCostUSD = costs.isEmpty ? nil : costs.reduce(0, +)
        } else {
            turnCostUSD = nil
        }
    }

    /// The denied tools as `Bash ×2, Write` (first seen first).
    var deniedToolsSummary: String {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for tool in deniedTools {
            if counts[tool] == nil { order.append(tool) }
            counts[tool, default: 0] += 1
        }
        return order.map { counts[$0]! > 1 ? "\($0) ×\(counts[$0]!)" : $0 }.joined(separator: ", ")
    }

    private static let toolUse = Array("\"type\":\"tool_use\"".utf8)

    /// How often `needle` occurs in `line` (no JSON parse: a `tool_use` block's type is written this way exactly).
    static func count(_ needle: [UInt8], in line: String) -> Int {
        var line = line
        return line.withUTF8 { bytes in
            guard var p = bytes.baseAddress else { return 0 }
            let end = p + bytes.count
            var n = 0
            while end - p >= needle.count, let q = memchr(p, Int32(needle[0]), end - p) {
                let at = UnsafePointer(q.assumingMemoryBound(to: UInt8.self))
                guard end - at >= needle.count else { break }
                if memcmp(at, needle, needle.count) == 0 {
                    n += 1
                    p = at + needle.count
                } else {
                    p = at + 1
                }
            }
            return n
        }
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
