/// Text from Redis made harmless for a terminal before `hooksctl` prints it.
///
/// Job fields and logs hold what forge users wrote and what agents printed. Printed raw, an escape sequence in them
/// could move the cursor, rewrite lines an operator already read, set the window title or hide text; a carriage return
/// could overwrite a line; bidirectional overrides could reorder what is shown. Every C0 control character (except a
/// tab, and a newline where `keepNewlines` says so), DEL, every C1 control and the bidi controls become visible escapes
/// such as `\u{1B}`.
public enum TerminalText {
    public static func safe(_ text: String, keepNewlines: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepNewlines: keepNewlines) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if needsEscape(scalar, keepNewlines: keepNewlines) {
                out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    static func needsEscape(_ s: Unicode.Scalar, keepNewlines: Bool) -> Bool {
        switch s.value {
        case 0x09: return false
        case 0x0A: return !keepNewlines
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}
