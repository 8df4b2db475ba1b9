/// A failed Docker Engine API call, with Docker's own message and status.
public struct DockerError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let message: String
    public let operation: String

    public var description: String {
        if status == 0 {
            return "Docker engine unreachable (\(operation)): \(message). Is dockerd running and is DOCKER_HOST / the socket path right?"
        }
        return "Docker \(operation) failed (\(status)): \(message)"
    }

    public var isNotFound: Bool { status == 404 }
}
