import Crypto
import Foundation

/// Who may act through the dashboard. One password (from the environment or a file the config names) unlocks
/// actions; a login is a signed cookie, so several dashboards sharing the password accept each other's logins and
/// no login state is stored anywhere. Changing the password ends every login.
///
/// Every form carries a CSRF token derived from the login cookie; a POST without the matching token is refused even
/// with a valid cookie (the cookie is also `SameSite=Strict`).
struct DashboardAuth: Sendable {
    static let cookieName = "hooks_dashboard"
    /// nil: read-only, nobody can log in.
    private let keyBytes: [UInt8]?
    private var key: SymmetricKey? { keyBytes.map { SymmetricKey(data: $0) } }
    private let passwordMAC: [UInt8]
    let ttl: Duration

    init(password: String?, ttl: Duration) {
        self.ttl = ttl
        guard let password else {
            keyBytes = nil
            passwordMAC = []
            return
        }
        // Keys derived from the password: one signs cookies, one is what a typed password is compared through.
        let root = SymmetricKey(data: Array(password.utf8))
        let derived = Array(HMAC<SHA256>.authenticationCode(for: Array("forge-hooks dashboard session v1".utf8), using: root))
        keyBytes = derived
        passwordMAC = Self.mac(password, key: SymmetricKey(data: derived))
    }

    var actionsEnabled: Bool { keyBytes != nil }

    /// Compares in constant time (both sides are MACs of equal length).
    func checkPassword(_ given: String) -> Bool {
        guard let key else { return false }
        let theirs = Self.mac(given, key: key)
        var difference: UInt8 = 0
        for (a, b) in zip(theirs, passwordMAC) { difference |= a ^ b }
        return difference == 0 && theirs.count == passwordMAC.count
    }

    /// A login cookie value for `user`: `<expiry>.<user>.<mac>`.
    func issue(user: String, now: Date = Date()) -> String? {
        guard let key, Self.isValidUser(user) else { return nil }
        let payload = "\(Int(now.timeIntervalSince1970 + ttl.seconds)).\(user)"
        return payload + "." + Self.hex(Self.mac(payload, key: key))
    }

    /// The user a login cookie names, if it is genuine and unexpired.
    func verify(_ cookie: String?, now: Date = Date()) -> String? {
        guard let key, let cookie else { return nil }
        // `<expiry>.<user>.<mac>`: the user may hold dots itself, the other two never do.
        guard let first = cookie.firstIndex(of: "."), let last = cookie.lastIndex(of: "."), first < last else { return nil }
        let expiryText = String(cookie[..<first])
        let user = String(cookie[cookie.index(after: first)..<last])
        let mac = String(cookie[cookie.index(after: last)...])
        guard let expiry = Int(expiryText), Double(expiry) > now.timeIntervalSince1970, Self.isValidUser(user) else { return nil }
        let expected = Self.hex(Self.mac("\(expiryText).\(user)", key: key))
        return Self.constantTimeEqual(expected, mac) ? user : nil
    }

    /// The CSRF token forms carry for a login cookie.
    func csrfToken(cookie: String) -> String {
        guard let key else { return "" }
        return Self.hex(Self.mac("csrf|" + cookie, key: key))
    }

    func checkCSRF(token: String?, cookie: String?) -> Bool {
        guard let token, let cookie, actionsEnabled else { return false }
        return Self.constantTimeEqual(csrfToken(cookie: cookie), token)
    }

    /// Names recorded in logs as who acted: letters, digits and `._@-`, at most 64.
    static func isValidUser(_ user: String) -> Bool {
        !user.isEmpty && user.count <= 64
            && user.unicodeScalars.allSatisfy {
                CharacterSet(charactersIn: "._@-").contains($0) || ($0.isASCII && CharacterSet.alphanumerics.contains($0))
            }
    }

    private static func mac(_ text: String, key: SymmetricKey) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key))
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    private static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for (p, q) in zip(x, y) { difference |= p ^ q }
        return difference == 0
    }
}
