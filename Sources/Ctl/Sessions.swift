import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stored agent sessions (session key → CLI session id).")
        @OptionGroup var connection: Connection
        @Option(help: "Only this agent.") var agent: String?
        @Option(help: "Only this repository (owner/name).") var repo: String?
        @Flag(help: "JSON output.") var json = false

        func run() async throws {
            try await withQueue(connection) { queue in
                var rows: [[String: String]] = []
                for session in try await queue.sessions() {
                    guard let parsed = try? SessionKey(parsing: session.key) else { continue }
                    if let agent, parsed.agent != agent { continue }
                    if let repo, parsed.repository != repo { continue }
                    let transcript =
                        session.transcript.map { $0.skipped == nil ? "\($0.bytes) bytes from \($0.host)" : "not shipped (over cap)" } ?? "-"
                    rows.append([
                        "session": session.key, "session_id": session.sessionID,
                        "last_used": session.lastUsed.map { humanDuration(Date().timeIntervalSince($0)) + " ago" } ?? "-",
                        "transcript": transcript,
                    ])
                }
                if json { return try printJSON(rows) }
                printTable(
                    ["session", "session id", "last used", "transcript in Redis"],
                    rows.map { [$0["session"]!, $0["session_id"]!, $0["last_used"]!, $0["transcript"]!] })
            }
        }
    }

    struct SessionCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "session", abstract: "One session.", subcommands: [Drop.self])

        struct Drop: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Forget a session: the next job of that issue starts a fresh conversation.")
            @OptionGroup var connection: Connection
            @Argument(help: "Session key: agent:owner/repo:number") var key: String

            func run() async throws {
                do {
                    _ = try SessionKey(parsing: key)
                } catch {
                    throw ValidationError("\(error)")
                }
                try await withQueue(connection) { queue in
                    if try await queue.dropSession(key) {
                        print("dropped \(TerminalText.safe(key))")
                    } else {
                        FileHandle.standardError.write(Data("error: no session '\(key)' (see `hooksctl sessions`)\n".utf8))
                        throw ExitCode(1)
                    }
                }
            }
        }
    }
}
