import AsyncHTTPClient
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import NIOCore

/// Where a crash test's processes keep their data: a directory of their own, and on PostgreSQL a
/// database of their own on the shared cluster; the store read directly between two lives.
struct CrashTestData: Sendable {
    let directory: URL
    let databaseURL: String?

    /// `nil` when PostgreSQL is asked for and cannot be had outside CI (in CI that fails).
    static func make(_ kind: String) async throws -> CrashTestData? {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        guard kind == "postgres" else { return CrashTestData(directory: directory, databaseURL: nil) }
        guard let cluster = try await PostgresCluster.shared() else { return nil }
        return CrashTestData(directory: directory, databaseURL: try await cluster.createDatabase())
    }

    /// The arguments that point `crest serve` at the store.
    var arguments: [String] { databaseURL.map { ["--database-url", $0] } ?? [] }

    /// `body` with the store opened as a node would open it, closed after.
    func read<T: Sendable>(_ body: (any Store) async throws -> T) async throws -> T {
        let store: any Store =
            if let databaseURL {
                try await PostgresStore.connect(
                    url: databaseURL, logger: Logger(label: "crest.test.crash"), leaseTimeout: .seconds(30), answerTimeout: .seconds(600))
            } else {
                try SQLiteStore(directory: directory)
            }
        do {
            let result = try await body(store)
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }

    /// A client that keeps up to `connections` open to one process across its lives (shut it down).
    /// Idle connections are dropped before Crest would close them (`HTTPClient.crestIdleTimeout`).
    static func client(connections: Int) -> HTTPClient {
        HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(
                connectionPool: .init(idleTimeout: HTTPClient.crestIdleTimeout, concurrentHTTP1ConnectionsPerHostSoftLimit: connections)))
    }
}
