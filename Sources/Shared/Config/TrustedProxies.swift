import Foundation

/// Which peers may tell us the client's address in `X-Forwarded-For`. Exact addresses or CIDR blocks, IPv4 or IPv6.
public struct TrustedProxies: Sendable {
    private struct Block: Sendable {
        let bytes: [UInt8]
        let prefix: Int
    }
    private let blocks: [Block]

    /// - Throws: a message naming the entry that is not an address or CIDR block.
    public init(_ entries: [String]) throws {
        var blocks: [Block] = []
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1).map(String.init)
            guard let bytes = Self.parse(parts[0]) else { throw TrustedProxyError(entry: entry) }
            let prefix = parts.count == 2 ? Int(parts[1]) ?? -1 : bytes.count * 8
            guard (0...(bytes.count * 8)).contains(prefix) else { throw TrustedProxyError(entry: entry) }
            blocks.append(Block(bytes: bytes, prefix: prefix))
        }
        self.blocks = blocks
    }

    public func contains(_ address: String) -> Bool {
        guard let bytes = Self.parse(address) else { return false }
        return blocks.contains { block in
            guard block.bytes.count == bytes.count else { return false }
            var bits = block.prefix
            var i = 0
            while bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
                if block.bytes[i] & mask != bytes[i] & mask { return false }
                bits -= 8
                i += 1
            }
            return true
        }
    }

    /// The client: the peer itself, unless the peer is a trusted proxy; then the right-most `X-Forwarded-For` hop that
    /// is not itself a trusted proxy (entries left of it could have been written by the client).
    public func clientAddress(peer: String?, forwardedFor: String?) -> String {
        guard let peer else { return "unknown" }
        guard contains(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for hop in hops.reversed() where !contains(hop) {
            return Self.parse(hop) != nil ? hop : peer
        }
        return hops.first ?? peer
    }

    static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            // IPv4-mapped (::ffff:a.b.c.d) compares as IPv4.
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff { return Array(bytes[12...]) }
            return bytes
        }
        return nil
    }
}

public struct TrustedProxyError: Error, CustomStringConvertible {
    let entry: String
    public var description: String { "trusted_proxies: '\(entry)' is not an IP address or CIDR block (e.g. 10.0.0.0/8, ::1)" }
}
