import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Shared

/// A small Docker Engine API (v1.41) client over the unix socket, with AsyncHTTPClient.
package final class DockerClient: Sendable {
    package let socketPath: String
    private let http: HTTPClient
    static let apiVersion = "v1.41"

    /// Reads `DOCKER_HOST` (`unix:///path`); default `/var/run/docker.sock`.
    /// - Throws: `DockerError` for a DOCKER_HOST this client cannot use.
    package static func socketPath(environment: [String: String]) throws -> String {
        guard let host = environment["DOCKER_HOST"], !host.isEmpty else { return "/var/run/docker.sock" }
        guard host.hasPrefix("unix://") else {
            throw DockerError(status: 0, message: "DOCKER_HOST=\(host) is not supported; use unix:///path/to/docker.sock", operation: "configure")
        }
        return String(host.dropFirst("unix://".count))
    }

    /// - Parameter streams: how many exec output streams may be open at once (the worker's slots). Each holds one
    ///   HTTP connection for a whole run, so the pool is sized for all of them plus room for control calls (inspect,
    ///   create, the timeout kill), which must never queue behind streams.
    init(socketPath: String, streams: Int = 2) {
        self.socketPath = socketPath
        var config = HTTPClient.Configuration()
        config.timeout = .init(connect: .seconds(5), read: nil)  // exec streams can be silent for minutes
        config.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: Self.poolSize(streams: streams))
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Connections for `streams` open exec streams: each stream, its helper calls, and headroom.
    static func poolSize(streams: Int) -> Int { 2 * max(1, streams) + 8 }

    package func shutdown() async {
        try? await http.shutdown()
    }

    // MARK: Plumbing

    struct Reply: Sendable {
        let status: Int
        let body: [UInt8]
        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }
        var message: String {
            (json?["message"] as? String) ?? String(decoding: body.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    private func makeRequest(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: [String: Any]?) throws -> HTTPClientRequest {
        var components = URLComponents()
        components.path = "/\(Self.apiVersion)\(path)"
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        let uri = components.percentEncodedPath + (components.percentEncodedQuery.map { "?\($0)" } ?? "")
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw DockerError(status: 0, message: "bad socket path \(socketPath)", operation: "\(method) \(path)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        request.headers.add(name: "Host", value: "docker")
        if let body {
            let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        return request
    }

    /// One API call; the whole answer is read (up to 16 MiB) within `timeout`, head and body together.
    /// AsyncHTTPClient's own timeout ends when the head arrives and the read timeout is off (exec streams are long
    /// and quiet), so without this a dockerd that stalls after the head would hang the caller forever.
    func call(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [String: Any]? = nil, timeout: Duration = .seconds(60)
    ) async throws(DockerError) -> Reply {
        let operation = "\(method) \(path)"
        do {
            let request = try makeRequest(method, path, query: query, body: body)
            let http = self.http
            return try await withThrowingTaskGroup(of: Reply?.self) { group in
                group.addTask {
                    let response = try await http.execute(request, timeout: .seconds(Int64(timeout.seconds)))
                    let bytes = try await response.body.collect(upTo: 16 << 20)
                    return Reply(status: Int(response.status.code), body: Array(bytes.readableBytesView))
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let reply = try await group.next() ?? nil else {
                    throw DockerError(status: 0, message: "no complete answer within \(timeout) (is dockerd stalled?)", operation: operation)
                }
                return reply
            }
        } catch let error as DockerError {
            throw error
        } catch {
            throw DockerError(status: 0, message: "\(error)", operation: operation)
        }
    }

    /// Like `call`, but a status outside `accepted` throws Docker's message.
    @discardableResult
    func expect(
        _ accepted: Set<Int>, _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [String: Any]? = nil,
        timeout: Duration = .seconds(60)
    ) async throws(DockerError) -> Reply {
        let reply = try await call(method, path, query: query, body: body, timeout: timeout)
        guard accepted.contains(reply.status) else {
            throw DockerError(status: reply.status, message: reply.message, operation: "\(method) \(path)")
        }
        return reply
    }

    // MARK: Engine

    package func ping() async throws(DockerError) {
        try await expect([200], .GET, "/_ping", timeout: .seconds(5))
    }

    /// The engine's `SecurityOptions` (`name=seccomp,profile=default`, `name=apparmor`…) from `GET /info`.
    package func securityOptions() async throws(DockerError) -> [String] {
        try await info()["SecurityOptions"] as? [String] ?? []
    }

    /// The host's CPU count as the engine sees it (`NCPU`): a container cannot be given more.
    package func cpuCount() async throws(DockerError) -> Int? {
        try await info()["NCPU"] as? Int
    }

    private func info() async throws(DockerError) -> [String: Any] {
        let reply = try await call(.GET, "/info", timeout: .seconds(10))
        guard reply.status == 200, let info = (try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any] else {
            throw DockerError(status: reply.status, message: reply.message, operation: "engine info")
        }
        return info
    }

    // MARK: Containers

    /// The inspect document, or nil if there is no such container.
    package func inspectContainer(_ name: String) async throws(DockerError) -> ContainerDetails? {
        let reply = try await call(.GET, "/containers/\(name)/json")
        if reply.status == 404 { return nil }
        guard reply.status == 200, let details = try? ContainerDetails(json: reply.body) else {
            throw DockerError(status: reply.status, message: reply.message, operation: "inspect container \(name)")
        }
        return details
    }

    func createContainer(name: String, body: [String: Any]) async throws(DockerError) -> String {
        let reply = try await expect([201], .POST, "/containers/create", query: [("name", name)], body: body)
        guard let id = reply.json?["Id"] as? String else { throw DockerError(status: reply.status, message: "no Id in answer", operation: "create") }
        return id
    }

    func startContainer(_ id: String) async throws(DockerError) {
        try await expect([204, 304], .POST, "/containers/\(id)/start")
    }

    func stopContainer(_ id: String, graceSeconds: Int = 10) async throws(DockerError) {
        try await expect(
            [204, 304, 404], .POST, "/containers/\(id)/stop", query: [("t", String(graceSeconds))], timeout: .seconds(graceSeconds + 30))
    }

    /// Removes a container (not its named volumes); gone already, or being removed by another caller (409), counts as
    /// done.
    package func removeContainer(_ id: String) async throws(DockerError) {
        try await expect([204, 404, 409], .DELETE, "/containers/\(id)", query: [("force", "true")])
    }

    /// Renames a container (by id: a name may already mean another container).
    func renameContainer(_ id: String, to name: String) async throws(DockerError) {
        try await expect([204], .POST, "/containers/\(id)/rename", query: [("name", name)])
    }

    package func listContainers(label: String) async throws(DockerError) -> [ContainerSummary] {
        let filters = "{\"label\":[\"\(label)\"]}"
        let reply = try await expect([200], .GET, "/containers/json", query: [("all", "true"), ("filters", filters)])
        guard let list = try? JSONDecoder().decode([ContainerSummary].self, from: Data(reply.body)) else {
            throw DockerError(status: reply.status, message: "unreadable container list: \(reply.message)", operation: "list containers")
        }
        return list
    }

    /// The image's `sha256:` id, or nil if there is no such image.
    func imageID(_ reference: String) async throws(DockerError) -> String? {
        let reply = try await call(.GET, "/images/\(reference)/json")
        if reply.status == 404 { return nil }
        guard reply.status == 200 else { throw DockerError(status: reply.status, message: reply.message, operation: "inspect image \(reference)") }
        return reply.json?["Id"] as? String
    }

    // MARK: Exec

    func createExec(container: String, command: [String], user: String, workingDir: String?, env: [String]) async throws(DockerError) -> String {
        var body: [String: Any] = [
            "AttachStdout": true, "AttachStderr": true, "AttachStdin": false, "Tty": false, "Cmd": command, "User": user, "Env": env,
        ]
        if let workingDir { body["WorkingDir"] = workingDir }
        let reply = try await expect([201], .POST, "/containers/\(container)/exec", body: body)
        guard let id = reply.json?["Id"] as? String else { throw DockerError(status: reply.status, message: "no exec Id", operation: "exec create") }
        return id
    }

    /// Starts an exec and streams its demultiplexed output lines to `onLines` until the process ends (or the task is
    /// cancelled — which does **not** stop the process).
    func startExec(_ id: String, onLines: @Sendable ([(DockerStreamDemuxer.Stream, String)]) async -> Void) async throws {
        let request = try makeRequest(.POST, "/exec/\(id)/start", query: [], body: ["Detach": false, "Tty": false])
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(30))
        } catch {
            throw DockerError(status: 0, message: "\(error)", operation: "exec start")
        }
        guard response.status == .ok else {
            let body = try? await response.body.collect(upTo: 1 << 20)
            let reply = Reply(status: Int(response.status.code), body: body.map { Array($0.readableBytesView) } ?? [])
            throw DockerError(status: reply.status, message: reply.message, operation: "exec start")
        }
        var demuxer = DockerStreamDemuxer()
        for try await chunk in response.body {
            let lines = demuxer.feed(chunk.readableBytesView)
            if !lines.isEmpty { await onLines(lines) }
        }
        let rest = demuxer.finish()
        if !rest.isEmpty { await onLines(rest) }
    }

    struct ExecState: Sendable {
        let running: Bool
        let exitCode: Int?
        let pid: Int
        /// The full id of the exec's container.
        package let containerID: String?
    }

    func inspectExec(_ id: String, timeout: Duration = .seconds(60)) async throws(DockerError) -> ExecState {
        let reply = try await expect([200], .GET, "/exec/\(id)/json", timeout: timeout)
        let json = reply.json ?? [:]
        return ExecState(
            running: json["Running"] as? Bool ?? false, exitCode: json["ExitCode"] as? Int, pid: json["Pid"] as? Int ?? 0,
            containerID: json["ContainerID"] as? String)
    }

    /// Runs a short command to completion and returns (exit code, its last output lines: at most 100, each at most
    /// 1,000 bytes). Gives up after `timeout` — a process of the agent's uid can stop a helper it could signal, and
    /// must not hang the caller — leaving the helper to the container.
    func run(container: String, command: [String], user: String = "0:0", timeout: Duration = .seconds(15)) async throws -> (Int, [String]) {
        let exec = try await createExec(container: container, command: command, user: user, workingDir: nil, env: [])
        let collected = LineCollector()
        let finished = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await self.startExec(exec) { lines in await collected.add(lines.map(\.1)) }
                return true
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            let first = try await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard finished else { throw DockerError(status: 0, message: "did not finish within \(timeout)", operation: "exec \(command.first ?? "")") }
        var state = try await inspectExec(exec)
        var tries = 0
        while state.running && tries < 50 {
            try await Task.sleep(for: .milliseconds(20))
            state = try await inspectExec(exec)
            tries += 1
        }
        return (state.exitCode ?? -1, await collected.lines)
    }
}

/// The last lines of a helper's output, bounded in count and size.
actor LineCollector {
    private(set) var lines: [String] = []
    func add(_ more: [String]) {
        lines += more.map { $0.utf8.count > 1000 ? String(decoding: $0.utf8.prefix(1000), as: UTF8.self) : $0 }
        if lines.count > 100 { lines.removeFirst(lines.count - 100) }
    }
}
