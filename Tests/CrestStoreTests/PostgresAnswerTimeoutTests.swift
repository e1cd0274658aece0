import CrestConcurrency
import CrestCore
import CrestTestSupport
import Foundation
import PostgresNIO
import Testing

@testable import CrestStore

/// A PostgreSQL server that holds a connection and does not answer (frozen, its disk stalled, a
/// row lock held by someone else's open transaction — the one these tests use): a store call gets
/// `UnavailableError` once `answerTimeout` has passed, and its connection is closed, instead of
/// waiting as long as the server does.
@Suite("PostgreSQL store: a call PostgreSQL does not answer in time")
struct PostgresAnswerTimeoutTests {
    @Test(
        "a six-statement batch whose lock is not granted in time is answered unavailable; its transaction is rolled back and the node's pool serves it again"
    )
    func lockedPathNotAnswered() async throws {
        try await withQuickNode { cluster, url, quick, other in
            let sale = makeSale(stock: 10)
            try await other.createSale(sale)
            let holder = try await holdRow(of: sale, url: url)
            let outcome = try await reserve(on: quick, [reservation(sale, key: "k1", buyer: "ana")], thenRelease: holder)
            try expectNotAnswered(outcome)
            #expect(quick.reservationBatchPaths == [:])

            // Its connection was closed before the writes were sent: the transaction left nothing.
            #expect(try await cluster.psql(url, "SELECT count(*) FROM orders") == [["0"]])
            let again = try await other.reserve([reservation(sale, key: "k1", buyer: "ana")])
            #expect(again.outcomes.first?.placed == true, "\(again.outcomes)")
            #expect(try await placesAgain(quick, on: sale, buyers: "again"), "the node's pool never served a batch again")
            try await expectConsistent(sale, cluster: cluster, url: url)
        }
    }

    @Test(
        "a one-statement batch not answered in time is answered unavailable and the lane's connection closed; the key sent again gets one order, and the node's batches take the lane again"
    )
    func oneStatementNotAnswered() async throws {
        try await withQuickNode { cluster, url, quick, other in
            let sale = makeSale(stock: 10)
            try await other.createSale(sale)
            // The node's first batch on the sale: it has a view of it now.
            #expect(try await placesAgain(quick, on: sale, buyers: "first"))
            let pathsBefore = quick.reservationBatchPaths
            let holder = try await holdRow(of: sale, url: url)
            let outcome = try await reserve(on: quick, [reservation(sale, key: "k2", buyer: "bo")], thenRelease: holder)
            try expectNotAnswered(outcome)
            #expect(quick.reservationBatchPaths == pathsBefore, "the one-statement try neither wrote nor missed")
            #expect(quick.oneStatementBatchesInFlight == 0)

            // The statement went on in the server once the row was free (it commits by itself):
            // sent again, the key gets that order, or places it now — once.
            let again = try await other.reserve([reservation(sale, key: "k2", buyer: "bo")])
            #expect(again.outcomes.first?.order != nil, "\(again.outcomes)")
            #expect(try await cluster.psql(url, "SELECT count(*) FROM orders WHERE idempotency_key = 'k2'") == [["1"]])
            #expect(
                try await placesAgain(quick, on: sale, buyers: "again", inOneStatement: true), "\(quick.reservationBatchPaths)")
            try await expectConsistent(sale, cluster: cluster, url: url)
        }
    }

    @Test("the audit's reads are given longer than a call: an audit that waits past the node's timeout still answers")
    func auditGivenLonger() async throws {
        try await withQuickNode { cluster, url, quick, other in
            let sale = makeSale(stock: 10)
            try await other.createSale(sale)
            let holder = try await holdRow(of: sale, url: url, running: ["LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"])
            let audit = Task { try await quick.auditRecords(at: Date()) }
            try await waitForLockWaiters(1, cluster: cluster, url: url)
            // Past the 3 s in which `quick` answers any other call.
            try await Task.sleep(for: .seconds(4))
            try await releaseRow(holder)
            let records = try await audit.value
            #expect(records.sales.map(\.id) == [sale.id])
        }
    }

    @Test(
        "a statement sent on a connection already closed is answered unavailable (postgres-nio alone would wait for ever)"
    )
    func answerOnClosedConnection() async throws {
        try await withPostgresNodes(1) { _, url, _ in
            let connection = try await PostgresConnection.connect(
                configuration: try PostgresURL(url).connection, id: 1, logger: postgresTestLogger)
            try await connection.close()
            // The handler leaves the closed channel on a later turn of its event loop.
            try await Task.sleep(for: .milliseconds(100))
            let outcome = try await boundedWait(atMost: .seconds(60)) { () -> (any Error)? in
                do {
                    try await connection.answer("SELECT 1", within: .milliseconds(300), logger: postgresTestLogger)
                    return nil
                } catch {
                    return error
                }
            }
            let error = try #require(outcome, "no answer within 60 s")
            #expect(error is UnavailableError, "\(String(describing: error))")
        }
    }

    @Test(
        "a server that accepts a connection and says nothing is given up at the deadline, at start-up too (postgres-nio alone waits for ever)"
    )
    func silentServer() async throws {
        // Takes connections (the kernel completes them) and never says a word: a frozen server.
        let silent = try LoopbackSocket()
        defer { silent.close() }
        let url = "postgres://crest@127.0.0.1:\(silent.port)/crest?sslmode=disable"
        let outcome = try await boundedWait(atMost: .seconds(60)) { () -> (any Error)? in
            do {
                _ = try await PostgresConnection.connect(
                    configuration: try PostgresURL(url).connection, within: .milliseconds(300), logger: postgresTestLogger)
                return nil
            } catch {
                return error
            }
        }
        let error = try #require(outcome, "no answer within 60 s")
        #expect((error as? UnavailableError)?.reason.contains("did not complete a connection") == true, "\(String(describing: error))")
        // A node started against it: its migrations' connection gives up the same way.
        let started = try await boundedWait(atMost: .seconds(60)) { () -> (any Error)? in
            do {
                _ = try await PostgresStore.connect(url: url, logger: postgresTestLogger, answerTimeout: .milliseconds(300))
                return nil
            } catch {
                return error
            }
        }
        #expect(try #require(started, "start-up did not end within 60 s") is UnavailableError)
    }

    @Test("a statement not answered within its deadline is answered unavailable and its connection closed")
    func answerPastDeadline() async throws {
        try await withPostgresNodes(1) { _, url, _ in
            let connection = try await PostgresConnection.connect(
                configuration: try PostgresURL(url).connection, id: 1, logger: postgresTestLogger)
            try await connection.answer("SELECT 1", within: .seconds(30), logger: postgresTestLogger)
            await #expect(throws: UnavailableError.self) {
                try await connection.answer("SELECT pg_sleep(30)", within: .milliseconds(300), logger: postgresTestLogger)
            }
            _ = try? await connection.closeFuture.get()
            #expect(connection.isClosed)
        }
    }

    /// A node that waits 3 s for PostgreSQL's answer (`quick`) and one that waits as long as the
    /// other tests' (`other`), on a database of their own.
    private func withQuickNode(
        _ body: (PostgresCluster, String, PostgresStore, PostgresStore) async throws -> Void
    ) async throws {
        try await withPostgresNodes(1) { cluster, url, nodes in
            let quick = try await PostgresStore.connect(
                url: url, logger: postgresTestLogger, leaseTimeout: .seconds(30), answerTimeout: .seconds(3))
            do {
                try await body(cluster, url, quick, nodes[0])
            } catch {
                try? await quick.close()
                throw error
            }
            try await quick.close()
        }
    }

    /// Reserves `batch` on `node` while `holder` keeps the sale's row, and returns its outcome if
    /// it comes within 30 s (`nil` otherwise); then commits `holder` and waits for the call.
    private func reserve(
        on node: PostgresStore, _ batch: [Reservation], thenRelease holder: PostgresConnection
    ) async throws -> Result<ReservationBatchResult, any Error>? {
        let outcome = Locked<Result<ReservationBatchResult, any Error>?>(nil)
        let call = Task {
            do {
                let result = try await node.reserve(batch)
                outcome.withLock { $0 = .success(result) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
        }
        _ = try await eventually(timeout: .seconds(30)) { outcome.value != nil }
        let answered = outcome.value
        try await releaseRow(holder)
        await call.value
        return answered
    }

    /// `outcome` came, and is the refusal of a call PostgreSQL did not answer in time.
    private func expectNotAnswered(_ outcome: Result<ReservationBatchResult, any Error>?) throws {
        let error = try #require(outcome?.failure, "no answer within 30 s, or not an error: \(String(describing: outcome))")
        #expect((error as? UnavailableError)?.reason.contains("did not answer") == true, "\(error)")
    }

    /// Whether `node` places an order on `sale` (in one statement, if asked) within a few batches
    /// of new buyers (`buyers`-0, -1, …); a batch answered unavailable on the way (the full suite
    /// is slow, and this node waits 3 s) is tried again with the next buyer.
    private func placesAgain(
        _ node: PostgresStore, on sale: Sale, buyers: String, inOneStatement: Bool = false
    ) async throws -> Bool {
        for attempt in 0..<8 {
            let buyer = "\(buyers)-\(attempt)"
            do {
                let outcome = try await node.reserve([reservation(sale, key: buyer, buyer: buyer)])
                guard outcome.outcomes.first?.placed == true else { return false }
                if !inOneStatement || node.reservationBatchPaths[.oneStatement, default: 0] > 0 { return true }
            } catch is UnavailableError {
                continue
            }
        }
        return false
    }

    /// The sale's counters add up to its orders, and no key placed two.
    private func expectConsistent(_ sale: Sale, cluster: PostgresCluster, url: String) async throws {
        let orders = try await cluster.psql(
            url, "SELECT count(*), count(DISTINCT idempotency_key) FROM orders WHERE sale_id = '\(sale.id)'")
        let counters = try await cluster.psql(url, "SELECT available, reserved FROM sales WHERE id = '\(sale.id)'")
        let count = Int(orders.first?.first ?? "") ?? -1
        #expect(orders.first?[1] == orders.first?[0], "\(orders)")
        #expect(counters == [["\(10 - count)", "\(count)"]], "\(counters) for \(count) orders")
    }
}

extension Result {
    fileprivate var failure: Failure? {
        guard case .failure(let error) = self else { return nil }
        return error
    }
}

extension ReservationOutcome {
    fileprivate var placed: Bool {
        guard case .reserved = self else { return false }
        return true
    }
}
