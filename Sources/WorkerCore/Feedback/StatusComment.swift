import Foundation
import Shared

/// The status comment of one job: rendered from the job record alone, so any worker renders the same text for the
/// same state, and the comment can always be brought up to date from Redis.
package enum StatusComment {
    /// The hidden first line that finds the comment again (after a crash, on another host). Only a comment that starts
    /// with it and was written by the same account counts.
    package static func marker(job: String, agent: String) -> String { "<!-- forge-hooks job=\(job) agent=\(agent) -->" }

    /// Longest excerpt of agent text in a comment; the whole comment stays far below every forge's limit (GitHub:
    /// 65,536 characters).
    package static let excerptLimit = 1500
    package static let errorLimit = 600

    package static func render(
        _ fields: [String: String], id: String, settings: FeedbackSettings, defaultMaxAttempts: Int, now: Date = Date()
    ) -> String {
        let agent = fields["agent"] ?? ""
        let name = "**\(plain(agent))**"
        let attempt = Int(fields["attempts"] ?? "") ?? 0
        let maxAttempts = Int(fields["max_attempts"] ?? "") ?? defaultMaxAttempts
        let jobRef = "job `\(id)`"
        var lines = [marker(job: id, agent: agent)]
        switch fields["status"] ?? "" {
        case "running":
            lines.append("🔄 \(name) is working on this — \(jobRef), attempt \(attempt)/\(maxAttempts).")
        case "failed":
            var line = "⚠️ \(name): attempt \(attempt)/\(maxAttempts) of \(jobRef) failed."
            if let due = Timestamp.date(score: fields["retry_at"]) {
                line += " Retrying at \(clock(due)) UTC (in \(span(due.timeIntervalSince(now))))."
            }
            lines.append(line)
            lines.append(contentsOf: block("Why", fields["error"], limit: errorLimit))
        case "succeeded":
            var facts: [String] = []
            if let ms = Double(fields["duration_ms"] ?? "") { facts.append("in \(span(ms / 1000))") }
            if let turns = Int(fields["num_turns"] ?? "") { facts.append("\(turns) turn\(turns == 1 ? "" : "s")") }
            if settings.includeCost {
                let turn = Double(fields["cost_usd"] ?? "").flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
                let session = Double(fields["session_cost_usd"] ?? "").flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
                if let turn, let session, fields["resumed_from"] != nil, session > turn {
                    facts.append(String(format: "$%.4f (session so far $%.4f)", turn, session))
                } else if let turn {
                    facts.append(String(format: "$%.4f", turn))
                } else if let session {
                    facts.append(String(format: "session so far $%.4f", session))
                }
            }
            if let denied = Int(fields["permission_denials"] ?? ""), denied > 0 {
                facts.append("\(denied) tool call\(denied == 1 ? "" : "s") denied")
            }
            if let session = fields["session_id"], AgentSessionID.isValid(session) { facts.append("session `\(session)`") }
            lines.append("✅ \(name) finished \(jobRef)\(facts.isEmpty ? "" : " — " + facts.joined(separator: ", ")).")
            lines.append(contentsOf: block("Result", fields["result"], limit: excerptLimit))
        case "dead":
            lines.append("❌ \(name) gave up on \(jobRef) after \(attempt) attempt\(attempt == 1 ? "" : "s").")
            lines.append(contentsOf: block("Error", fields["error"], limit: errorLimit))
            lines.append("An operator can run it again: `hooksctl requeue \(id)`, or Requeue on the dashboard's job page.")
        default:  // queued again: a worker stopped, an operator re-queued it
            let next = attempt + 1
            lines.append("⏳ \(name) will try again — \(jobRef), attempt \(min(next, maxAttempts))/\(maxAttempts) is queued.")
            lines.append(contentsOf: block("Why", fields["error"] ?? fields["note"], limit: errorLimit))
        }
        if let link = fields["feedback_link"], let url = URL(string: link), ["http", "https"].contains(url.scheme?.lowercased() ?? "") {
            lines.append("")
            lines.append("<sub>[Job details](\(link.replacingOccurrences(of: ")", with: "%29").replacingOccurrences(of: " ", with: "%20")))</sub>")
        }
        return lines.joined(separator: "\n")
    }

    /// Agent (or forge) text as an inert quoted block: a fenced code block, so no Markdown, HTML, link, image or
    /// `#123` reference is rendered, with mentions broken by a word joiner after `@` so no one is pinged and no
    /// agent started, control characters dropped, and the length bounded.
    package static func block(_ title: String, _ text: String?, limit: Int) -> [String] {
        guard let text, !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return [] }
        let cleaned = neutralize(text, limit: limit)
        // A fence longer than any run of backticks inside, so the text cannot close it.
        var longest = 0
        var run = 0
        for c in cleaned {
            run = c == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        return ["", "\(title):", "", fence + "text", cleaned, fence]
    }

    /// Mentions broken, control characters (but newlines and tabs) removed, at most `limit` characters (marked).
    package static func neutralize(_ text: String, limit: Int) -> String {
        var out = String.UnicodeScalarView()
        var kept = 0
        var truncated = false
        for scalar in text.unicodeScalars {
            if kept >= limit {
                truncated = true
                break
            }
            if scalar == "\r" { continue }
            if scalar.value < 0x20 && scalar != "\n" && scalar != "\t" { continue }
            switch scalar.value {
            case 0x7F...0x9F, 0x061C, 0x200B...0x200F, 0x2028, 0x2029, 0x202A...0x202E, 0x2060...0x2069, 0xFEFF:
                continue  // C1 controls, invisible and bidirectional marks, line separators (and word joiners of its own)
            default: break
            }
            out.append(scalar)
            kept += 1
            if scalar == "@" {
                out.append("\u{2060}")  // word joiner: `@name` no longer a mention
            }
        }
        var result = String(out).trimmingCharacters(in: .whitespacesAndNewlines)
        if truncated { result += "\n… (cut at \(limit) characters)" }
        return result
    }

    /// A name from the config (an agent) made safe for bold text.
    static func plain(_ text: String) -> String {
        String(text.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
    }

    static func clock(_ date: Date) -> String { String(Timestamp.iso(date).dropFirst(11).prefix(8)) }

    /// `42 s`, `3 min 5 s`, `1 h 2 min`.
    static func span(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        if s < 60 { return "\(s) s" }
        if s < 3600 { return s % 60 == 0 ? "\(s / 60) min" : "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \((s % 3600) / 60) min"
    }
}
