import Foundation
import Shared
import TestSupport
import Testing

@testable import WorkerCore

/// Sessions follow their issue across Docker hosts: two workers with different host ids, data roots and container
/// names on the same dockerd and Redis stand in for two hosts that share nothing but Redis.
@Suite(.serialized, .timeLimit(.minutes(5))) struct CrossHostTests {
    @Test func turnTwoOnAnotherHostResumesTurnOne() async throws {
        try await WorkerEnvironment.withTwoHosts { hostA, hostB in
            try await hostA.enqueue("turn one on A", number: 11)
            let one = try await hostA.runNext(hostA.executor(workerID: "A"))
            let sessionID = try #require(one["session_id"])
            #expect(one["host"] == hostA.hostID)
            let stored = try await hostA.client.send("HGETALL", "hooks:transcript:dev:acme/widgets:11").hash ?? [:]
            #expect(stored["session_id"] == sessionID && stored["data"]?.contains("turn one on A") == true, "\(stored.keys)")

            try await hostB.enqueue("turn two on B", number: 11)
            let two = try await hostB.runNext(hostB.executor(workerID: "B"))
            #expect(two["host"] == hostB.hostID)
            #expect(two["status"] == "succeeded", "\(two)")
            #expect(two["session_id"] == sessionID, "the session id must be unchanged")
            #expect(two["result"]?.contains("earlier turns: 1") == true, "B did not see A's turn: \(two)")
            #expect(two["warning"] == nil)
            let local = TranscriptStore.localPath(hostB.agent(), cwd: "/work/acme/widgets/11", sessionID: sessionID)
            #expect(try String(contentsOfFile: local, encoding: .utf8).contains("turn two on B"))

            // And back to A: A's copy is behind, so it is refreshed from Redis before the resume.
            try await hostA.enqueue("turn three on A", number: 11)
            let three = try await hostA.runNext(hostA.executor(workerID: "A"))
            #expect(three["result"]?.contains("earlier turns: 2") == true, "\(three)")
        }
    }

    @Test func hostGoneForGoodStillResumes() async throws {
        try await WorkerEnvironment.withTwoHosts { hostA, hostB in
            try await hostA.enqueue("turn one", number: 12)
            let one = try await hostA.runNext(hostA.executor(workerID: "A"))
            let sessionID = try #require(one["session_id"])
            // Host A is gone: its container and its whole data root.
            if let id = try await hostA.containerID() { try await hostA.docker.removeContainer(id) }
            try FileManager.default.removeItem(at: hostA.root)
            #expect(!FileManager.default.fileExists(atPath: hostA.root.path))

            try await hostB.enqueue("turn two", number: 12)
            let two = try await hostB.runNext(hostB.executor(workerID: "B"))
            #expect(two["status"] == "succeeded" && two["session_id"] == sessionID, "\(two)")
            #expect(two["result"]?.contains("earlier turns: 1") == true, "\(two)")
        }
    }

    @Test func transcriptOverTheCapRunsFreshWithAWarning() async throws {
        try await WorkerEnvironment.withTwoHosts(queueYAML: "{transcript_max_bytes: 100}") { hostA, hostB in
            try await hostA.enqueue("a prompt long enough to make the transcript exceed one hundred bytes", number: 13)
            let one = try await hostA.runNext(hostA.executor(workerID: "A"))
            let sessionID = try #require(one["session_id"])
            #expect(one["warning"]?.contains("over queue.transcript_max_bytes") == true, "\(one)")
            let record = try await hostA.client.send("HGETALL", "hooks:transcript:dev:acme/widgets:13").hash ?? [:]
            #expect(record["data"] == nil && record["skipped"]?.contains("over queue.transcript_max_bytes") == true)

            try await hostB.enqueue("turn two", number: 13)
            let two = try await hostB.runNext(hostB.executor(workerID: "B"))
            #expect(two["status"] == "succeeded", "\(two)")
            #expect(two["session_id"] != sessionID)
            #expect(two["result"]?.contains("earlier turns: 0") == true)
            let warning = two["warning"] ?? ""
            #expect(warning.contains("was not shipped") && warning.contains("started a fresh session"), "\(warning)")
        }
    }

    @Test func projectFolderEncoding() {
        #expect(TranscriptStore.projectFolder(forCwd: "/work/acme/my.repo/12") == "-work-acme-my-repo-12")
        #expect(TranscriptStore.projectFolder(forCwd: "/home/claude/über_x") == "-home-claude--ber-x")
    }
}
