import CrestCore
import CrestEngine
import Foundation
import HTTPTypes
import Hummingbird

/// `/v1/reconciliations` (admin): compare the provider's statement of a window with Crest's books,
/// heal the safe differences and report the rest; read past runs and what each found.
struct ReconciliationRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/reconciliations")
            .add(middleware: admin)
            .post(use: create)
            .get(use: list)
            .get("{runID}", use: show)
            .post("{runID}/items/{sequence}/resolution", use: resolve)
    }

    /// Runs a reconciliation now and answers `201` with it once it ended; a run the provider could
    /// not serve is recorded `failed` and answered `503`.
    @Sendable func create(_ request: Request, context: CrestRequestContext) async throws -> EditedResponse<ReconciliationRunBody> {
        let body = try await request.decodeJSON(as: CreateReconciliationBody.self, context: context)
        let (from, to) = try body.window(now: Date())
        let run = try await engine.reconcile(from: from, to: to)
        if run.state == .failed {
            throw UnavailableError(reason: "reconciliation \(run.id) failed: \(run.error ?? "")")
        }
        return EditedResponse(
            status: .created, headers: [.location: "/v1/reconciliations/\(run.id)"],
            response: ReconciliationRunBody(run, items: nil, next: nil))
    }

    /// Runs, newest first.
    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> ReconciliationListBody {
        var issues: [ValidationError.Issue] = []
        let query = PageQuery(request, cursor: ReconciliationRunID.init, cursorMeaning: "a reconciliation id", issues: &issues)
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let page = query.page(try await engine.reconciliationRuns(after: query.after, limit: query.limit + 1), cursor: \.id)
        return ReconciliationListBody(
            reconciliations: page.items.map { ReconciliationRunBody($0, items: nil, next: nil) }, next: page.next)
    }

    /// One run with a page of its items (`after`: the last item's sequence).
    @Sendable func show(_ request: Request, context: CrestRequestContext) async throws -> ReconciliationRunBody {
        guard let raw = context.parameters.get("runID"), let id = ReconciliationRunID(raw) else {
            throw ReconciliationRunNotFound()
        }
        var issues: [ValidationError.Issue] = []
        let query = PageQuery(
            request, cursor: { Int($0).flatMap { $0 >= 0 ? $0 : nil } }, cursorMeaning: "an item sequence", issues: &issues)
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let run = try await engine.reconciliationRun(id)
        let page = query.page(
            try await engine.reconciliationItems(of: id, after: query.after, limit: query.limit + 1), cursor: \.sequence)
        return ReconciliationRunBody(run, items: page.items.map(ReconciliationItemBody.init), next: page.next)
    }
}

extension ReconciliationRoutes {
    /// An operator's resolution of a reported difference: what was done about it. `200` with the
    /// item; the same resolution sent again is answered the same.
    @Sendable func resolve(_ request: Request, context: CrestRequestContext) async throws -> ReconciliationItemBody {
        guard let raw = context.parameters.get("runID"), let id = ReconciliationRunID(raw) else {
            throw ReconciliationRunNotFound()
        }
        guard let sequence = context.parameters.get("sequence").flatMap(Int.init), sequence > 0 else {
            throw ReconciliationItemNotFound()
        }
        let body = try await request.decodeJSON(as: ResolveDifferenceBody.self, context: context)
        guard let note = body.note else {
            throw ValidationError(issues: [.init(field: "note", message: "is required: what was done about the difference")])
        }
        _ = try await engine.reconciliationRun(id)
        return ReconciliationItemBody(try await engine.resolveReconciliationItem(of: id, sequence: sequence, note: note))
    }
}

/// `POST /v1/reconciliations/{runID}/items/{sequence}/resolution`.
struct ResolveDifferenceBody: Decodable {
    var note: String?
}

/// `POST /v1/reconciliations`: the window of payment creation times to compare.
struct CreateReconciliationBody: Decodable {
    var from: Date?
    var to: Date?

    /// The longest window one run takes: its statement and orders are read whole.
    static let longestWindow: TimeInterval = 31 * 86_400

    func window(now: Date) throws -> (Date, Date) {
        var issues: [ValidationError.Issue] = []
        if from == nil { issues.append(.init(field: "from", message: "is required (RFC 3339 time)")) }
        if to == nil { issues.append(.init(field: "to", message: "is required (RFC 3339 time)")) }
        if let from, let to {
            if to <= from { issues.append(.init(field: "to", message: "must be after from")) }
            if to.timeIntervalSince(from) > Self.longestWindow {
                issues.append(.init(field: "to", message: "the window is at most 31 days"))
            }
            if from > now { issues.append(.init(field: "from", message: "must not be in the future")) }
        }
        guard issues.isEmpty, let from, let to else { throw ValidationError(issues: issues) }
        return (from, to)
    }
}

struct ReconciliationRunBody: Codable, ResponseEncodable {
    var id: ReconciliationRunID
    var from: Timestamp
    var to: Timestamp
    var state: ReconciliationRun.State
    var startedAt: Timestamp
    var finishedAt: Timestamp?
    var lines: Int
    var matched: Int
    var healed: Int
    var healUnderWay: Int
    var reported: Int
    var error: String?
    /// With `GET /v1/reconciliations/{id}`: a page of the differences found.
    var items: [ReconciliationItemBody]?
    var next: Int?

    init(_ run: ReconciliationRun, items: [ReconciliationItemBody]?, next: Int?) {
        id = run.id
        from = Timestamp(run.from)
        to = Timestamp(run.to)
        state = run.state
        startedAt = Timestamp(run.startedAt)
        finishedAt = run.finishedAt.map(Timestamp.init)
        lines = run.lines
        matched = run.matched
        healed = run.healed
        healUnderWay = run.underWay
        reported = run.reported
        error = run.error
        self.items = items
        self.next = next
    }
}

struct ReconciliationItemBody: Codable {
    var sequence: Int
    var kind: DifferenceKind
    var resolution: Resolution
    var paymentId: String
    var orderId: OrderID?
    var before: String
    var after: String
    var action: String
    var recordedAt: Timestamp
    /// A reported difference an operator resolved: the note and when.
    var operatorResolution: OperatorResolutionBody?

    init(_ item: ReconciliationItem) {
        sequence = item.sequence
        kind = item.kind
        resolution = item.resolution
        paymentId = item.paymentID
        orderId = item.orderID
        before = item.before
        after = item.after
        action = item.action
        recordedAt = Timestamp(item.at)
        operatorResolution = item.operatorResolution.map(OperatorResolutionBody.init)
    }
}

extension ReconciliationItemBody: ResponseEncodable {}

struct OperatorResolutionBody: Codable {
    var note: String
    var resolvedAt: Timestamp
    /// The item it was given on (a later run's item about the same difference shows it too).
    var reconciliationId: ReconciliationRunID
    var sequence: Int

    init(_ resolution: OperatorResolution) {
        note = resolution.note
        resolvedAt = Timestamp(resolution.at)
        reconciliationId = resolution.runID
        sequence = resolution.sequence
    }
}

struct ReconciliationListBody: Codable, ResponseEncodable {
    var reconciliations: [ReconciliationRunBody]
    var next: ReconciliationRunID?
}
