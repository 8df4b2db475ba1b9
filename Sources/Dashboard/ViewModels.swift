import Foundation
import Shared

/// Turns queue read models into the dictionaries the templates render. Pure functions of their input, so they are
/// unit-tested without a server.
enum ViewModels {
    /// `2026-11-30 17:49:24Z`. Built from the stored ISO form by hand: a date formatter per value costs more than the
    /// rest of a page.
    static func time(_ date: Date?) -> String {
        guard let date else { return "" }
        guard abs(date.timeIntervalSince1970) < 9e12 else { return "?" }  // out of range (written by hand)
        return time(iso: Timestamp.iso(date))
    }

    /// `2026-11-30T17:49:24.069Z` → `2026-11-30 17:49:24Z`; anything else is shown as it is.
    static func time(iso: String?) -> String {
        guard let iso, !iso.isEmpty else { return "" }
        let bytes = Array(iso.utf8)
        guard bytes.count >= 20, bytes[10] == UInt8(ascii: "T"), bytes.last == UInt8(ascii: "Z") else { return iso }
        var out = Array(bytes[0..<19])
        out[10] = UInt8(ascii: " ")
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    /// `5s`, `3m 20s`, `2h 5m`, `3d 4h`.
    static func age(_ interval: TimeInterval) -> String {
        guard interval.isFinite else { return "?" }
        let s = Int(min(max(0, interval), 1e12))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m \(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h \(s % 3600 / 60)m" }
        return "\(s / 86400)d \(s % 86400 / 3600)h"
    }

    static func bytes(_ count: Int) -> String {
        if count < 1024 { return "\(count) B" }
        if count < 1 << 20 { return FinishedChart.format(Double(count) / 1024) + " KiB" }
        return FinishedChart.format(Double(count) / Double(1 << 20)) + " MiB"
    }

    static func transcript(_ info: TranscriptInfo?) -> String {
        guard let info else { return "not shipped" }
        if let skipped = info.skipped { return "skipped: \(skipped)" }
        return "\(bytes(info.bytes)) from \(info.host)"
    }

    /// The live part of the overview.
    static func overview(
        _ overview: Overview, perMinute: [String: [FinishedBucket]], perHour: [String: [FinishedBucket]], workers: [WorkerInfo],
        running: [String: JobRecord], spend: SpendSummary = SpendSummary([]), now: Date, base: String
    ) -> [String: Any] {
        let spent = Dictionary(spend.agents.map { ($0.agent, $0) }, uniquingKeysWith: { a, _ in a })
        let agents: [[String: Any]] = overview.agents.map { counts in
            let minutes = perMinute[counts.agent] ?? []
            let hours = perHour[counts.agent] ?? []
            return [
                "agent": counts.agent, "agentQuery": HTML.query(counts.agent), "queued": counts.queued, "running": counts.running,
                "waiting": counts.waiting, "delayed": counts.delayed, "dead": counts.dead, "sessions": counts.sessions,
                "feedback": counts.feedback,
                "hourChart": FinishedChart.svg(minutes, label: "\(counts.agent): jobs finished per minute, last hour") { time($0) },
                "dayChart": FinishedChart.svg(hours, label: "\(counts.agent): jobs finished per hour, last day") { time($0) },
                "hourSucceeded": minutes.reduce(0) { $0 + $1.succeeded }, "hourFailed": minutes.reduce(0) { $0 + $1.failed },
                "daySucceeded": hours.reduce(0) { $0 + $1.succeeded }, "dayFailed": hours.reduce(0) { $0 + $1.failed },
                "spendToday": usd(spent[counts.agent]?.today ?? 0), "spendWeek": usd(spent[counts.agent]?.week ?? 0),
                "spendMonth": usd(spent[counts.agent]?.total ?? 0),
            ]
        }
        let repos: [[String: Any]] = spend.repos.prefix(10).map { ["agent": $0.key.agent, "repo": $0.key.repo, "spent": usd($0.value)] }
        let workerRows: [[String: Any]] = workers.sorted { $0.id < $1.id }.map { worker in
            let runs: [[String: Any]] = worker.held.compactMap { id in
                guard let record = running[id], record.status == .running else { return nil }
                return ["jobID": id, "jobPath": isJobID(id) ? id : false, "jobAgent": record.agent, "jobSubject": subject(record)]
            }
            return [
                "workerID": worker.id, "host": worker.host, "slots": worker.slots, "agents": worker.agents.joined(separator: ", "),
                "heartbeatAge": age(now.timeIntervalSince(worker.lastHeartbeat)), "alive": worker.alive,
                "leaseLeft": worker.leaseRemaining.map { age($0.seconds) } ?? "", "runs": runs,
            ]
        }
        return [
            "base": base, "updated": time(now), "agents": agents, "workers": workerRows, "delayedTotal": overview.delayedTotal,
            "deadTotal": overview.deadTotal, "sessionsTotal": overview.sessionsTotal, "sampled": overview.sampled, "spendRepos": repos,
            "hasSpendRepos": !repos.isEmpty,
        ]
    }

    /// `$0.1234`; two decimals from a dollar up.
    static func usd(_ value: Double) -> String {
        value >= 1 ? String(format: "$%.2f", value) : String(format: "$%.4f", value)
    }

    static func subject(_ record: JobRecord) -> String {
        guard let repo = record["repo"], !repo.isEmpty else { return "" }
        return "\(repo)#\(record["number"] ?? "?")"
    }

    /// Job ids as the producer makes them: letters, digits, `-` and `_`. Anything else in Redis (written by hand, or
    /// planted) is shown as text but never put in a link or a form's action, where `../purge?` would retarget it.
    static func isJobID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 95 }
    }

    /// One row of a job table.
    static func jobRow(_ record: JobRecord) -> [String: Any] {
        let status = record["status"] ?? ""
        let linkable = isJobID(record.id)
        return [
            "id": record.id, "idPath": linkable ? record.id : false, "status": status, "agent": record.agent, "repo": record["repo"] ?? "",
            "number": record["number"] ?? "",
            "title": record["title"] ?? "",
            "event": [record["event"], record["action"]].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "."),
            "attempts": record["attempts"] ?? "", "created": time(iso: record["created_at"]),
            "finished": status == "failed" || record["retry_at"] != nil && status == "queued"
                ? retryTime(record["retry_at"]) : time(iso: record["finished_at"]),
            "requeueable": linkable && (status == "dead" || status == "failed"),
        ]
    }

    static func retryTime(_ milliseconds: String?) -> String {
        guard let date = Timestamp.date(score: milliseconds) else { return "" }
        return "retry " + time(date)
    }

    /// Fields shown first on a job page, in this order; every other field follows, sorted.
    static let fieldOrder = [
        "status", "agent", "forge", "event", "action", "repo", "title", "url", "sender", "rule", "prompt", "attempts", "max_attempts",
        "deferrals", "note", "worker", "host", "container", "cwd", "session", "session_id", "resumed_from", "cost_usd", "session_cost_usd",
        "num_turns", "tool_calls", "permission_denials", "denied_tools",
        "cli_version", "model",
        "duration_ms", "exit_code", "result", "warning", "error", "retry_at", "created_at", "started_at", "finished_at",
    ]
    /// Internal bookkeeping not worth a row.
    static let hiddenFields: Set<String> = ["log_lines", "seq", "number", "is_pull_request"]

    static func jobFields(_ record: JobRecord, base: String) -> [[String: Any]] {
        var rows: [[String: Any]] = []
        let known = Set(fieldOrder)
        let names = fieldOrder.filter { record[$0] != nil } + record.fields.keys.filter { !known.contains($0) && !hiddenFields.contains($0) }.sorted()
        for name in names {
            let value = record[name] ?? ""
            var row: [String: Any] = ["name": name, "value": value]
            switch name {
            case "repo":
                let kind = record["is_pull_request"] == "1" ? "pull request" : "issue"
                row["value"] = "\(value)#\(record["number"] ?? "?") (\(kind))"
                if let link = HTML.safeLink(record["url"]) { row["link"] = link }
            case "url":
                if let link = HTML.safeLink(value) { row["link"] = link }
            case "session":
                row["internal"] = "\(base)/session?key=\(HTML.query(value))"
            case "retry_at":
                row["value"] = retryTime(value)
            case "cost_usd":
                if let cost = Double(value), cost.isFinite { row["value"] = String(format: "$%.4f (this turn)", cost) }
            case "session_cost_usd":
                if let cost = Double(value), cost.isFinite { row["value"] = String(format: "$%.4f (the session so far)", cost) }
            case "duration_ms":
                if let ms = Timestamp.score(value) { row["value"] = age(Double(ms) / 1000) + " (\(value) ms)" }
            case "created_at", "started_at", "finished_at":
                row["value"] = time(iso: value)
            default:
                break
            }
            rows.append(row)
        }
        return rows
    }
}
