import CrestCore
import CrestTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import CrestStore

// Nodes on a database of their own, and a third connection that holds a sale's row: for the
// tests of what a node does while another transaction has the row.

let postgresTestLogger = {
    var logger = Logger(label: "crest.test.store")
    logger.logLevel = .warning
    return logger
}()

/// A third connection with a transaction open that ran `statements` (by default, it locks
/// `sale`'s row); `COMMIT` it with `releaseRow`. Should the test throw before it does, PostgreSQL
/// ends the session after two idle minutes: the statements waiting behind the row (in `async let`s
/// that the failing test awaits as it unwinds) go on, instead of holding the test until the
/// store's answer deadline (600 s).
func holdRow(of sale: Sale, url: String, running statements: [PostgresQuery]? = nil) async throws
    -> PostgresConnection
{
    let holder = try await PostgresConnection.connect(configuration: try PostgresURL(url).connection, id: 1, logger: postgresTestLogger)
    try await holder.query("SET idle_in_transaction_session_timeout = '120s'", logger: postgresTestLogger)
    try await holder.query("BEGIN", logger: postgresTestLogger)
    for statement in statements ?? ["SELECT 1 FROM sales WHERE id = \(sale.id.description) FOR UPDATE"] {
        try await holder.query(statement, logger: postgresTestLogger)
    }
    return holder
}

func releaseRow(_ holder: PostgresConnection) async throws {
    try await holder.query("COMMIT", logger: postgresTestLogger)
    try await holder.close()
}

/// Waits until `count` statements of the database wait for a lock.
func waitForLockWaiters(_ count: Int, cluster: PostgresCluster, url: String) async throws {
    let database = try PostgresURL(url).database ?? ""
    let seen = try await eventually(timeout: .seconds(30), every: .milliseconds(20)) {
        let rows = try await cluster.psql(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '\(database)' AND wait_event_type = 'Lock'")
        return rows == [["\(count)"]]
    }
    #expect(seen, "\(count) statements waiting for a lock")
}

/// `count` nodes (stores) on a database of their own, with the cluster to look into it with
/// `psql`; closed at the end. Each waits up to 30 s for a connection and 600 s for PostgreSQL's
/// answer: in the full suite, tasks wait long for a thread of the cooperative pool, and a call
/// was seen to take over 30 s.
func withPostgresNodes(
    _ count: Int, _ body: (PostgresCluster, String, [PostgresStore]) async throws -> Void
) async throws {
    guard let cluster = try await PostgresCluster.shared() else { return }
    let url = try await cluster.createDatabase()
    var nodes: [PostgresStore] = []
    do {
        for _ in 0..<count {
            nodes.append(
                try await PostgresStore.connect(
                    url: url, logger: postgresTestLogger, leaseTimeout: .seconds(30), answerTimeout: .seconds(600)))
        }
        try await body(cluster, url, nodes)
    } catch {
        for node in nodes { try? await node.close() }
        throw error
    }
    for node in nodes { try await node.close() }
}
