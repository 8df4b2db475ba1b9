import ArgumentParser
import Foundation
import Logging
import Shared
import WorkerCore

extension WorkerCommand {
    struct AgentEnv: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agent-env", abstract: "Agent host directories.", subcommands: [Sync.self])

        struct Sync: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "Create each agent's credentials dir and run/ (root:<gid>), state dir with projects/ and session-env/ and work dir "
                    + "(owned by the agent uid:gid); move an older layout into place; remove stale prompt files.")
            @OptionGroup var common: WorkerOptions

            func run() async throws {
                let (config, _) = try common.load()
                for (name, agent) in config.agents.sorted(by: { $0.key < $1.key }) {
                    let changes = try AgentEnvironment.sync(agent)
                    print("\(name): \(changes.isEmpty ? "already in order" : changes.joined(separator: "; "))")
                }
            }
        }
    }
}
