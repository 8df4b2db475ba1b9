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
    /// The served agents that can post somewhere: only their feedback is claimed, so a worker without tokens for an
    /// agent leaves it to one that has them.
    let agents: [String]
    let workerID: String
    /// Accounts whose events never start an agent: a token's account must be one of them.
    let botLogins: Set<String>
    let defaultMaxAttempts: Int
    let logger: Logger
    let tick: Duration
    /// How long a claim is held: a worker that dies while posting is replaced after this (at once when its lease
    /// is gone).
    let hold: Duration
    /// One job's reaction and comment must be done within this (well inside `hold`), or the attempt is cut off and
    /// retried: a forge that trickles its answers cannot make a hold run out under a post.
    let attemptDeadline: Duration
    /// Failures that may pass (5xx, timeouts) are retried this often per job state, backing off to 15 minutes
    /// (about 6 hours in all), then given up.
    let maxTries: Int
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    /// Set by `finish()`.
    private let finished = Mutex(false)

    static let claimLimit = 8
    static let cutShort = "cut short by the worker's shutdown; posted by the next pass"
    /// Comments read when looking for a lost status comment (those updated since its job was created).
    static let findLimit = 1000

    package init(
        queue: JobQueue, accounts: [String: [Forge: ForgeAccount]], agents: [String], workerID: String, botLogins: Set<String>,
        defaultMaxAttempts: Int, logger: Logger, tick: Duration = .seconds(1), hold: Duration = .seconds(120),
        attemptDeadline: Duration = .seconds(30), maxTries: Int = 30
    ) {
        self.queue = queue
        self.accounts = accounts
        self.agents = agents.filter { !(accounts[$0]?.isEmpty ?? true) }
        self.workerID = workerID
        self.botLogins = Set(botLogins.map { $0.lowercased() })
        self.defaultMaxAttempts = defaultMaxAttempts
        self.logger = logger
        self.tick = tick
        self.hold = hold
        self.attemptDeadline = attemptDeadline
        self.maxTries = maxTries
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Look now rather than at the next tick (a job of this worker changed state).
    package func nudge() { wake.yield() }

    /// Ends `run()` once the pass under way is done (a shutdown): no new pass starts, and the one under way is not cut
    /// short (cancelling it would give back what it was posting).
    package func finish() {
        finished.withLock { $0 = true }
        wake.finish()
    }

    /// Checks each account once (alongside), and drains due feedback until `finish()` or the task is cancelled.
    package func run() async {
        // Not awaited: a forge that hangs at start-up holds up neither the loop nor a shutdown.
        let check = Task { await self.checkAccounts() }
        defer { check.cancel() }
        let ticker = Task { [wake, tick] in
            while !Task.isCancelled {
                wake.yield()
                try? await Task.sleep(for: tick)
            }
        }
        for await _ in wakeups {
            if Task.isCancelled || finished.withLock({ $0 }) { break }
            // A full pass may have left more due: go again at once rather than at the next tick.
            if await drain() { wake.yield() }
        }
        ticker.cancel()
    }

    /// Says at start-up, in the log, whether each account's token works and is a bot's (the first post would say it
    /// too, but only on a job's `feedback_error`).
    func checkAccounts() async {
        var seen: Set<ObjectIdentifier> = []
        var distinct: [(String, Forge, ForgeAccount)] = []
        for (agent, byForge) in accounts.sorted(by: { $0.key < $1.key }) {
            for (forge, account) in byForge.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where seen.insert(ObjectIdentifier(account)).inserted {
                distinct.append((agent, forge, account))
            }
        }
        // All at once: a forge that is down must not hold up the others' start.
        await withTaskGroup(of: Void.self) { group in
            for (agent, forge, account) in distinct {
                group.addTask { await self.check(account, agent: agent, forge: forge) }
            }
        }
    }

    private func check(_ account: ForgeAccount, agent: String, forge: Forge) async {
        do {
            let login = try await account.login()
            if botLogins.contains(login.lowercased()) {
                logger.info("forge account ready", metadata: ["forge": "\(forge.rawValue)", "login": "\(login)", "agent": "\(agent)"])
            } else {
                let problem =
                    "forge token of agent \(agent) on \(forge.rawValue) belongs to '\(login)', which is not a bot account: add it to bots: "
                    + "(or as the agent's bot_login); nothing is posted with it until then"
                logger.error("\(problem)")
            }
        } catch {
            logger.warning("forge account not checked (feedback retries on its own): \(error)", metadata: ["agent": "\(agent)"])
        }
    }

    /// One pass: claims what is due for each agent and posts it — one account's posts one after another (forges ask
    /// for that of writes, and a hung forge then holds up only its own account), different accounts at once.
    /// Returns whether any agent had more due than one pass claims.
    @discardableResult
    package func drain() async -> Bool {
        var more = false
        var byAccount: [ObjectIdentifier: [(JobQueue.FeedbackClaim, String, ContinuousClock.Instant)]] = [:]
        var unserved: [(JobQueue.FeedbackClaim, String)] = []
        for agent in agents {
            let claims: [JobQueue.FeedbackClaim]
            do {
                claims = try await queue.claimFeedback(agent: agent, worker: workerID, hold: hold, limit: Self.claimLimit)
            } catch {
                logger.warning("could not look for due forge feedback: \(error)", metadata: ["agent": "\(agent)"])
                continue
            }
            let claimed = ContinuousClock.now
            if claims.count == Self.claimLimit { more = true }
            for claim in claims {
                if let account = Forge(rawValue: claim["forge"] ?? "").flatMap({ accounts[agent]?[$0] }) {
                    byAccount[ObjectIdentifier(account), default: []].append((claim, agent, claimed))
                } else {
                    unserved.append((claim, agent))
                }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for (_, claims) in byAccount {
                group.addTask {
                    for (claim, agent, claimed) in claims {
                        // Only with time left on the hold for a whole attempt; else give it back for the next pass.
                        if ContinuousClock.now - claimed + self.attemptDeadline > self.hold - .seconds(5) {
                            _ = try? await self.queue.settleFeedback(claim, agent: agent, worker: self.workerID, .release)
                        } else {
                            await self.post(claim, agent: agent)
                        }
                    }
                }
            }
            for (claim, agent) in unserved { group.addTask { await self.post(claim, agent: agent) } }
        }
        return more
    }

    /// Posts one job's feedback (within `attemptDeadline`) and settles it.
    func post(_ claim: JobQueue.FeedbackClaim, agent: String) async {
        var log = logger
        log[metadataKey: "job.id"] = "\(claim.id)"
        log[metadataKey: "agent"] = "\(agent)"
        let attemptLog = log
        let settlement = await withDeadline(tries: claim.tries) { await self.attempt(claim, agent: agent, log: attemptLog) }
        do {
            let verdict = try await queue.settleFeedback(claim, agent: agent, worker: workerID, settlement)
            switch settlement {
            case .posted: log.debug("forge feedback posted", metadata: ["status": "\(claim["status"] ?? "")", "verdict": "\(verdict)"])
            case .retry(let error, let delay, _, _), .wait(let error, let delay, _):
                log.warning("forge feedback not posted\(verdict == "gave_up" ? "; giving up" : ", retrying in \(delay)"): \(error)")
            case .giveUp(let error, _): log.error("forge feedback not posted; giving up: \(error)")
            case .release: break
            }
            if verdict == "lost" { log.warning("forge feedback: this worker's hold had ended and another worker took the job's feedback over") }
        } catch {
            log.warning("could not record forge feedback (the hold ends in \(hold) and it is posted again): \(error)")
        }
    }

    /// `body`, or a retry when it takes longer than `attemptDeadline` (it is cancelled: its HTTP call with it).
    func withDeadline(tries: Int, _ body: @escaping @Sendable () async -> JobQueue.FeedbackSettlement) async -> JobQueue.FeedbackSettlement {
        let deadline = attemptDeadline
        let maxTries = maxTries
        let delay = Self.backoff(tries: tries)
        return await withTaskGroup(of: JobQueue.FeedbackSettlement?.self) { group in
            group.addTask { await body() }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return nil
            }
            if let first = await group.next() ?? nil {
                group.cancelAll()
                return first
            }
            // The deadline or a shutdown: the attempt is cancelled, and its own answer (what it did before, e.g. the
            // reaction) is awaited, so nothing done is forgotten. A shutdown's is due again at once with no try counted
            // (`attempt` says so); past the deadline it is a failed try.
            group.cancelAll()
            let cut = await group.next() ?? nil
            if Task.isCancelled { return cut ?? .wait(error: Self.cutShort, delay: .zero, fields: []) }
            let error = "the forge did not finish answering within \(deadline)"
            return .retry(error: error, delay: delay, maxTries: maxTries, fields: cut?.fields ?? [])
        }
    }

    /// Reaction, then the status comment; what was done before a failure is kept in the settlement's fields.
    func attempt(_ claim: JobQueue.FeedbackClaim, agent: String, log: Logger) async -> JobQueue.FeedbackSettlement {
        let settings = FeedbackSettings(jobField: claim["feedback"] ?? "")
        let forgeName = claim["forge"] ?? ""
        guard let forge = Forge(rawValue: forgeName), let account = accounts[agent]?[forge] else {
            // Another worker's config may have it (a rolling change): left for a minute, for it; no try counted.
            return .wait(
                error:
                    "worker \(workerID) cannot post to \(forgeName.isEmpty ? "this job's forge" : forgeName) for agent \(agent): set forges.\(forgeName).api "
                    + "and a token (agents.\(agent).feedback.tokens.\(forgeName) or forges.\(forgeName).api.token_env) in its config",
                delay: .seconds(60), fields: [])
        }
        if let wait = account.paused {
            return .wait(error: "\(forge.rawValue): waiting \(Int(wait.seconds.rounded(.up))) s (rate limit or outage)", delay: wait, fields: [])
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
            if let reaction = settings.reaction, claim["feedback_reacted"] == nil, let comment = Int64(claim["comment_id"] ?? ""), comment > 0 {
                let kind = CommentKind(rawValue: claim["comment_kind"] ?? "") ?? .issue
                do {
                    try await account.api.addReaction(repository: repository, commentID: comment, kind: kind, content: reaction)
                    fields.append(("feedback_reacted", "1"))
                } catch  where error.kind == .rejected {
                    // The comment was deleted, the issue locked, the reaction not allowed there: the status comment
                    // still goes up, and the reaction is not tried again.
                    fields.append(("feedback_reacted", "failed"))
                    fields.append(("feedback_reaction_error", StreamJSONParser.bounded(error.description, 600)))
                }
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
            case .unavailable where error.cancelled:
                // A shutdown cut it short (after the deadline this answer is not used): nothing learned about the forge;
                // due again at once for the next worker, with what was done kept, no try counted.
                return .wait(error: Self.cutShort, delay: .zero, fields: fields)
            case .unavailable:
                let delay = Self.backoff(tries: claim.tries)
                // No connection at all: the forge is down for every job of this account, not just this one.
                if error.connectionFailed { account.pause(for: delay) }
                return .retry(error: message, delay: delay, maxTries: maxTries, fields: fields)
            case .rejected:
                return .giveUp(error: message, fields: fields)
            }
        }
    }
    /// 1, 2, 4 … s after each failed try, at most 15 minutes.
    static func backoff(tries: Int) -> Duration { .seconds(min(1 << min(tries, 10), 900)) }

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
