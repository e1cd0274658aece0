import CrestCore
import Hummingbird

/// `?after=…&limit=…` of a listing: a cursor (the last id of the previous page) and a page size.
struct PageQuery<Cursor> {
    static var defaultLimit: Int { 50 }
    static var maxLimit: Int { 200 }

    var after: Cursor?
    var limit: Int

    /// Reads the two parameters, adding an issue for each one that is malformed.
    init(_ request: Request, cursor: (String) -> Cursor?, cursorMeaning: String, issues: inout [ValidationError.Issue]) {
        limit = Self.defaultLimit
        if let raw = request.uri.queryParameters["after"] {
            after = cursor(String(raw))
            if after == nil { issues.append(.init(field: "after", message: "must be \(cursorMeaning)")) }
        }
        if let raw = request.uri.queryParameters["limit"] {
            if let value = Int(raw), (1...Self.maxLimit).contains(value) {
                limit = value
            } else {
                issues.append(.init(field: "limit", message: "must be an integer from 1 to \(Self.maxLimit)"))
            }
        }
    }

    /// Splits `fetched` (asked with `limit + 1`) into the page and the cursor of the next one.
    func page<Item>(_ fetched: [Item], cursor: (Item) -> Cursor) -> (items: ArraySlice<Item>, next: Cursor?) {
        let items = fetched.prefix(limit)
        return (items, fetched.count > limit ? items.last.map(cursor) : nil)
    }
}

extension Request {
    /// A query parameter that must be one of an enumeration's raw values when present.
    func enumQuery<Value: RawRepresentable & CaseIterable>(
        _ name: String, as type: Value.Type, issues: inout [ValidationError.Issue]
    ) -> Value? where Value.RawValue == String {
        guard let raw = uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Value(rawValue: String(raw)) else {
            let allowed = Value.allCases.map(\.rawValue).joined(separator: ", ")
            issues.append(.init(field: name, message: "must be one of \(allowed)"))
            return nil
        }
        return value
    }
}
