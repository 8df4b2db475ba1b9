import Foundation

/// A cursor into the parsed YAML that knows its key path, so every error names exactly where it is.
/// Unknown keys are reported (a typo must not silently disable a setting).
struct ConfigNode {
    let file: String
    let path: String
    let value: Any?

    func error(_ problem: String) -> ConfigError { ConfigError(file: file, path: path, problem: problem) }

    var isMissing: Bool { value == nil || value is NSNull }

    func child(_ key: String) -> ConfigNode {
        let dict = value as? [String: Any]
        return ConfigNode(file: file, path: path.isEmpty ? key : "\(path).\(key)", value: dict?[key])
    }

    func mapping(allowed: Set<String>) throws(ConfigError) -> [String: Any] {
        if isMissing { return [:] }
        guard let dict = value as? [String: Any] else { throw error("must be a mapping (key: value)") }
        if let unknown = dict.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ConfigError(
                file: file, path: path.isEmpty ? unknown : "\(path).\(unknown)",
                problem: "unknown key (known here: \(allowed.sorted().joined(separator: ", ")))")
        }
        return dict
    }

    /// Entries of a mapping whose keys are names (agents), in sorted order.
    func namedEntries() throws(ConfigError) -> [(String, ConfigNode)] {
        if isMissing { return [] }
        guard let dict = value as? [String: Any] else { throw error("must be a mapping of names to settings") }
        return dict.keys.sorted().map { ($0, child($0)) }
    }

    func items() throws(ConfigError) -> [ConfigNode] {
        if isMissing { return [] }
        guard let list = value as? [Any] else { throw error("must be a list") }
        return list.enumerated().map { ConfigNode(file: file, path: "\(path)[\($0.offset)]", value: $0.element) }
    }

    func string() throws(ConfigError) -> String? {
        if isMissing { return nil }
        if let s = value as? String { return s }
        if let i = value as? Int { return String(i) }
        throw error("must be a string")
    }

    func string(default d: String) throws(ConfigError) -> String { try string() ?? d }

    func requiredString() throws(ConfigError) -> String {
        guard let s = try string(), !s.isEmpty else { throw error("is required") }
        return s
    }

    /// A string or a list of strings.
    func strings() throws(ConfigError) -> [String] {
        if isMissing { return [] }
        if let s = value as? String { return [s] }
        guard let list = value as? [Any] else { throw error("must be a string or a list of strings") }
        var out: [String] = []
        for (i, item) in list.enumerated() {
            if let s = item as? String {
                out.append(s)
            } else if let n = item as? Int {
                out.append(String(n))
            } else {
                throw ConfigError(file: file, path: "\(path)[\(i)]", problem: "must be a string")
            }
        }
        return out
    }

    func int(default d: Int, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        if isMissing { return d }
        guard let n = value as? Int else { throw error("must be a whole number") }
        guard range.contains(n) else { throw error("must be between \(range.lowerBound) and \(range.upperBound), got \(n)") }
        return n
    }

    func bool(default d: Bool) throws(ConfigError) -> Bool {
        if isMissing { return d }
        guard let b = value as? Bool else { throw error("must be true or false") }
        return b
    }

    /// A duration: a number of seconds, or a string like `500ms`, `30s`, `10m`, `2h`, `7d`.
    func duration(default d: Duration, allowZero: Bool = false) throws(ConfigError) -> Duration {
        if isMissing { return d }
        let parsed: Duration?
        if let n = value as? Int {
            parsed = .seconds(n)
        } else if let x = value as? Double {
            parsed = .milliseconds(Int64(x * 1000))
        } else if let s = value as? String {
            parsed = Self.parseDuration(s)
        } else {
            parsed = nil
        }
        guard let result = parsed else { throw error("must be a duration like 30s, 10m, 2h, 7d (or a number of seconds)") }
        if result < .zero || (!allowZero && result == .zero) { throw error("must be greater than zero") }
        return result
    }

    static func parseDuration(_ text: String) -> Duration? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (suffix, scale) in units where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count)
            if suffix == "s" && number.hasSuffix("m") { continue }
            guard let n = Double(number), n >= 0 else { return nil }
            return .milliseconds(Int64((n * scale * 1000).rounded()))
        }
        return Double(s).map { .milliseconds(Int64($0 * 1000)) }
    }
}

extension ConfigNode {
    /// A secret the config names but never holds: the value of the environment variable `name`. This node is the key
    /// that named it (`…password_env`, `…secret_env[0]`), for the error; `what` says what the value is.
    func secret(environmentVariable name: String, in environment: [String: String], what: String) throws(ConfigError) -> String {
        guard let value = environment[name], !value.isEmpty else {
            throw error("environment variable \(name) is not set or empty; export it with \(what)")
        }
        return value
    }

    /// A secret read from the file at `path` (surrounding whitespace dropped). This node is the key that named it.
    func secret(file path: String, what: String) throws(ConfigError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw error("cannot read \(what) file \(path)") }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else { throw error("\(what) file \(path) is empty") }
        return value
    }
}

/// Where the config says a secret is: `<stem>_env` (an environment variable's name) or `<stem>_file` (a path) — never
/// the secret itself.
struct SecretSource: Sendable {
    enum Place: Sendable {
        case environment(String)
        case file(String)
    }
    let place: Place
    /// The config file and the key that named it (`…token_env`, `dashboard.password_file`): errors point at it.
    let file: String
    let path: String
    var key: ConfigNode { ConfigNode(file: file, path: path, value: name) }

    /// The `<stem>_env` or `<stem>_file` of `node`; nil when neither is set.
    /// - Throws: `ConfigError` when both are set, or one is not a string.
    init?(_ node: ConfigNode, stem: String) throws(ConfigError) {
        let env = try node.child("\(stem)_env").string()
        let file = try node.child("\(stem)_file").string()
        if env != nil && file != nil { throw node.error("set one of \(stem)_env and \(stem)_file, not both") }
        if let env {
            (place, path) = (.environment(env), node.child("\(stem)_env").path)
        } else if let file {
            (place, path) = (.file(file), node.child("\(stem)_file").path)
        } else {
            return nil
        }
        self.file = node.file
    }

    /// The variable's name or the file's path, for errors that must not print the value.
    var name: String {
        switch place {
        case .environment(let name), .file(let name): name
        }
    }

    /// The secret; `what` says what it is ("the dashboard password").
    /// - Throws: `ConfigError` naming the key when the variable is unset or empty, or the file unreadable or empty.
    func read(environment: [String: String], what: String) throws(ConfigError) -> String {
        switch place {
        case .environment(let name): try key.secret(environmentVariable: name, in: environment, what: what)
        case .file(let path): try key.secret(file: path, what: what)
        }
    }
}
