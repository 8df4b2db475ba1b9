/// A configuration problem, naming the file, the key path and what is wrong. Start-up stops on it.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let path: String
    public let problem: String

    public init(file: String, path: String, problem: String) {
        self.file = file
        self.path = path
        self.problem = problem
    }

    public var description: String {
        path.isEmpty ? "\(file): \(problem)" : "\(file): \(path): \(problem)"
    }
}
