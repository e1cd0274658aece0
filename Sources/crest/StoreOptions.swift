import ArgumentParser
import CrestStore
import Foundation
import Logging

/// Which store the subcommands that open one use: the embedded store in a data directory (the
/// default), or PostgreSQL with `--database-url` (several nodes on one database).
struct StoreOptions: ParsableArguments {
    static let dataDirectory = TextSetting.dataDirectory.meaning("Data directory of the embedded store")
    @Option(name: .customLong("data-dir"), help: Self.dataDirectory.help) var dataDirectory: String?

    static let databaseURL = TextSetting(
        env: "CREST_DATABASE_URL", meaning: "PostgreSQL store instead of the embedded one: postgres://user:password@host:port/database")
    @Option(help: Self.databaseURL.help) var databaseURL: String?

    @Option(help: Self.connections.help) var databaseConnections: Int?

    @Option(name: .customLong("database-wait-ms"), help: Self.wait.help) var databaseWaitMs: Int?

    @Option(name: .customLong("database-timeout-ms"), help: Self.timeout.help) var databaseTimeoutMs: Int?

    static let connections = IntSetting(
        name: "database connections", env: "CREST_DATABASE_CONNECTIONS", defaultValue: 20, range: 1...1_000,
        meaning: "With --database-url: PostgreSQL connections this node keeps at most")
    static let wait = IntSetting(
        name: "database wait", env: "CREST_DATABASE_WAIT_MS", defaultValue: 2000, range: 1...60_000, unit: " ms",
        meaning: "With --database-url: how long a request waits for a free connection before it is answered 503")
    static let timeout = IntSetting(
        name: "database timeout", env: "CREST_DATABASE_TIMEOUT_MS", defaultValue: 10_000, range: 100...600_000,
        unit: " ms",
        meaning:
            "With --database-url: how long a store call that holds a connection waits for PostgreSQL's answer before it is answered 503 and the connection closed"
    )

    func directory(_ settings: Settings) throws -> URL {
        URL(filePath: Self.dataDirectory.value(dataDirectory, in: settings))
    }

    /// The PostgreSQL URL, when one is configured.
    func postgresURL(_ settings: Settings) -> String? {
        Self.databaseURL.resolve(databaseURL, in: settings)
    }

    /// Checks the store's options without opening the store, so that a usage error is told before
    /// anything else is tried.
    func validate(_ settings: Settings) throws {
        _ = try Self.connections.resolve(databaseConnections, in: settings)
        _ = try Self.wait.resolve(databaseWaitMs, in: settings)
        _ = try Self.timeout.resolve(databaseTimeoutMs, in: settings)
    }

    /// Opens the configured store (applying pending migrations); says which in `description`.
    func open(_ settings: Settings, logger: Logger) async throws -> (store: any Store, description: String) {
        if let url = postgresURL(settings) {
            let connections = try Self.connections.resolve(databaseConnections, in: settings)
            let waitMs = try Self.wait.resolve(databaseWaitMs, in: settings)
            let timeoutMs = try Self.timeout.resolve(databaseTimeoutMs, in: settings)
            do {
                let store = try await PostgresStore.connect(
                    url: url, logger: logger, maxConnections: connections, leaseTimeout: .milliseconds(waitMs),
                    answerTimeout: .milliseconds(timeoutMs))
                return (
                    store,
                    "PostgreSQL at \(Self.redacted(url)), \(connections) connections, \(waitMs) ms wait, \(timeoutMs) ms timeout"
                )
            } catch {
                throw ValidationError("cannot open the PostgreSQL store at \(Self.redacted(url)): \(String(reflecting: error))")
            }
        }
        let directory = try directory(settings)
        try Self.prepare(directory)
        return (try SQLiteStore(directory: directory), "data: \(directory.path)")
    }

    /// Creates the embedded store's data directory if needed and checks that it is writable, so
    /// that a bad one is one clear line ("cannot write to the data directory /x: Permission
    /// denied") rather than a Foundation error dump.
    static func prepare(_ directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            let underlying = (error as? CocoaError)?.underlying.map { $0 as NSError }
            let reason = underlying.map { String(cString: strerror(Int32($0.code))) } ?? "\(error)"
            throw StartupFailure("cannot create the data directory \(directory.path): \(reason)")
        }
        guard access(directory.path, W_OK | X_OK) == 0 else {
            throw StartupFailure("cannot write to the data directory \(directory.path): \(String(cString: strerror(errno)))")
        }
    }

    /// The URL without its password, for logs and messages.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }
}
