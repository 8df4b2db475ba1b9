import Foundation
import Hummingbird

/// Small JSON answers: every webhook answer has a body that says what happened.
enum JSONResponse {
    static func make(_ status: HTTPResponse.Status, _ object: [String: JSONValue], headers extra: HTTPFields = [:]) -> Response {
        var headers = jsonHeaders
        if !extra.isEmpty { headers.append(contentsOf: extra) }
        var text: [UInt8] = []
        text.reserveCapacity(128)
        JSONValue.object(object).write(into: &text)
        text.append(0x0A)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    private static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    static func error(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) -> Response {
        make(status, ["error": .string(message)], headers: headers)
    }
}

/// Turns routing errors (404, 405) and unexpected errors into JSON bodies without leaking internals.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let message =
                error.body ?? (error.status == .notFound ? "no such endpoint: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return JSONResponse.error(error.status, message)
        } catch let error as HTTPResponseError {
            return JSONResponse.error(error.status, error.status.reasonPhrase)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            return JSONResponse.error(.internalServerError, "internal error")
        }
    }
}
