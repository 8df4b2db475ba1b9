import ArgumentParser
import Foundation
import Logging
import Shared
import WorkerCore

extension WorkerCommand {
    struct Containers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each agent's container and whether it matches its desired spec.", subcommands: [List.self, Rebuild.self],
            defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "list", abstract: "Each agent's container with its drift verdict.")
            @OptionGroup var common: WorkerOptions
            @Flag(help: "JSON output.") var json = false

            func run() async throws {
                let (config, logger) = try common.load()
                let rows = try await common.withDocker { docker in
                    let reconciler = ContainerReconciler(
                        docker: docker, containerPrefix: config.worker.containerPrefix, hostID: common.resolvedHostID, logger: logger)
                    var rows: [[String: Any]] = []
                    for (name, agent) in config.agents.sorted(by: { $0.key < $1.key }) {
                        let spec = await reconciler.spec(for: agent)
                        if let found = try await reconciler.inspect(agent) {
                            rows.append([
                                "agent": name, "container": spec.name, "id": String(found.id.prefix(12)),
                                "verdict": found.differences.isEmpty ? "matches" : "drifted", "differences": found.differences,
                            ])
                        } else {
                            rows.append(["agent": name, "container": spec.name, "id": "", "verdict": "missing", "differences": [] as [String]])
                        }
                    }
                    for old in try await reconciler.retired() {
                        let runs = try await reconciler.runningExecs(old.id)
                        let agent = String(old.name.dropFirst(config.worker.containerPrefix.count + 1).prefix { $0 != "." })
                        rows.append([
                            "agent": agent, "container": old.name, "id": String(old.id.prefix(12)), "verdict": "retired",
                            "differences": ["retired \(Timestamp.iso(old.at)); \(runs) run(s) still in it; removed by a worker once none is left"],
                        ])
                    }
                    return rows
                }
                if json {
                    let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    for row in rows {
                        print("\(row["agent"]!)\t\(row["container"]!)\t\(row["id"]!)\t\(row["verdict"]!)")
                        for d in row["differences"] as? [String] ?? [] { print("    - \(d)") }
                    }
                }
            }
        }

        struct Rebuild: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Recreate agent containers (named volumes survive).")
            @OptionGroup var common: WorkerOptions
            @Argument(help: "Agents to rebuild (default: all).") var agents: [String] = []

            func run() async throws {
                let (config, logger) = try common.load()
                let names = agents.isEmpty ? config.agents.keys.sorted() : agents
                if let unknown = names.first(where: { config.agents[$0] == nil }) {
                    throw ValidationError("'\(unknown)' is not a configured agent (agents: \(config.agents.keys.sorted().joined(separator: ", ")))")
                }
                try await common.withDocker { docker in
                    let reconciler = ContainerReconciler(
                        docker: docker, containerPrefix: config.worker.containerPrefix, hostID: common.resolvedHostID, logger: logger)
                    for name in names {
                        let result = try await reconciler.ensure(config.agents[name]!, force: true)
                        print("\(name): recreated \(result.containerID.prefix(12))")
                    }
                    for old in try await reconciler.retired() {
                        print("\(old.name): retired; runs in it finish there, then a running worker removes it")
                    }
                }
            }
        }
    }
}
