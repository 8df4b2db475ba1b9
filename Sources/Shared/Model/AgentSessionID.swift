/// The agent CLI's session id: a UUID (`8-4-4-4-12` hex digits), the only shape accepted from an agent's output.
///
/// The id comes from the agent's stdout, which a prompt-injected agent controls; it becomes a file name
/// (`projects/<folder>/<id>.jsonl`), a `--resume` argument and a value in `hooks:sessions`. Anything that is not a UUID
/// (`../../x`, an option, a megabyte of text) is refused rather than cleaned.
public enum AgentSessionID {
    /// Whether `text` is a UUID in the canonical 36-character form (either case).
    public static func isValid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard b == UInt8(ascii: "-") else { return false }
            } else {
                let hex = (b >= 48 && b <= 57) || (b >= 65 && b <= 70) || (b >= 97 && b <= 102)
                guard hex else { return false }
            }
        }
        return true
    }
}
