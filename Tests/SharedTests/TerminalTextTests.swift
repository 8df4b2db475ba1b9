import Shared
import Testing

@Suite(.timeLimit(.minutes(5))) struct TerminalTextTests {
    @Test func controlSequencesBecomeVisibleEscapes() {
        // Clear screen, set the window title, rewrite the line, ring the bell, a C1 CSI, bidi override.
        let hostile = "ok\u{1B}[2J\u{1B}]0;pwned\u{07}\rfake line\u{9B}31m\u{202E}txt.exe"
        let safe = TerminalText.safe(hostile)
        #expect(safe == "ok\\u{1B}[2J\\u{1B}]0;pwned\\u{7}\\u{D}fake line\\u{9B}31m\\u{202E}txt.exe")
        #expect(!safe.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
    }

    @Test func ordinaryTextIsUnchanged() {
        for text in ["plain", "tabs\tstay", "ünïcödé 日本 🚀", ""] { #expect(TerminalText.safe(text) == text) }
        #expect(TerminalText.safe("two\nlines") == "two\\u{A}lines")
        #expect(TerminalText.safe("two\nlines", keepNewlines: true) == "two\nlines")
    }
}
