/// `<agent>:<owner>/<repo>:<number>` — the conversation an issue or pull request has with one agent.
public struct SessionKey: Sendable, Hashable, CustomStringConvertible {
    public let agent: String
    public let repository: String
    public let number: Int

    public init(agent: String, repository: String, number: Int) {
        self.agent = agent
        self.repository = repository
        self.number = number
    }

    /// Parses `agent:owner/repo:number`.
    /// - Throws: `SessionKeyError` naming the malformed part.
    public init(parsing text: String) throws(SessionKeyError) {
        let first = text.firstIndex(of: ":")
        let last = text.lastIndex(of: ":")
        guard let first, let last, first != last else { throw SessionKeyError(text: text, reason: "expected agent:owner/repo:number") }
        let agent = String(text[..<first])
        let repo = String(text[text.index(after: first)..<last])
        let numberText = text[text.index(after: last)...]
        guard !agent.isEmpty else { throw SessionKeyError(text: text, reason: "the agent is empty") }
        let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw SessionKeyError(text: text, reason: "'\(repo)' is not owner/repo")
        }
        guard let number = Int(numberText), number > 0 else {
            throw SessionKeyError(text: text, reason: "'\(numberText)' is not a positive issue number")
        }
        self.init(agent: agent, repository: repo, number: number)
    }

    public var description: String { "\(agent):\(repository):\(number)" }
}

public struct SessionKeyError: Error, CustomStringConvertible, Sendable {
    public let text: String
    public let reason: String
    public var description: String { "malformed session key '\(text)': \(reason) (e.g. dev:acme/widgets:42)" }
}
