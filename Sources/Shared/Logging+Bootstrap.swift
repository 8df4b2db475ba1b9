import Logging

/// Process-wide logging set-up shared by the executables.
public enum LogSetup {
    /// Bootstraps stderr logging at `level` (a `Logger.Level` name) and returns a logger labelled `label`.
    /// - Throws: `LogLevelError` naming the accepted levels.
    public static func bootstrap(level name: String, label: String) throws(LogLevelError) -> Logger {
        guard let level = Logger.Level(rawValue: name) else { throw LogLevelError(value: name) }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

public struct LogLevelError: Error, CustomStringConvertible {
    public let value: String
    public var description: String { "unknown --log-level '\(value)' (trace, debug, info, notice, warning, error, critical)" }
}
