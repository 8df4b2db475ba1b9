import Foundation
import Shared
import TestSupport
import Testing

/// Forge feedback through the real stack: nginx → Producer → Redis → two Workers → Docker → stub agent, with a
/// Forgejo API double (every request checked against Gitea's published API description) standing in for the forge.
@Suite(.serialized, .timeLimit(.minutes(5))) struct FeedbackEndToEndTests {
    typealias Stack = EndToEndTests.Stack

    static let tokens = ["boss-token": "boss-bot", "dev-token": "dev-bot", "reviewer-token": "reviewer-bot"]

    static func comment(_ number: Int, _ text: String, id: Int) -> [String: Any] {
        var payload = EndToEndTests.comment(number, text)
        var comment = payload["comment"] as! [String: Any]
        comment["id"] = id
        payload["comment"] = comment
        return payload
    }

    /// Waits until `condition` holds (polled every 100 ms), or fails with `what` and the workers' logs.
    static func eventually(_ what: String, stack: Stack, timeout: Duration = .seconds(45), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSetupError("\(what) did not happen; worker logs:\n\(stack.log("worker-1").suffix(3000))\n\(stack.log("worker-2").suffix(3000))")
    }

    /// A Forgejo API double and the stack with feedback on against it, both stopped after `body`.
    /// With `github` (started), GitHub webhooks are taken too and posted about there.
    static func withFeedbackStack(github: ForgeAPIDouble? = nil, _ body: (ForgeAPIDouble, Stack) async throws -> Void) async throws {
        var forge: ForgeAPIDouble?
        var stack: Stack?
        // Whatever was started is stopped, whether the set-up or the body failed (the caller's GitHub double too).
        func stopAll() async {
            await stack?.stop()
            await forge?.stop()
            await github?.stop()
        }
        do {
            let double = try ForgeAPIDouble(flavor: .gitea, tokens: tokens)
            forge = double
            try await double.start()
            let started = try await Stack()
            stack = started
            try started.enableFeedback(apiURL: double.baseURL, githubAPIURL: github?.baseURL)
            try await started.start()
            try await body(double, started)
        } catch {
            await stopAll()
            throw error
        }
        await stopAll()
    }

    func job(_ stack: Stack, _ id: String) async throws -> [String: String] {
        try await stack.client.send("HGETALL", "hooks:job:\(id)").hash ?? [:]
    }

    /// A mention whose agent runs `seconds` (the stub sleeps), once its "working" comment is up: the job, and the index
    /// in `stack.processes` of the worker running it.
    func mentionRunning(_ stack: Stack, _ forge: ForgeAPIDouble, number: Int, commentID: Int, seconds: Int) async throws -> (String, Int) {
        forge.seedComment(id: Int64(commentID), repository: "acme/shop")
        let (code, body) = try await stack.post(
            event: "issue_comment", payload: Self.comment(number, "@dev STUB_SLEEP=\(seconds) slow one", id: commentID))
        #expect(code == 202)
        let id = try #require(stack.jobIDs(body).first)
        try await Self.eventually("attempt 1's comment", stack: stack) {
            forge.comments.contains { $0.body.contains("job `\(id)`, attempt 1/3") && $0.body.contains("is working on this") }
        }
        let holder = try await job(stack, id)["worker"] ?? ""
        return (id, try #require(Int(holder.split(separator: "-").last ?? ""), "worker \(holder)"))
    }

    @Test func aMentionIsAcknowledgedAndFollowedByOneLiveComment() async throws {
        try await Self.withFeedbackStack { forge, stack in

            // 1. A mention: 👀 on the comment, the status comment while the agent runs, edited with the result.
            forge.seedComment(id: 4242, repository: "acme/shop")
            var (code, body) = try await stack.post(event: "issue_comment", payload: Self.comment(3, "@dev please STUB_TICKS=8 fix it", id: 4242))
            #expect(code == 202, "\(body)")
            let id = try #require(stack.jobIDs(body).first)
            try await Self.eventually("the 👀 reaction and a 'working' comment while the job runs", stack: stack) {
                forge.reactions.contains { $0.commentID == 4242 && $0.content == "eyes" && $0.user == "dev-bot" }
                    && forge.comments.contains { $0.body.contains("is working on this — job `\(id)`") }
            }
            #expect(try await job(stack, id)["status"] == "running")
            let done = try await stack.waitDone(id)
            #expect(done["status"] == "succeeded")
            try await Self.eventually("the comment edited to the result", stack: stack) {
                forge.comments.first { $0.body.contains("job=\(id) ") }?.body.contains("finished job `\(id)`") ?? false
            }
            let status = try #require(forge.comments.first { $0.body.contains("job=\(id) ") })
            #expect(status.author == "dev-bot" && status.number == 3 && status.edits >= 1)
            #expect(status.body.contains("turn") && status.body.contains("$0.0012") && status.body.contains("session `\(done["session_id"] ?? "?")`"))
            #expect(status.body.contains("[Job details](http://127.0.0.1/dashboard/jobs/\(id))"))
            #expect(try await job(stack, id)["feedback_comment"] == String(status.id))

            // 2. Two agents on one issue: two comments, each its own, neither overwritten.
            var opened = EndToEndTests.issue(9, labels: ["triage"])
            opened["user"] = EndToEndTests.alice
            (code, body) = try await stack.post(
                event: "issues",
                payload: ["action": "opened", "issue": opened, "repository": EndToEndTests.repository, "sender": EndToEndTests.alice])
            let bossJob = try #require(stack.jobIDs(body).first, "\(body)")
            forge.seedComment(id: 4343, repository: "acme/shop")
            (code, body) = try await stack.post(event: "issue_comment", payload: Self.comment(9, "@dev have a look", id: 4343))
            let devJob = try #require(stack.jobIDs(body).first, "\(body)")
            _ = try await stack.waitDone(bossJob)
            _ = try await stack.waitDone(devJob)
            try await Self.eventually("both status comments final", stack: stack) {
                let onIssue = forge.comments.filter { $0.number == 9 }
                return onIssue.count == 2 && onIssue.allSatisfy { $0.body.contains("finished job") }
            }
            let onIssue = forge.comments.filter { $0.number == 9 }
            #expect(Set(onIssue.map(\.author)) == ["boss-bot", "dev-bot"])
            #expect(onIssue.first { $0.author == "boss-bot" }?.history.allSatisfy { $0.contains("job=\(bossJob) agent=boss") } == true)
            #expect(onIssue.first { $0.author == "dev-bot" }?.history.allSatisfy { $0.contains("job=\(devJob) agent=dev") } == true)
            // The issue event had no comment to react to: the status comment is the acknowledgement.
            #expect(!forge.reactions.contains { $0.user == "boss-bot" })

            // 3. A failing agent: "retrying", then "gave up", in the same comment.
            forge.seedComment(id: 4444, repository: "acme/shop")
            (code, body) = try await stack.post(event: "issue_comment", payload: Self.comment(11, "@dev STUB_FAIL", id: 4444))
            let failing = try #require(stack.jobIDs(body).first)
            let dead = try await stack.waitDone(failing)
            #expect(dead["status"] == "dead")
            try await Self.eventually("the comment edited to dead", stack: stack) {
                forge.comments.first { $0.body.contains("job=\(failing) ") }?.body.contains("gave up on job `\(failing)` after 3 attempts") ?? false
            }
            let history = try #require(forge.comments.first { $0.body.contains("job=\(failing) ") }).history
            #expect(history.contains { $0.contains("attempt 1/3 of job `\(failing)` failed. Retrying at") }, "\(history)")
            #expect(history.last?.contains("hooksctl requeue \(failing)") == true)
            #expect(forge.comments.filter { $0.body.contains("job=\(failing) ") }.count == 1)

            // Counted per forge, operation and status on the workers' /metrics.
            var metrics = ""
            for port in stack.workerMetricsPorts {
                metrics += (try? await DockerFixture.shell("curl -s http://127.0.0.1:\(port)/metrics").1) ?? ""
            }
            #expect(metrics.contains(#"forge_api_requests_total{forge="forgejo",operation="create_comment",status="201"}"#), "\(metrics)")
            #expect(metrics.contains(#"operation="add_reaction",status="201""#))
            #expect(forge.violations.isEmpty, "\(forge.violations)")
            #expect(forge.foreignEdits.isEmpty, "\(forge.foreignEdits)")
            // No token anywhere an operator or an agent can read: logs, job records.
            for name in ["worker-1", "worker-2", "producer"] {
                #expect(!stack.log(name).contains("dev-token") && !stack.log(name).contains("boss-token"))
            }
            for jobID in [id, bossJob, devJob, failing] {
                let fields = try await job(stack, jobID)
                #expect(!fields.values.contains { $0.contains("-token") }, "\(fields)")
            }
        }
    }

    @Test func aKilledWorkersRetryEditsTheSameCommentAndADownForgeCostsNothing() async throws {
        try await Self.withFeedbackStack { forge, stack in

            // 1. SIGKILL the worker mid-run: the retry elsewhere edits the same comment.
            let (id, index) = try await mentionRunning(stack, forge, number: 21, commentID: 5151, seconds: 6)
            await stack.processes[index].stop(signal: SIGKILL)
            let done = try await stack.waitDone(id, timeout: .seconds(90))
            #expect(done["status"] == "succeeded" && done["attempts"] == "2", "\(done)")
            try await Self.eventually("the same comment edited to the result", stack: stack) {
                forge.comments.first { $0.body.contains("job=\(id) ") }?.body.contains("finished job") ?? false
            }
            let mine = forge.comments.filter { $0.body.contains("job=\(id) ") }
            #expect(mine.count == 1, "\(mine.map(\.body))")
            #expect(mine.first?.history.contains { $0.contains("attempt 2/3") } == true, "\(mine.first?.history ?? [])")
            #expect(forge.reactions.filter { $0.commentID == 5151 }.count == 1)

            // 2. The forge goes down: jobs run as before; feedback catches up when it is back.
            let port = forge.port
            await forge.stop()
            let started = ContinuousClock.now
            let (_, body) = try await stack.post(event: "issue_comment", payload: Self.comment(22, "@dev while the forge is down", id: 5252))
            let offline = try #require(stack.jobIDs(body).first)
            let result = try await stack.waitDone(offline, timeout: .seconds(30))
            #expect(result["status"] == "succeeded")
            #expect(ContinuousClock.now - started < .seconds(20))
            try await Self.eventually("the failure recorded on the job", stack: stack) {
                try await job(stack, offline)["feedback_error"]?.contains("no response") ?? false
            }
            forge.seedComment(id: 5252, repository: "acme/shop")
            try await forge.start(port: port)
            try await Self.eventually("feedback posted once the forge is back", stack: stack, timeout: .seconds(60)) {
                forge.comments.first { $0.body.contains("job=\(offline) ") }?.body.contains("finished job") ?? false
            }
            #expect(forge.violations.isEmpty, "\(forge.violations)")
        }
    }

    /// A worker stopped gracefully mid-run gives the job back and says so on the forge before it exits (it is the only
    /// worker left, so no one else could have). Stopped again while the forge hangs, it still exits within its grace
    /// plus 5 s (not the forge client's 15 s timeout), and the update it could not post stays due in Redis for the next
    /// worker.
    @Test func aStoppingWorkerPostsItsLastUpdateButNeverWaitsLongOnTheForge() async throws {
        try await Self.withFeedbackStack { forge, stack in
            let (id, holder) = try await mentionRunning(stack, forge, number: 31, commentID: 6161, seconds: 120)
            func comment() -> ForgeAPIDouble.Comment? { forge.comments.first { $0.body.contains("job=\(id) ") } }
            #expect(await stack.processes[holder == 1 ? 2 : 1].stop() == 0)

            // 1. SIGTERM: after the grace (5 s) the run is stopped and the job given back; the comment says so. The forge
            // takes a second over that edit, so the post is still under way when the shutdown reaches the feedback loop.
            forge.inject(.slow(.seconds(1)), operation: "issueEditComment")
            var stopping = ContinuousClock.now
            #expect(await stack.processes[holder].stop() == 0)
            var took = ContinuousClock.now - stopping
            var record = try await job(stack, id)
            #expect(record["status"] == "queued" && record["attempts"] == "0", "\(record)")
            #expect(
                comment()?.body.contains("will try again") == true,
                "\(comment()?.body ?? "no comment")\n\(stack.log("worker-\(holder)").suffix(4000))")
            #expect(try await stack.client.send("ZSCORE", "hooks:feedback:dev", id).string == nil, "posted, so no longer due")
            #expect(took < .seconds(15), "the worker took \(took) to stop")
            let firstStop = took

            // 2. Started again, it runs the job; stopped while every edit hangs, it gives up on the forge after 5 s.
            let restarted = try stack.startWorker(holder)
            try await Self.eventually("the job running again", stack: stack) {
                try await job(stack, id)["status"] == "running" && (comment()?.body.contains("is working on this") ?? false)
            }
            forge.inject(.hang(.seconds(60)), operation: "issueEditComment", times: 100)
            stopping = ContinuousClock.now
            #expect(await restarted.stop() == 0)
            took = ContinuousClock.now - stopping
            #expect(took < .seconds(17), "a hung forge held the worker's exit for \(took)")
            print("worker stop (5 s grace) with its last update posted: \(firstStop); with the forge hung: \(took)")
            record = try await job(stack, id)
            #expect(record["status"] == "queued" && record["feedback_tries"] == nil, "cut short by the shutdown, no try counted: \(record)")
            #expect(comment()?.body.contains("is working on this") == true, "the hung edit cannot have landed")
            #expect(try await stack.client.send("ZSCORE", "hooks:feedback:dev", id).string != nil, "the update stays due")
            // … and operators see it: hooksctl status counts it for dev.
            let status = try #require(try await stack.hooksctl(["status", "--json"]) as? [String: Any])
            let dev = (status["queues"] as? [[String: Any]])?.first { $0["agent"] as? String == "dev" }
            #expect(dev?["feedback_pending"] as? Int == 1, "\(status)")

            #expect(forge.comments.filter { $0.body.contains("job=\(id) ") }.count == 1)
            #expect(forge.violations.isEmpty, "\(forge.violations)")
        }
    }

    /// GitHub: a mention in a pull request's review comment gets 👀 through GitHub's own endpoint for those
    /// (`pulls/comments/{id}/reactions`), and the status comment goes on the pull request's conversation.
    @Test func aGitHubReviewCommentIsAcknowledgedOnItsOwnEndpoint() async throws {
        // At /api/v3, as GitHub Enterprise serves it (a bare host in api.url gets that path).
        let github = try ForgeAPIDouble(flavor: .github, tokens: Self.tokens, mount: "/api/v3")
        try await github.start()
        try await Self.withFeedbackStack(github: github) { forge, stack in
            github.seedComment(id: 7171, repository: "acme/shop", kind: "review")
            var pull = EndToEndTests.pullRequest(31)
            pull["user"] = ["login": "alice", "id": 2] as [String: Any]
            let payload: [String: Any] = [
                "action": "created", "pull_request": pull, "repository": EndToEndTests.repository,
                "sender": ["login": "alice", "id": 2] as [String: Any],
                "comment": [
                    "id": 7171, "body": "@dev please tidy this function", "user": ["login": "alice", "id": 2] as [String: Any],
                    "html_url": "https://github.com/acme/shop/pull/31#discussion_r7171",
                ] as [String: Any],
            ]
            let (code, body) = try await stack.post(event: "pull_request_review_comment", payload: payload, forge: "github")
            #expect(code == 202, "\(body)")
            let id = try #require(stack.jobIDs(body).first, "\(body)")
            #expect(try await stack.waitDone(id)["status"] == "succeeded")
            try await Self.eventually("the reaction and the final comment on GitHub", stack: stack) {
                github.reactions.contains { $0.commentID == 7171 && $0.kind == "review" && $0.user == "dev-bot" }
                    && (github.comments.first { $0.body.contains("job=\(id) ") }?.body.contains("finished job") ?? false)
            }
            let status = try #require(github.comments.first { $0.body.contains("job=\(id) ") })
            #expect(status.number == 31 && status.author == "dev-bot")
            #expect(forge.comments.isEmpty && forge.requests.allSatisfy { $0.operation == "userGetCurrent" })
            #expect(github.violations.isEmpty, "\(github.violations)")
            #expect(github.foreignEdits.isEmpty)
        }
    }
}
