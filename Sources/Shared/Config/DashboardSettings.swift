import Foundation

/// The `dashboard:` section: where the web dashboard listens and who may act through it.
public struct DashboardSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 9191
    /// The path the dashboard is served under (`/dashboard` behind nginx); "" = the root.
    public var basePath = ""
    /// Show everything, allow no action (requeue, drop, purge), ask for no password.
    public var readOnly = false
    /// Where the password for actions comes from (never the file itself): an environment variable or a file.
    var passwordSource: SecretSource?
    /// How long a login lasts.
    public var sessionTTL: Duration = .seconds(12 * 3600)
    /// Mark the login cookie `Secure` (serve the dashboard over HTTPS, e.g. nginx with TLS).
    public var secureCookie = false
    /// Peers whose `X-Forwarded-For` is believed when logging who acted.
    public var trustedProxies: [String] = ["127.0.0.1", "::1"]
    /// Host names it answers to besides loopback (the name nginx serves it under); others get 421 (DNS rebinding).
    public var allowedHosts: [String] = []

    public init() {}

    init(_ node: ConfigNode) throws(ConfigError) {
        _ = try node.mapping(allowed: [
            "listen", "base_path", "read_only", "password_env", "password_file", "session_ttl", "secure_cookie", "trusted_proxies",
            "allowed_hosts",
        ])
        if let listen = try node.child("listen").string() { (host, port) = try ProducerSettings.hostPort(listen, node.child("listen")) }
        basePath = try node.child("base_path").string(default: "")
        if !basePath.isEmpty {
            if !basePath.hasPrefix("/") { basePath = "/" + basePath }
            while basePath.hasSuffix("/") { basePath.removeLast() }
            guard basePath.range(of: "^(/[A-Za-z0-9._~-]+)+$", options: .regularExpression) != nil else {
                throw node.child("base_path").error("must be a URL path such as /dashboard (letters, digits, '.', '_', '~', '-')")
            }
        }
        readOnly = try node.child("read_only").bool(default: false)
        passwordSource = try SecretSource(node, stem: "password")
        sessionTTL = try node.child("session_ttl").duration(default: sessionTTL)
        secureCookie = try node.child("secure_cookie").bool(default: false)
        if !node.child("trusted_proxies").isMissing { trustedProxies = try node.child("trusted_proxies").strings() }
        allowedHosts = try node.child("allowed_hosts").strings()
    }

    /// The actions password, read from where the config names it (`file`: the config file, named when it names none).
    /// - Throws: `ConfigError` when actions are allowed but no password is configured, or it cannot be read.
    public func password(environment: [String: String] = ProcessInfo.processInfo.environment, file: String) throws(ConfigError) -> String? {
        if readOnly { return nil }
        let problem = ConfigError(
            file: file, path: "dashboard",
            problem: "actions (requeue, drop, purge) need a password: set dashboard.password_env (an environment variable) or "
                + "dashboard.password_file (a file holding it), or dashboard.read_only: true")
        guard let source = passwordSource else { throw problem }
        let value = try source.read(environment: environment, what: "the dashboard password")
        guard value.count >= 12 else {
            throw source.key.error("the password is shorter than 12 characters; use a long random one (e.g. openssl rand -base64 24)")
        }
        return value
    }
}
