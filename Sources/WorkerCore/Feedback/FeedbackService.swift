import Foundation
import Logging
import Shared
import Synchronization

/// One forge account feedback posts as (a token on a forge), shared by the agents that use it: its login, asked once,
/// and the pause a rate limit put on it.
package final class ForgeAccount: Sendable {
    package let api: any ForgeAPI
    private let state = Mutex<(login: String?, pausedUntil: ContinuousClock.Instant?)>((nil, nil))

    package init(api: any ForgeAPI) { self.api = api }

    /// The token's account login (asked once per process).
    func login() async throws(ForgeAPIError) -> String {
        if let known = state.withLock({ $0.login }) { return known }
        let login = try await api.currentUser()
        state.withLock { $0.login = login }
        return login
    }

    func pause(for delay: Duration) {
        let until = ContinuousClock.now + delay
        state.withLock { $0.pausedUntil = max($0.pausedUntil ?? until, until) }
    }

    /// How long a rate limit still holds this account back, or nil.
    var paused: Duration? {
        state.withLock { s in
            guard let until = s.pausedUntil, until > .now else { return nil }
            return until - .now
        }
    }
}

/// Posts forge feedback — a reaction on the triggering comment and one status comment per job, edited as the job
/// moves — off every job's critical path. The queue scripts list a job as due whenever its state changes (in the
/// same atomic step as the change); this loop claims due jobs of its agents, renders the record, posts, and settles.
/// A forge that is down, slow or refusing costs feedback only: runs never wait for it, and a worker that dies while
/// posting is replaced when its hold ends.
package final class FeedbackService: Sendable {
    let queue: JobQueue
    /// agent → forge → the account it posts as.
    let accounts: [String: [Forge: ForgeAccount]]
    let agents: [String]
    let workerID: String
    /// Accounts whose events never start an agent: a token's account must be one of them.
    let botLogins: Set<String>
    let defaultMaxAttempts: Int
    let logger: Logger
    let tick: Duration
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// A claim is held this long: long enough for a reaction, a listing and a post at their timeouts.
    static let hold: Duration = .seconds(120)
    static let maxTries = 10
    /// Comments read when looking for a lost status comment (those updated since its job was created).
    static let findLimit = 1000

    package init(
        queue: JobQueue, accounts: [String: [Forge: ForgeAccount]], agents: [String], workerID: String, botLogins: Set<String>,
        defaultMaxAttempts: Int, logger: Logger, tick: Duration = .seconds(1)
    ) {
        self.queue = queue
        self.accounts = accounts
        self.agents = agents
        self.workerID = workerID
        self.botLogins = Set(botLogins.map { $0.lowercased() })
        self.defaultMaxAttempts = defaultMaxAttempts
        self.logger = logger
        self.tick = tick
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Look now rather than at the next tick (a job of this worker changed state).
    package func nudge() { wake.yield() }

    /// Drains due feedback until the task is cancelled.
    package func run() async {
        let ticker = Task { [wake, tick] in
            while !Task.isCancelled {
                wake.yield()
                try? await Task.sleep(for: tick)
            }
        }
        for await _ in wakeups {
            if Task.isCancelled { break }
            await drain()
        }
        ticker.cancel()
    }

    /// One pass: claims what is due for each agent and posts it, the claims of one pass concurrently.
    package func drain() async {
        for agent in agents {
            let claims: [JobQueue.FeedbackClaim]
            do {
                claims = try await queue.claimFeedback(agent: agent, worker: workerID, hold: Self.hold, limit: 16)
            } catch {
                logger.warning("could not look for due forge feedback: \(error)", metadata: ["agent": "\(agent)"])
                continue
            }
            await withTaskGroup(of: Void.self) { group in
                for claim in claims { group.addTask { await self.post(claim, agent: agent) } }
            }
        }
    }

    /// Posts one job's feedback and settles it.
    func post(_ claim: JobQueue.FeedbackClaim, agent: String) async {
        var log = logger
        log[metadataKey: "job.id"] = "\(claim.id)"
        log[metadataKey: "agent"] = "\(agent)"
        let settlement = await attempt(claim, agent: agent, log: log)
        do {
            let verdict = try await queue.settleFeedback(claim, agent: agent, worker: workerID, settlement)
            switch settlement {
            case .posted: log.debug("forge feedback posted", metadata: ["status": "\(claim["status"] ?? "")", "verdict": "\(verdict)"])
            case .retry(let error, let delay, _, _), .wait(let error, let delay, _):
                log.warning(
                    "forge feedback not posted\(verdict == "gave_up" ? "; giving up" : ", retrying in \(delay)"): \(error)")
            case .giveUp(let error, _): log.error("forge feedback not posted; giving up: \(error)")
            }
        } catch {
            log.warning("could not record forge feedback (the hold ends in \(Self.hold) and it is posted again): \(error)")
        }
    }

    /// Reaction, then the status comment; what was done before a failure is kept in the settlement's fields.
    func attempt(_ claim: JobQueue.FeedbackClaim, agent: String, log: Logger) async -> JobQueue.FeedbackSettlement {
        let settings = FeedbackSettings(jobField: claim["feedback"] ?? "")
        let forgeName = claim["forge"] ?? ""
        guard let forge = Forge(rawValue: forgeName), let account = accounts[agent]?[forge] else {
            return .giveUp(
                error:
                    "worker \(workerID) cannot post to \(forgeName.isEmpty ? "this job's forge" : forgeName) for agent \(agent): set forges.\(forgeName).api "
                    + "and a token (agents.\(agent).feedback.tokens.\(forgeName) or forges.\(forgeName).api.token_env) in its config",
                fields: [])
        }
        if let wait = account.paused {
            return .wait(error: "\(forge.rawValue) rate limit: waiting \(Int(wait.seconds.rounded(.up))) s", delay: wait, fields: [])
        }
        let repository = claim["repo"] ?? ""
        var fields: [(String, String)] = []
        do {
            let login = try await account.login()
            guard botLogins.contains(login.lowercased()) else {
                return .giveUp(
                    error:
                        "the \(forge.rawValue) token agent \(agent) posts with belongs to '\(login)', which is not a bot account: add it to bots: "
                        + "(or as agents.\(agent).bot_login), so that its comments never start an agent",
                    fields: [])
            }
            if let reaction = settings.reaction, claim["feedback_reacted"] != "1", let comment = Int64(claim["comment_id"] ?? ""), comment > 0 {
                let kind = CommentKind(rawValue: claim["comment_kind"] ?? "") ?? .issue
                try await account.api.addReaction(repository: repository, commentID: comment, kind: kind, content: reaction)
                fields.append(("feedback_reacted", "1"))
            }
            if settings.statusComment, let number = Int(claim["number"] ?? ""), number > 0 {
                let body = StatusComment.render(claim.fields, id: claim.id, settings: settings, defaultMaxAttempts: defaultMaxAttempts)
                let id = try await upsert(claim, agent: agent, account: account, login: login, repository: repository, number: number, body: body)
                fields.append(("feedback_comment", String(id)))
            }
            return .posted(fields: fields)
        } catch {
            let message = StreamJSONParser.bounded(error.description, 600)
            switch error.kind {
            case .rateLimited(let after):
                account.pause(for: after)
                return .wait(error: message, delay: after, fields: fields)
            case .unavailable:
                let tries = Int(claim["feedback_tries"] ?? "") ?? 0
                let delay = Duration.seconds(min(1 << min(tries, 9), 300))
                return .retry(error: message, delay: delay, maxTries: Self.maxTries, fields: fields)
            case .rejected:
                return .giveUp(error: message, fields: fields)
            }
        }
    }

    /// Edits the job's status comment — the one recorded on the job, else the one carrying its marker, written by
    /// this account — or creates it. Never a second comment for a job, never another account's or agent's comment.
    func upsert(
        _ claim: JobQueue.FeedbackClaim, agent: String, account: ForgeAccount, login: String, repository: String, number: Int, body: String
    ) async throws(ForgeAPIError) -> Int64 {
        if let known = Int64(claim["feedback_comment"] ?? ""), known > 0 {
            try await account.api.editComment(repository: repository, id: known, body: body)
            return known
        }
        // Not recorded: this is the first post, or a worker died between posting and recording it.
        let marker = StatusComment.marker(job: claim.id, agent: agent)
        let since = (claim["created_at"].flatMap(Timestamp.parse) ?? Date()).addingTimeInterval(-600)  // forge clocks drift
        let existing = try await account.api.comments(repository: repository, number: number, since: since, limit: Self.findLimit)
        if let mine = existing.first(where: { $0.author.lowercased() == login.lowercased() && $0.body.hasPrefix(marker) }) {
            if mine.body != body { try await account.api.editComment(repository: repository, id: mine.id, body: body) }
            return mine.id
        }
        return try await account.api.createComment(repository: repository, number: number, body: body).id
    }
}
