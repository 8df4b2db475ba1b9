import Foundation
import Testing

@testable import Producer

/// The webhook JSON parser against Foundation's, on generated documents, and on the inputs its word-at-a-time string
/// scan and inline UTF-8 check must get right at every alignment.
@Suite(.timeLimit(.minutes(5))) struct JSONParserTests {
    /// A small deterministic generator (SplitMix64), so a failure can be replayed from its seed.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let pieces: [String] = ["a", "Z", " ", "lorem ipsum ", "é", "日本", "😀", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{7f}", "\u{2028}"]

    static func randomString(_ g: inout Generator) -> String {
        (0..<Int.random(in: 0...12, using: &g)).map { _ in pieces.randomElement(using: &g)! }.joined()
    }

    static func randomValue(_ g: inout Generator, depth: Int = 0) -> Any {
        switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &g) {
        case 0: return randomString(&g)
        case 1: return Int.random(in: -1_000_000...1_000_000, using: &g)
        case 2: return Bool.random(using: &g)
        case 3: return NSNull()
        case 4: return (0..<Int.random(in: 0...4, using: &g)).map { _ in randomValue(&g, depth: depth + 1) }
        default:
            var object: [String: Any] = [:]
            for _ in 0..<Int.random(in: 0...5, using: &g) { object[randomString(&g)] = randomValue(&g, depth: depth + 1) }
            return object
        }
    }

    /// Foundation's value in this parser's terms.
    static func expected(_ value: Any) -> JSONValue {
        switch value {
        case let s as String: return .string(s)
        case let n as NSNumber where String(cString: n.objCType) == "c": return .bool(n.boolValue)  // how Foundation boxes a Bool
        case let n as NSNumber: return .number(n.doubleValue)
        case let a as [Any]: return .array(a.map(expected))
        case let o as [String: Any]: return .object(o.mapValues(expected))
        default: return .null
        }
    }

    @Test func agreesWithFoundationOnGeneratedDocuments() throws {
        var g = Generator(state: 42)
        for i in 0..<2000 {
            let value = Self.randomValue(&g)
            let data = try JSONSerialization.data(withJSONObject: [value], options: [.fragmentsAllowed])
            let parsed = try JSONParser.parse(Array(data))
            let reference = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            #expect(parsed == Self.expected(reference), "document \(i): \(String(decoding: data, as: UTF8.self))")
        }
    }

    /// Every special byte at every offset of a long string: the scan works on 8-byte words, so each position in a
    /// word and the tail after the last whole word must be handled.
    @Test func specialBytesAtEveryAlignment() throws {
        for prefix in 0..<20 {
            for suffix in [0, 1, 7, 8, 9, 17] {
                let pad = { (n: Int) in String(repeating: "x", count: n) }
                func doc(_ middle: String) -> [UInt8] {
                    Array(#"{"k":""#.utf8) + Array((pad(prefix) + middle + pad(suffix)).utf8) + Array(#""}"#.utf8)
                }
                let cases: [(String, String)] = [
                    (#"\""#, "\""), (#"\\"#, "\\"), (#"\n"#, "\n"), (#"\u00e9"#, "é"), (#"\ud83d\ude00"#, "😀"), ("é", "é"), ("€", "€"),
                    ("😀", "😀"), ("", ""),
                ]
                for (raw, text) in cases {
                    #expect(try JSONParser.parse(doc(raw)) == .object(["k": .string(pad(prefix) + text + pad(suffix))]))
                }
                // A control character or a bare quote inside the string is an error wherever it falls.
                #expect(throws: JSONParseError.self) { try JSONParser.parse(doc("\u{1}")) }
                #expect(throws: JSONParseError.self) { try JSONParser.parse(doc("\u{1f}")) }
                #expect(throws: JSONParseError.self) { try JSONParser.parse(doc(#"""#)) }
                // Unterminated at the very end of the input.
                #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(#"{"k":""#.utf8) + Array(pad(prefix).utf8)) }
            }
        }
    }

    static let invalidUTF8: [[UInt8]] = [
        [0x80], [0xBF], [0xC0, 0xAF], [0xC1, 0xBF], [0xC2], [0xE0, 0x80, 0xAF], [0xE0, 0xA0], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF],
        [0xF0, 0x80, 0x80, 0xAF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0xE2, 0x82], [0xF0, 0x9F, 0x98],
        [0xC3, 0x28], [0xE2, 0x28, 0xA1],
    ]

    /// Invalid UTF-8 is refused wherever it is: in a value that is built, in a member that is skipped, in a key, and
    /// at every alignment; valid multi-byte sequences at the edges of the ranges are accepted.
    @Test func invalidUTF8IsRefusedEverywhere() throws {
        let keep = JSONKeySet(["kept"])
        for bad in Self.invalidUTF8 {
            for prefix in 0..<10 {
                let pad = Array(String(repeating: "y", count: prefix).utf8)
                let inKept = Array(#"{"kept":""#.utf8) + pad + bad + Array(#"z"}"#.utf8)
                let inSkipped = Array(#"{"skipped_url":""#.utf8) + pad + bad + Array(#"z","kept":"v"}"#.utf8)
                let inKey = Array(#"{""#.utf8) + pad + bad + Array(#"":1}"#.utf8)
                for doc in [inKept, inSkipped, inKey] {
                    #expect(throws: JSONParseError.self, "\(bad) after \(prefix)") { try JSONParser.parse(doc, keep: keep) }
                    #expect(throws: JSONParseError.self) { try JSONParser.parse(doc) }
                }
            }
        }
        // Outside a string any non-ASCII byte is a syntax error.
        #expect { try JSONParser.parse([0x5B, 0xC3, 0xA9, 0x5D]) } throws: { "\($0)".contains("outside a string") }
        // The boundaries of each valid range.
        let valid: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xEC, 0xBF, 0xBF], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        for good in valid {
            let doc = Array(#"{"kept":""#.utf8) + good + Array(#""}"#.utf8)
            #expect(try JSONParser.parse(doc, keep: keep) == .object(["kept": .string(String(decoding: good, as: UTF8.self))]))
        }
    }

    /// Mutating random bytes of documents: the parser accepts exactly when the result is valid UTF-8 (the mutations
    /// stay inside strings, so the structure is untouched).
    @Test func mutatedStringsAcceptedIffValidUTF8() throws {
        var g = Generator(state: 7)
        let values = ["created", "hello wörld, this is a longer comment body 😀 with text", "https://example.com/a/b/c/d"]
        let text = #"{"action":"\#(values[0])","comment":{"body":"\#(values[1])"},"x_url":"\#(values[2])"}"#
        let template = Array(text.utf8)
        // The byte ranges of the three values' contents.
        let stringRanges = values.map { value in
            let needle = Array("\"\(value)\"".utf8)
            let at = (0...(template.count - needle.count)).first { Array(template[$0..<$0 + needle.count]) == needle }!
            return (at + 1, at + 1 + value.utf8.count)
        }
        for _ in 0..<3000 {
            var doc = template
            let (lo, hi) = stringRanges.randomElement(using: &g)!
            for _ in 0..<Int.random(in: 1...3, using: &g) {
                doc[Int.random(in: lo..<hi, using: &g)] = UInt8.random(in: 0x80...0xFF, using: &g)
            }
            let valid = String(validating: doc, as: UTF8.self) != nil
            let accepted = (try? JSONParser.parse(doc, keep: EventNormalizer.fieldsRead)) != nil
            #expect(accepted == valid, "\(doc)")
        }
    }

    @Test func keysAreMatchedOnTheirDecodedText() throws {
        let keep = JSONKeySet(["action", "number"])
        // An escaped key that decodes to a kept name is kept; a prefix or extension of a kept name is not.
        let value = try JSONParser.parse(Array(#"{"\u0061ction":"opened","numbers":1,"numbe":2,"number":3,"":4}"#.utf8), keep: keep)
        #expect(value == .object(["action": .string("opened"), "number": .number(3)]))
    }

    /// Key membership on raw bytes: every length, a difference at every byte, and keys at the very end of the buffer
    /// (where a whole word cannot be read).
    @Test func keySetMatchesExactly() {
        let names: [String] = (1...20).map { (n: Int) -> String in
            let letters: [UInt8] = (0..<n).map { (i: Int) -> UInt8 in UInt8(97 + (i * 7 + n) % 26) }
            return String(decoding: letters, as: UTF8.self)
        }
        let set = JSONKeySet(Set(names))
        for name in names {
            let bytes = Array(name.utf8)
            for (padding, trailing) in [(0, 0), (3, 0), (16, 0), (0, 9), (5, 12)] {
                let buffer = Array(repeating: UInt8(ascii: "#"), count: padding) + bytes + Array(repeating: UInt8(ascii: "b"), count: trailing)
                let key = padding..<padding + bytes.count
                buffer.withUnsafeBufferPointer { b in
                    #expect(set.contains(b, key), "\(name)")
                    #expect(!set.contains(b, key.lowerBound..<key.upperBound - 1) || names.contains(String(name.dropLast())))
                }
                for k in bytes.indices {
                    var changed = buffer
                    changed[padding + k] ^= 0x01
                    changed.withUnsafeBufferPointer { b in #expect(!set.contains(b, key), "\(name) changed at \(k)") }
                }
            }
        }
    }
}
