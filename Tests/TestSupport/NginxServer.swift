import Foundation

/// A real nginx on a free loopback port, in front of `upstreamPort`, serving the repository's
/// `deploy/nginx/forge-hooks-locations.conf`.
public final class NginxServer: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    private var process: ChildProcess?

    public static func binary() throws -> String {
        for path in ["/usr/sbin/nginx", "/usr/bin/nginx"] where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw TestSetupError("nginx is not installed: run `apt-get install -y nginx` (or `bash .ci/run`, which does)")
    }

    /// The repository's deploy/ folder.
    public static var deployDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy")
    }

    /// - Parameter dashboardPort: where `/dashboard/` goes (nothing listens there by default).
    public init(upstreamPort: Int, dashboardPort: Int? = nil) throws {
        port = try freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nginx-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        chmod(directory.path, 0o777)
        let locations = Self.deployDirectory.appendingPathComponent("nginx/forge-hooks-locations.conf").path
        let conf = """
            daemon off;
            worker_processes 1;
            pid \(directory.path)/nginx.pid;
            error_log \(directory.path)/error.log warn;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path \(directory.path)/body;
                proxy_temp_path \(directory.path)/proxy;
                fastcgi_temp_path \(directory.path)/fastcgi;
                uwsgi_temp_path \(directory.path)/uwsgi;
                scgi_temp_path \(directory.path)/scgi;
                upstream forge_hooks_producer { server 127.0.0.1:\(upstreamPort); keepalive 16; }
                upstream forge_hooks_dashboard { server 127.0.0.1:\(dashboardPort ?? 9); keepalive 4; }
                server {
                    listen 127.0.0.1:\(port);
                    include \(locations);
                }
            }
            """
        try conf.write(to: directory.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        process = try ChildProcess(
            try Self.binary(), ["-c", directory.appendingPathComponent("nginx.conf").path, "-e", directory.appendingPathComponent("error.log").path],
            output: directory.appendingPathComponent("stdout.log").path)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if canConnect(port: port) { return }
            if process?.isRunning == false { break }
            usleep(20_000)
        }
        let log = (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? ""
        throw TestSetupError("nginx did not start on port \(port): \(log)")
    }

    public func stop() {
        process?.terminate(signal: SIGQUIT)
        process = nil
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
