import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import Testing

/// The stores the conformance suite runs against: every test runs once per kind.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// A fresh, empty store of this kind: `body` may open several instances of it (as several
    /// nodes would); each is closed at the end.
    func with<T: Sendable>(_ body: (_ open: @escaping @Sendable () async throws -> any Store) async throws -> T) async throws -> T? {
        let logger = {
            var logger = Logger(label: "crest.test.store")
            logger.logLevel = .warning
            return logger
        }()
        let opened = Locked<[any Store]>([])
        let open: @Sendable () async throws -> any Store
        var cleanup: () -> Void = {}
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appending(path: "crest-store-\(UUID().uuidString)")
            cleanup = { try? FileManager.default.removeItem(at: directory) }
            open = {
                let store = try SQLiteStore(directory: directory)
                opened.withLock { $0.append(store) }
                return store
            }
        case .postgres:
            guard let cluster = try await PostgresCluster.shared() else {
                print("PostgreSQL tests skipped: CREST_SKIP_POSTGRES=1")
                return nil
            }
            let url = try await cluster.createDatabase()
            // These tests are about the store's rules, not outages: a loaded CI run may take more than
            // the default 2 s to open the first connections.
            open = {
                let store = try await PostgresStore.connect(
                    url: url, logger: logger, leaseTimeout: .seconds(30), answerTimeout: .seconds(600))
                opened.withLock { $0.append(store) }
                return store
            }
        }
        defer { cleanup() }
        do {
            let result = try await body(open)
            for store in opened.value { try await store.close() }
            return result
        } catch {
            for store in opened.value { try? await store.close() }
            throw error
        }
    }
}

/// Times the stores keep exactly (whole milliseconds).
func millisecondNow(_ offset: TimeInterval = 0) -> Date {
    Date(timeIntervalSince1970: ((Date().timeIntervalSince1970 + offset) * 1000).rounded(.down) / 1000)
}

func makeSale(stock: Int64, perBuyerLimit: Int = 1, startsAt: Date? = nil, endsAt: Date? = nil) -> Sale {
    let now = millisecondNow()
    return Sale(
        id: .make(), sku: "SKU-1", title: "Phone", price: Money(amount: 1000, currency: Currency("CNY")!),
        perBuyerLimit: perBuyerLimit, startsAt: startsAt ?? now.addingTimeInterval(-1), endsAt: endsAt,
        paymentWindowSeconds: 900, createdAt: now,
        stock: StockCounters(total: stock, available: stock, reserved: 0, sold: 0))
}

func reservation(
    _ sale: Sale, key: String, buyer: String, quantity: Int = 1, at time: Date = millisecondNow(), jobs: [NewJob] = []
) -> Reservation {
    let id = OrderID.make(now: time)
    return Reservation(
        orderID: id, request: OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: buyer, quantity: quantity),
        amount: Money(amount: sale.price.amount * Int64(quantity), currency: sale.price.currency), createdAt: time,
        expiresAt: time.addingTimeInterval(900), jobs: jobs)
}

extension ReservationOutcome {
    var order: Order? {
        switch self {
        case .reserved(let order), .duplicate(let order): order
        case .refused: nil
        }
    }
}

extension StoreKind {
    /// Runs `body` on one fresh, empty store of this kind (most conformance tests need no more).
    func withStore(_ body: (any Store) async throws -> Void) async throws {
        _ = try await with { open in try await body(try await open()) }
    }
}
