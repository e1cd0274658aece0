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
        "a six-statement batch whose lock is not granted in time is answered unavailable; its transaction is rolled back and the pool serves the next batches"
    )
    func lockedPathNotAnswered() async throws {
        try await withPostgresNodes(1, answerTimeout: .seconds(1)) { cluster, url, nodes in
            let node = nodes[0]
            let sale = makeSale(stock: 10)
            try await node.createSale(sale)
            let holder = try await holdRow(of: sale, url: url)
            let outcome = try await reserve(on: node, [reservation(sale, key: "k1", buyer: "ana")], thenRelease: holder)
            let error = try #require(outcome?.failure, "no answer within 15 s, or not an error: \(String(describing: outcome))")
            #expect((error as? UnavailableError)?.reason.contains("did not answer") == true, "\(error)")
            #expect(node.reservationBatchPaths == [:])

            // Its connection closed before the writes were sent, the transaction left nothing.
            let gone = try await eventually(timeout: .seconds(30)) {
                try await cluster.psql(url, "SELECT count(*) FROM orders") == [["0"]]
            }
            #expect(gone)
            let again = try await node.reserve([reservation(sale, key: "k1", buyer: "ana")])
            #expect(again.outcomes.first?.placed == true, "\(again.outcomes)")
            for buyer in ["bo", "cy", "di"] {
                let next = try await node.reserve([reservation(sale, key: buyer, buyer: buyer)])
                #expect(next.outcomes.first?.placed == true, "\(next.outcomes)")
            }
            let counters = try await cluster.psql(url, "SELECT available, reserved FROM sales")
            #expect(counters == [["6", "4"]])
        }
    }

    @Test(
        "a one-statement batch not answered in time is answered unavailable and the lane's connection closed; the key sent again gets one order, and later batches take the lane again"
    )
    func oneStatementNotAnswered() async throws {
        try await withPostgresNodes(1, answerTimeout: .seconds(1)) { cluster, url, nodes in
            let node = nodes[0]
            let sale = makeSale(stock: 10)
            try await node.createSale(sale)
            _ = try await node.reserve([reservation(sale, key: "k1", buyer: "ana")])
            let holder = try await holdRow(of: sale, url: url)
            let outcome = try await reserve(on: node, [reservation(sale, key: "k2", buyer: "bo")], thenRelease: holder)
            let error = try #require(outcome?.failure, "no answer within 15 s, or not an error: \(String(describing: outcome))")
            #expect((error as? UnavailableError)?.reason.contains("did not answer") == true, "\(error)")
            #expect(node.reservationBatchPaths == [.locked: 1], "the one-statement try neither wrote nor missed")
            #expect(node.oneStatementBatchesInFlight == 0)

            // The statement went on in the server once the row was free (it commits by itself):
            // sent again, the key gets that order, or places it now — once.
            let again = try await node.reserve([reservation(sale, key: "k2", buyer: "bo")])
            #expect(again.outcomes.first?.order != nil, "\(again.outcomes)")
            let k2 = try await cluster.psql(url, "SELECT count(*) FROM orders WHERE idempotency_key = 'k2'")
            #expect(k2 == [["1"]])
            for buyer in ["cy", "di"] {
                let next = try await node.reserve([reservation(sale, key: buyer, buyer: buyer)])
                #expect(next.outcomes.first?.placed == true, "\(next.outcomes)")
            }
            #expect(node.reservationBatchPaths[.oneStatement] == 1, "\(node.reservationBatchPaths): the lane reconnected")
            let counters = try await cluster.psql(url, "SELECT available, reserved FROM sales")
            #expect(counters == [["6", "4"]])
        }
    }

    /// Reserves `batch` on `node` while `holder` keeps the sale's row, and returns its outcome if
    /// it comes within 15 s (`nil` otherwise); then commits `holder` and waits for the call.
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
        _ = try await eventually(timeout: .seconds(15)) { outcome.value != nil }
        let answered = outcome.value
        try await releaseRow(holder)
        await call.value
        return answered
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
