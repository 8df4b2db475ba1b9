import Foundation
import HTTPTypes
import Hummingbird
import Shared
import Synchronization

/// Limits on what requests may cost, so no visitor can tie up the dashboard or Redis.
final class DashboardLimits: Sendable {
    /// Live streams (overview and job output) open at once; each looks at Redis every interval.
    let maxStreams: Int
    private let streams = Mutex(0)
    /// The earliest time the next failed sign-in may be answered: failures are answered one per second across all
    /// clients, so parallel guessing gains nothing.
    private let nextFailure = Mutex(ContinuousClock.now)

    init(maxStreams: Int = 64) {
        self.maxStreams = maxStreams
    }

    /// Takes a stream slot; false when all are taken.
    func openStream() -> Bool {
        streams.withLock { count in
            guard count < maxStreams else { return false }
            count += 1
            return true
        }
    }

    func closeStream() { streams.withLock { $0 -= 1 } }

    /// How long to hold a failed sign-in's answer.
    func failedSignInDelay() -> Duration {
        let now = ContinuousClock.now
        return nextFailure.withLock { next in
            let slot = max(next, now) + .seconds(1)
            next = slot
            return slot - now
        }
    }
}

/// Answers 421 to a request whose `Host` is not this dashboard's: a page opened on a rebinding attacker's domain that
/// resolves to 127.0.0.1 (an SSH tunnel) must not be able to read the dashboard. Loopback names are always allowed;
/// the names nginx serves it under come from `dashboard.allowed_hosts`.
struct HostCheckMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowed: Set<String>

    init(allowedHosts: [String]) {
        allowed = Set(["localhost", "127.0.0.1", "::1"] + allowedHosts.map { $0.lowercased() })
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authority = request.head.authority else { return try await next(request, context) }  // HTTP/1.0
        guard allowed.contains(Self.hostName(authority)) else {
            var headers = DashboardServer.securityHeaders
            headers[.contentType] = "text/plain; charset=utf-8"
            return Response(
                status: .init(code: 421, reasonPhrase: "Misdirected Request"), headers: headers,
                body: .init(
                    byteBuffer: ByteBuffer(
                        string: "This dashboard is not served under the name \(Self.hostName(authority).prefix(100)); "
                            + "add it to dashboard.allowed_hosts if it should be.\n")))
        }
        return try await next(request, context)
    }

    /// `host:port`, `[v6]:port` or `host` → the lower-cased name.
    static func hostName(_ authority: String) -> String {
        var text = authority.lowercased()
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<close])
        }
        if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon { text = String(text[..<colon]) }
        return text
    }
}

/// A page whose Redis call failed is answered with the error, named, and a 503 — not a bare 500.
struct RedisUnavailableMiddleware<Context: RequestContext>: RouterMiddleware {
    let render: @Sendable (Request, RedisError) -> Response

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as RedisError {
            return render(request, error)
        }
    }
}
