import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct Spend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What the agents' runs cost: per agent today, over 7 days and over --days, and the repositories that cost most.",
            discussion: """
                Each run's own cost (the job's cost_usd: the turn's cost, not the session's running total), added up per
                UTC day in hooks:spend:d:<unix day> when the run is recorded (kept 400 days).
                """)
        @OptionGroup var connection: Connection
        @Option(help: "Days to add up, today included (1-400).") var days = 30
        @Option(help: "How many repositories to list.") var top = 10
        @Flag(help: "JSON output for scripts.") var json = false

        func validate() throws {
            guard (1...400).contains(days) else { throw ValidationError("--days must be 1 to 400 (hooks:spend:d:<day> keys live 400 days)") }
            guard top >= 0 else { throw ValidationError("--top must not be negative") }
        }

        func run() async throws {
            try await withQueue(connection) { queue in
                let perDay = try await queue.spend(days: days)
                let summary = SpendSummary(perDay)
                if json {
                    try printJSON([
                        "days": days,
                        "agents": summary.agents.map {
                            ["agent": $0.agent, "today_usd": $0.today, "week_usd": $0.week, "total_usd": $0.total, "runs": $0.runs]
                        },
                        "repos": summary.repos.prefix(top).map { ["agent": $0.key.agent, "repo": $0.key.repo, "usd": $0.value] },
                        "per_day": perDay.map { ["day": Timestamp.iso($0.day).prefix(10), "agents": $0.agents] },
                    ])
                    return
                }
                print("SPEND (USD; each run's own cost, by UTC day)")
                printTable(
                    ["agent", "today", "7 days", "\(days) days", "runs"],
                    summary.agents.map { [TerminalText.safe($0.agent), usd($0.today), usd($0.week), usd($0.total), String($0.runs)] })
                if top > 0 && !summary.repos.isEmpty {
                    print("\nREPOSITORIES (\(days) days)")
                    printTable(
                        ["agent", "repository", "spent"],
                        summary.repos.prefix(top).map { [TerminalText.safe($0.key.agent), TerminalText.safe($0.key.repo), usd($0.value)] })
                }
            }
        }

        func usd(_ value: Double) -> String { String(format: "$%.4f", value) }
    }
}
