import ArgumentParser
import Foundation
import Shared

extension Hooksctl {
    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead (or failed, waiting for retry) jobs back on their queue with fresh attempts.")
        @OptionGroup var connection: Connection
        @Argument(help: "Job ids.") var ids: [String] = []
        @Flag(help: "Every job on the dead list.") var dead = false

        func validate() throws {
            if ids.isEmpty && !dead { throw ValidationError("name job ids, or --dead for every dead job") }
        }

        func run() async throws {
            try await withQueue(connection) { queue in
                var targets = ids
                if dead { targets += try await queue.deadJobIDs() }
                var failures = 0
                for id in targets {
                    switch try await queue.requeue(id) {
                    case .queued(let agent): print("\(id): re-queued on \(queue.keys.queue(agent))")
                    case .refused(let status):
                        failures += 1
                        print("\(id): not re-queued: it is \(status) (only dead or failed jobs can be)")
                    case .missing:
                        failures += 1
                        print("\(id): no such job")
                    }
                }
                if targets.isEmpty { print("nothing to re-queue") }
                if failures > 0 { throw ExitCode(1) }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete finished job records (succeeded; with --dead also dead ones) and their logs now.")
        @OptionGroup var connection: Connection
        @Flag(help: "Also delete dead jobs and empty the dead list.") var dead = false

        func run() async throws {
            try await withQueue(connection) { queue in
                // In the queue core: each record's status is checked in the same step as its deletion.
                let purged = try await queue.purgeFinished(includeDead: dead)
                print("purged \(purged) finished job record(s)")
            }
        }
    }
}
