import Crypto
import Foundation
import Shared

/// Checks a webhook's HMAC-SHA256 signature over the exact raw body, in constant time, against every valid secret.
struct SignatureVerifier: Sendable {
    let forge: Forge
    /// One keyed HMAC per secret, copied per request: the key is hashed into its pads once, not per webhook.
    private let keyed: [KeyedHMAC]

    /// swift-crypto's digests are copy-on-write over a BoringSSL context: the shared value is only ever copied, and a
    /// copy makes its own context before its first update, so sharing it across threads is safe.
    private struct KeyedHMAC: @unchecked Sendable {
        let hmac: HMAC<SHA256>
    }

    init(forge: Forge, secrets: [[UInt8]]) {
        self.forge = forge
        self.keyed = secrets.map { KeyedHMAC(hmac: HMAC<SHA256>(key: SymmetricKey(data: $0))) }
    }

    /// The headers that may carry the signature, in the order they are tried.
    static func signatureHeaders(for forge: Forge) -> [String] {
        switch forge {
        case .github: return ["x-hub-signature-256"]
        case .gitea: return ["x-gitea-signature", "x-hub-signature-256"]
        case .forgejo: return ["x-forgejo-signature", "x-gitea-signature", "x-hub-signature-256"]
        }
    }

    enum Failure: Equatable {
        case missing(headers: [String])
        case malformed(header: String)
        case mismatch
    }

    /// Nil when the signature is valid.
    func verify(body: [UInt8], header: (String) -> String?) -> Failure? {
        let names = Self.signatureHeaders(for: forge)
        var found: (String, String)?
        for n in names {
            if let v = header(n) {
                found = (n, v)
                break
            }
        }
        guard let (name, raw) = found else { return .missing(headers: names) }
        var hex = Substring(raw)
        while hex.first == " " || hex.first == "\t" { hex.removeFirst() }
        while hex.last == " " || hex.last == "\t" { hex.removeLast() }
        if name == "x-hub-signature-256" {
            guard hex.hasPrefix("sha256=") else { return .malformed(header: name) }
            hex = hex.dropFirst(7)
        }
        guard let mac = Self.decodeHex(hex), mac.count == 32 else { return .malformed(header: name) }
        var valid = false
        for key in keyed {
            var hmac = key.hmac
            hmac.update(data: body)
            valid = hmac.finalize() == mac || valid  // constant-time compare, every secret tried
        }
        return valid ? nil : .mismatch
    }

    static func decodeHex(_ s: Substring) -> [UInt8]? {
        guard s.utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var high: UInt8?
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case 48...57: v = c - 48
            case 97...102: v = c - 87
            case 65...70: v = c - 55
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }

    /// Hex HMAC-SHA256 of `body` with `secret` (as forges send it): for tests and `send-test-event`.
    static func sign(_ body: [UInt8], secret: [UInt8]) -> String {
        HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret)).map { b in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }.joined()
    }
}
