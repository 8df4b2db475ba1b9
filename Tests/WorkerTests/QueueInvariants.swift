import Foundation
import Shared
import TestSupport

/// What the fault tests check at the end of every scenario, from Redis and from the stub's run log
/// (`STUB_RUN_LOG`: a `start`/`tick`/`end` line per run, stamped with the kernel's uptime in 1/100 s).
struct QueueInvariants: CustomStringConvertible {
    /// One agent run as the run log saw it: alive from `start` to `last`.
    struct Run {
        let marker: String
        let jobID: String
        var start: Int
        var last: Int
        var ended: Bool
    }

    var jobs = 0
    var succeeded = 0
    var dead = 0
    var deadWithoutReason: [String] = []
    /// Accepted jobs that are neither succeeded nor dead.
    var lost: [String] = []
    var attempts = 0
    var runs = 0
    /// Two runs of one job alive at the same time.
    var doubleRuns: [String] = []
    /// Two runs of one session alive at the same time.
    var sessionOverlaps: [String] = []
    /// A run of a session's later job that started before an earlier job's last run.
    var orderViolations: [String] = []
    /// Queue keys that still hold ids: processing lists, queues, delayed, pending sets.
    var leftovers: [String] = []

    /// Whether a run log was read; then every succeeded job must have at least one run in it, or the run checks
    /// above would pass on an empty log.
    var checkedRuns = false
    var runsMissing: Bool { checkedRuns && runs < succeeded }

    var reattempts: Int { attempts - jobs }
    var holds: Bool {
        lost.isEmpty && deadWithoutReason.isEmpty && doubleRuns.isEmpty && sessionOverlaps.isEmpty && orderViolations.isEmpty
            && leftovers.isEmpty && !runsMissing
    }

    var description: String {
        var lines = [
            "jobs \(jobs): succeeded \(succeeded), dead \(dead), lost \(lost.count); attempts \(attempts) (re-attempts \(reattempts)); "
                + "agent runs \(runs); double runs \(doubleRuns.count); session overlaps \(sessionOverlaps.count); "
                + "order violations \(orderViolations.count); leftover keys \(leftovers.count)"
                + (runsMissing ? "; RUN LOG MISSING RUNS (\(runs) runs for \(succeeded) succeeded jobs)" : "")
        ]
        for (name, list) in [
            ("lost", lost), ("dead without reason", deadWithoutReason), ("double runs", doubleRuns), ("session overlaps", sessionOverlaps),
            ("order violations", orderViolations), ("leftovers", leftovers),
        ] where !list.isEmpty {
            lines.append("  \(name): \(list.prefix(10).joined(separator: "; "))")
        }
        return lines.joined(separator: "\n")
    }

    static func readRuns(_ path: String) -> [Run] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        var runs: [String: Run] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 3, let at = Int(parts[2]) else { continue }
            let marker = String(parts[1])
            let jobID = marker.split(separator: ".").dropLast().joined(separator: ".")
            var run = runs[marker] ?? Run(marker: marker, jobID: jobID, start: at, last: at, ended: false)
            run.start = min(run.start, at)
            run.last = max(run.last, at)
            if parts[0] == "end" { run.ended = true }
            runs[marker] = run
        }
        return Array(runs.values)
    }

    /// Checks `sessions` (each a list of job ids in the order they were enqueued) against Redis and the run log.
    static func check(_ env: WorkerEnvironment, sessions: [[String]], runLog: String?) async throws -> QueueInvariants {
        var report = QueueInvariants()
        let keys = env.config.keys
        for id in sessions.joined() {
            report.jobs += 1
            let job = try await env.queue.job(id) ?? [:]
            report.attempts += Int(job["attempts"] ?? "") ?? 0
            switch job["status"] {
            case "succeeded": report.succeeded += 1
            case "dead":
                report.dead += 1
                if (job["error"] ?? "").isEmpty { report.deadWithoutReason.append(id) }
            default: report.lost.append("\(id) (\(job["status"] ?? "no record"), worker \(job["worker"] ?? "-"))")
            }
        }
        for pattern in ["\(keys.prefix):processing:*", "\(keys.prefix):queue:*", keys.pendingPattern, keys.delayed] {
            for key in try await env.client.send("KEYS", pattern).strings ?? [] {
                let type = try await env.client.send("TYPE", key).string ?? ""
                let count = try await env.client.send(type == "zset" ? "ZCARD" : "LLEN", key).int ?? 0
                if count > 0 { report.leftovers.append("\(key) holds \(count)") }
            }
        }
        guard let runLog else { return report }
        let runs = readRuns(runLog)
        report.runs = runs.count
        report.checkedRuns = true
        let byJob = Dictionary(grouping: runs, by: \.jobID)
        for (job, list) in byJob {
            let sorted = list.sorted { $0.start < $1.start }
            for (a, b) in zip(sorted, sorted.dropFirst()) where b.start < a.last {
                report.doubleRuns.append("\(job): \(a.marker) alive until \(a.last), \(b.marker) started \(b.start)")
            }
        }
        for ids in sessions {
            let order = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
            let sorted = runs.filter { order[$0.jobID] != nil }.sorted { $0.start < $1.start }
            for (a, b) in zip(sorted, sorted.dropFirst()) {
                if a.jobID != b.jobID && b.start < a.last {
                    report.sessionOverlaps.append("\(a.marker) alive until \(a.last), \(b.marker) started \(b.start)")
                }
                if order[b.jobID]! < order[a.jobID]! {
                    report.orderViolations.append("\(b.jobID) (job \(order[b.jobID]!)) ran after \(a.jobID) (job \(order[a.jobID]!))")
                }
            }
        }
        return report
    }
}
