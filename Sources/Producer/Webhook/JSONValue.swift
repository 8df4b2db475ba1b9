import Foundation

/// A parsed JSON document. Webhook payloads are parsed into this instead of Foundation's `JSONSerialization`, whose
/// bridged `[String: Any]` values made casts the producer's main cost.
enum JSONValue: Sendable, Equatable {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
}

struct JSONParseError: Error, Equatable, CustomStringConvertible {
    let offset: Int
    let reason: String
    var description: String { "\(reason) at byte \(offset)" }
}

/// Object member names to build; members with other names are syntax-checked and skipped. Built once: membership is
/// decided on the raw key bytes, so a skipped member costs no `String` and no hashing — mostly one integer compare
/// per name of the same length.
struct JSONKeySet: Sendable {
    let names: Set<String>

    private struct Name: Sendable {
        /// The first (up to) eight bytes, little-endian, zero-padded.
        let head: UInt64
        let bytes: [UInt8]
    }

    /// Names by UTF-8 length.
    private let byLength: [[Name]]

    init(_ names: Set<String>) {
        self.names = names
        var table = [[Name]](repeating: [], count: (names.map(\.utf8.count).max() ?? 0) + 1)
        for name in names {
            let bytes = Array(name.utf8)
            let head = bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            table[bytes.count].append(Name(head: head, bytes: bytes))
        }
        byLength = table
    }

    func contains(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        let n = range.count
        guard n < byLength.count, !byLength[n].isEmpty else { return false }
        let start = bytes.baseAddress! + range.lowerBound
        var head: UInt64 = 0
        if n >= 8 || range.lowerBound + 8 <= bytes.count {
            head = UnsafeRawPointer(start).loadUnaligned(as: UInt64.self).littleEndian
            if n < 8 { head &= (1 << (8 * UInt64(n))) - 1 }
        } else {
            for k in 0..<n { head |= UInt64(start[k]) << (8 * UInt64(k)) }
        }
        for name in byLength[n] where name.head == head {
            if n <= 8 { return true }
            if name.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress! + 8, start + 8, n - 8) == 0 }) { return true }
        }
        return false
    }
}

/// A strict RFC 8259 parser over raw bytes, in one pass: rejects invalid UTF-8 (anywhere, skipped members included),
/// control characters in strings, trailing data, and nesting deeper than `maxDepth`.
///
/// Strings — most of a webhook's bytes — are scanned eight bytes at a time: a word with no quote, backslash, control
/// or non-ASCII byte is passed over whole.
struct JSONParser {
    /// - Parameter keep: when given, object members whose key is not in it are checked for syntax but not built
    ///   (no strings, no dictionaries): a webhook payload is mostly API links the producer never reads.
    static func parse(_ input: [UInt8], maxDepth: Int = 200, keep: JSONKeySet? = nil) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = input.withUnsafeBufferPointer { bytes in
            var parser = JSONParser(bytes: bytes, maxDepth: maxDepth, keep: keep)
            do throws(JSONParseError) {
                parser.skipWhitespace()
                let value = try parser.parseValue(depth: 0)
                parser.skipWhitespace()
                guard parser.index == bytes.count else { throw JSONParseError(offset: parser.index, reason: "unexpected data after the JSON value") }
                return .success(value)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private let keep: JSONKeySet?
    private var index = 0

    private init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, keep: JSONKeySet?) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.keep = keep
    }

    private func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: index, reason: reason) }

    private func unexpected() -> JSONParseError {
        let b = bytes[index]
        if b >= 0x80 { return fail("unexpected byte 0x\(String(b, radix: 16, uppercase: true)) outside a string") }
        return fail("unexpected character '\(Character(Unicode.Scalar(b)))'")
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw unexpected()
        }
    }

    /// Checks one value's syntax without building it.
    private mutating func skipValue(depth: Int) throws(JSONParseError) {
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            try members(depth: depth + 1, isObject: true) { parser, _ throws(JSONParseError) in try parser.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            try members(depth: depth + 1, isObject: false) { parser, _ throws(JSONParseError) in try parser.skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""): _ = try scanString()
        case UInt8(ascii: "t"): try expectLiteral("true")
        case UInt8(ascii: "f"): try expectLiteral("false")
        case UInt8(ascii: "n"): try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
        default: throw unexpected()
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail("unexpected end of input") }
        guard memcmp(bytes.baseAddress! + index, literal.utf8Start, count) == 0 else { throw fail("invalid literal") }
        index += count
    }

    /// Walks an object's or array's members (`index` at its opening bracket); `member` is called with `index` at
    /// each value and, for objects, the key's raw range and whether it has escapes.
    private mutating func members(
        depth: Int, isObject: Bool, _ member: (inout JSONParser, (range: Range<Int>, escaped: Bool)?) throws(JSONParseError) -> Void
    ) throws(JSONParseError) {
        guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
        index += 1
        skipWhitespace()
        if index < bytes.count && bytes[index] == close {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            var key: (range: Range<Int>, escaped: Bool)?
            if isObject {
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                key = try scanString()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
                skipWhitespace()
            }
            try member(&self, key)
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of input") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == close {
                index += 1
                return
            } else {
                throw fail(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
            }
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        var object: [String: JSONValue] = [:]
        try members(depth: depth, isObject: true) { parser, key throws(JSONParseError) in
            let (range, escaped) = key!
            if let keep = parser.keep, !escaped, !keep.contains(parser.bytes, range) {
                try parser.skipValue(depth: depth)
                return
            }
            let name = parser.decodeString(range, escaped: escaped)
            if let keep = parser.keep, escaped, !keep.names.contains(name) {
                try parser.skipValue(depth: depth)
                return
            }
            object[name] = try parser.parseValue(depth: depth)
        }
        return .object(object)
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        var array: [JSONValue] = []
        try members(depth: depth, isObject: false) { parser, _ throws(JSONParseError) in array.append(try parser.parseValue(depth: depth)) }
        return .array(array)
    }

    // MARK: Strings

    private mutating func parseString() throws(JSONParseError) -> String {
        let (range, escaped) = try scanString()
        return decodeString(range, escaped: escaped)
    }

    /// Flags, in their byte's high bit, every byte of a little-endian word that is a quote, a backslash, a control
    /// character or not ASCII. The lowest flag is exact (later ones may be spurious), which is all the scan needs.
    @inline(__always)
    private static func specialBytes(_ x: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let quote = x ^ (ones &* 0x22)
        let backslash = x ^ (ones &* 0x5C)
        return ((quote &- ones) & ~quote | (backslash &- ones) & ~backslash | (x &- ones &* 0x20) & ~x | x) & high
    }

    /// Moves past a string (`index` at its opening quote), checking escapes, control characters and UTF-8.
    /// Returns the raw bytes between the quotes and whether they contain escapes.
    private mutating func scanString() throws(JSONParseError) -> (range: Range<Int>, escaped: Bool) {
        index += 1
        let start = index
        let n = bytes.count
        let base = UnsafeRawPointer(bytes.baseAddress!)
        var escaped = false
        while true {
            if index + 8 <= n {
                let flags = Self.specialBytes(base.loadUnaligned(fromByteOffset: index, as: UInt64.self).littleEndian)
                if flags == 0 {
                    index += 8
                    continue
                }
                index += flags.trailingZeroBitCount >> 3
            }
            guard index < n else { throw fail("unterminated string") }
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                index += 1
                return (start..<index - 1, escaped)
            } else if b == UInt8(ascii: "\\") {
                escaped = true
                try scanEscape()
            } else if b < 0x20 {
                throw fail("control character in a string")
            } else if b >= 0x80 {
                try scanUTF8Sequence()
            } else {
                index += 1
            }
        }
    }

    /// `index` at a backslash.
    private mutating func scanEscape() throws(JSONParseError) {
        index += 1
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
            UInt8(ascii: "r"), UInt8(ascii: "t"):
            index += 1
        case UInt8(ascii: "u"):
            index += 1
            let unit = try hex4()
            if (0xD800...0xDBFF).contains(unit) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw fail("unpaired surrogate")
                }
                index += 2
                guard (0xDC00...0xDFFF).contains(try hex4()) else { throw fail("invalid surrogate pair") }
            } else if (0xDC00...0xDFFF).contains(unit) {
                throw fail("unpaired surrogate")
            }
        default: throw fail("invalid escape")
        }
    }

    /// `index` at a byte ≥ 0x80: checks one well-formed UTF-8 sequence (Unicode Table 3-7: no overlong forms, no
    /// surrogates, nothing above U+10FFFF) and moves past it.
    private mutating func scanUTF8Sequence() throws(JSONParseError) {
        let b = bytes[index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch b {
        case 0xC2...0xDF: length = 2
        case 0xE0: (length, low) = (3, 0xA0)
        case 0xE1...0xEC, 0xEE, 0xEF: length = 3
        case 0xED: (length, high) = (3, 0x9F)
        case 0xF0: (length, low) = (4, 0x90)
        case 0xF1...0xF3: length = 4
        case 0xF4: (length, high) = (4, 0x8F)
        default: throw fail("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw fail("invalid UTF-8") }
        guard (low...high).contains(bytes[index + 1]) else { throw fail("invalid UTF-8") }
        for k in 2..<length where bytes[index + k] & 0xC0 != 0x80 { throw fail("invalid UTF-8") }
        index += length
    }

    /// The text of a string `scanString` has validated.
    private func decodeString(_ range: Range<Int>, escaped: Bool) -> String {
        let raw = UnsafeBufferPointer(rebasing: bytes[range])
        if !escaped { return String(decoding: raw, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        func hex4(_ at: Int) -> UInt32 { raw[at..<at + 4].reduce(0) { $0 << 4 | Self.hexDigit($1)! } }  // validated by scanString
        while i < raw.count {
            let b = raw[i]
            guard b == UInt8(ascii: "\\") else {
                out.append(b)
                i += 1
                continue
            }
            let e = raw[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4(i)
                i += 4
                if (0xD800...0xDBFF).contains(scalar) {  // scanString checked the low half follows
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (hex4(i + 2) - 0xDC00)
                    i += 6
                }
                out.append(contentsOf: Unicode.UTF8.encode(Unicode.Scalar(scalar)!)!)
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("unexpected end of input") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = Self.hexDigit(bytes[index]) else { throw fail("invalid \\u escape") }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private static func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - 48)
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(c - 87)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(c - 55)
        default: nil
        }
    }

    // MARK: Numbers

    private mutating func parseNumber() throws(JSONParseError) -> Double {
        let start = try scanNumber()
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)) else {
            throw fail("invalid number")
        }
        return value
    }

    /// Moves past a number; returns where it started.
    private mutating func scanNumber() throws(JSONParseError) -> Int {
        let start = index
        let digit = UInt8(ascii: "0")...UInt8(ascii: "9")
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, digit.contains(bytes[index]) else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, digit.contains(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            let digits = index
            while index < bytes.count, digit.contains(bytes[index]) { index += 1 }
            guard index > digits else { throw fail("invalid number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            let digits = index
            while index < bytes.count, digit.contains(bytes[index]) { index += 1 }
            guard index > digits else { throw fail("invalid number") }
        }
        return start
    }
}

extension JSONValue {
    /// Compact JSON text for answers, keys sorted.
    var serialized: String {
        var out: [UInt8] = []
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out += "null".utf8
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .number(let n): out += (n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)).utf8
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            for (i, key) in fields.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                fields[key]!.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += #"\""#.utf8
            case UInt8(ascii: "\\"): out += #"\\"#.utf8
            case 0x0A: out += #"\n"#.utf8
            case 0x0D: out += #"\r"#.utf8
            case 0x09: out += #"\t"#.utf8
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += #"\u00"#.utf8
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            default: out.append(b)  // UTF-8 passes through unchanged
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
