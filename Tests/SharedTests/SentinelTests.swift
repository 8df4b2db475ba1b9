import Foundation
import TestSupport
import Testing

@testable import Shared

/// The hiredis client through Sentinel: real redis-server processes (a master, a replica, three sentinels).
@Suite(.serialized, .timeLimit(.minutes(5))) struct SentinelTests {
    @Test func followsAFailoverAndNeverUsesTheOldMasterAgain() async throws {
        let cluster = try await SentinelCluster()
        defer { cluster.stop() }
        let client = RedisClient(configuration: cluster.configuration, connections: 2)
        defer { client.shutdown() }
        try await client.send("SET", "before", "1")
        // Replication is asynchronous: killed at once, the master could take the write with it (a loaded run did).
        #expect(try await client.send("WAIT", "1", "5000").int == 1, "the replica did not acknowledge the write")
        #expect(try await client.send("ROLE").array?.first?.string == "master")

        kill(try #require(cluster.master.pid), SIGKILL)
        let killed = ContinuousClock.now
        // Writes fail while the sentinels agree the master is down and promote the replica, then succeed there.
        var written = false
        while !written && ContinuousClock.now - killed < .seconds(30) {
            do {
                try await client.send("SET", "after", "2")
                written = true
            } catch {
                #expect(error.isConnectionError, "\(error)")
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(written, "\(cluster.log())")
        let switched = ContinuousClock.now - killed
        #expect(switched > cluster.downAfter, "a write succeeded before the sentinels could have promoted anyone")
        #expect(try await cluster.masterPort() == cluster.replica.port)
        #expect(try await client.send("GET", "before").string == "1", "the replica had the write from before")

        // The old master comes back (once every sentinel names the new one, as docs/high-availability.md says): the
        // sentinels turn it into a replica, and the client keeps writing to the new one.
        try await cluster.waitForMaster(cluster.replica.port, everySentinel: true)
        cluster.master.stop()
        try cluster.master.start()
        let old = RedisClient(configuration: cluster.master.configuration, connections: 1)
        defer { old.shutdown() }
        let deadline = ContinuousClock.now + .seconds(30)
        // (Turning into a replica, it closes its clients' connections: a failed look is retried.)
        while ContinuousClock.now < deadline, (try? await old.send("ROLE"))?.array?.first?.string != "slave" {
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(try await old.send("ROLE").array?.first?.string == "slave", "\(cluster.log())")
        // Reads are not replicated, so any GET the old node counts came from a client. (Writes would be: a replica
        // counts the commands its master sends it.)
        for n in 0..<20 { try await client.send("SET", "later-\(n)", "x") }
        for n in 0..<20 { #expect(try await client.send("GET", "later-\(n)").string == "x") }
        let stats = try await old.send("INFO", "commandstats").string ?? ""
        #expect(!stats.contains("cmdstat_get:"), "a client used the old master: \(stats)")
    }

    /// A busy pool confirms its master with the sentinels about once a second in all, not once a second per
    /// connection: one connection asks, the others use its answer.
    @Test func aBusyPoolAsksTheSentinelsAboutOnceASecond() async throws {
        // A long down-after: sentinels drop (and remake) their links to each other after half of it without a reply.
        let cluster = try await SentinelCluster(downAfter: .seconds(5))
        defer { cluster.stop() }
        let client = RedisClient(configuration: cluster.configuration, connections: 6)
        defer { client.shutdown() }
        func busy(for duration: Duration) async throws {
            let until = ContinuousClock.now + duration
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 { group.addTask { while ContinuousClock.now < until { try await client.send("PING") } } }
                try await group.waitForAll()
            }
        }
        // Each look opens a connection to a sentinel, which counts the connections it accepted (so does this count's
        // own; sentinels do not support INFO commandstats).
        func accepted() async throws -> Int {
            var total = 0
            for port in cluster.sentinelPorts {
                let sentinel = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(port)"), connections: 1)
                defer { sentinel.shutdown() }
                let info = try await sentinel.send("INFO", "stats").string ?? ""
                let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_connections_received:") }
                total += line.flatMap { Int($0.split(separator: ":")[1]) } ?? 0
            }
            return total
        }
        try await busy(for: .milliseconds(200))  // every connection connected
        let before = try await accepted()
        try await busy(for: .seconds(4))
        let asked = try await accepted() - before - cluster.sentinelPorts.count
        print("sentinel looks by a busy pool of 6 connections in 4 s: \(asked)")
        // About 4 in 4 s; a look per connection would be about 24. The slack is for a slow answer (others then ask too)
        // and for sentinels reconnecting to each other on a loaded machine.
        #expect(asked >= 2 && asked <= 12, "the pool asked the sentinels \(asked) times in 4 s")
    }

    @Test func badSentinelConfigurationIsNamed() async throws {
        let cluster = try await SentinelCluster()
        defer { cluster.stop() }
        var wrongName = cluster.configuration
        wrongName.sentinel?.masterName = "no-such-master"
        let client = RedisClient(configuration: wrongName, connections: 1)
        defer { client.shutdown() }
        await #expect(
            throws: RedisError.unknownMaster(
                name: "no-such-master", sentinels: cluster.sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ", "))
        ) {
            try await client.ping()
        }

        // A data user that may not run ROLE (an ACL) is told which grant to add, instead of "a failover is under way".
        let admin = RedisClient(configuration: cluster.master.configuration, connections: 1)
        defer { admin.shutdown() }
        try await admin.send("ACL", "SETUSER", "limited", "on", ">limited-password", "~*", "&*", "+@all", "-role")
        var restricted = cluster.configuration
        (restricted.username, restricted.password) = ("limited", "limited-password")
        let limited = RedisClient(configuration: restricted, connections: 1)
        defer { limited.shutdown() }
        do {
            try await limited.ping()
            Issue.record("a user without ROLE connected through the sentinels")
        } catch {
            #expect("\(error)".contains("may not run ROLE") && "\(error)".contains("ACL SETUSER <user> +role"), "\(error)")
        }

        var unreachable = cluster.configuration
        unreachable.sentinel?.addresses = [.init(host: "127.0.0.1", port: try freePort()), .init(host: "127.0.0.1", port: try freePort())]
        let lost = RedisClient(configuration: unreachable, connections: 1)
        defer { lost.shutdown() }
        do {
            try await lost.ping()
            Issue.record("a ping through unreachable sentinels succeeded")
        } catch {
            #expect("\(error)".contains("no sentinel answered") && "\(error)".contains("redis.sentinel.addresses"), "\(error)")
        }
    }

    /// A master, a replica and three sentinels, and a queue with `replicas_ack: 1` (300 ms) on them.
    static func replicated() async throws -> (SentinelCluster, RedisClient, JobQueue) {
        let cluster = try await SentinelCluster()
        // The replica in sync before the test's first write: on a loaded machine its first sync can outlast the WAIT
        // below, and the test would take that for a replica that does not answer.
        let master = RedisClient(configuration: cluster.master.configuration, connections: 1)
        defer { master.shutdown() }
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            _ = try? await master.send("SET", "sync-probe", "1")
            if (try? await master.send("WAIT", "1", "1000"))?.int == 1 { break }
            guard ContinuousClock.now < deadline else { throw TestSetupError("the replica never caught up: \(cluster.log())") }
            try await Task.sleep(for: .milliseconds(100))
        }
        let client = RedisClient(configuration: cluster.configuration, connections: 2)
        var settings = QueueSettings()
        settings.replicasAck = 1
        // Long enough for a loaded machine's replica to answer; the refusals below still come within it.
        settings.replicasAckTimeout = .milliseconds(800)
        return (cluster, client, JobQueue(redis: client, settings: settings))
    }

    static func stop(_ cluster: SentinelCluster, _ client: RedisClient) {
        client.shutdown()
        cluster.stop()
    }

    /// With replicas_ack, an enqueue is confirmed only once a replica has it; a replica that does not answer makes it
    /// fail (503 at the producer) — and the forge's redelivery is then a duplicate, confirmed once replicated.
    @Test func replicasAckConfirmsOnlyReplicatedEnqueues() async throws {
        let (cluster, client, queue) = try await Self.replicated()
        defer { Self.stop(cluster, client) }
        let settings = queue.settings
        let job = NewJob(agent: "dev", session: SessionKey(agent: "dev", repository: "a/b", number: 1), fields: [("prompt", "p")])
        #expect(try await queue.enqueue([job], delivery: (forge: "github", id: "d1")) == .queued([job.id]))

        let replica = try #require(cluster.replica.pid)
        kill(replica, SIGSTOP)
        let second = NewJob(agent: "dev", session: SessionKey(agent: "dev", repository: "a/b", number: 2), fields: [("prompt", "p")])
        let started = ContinuousClock.now
        await #expect(throws: RedisError.notReplicated(acknowledged: 0, wanted: 1)) {
            try await queue.enqueue([second], delivery: (forge: "github", id: "d2"))
        }
        #expect(ContinuousClock.now - started < .seconds(4), "refused after the 0.8 s WAIT, not blocked")
        // A redelivery on another connection (a fresh client, as another producer would be) while the replica still
        // sleeps is not confirmed either: the duplicate path writes, so WAIT covers the first delivery's jobs.
        let other = RedisClient(configuration: cluster.configuration, connections: 1)
        defer { other.shutdown() }
        await #expect(throws: RedisError.notReplicated(acknowledged: 0, wanted: 1)) {
            try await JobQueue(redis: other, settings: settings).enqueue([second], delivery: (forge: "github", id: "d2"))
        }
        kill(replica, SIGCONT)
        // The redelivery finds the first delivery's record and confirms it once the replica has caught up.
        var result: JobQueue.EnqueueResult?
        for _ in 0..<50 where result == nil {
            result = try? await queue.enqueue([second], delivery: (forge: "github", id: "d2"))
            if result == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(result == .duplicate([second.id]))
        let onReplica = RedisClient(configuration: cluster.replica.configuration, connections: 1)
        defer { onReplica.shutdown() }
        #expect(try await onReplica.send("EXISTS", "hooks:job:\(second.id)").int == 1)
    }

    /// With replicas_ack, a worker gets a job only once a replica has its claim (and so the end of the session's
    /// previous job): a failover cannot lose both and run the session out of order. An unconfirmed claim is given back,
    /// its attempt not counted.
    @Test func replicasAckConfirmsClaimsBeforeAJobRuns() async throws {
        let (cluster, client, queue) = try await Self.replicated()
        defer { Self.stop(cluster, client) }
        let job = NewJob(agent: "dev", session: SessionKey(agent: "dev", repository: "a/b", number: 1), fields: [("prompt", "p")])
        _ = try await queue.enqueue([job])
        let replica = try #require(cluster.replica.pid)
        kill(replica, SIGSTOP)
        await #expect(throws: RedisError.notReplicated(acknowledged: 0, wanted: 1)) {
            _ = try await queue.reserveAny(worker: "w1", agents: ["dev"])
        }
        var record = try #require(try await queue.job(job.id))
        #expect(record["status"] == "queued" && record["attempts"] == "0" && record["deferrals"] == nil, "\(record)")
        // Back after 2 s through the delayed set, so idle slots do not take it again at once.
        #expect(try await client.send("ZSCORE", "hooks:delayed", job.id).string != nil)
        #expect(try await client.send("LLEN", "hooks:queue:dev").int == 0)
        kill(replica, SIGCONT)
        var reserved: ReservedJob?
        for _ in 0..<50 where reserved == nil {
            _ = try? await queue.promoteDue()
            reserved = try? await queue.reserveAny(worker: "w1", agents: ["dev"])
            if reserved == nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(reserved?.id == job.id && reserved?.attempt == 1)
        record = try #require(try await queue.job(job.id))
        #expect(record["status"] == "running")
        // Nothing to hand out is not an error, even with the replica away.
        kill(replica, SIGSTOP)
        defer { kill(replica, SIGCONT) }
        #expect(try await queue.reserveAny(worker: "w1", agents: ["dev"]) == nil)
    }

    /// A consumer blocked in BLMOVE on the master when the sentinels demote it (a manual failover) is released at once
    /// and its next call goes to the new master: it never waits out its block on a node that is no longer the master.
    @Test func aBlockedConsumerIsReleasedWhenItsMasterIsDemoted() async throws {
        let cluster = try await SentinelCluster()
        defer { cluster.stop() }
        let consumer = RedisClient(configuration: cluster.configuration, connections: 1)
        defer { consumer.shutdown() }
        try await consumer.ping()
        let blocked = Task { () -> (Duration, String) in
            let started = ContinuousClock.now
            do {
                let reply = try await consumer.blocking(RedisCommand("BLMOVE", "q", "p", "RIGHT", "LEFT", "30"), timeout: .seconds(30))
                return (ContinuousClock.now - started, "\(reply)")
            } catch {
                return (ContinuousClock.now - started, "\(error)")
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        let (_, answer) = try await DockerFixture.shell("redis-cli -p \(cluster.sentinelPorts[0]) SENTINEL FAILOVER \(SentinelCluster.masterName)")
        #expect(answer.contains("OK"), "\(answer)")
        let (waited, outcome) = await blocked.value
        // Released when the sentinels reconfigure the old master (UNBLOCKED, or its connection closed): well before
        // the 30 s block would end. Workers block for a second at a time (queue.reserveBlockTimeout) anyway.
        #expect(waited < .seconds(20), "the consumer stayed blocked on the demoted node for \(waited): \(outcome)")
        try await cluster.waitForMaster(cluster.replica.port)
        // Within about a second of the sentinels naming the new master, the client's next calls go there — even while
        // the demoted node still answers ROLE with master (it does until the sentinels reconfigure it).
        var role = ""
        for _ in 0..<100 where role != "master" {
            role = (try? await consumer.send("ROLE"))?.array?.first?.string ?? ""
            if role != "master" { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(role == "master")
        try await consumer.send("LPUSH", "q", "job")
        #expect(try await consumer.blocking(RedisCommand("BLMOVE", "q", "p", "RIGHT", "LEFT", "1"), timeout: .seconds(1)).string == "job")
        let onNew = RedisClient(configuration: cluster.replica.configuration, connections: 1)
        defer { onNew.shutdown() }
        #expect(try await onNew.send("LRANGE", "p", "0", "-1").strings == ["job"], "the consumer used another node than the new master")
    }
}
