import ArgumentParser
import Foundation
import Shared
import WorkerCore

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "Worker",
        abstract: "Runs agent jobs from Redis in each agent's Docker container, and repairs agent containers.",
        subcommands: [Run.self, SmokeCheck.self, AgentEnv.self, Containers.self],
        defaultSubcommand: Run.self)
}
