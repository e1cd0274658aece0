import GRDB
import GRDBSQLite

/// One of GRDB's cached statements, bound and stepped through SQLite's C API.
///
/// GRDB's `execute(arguments:)` builds `StatementArguments` from an array of existential values,
/// validates them and prepares observation on every call: about a fifth of the embedded store's
/// writer's CPU per reserved order (`perf`, RESULTS.md). The statements run for
/// every order — the reservation probe and the inserts of order, event and job — bind their few
/// values here instead: a parameter pack, so nothing is boxed or allocated on the Swift side.
///
/// Only for statements that neither change the schema nor begin or end a transaction (GRDB's
/// bookkeeping of those is skipped), inside a transaction on the connection GRDB handed to the
/// current access. Outside one it refuses to run: GRDB would also refuse to go on in a transaction
/// SQLite rolled back on its own (a full disk, say), and skipping that check here must not let an
/// order's rows — order, outbox event, jobs — commit one by one instead of together. The statement
/// stays GRDB's: GRDB finalizes it when the connection closes.
///
/// ```swift
/// let insert = try DirectStatement(db, sql: "INSERT INTO t (a, b) VALUES (?, ?)")
/// try insert.execute("text", 42)
/// ```
struct DirectStatement {
    private let statement: Statement

    init(_ db: Database, sql: String) throws {
        statement = try db.cachedStatement(sql: sql)
    }

    /// Binds `values` to the parameters `?1, ?2, …` in order and runs the statement to its end.
    func execute<each Value: DirectBindable>(_ values: repeat each Value) throws {
        try bind(repeat each values)
        defer { clear() }
        while true {
            switch sqlite3_step(statement.sqliteStatement) {
            case SQLITE_DONE: return
            case SQLITE_ROW: continue
            case let code: throw error(code)
            }
        }
    }

    /// Binds `values` as `execute` does and reads the first row with `read` (`nil` when none).
    func firstRow<each Value: DirectBindable, Result>(
        _ values: repeat each Value, read: (Row) -> Result
    ) throws -> Result? {
        try bind(repeat each values)
        defer { clear() }
        switch sqlite3_step(statement.sqliteStatement) {
        case SQLITE_ROW: return read(Row(statement.sqliteStatement))
        case SQLITE_DONE: return nil
        case let code: throw error(code)
        }
    }

    /// A row of the statement being stepped, read by column index.
    struct Row {
        fileprivate let handle: OpaquePointer
        fileprivate init(_ handle: OpaquePointer) { self.handle = handle }

        func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
        func bool(_ column: Int32) -> Bool { int64(column) != 0 }
    }

    private func bind<each Value: DirectBindable>(_ values: repeat each Value) throws {
        let handle = statement.sqliteStatement
        guard let connection = sqlite3_db_handle(handle), sqlite3_get_autocommit(connection) == 0 else {
            throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "not inside a transaction", sql: statement.sql)
        }
        sqlite3_reset(handle)
        var index: Int32 = 0
        for value in repeat each values {
            index += 1
            let code = value.bind(to: handle, at: index)
            guard code == SQLITE_OK else {
                let failure = error(code)  // read first: a reset may replace the connection's message
                clear()
                throw failure
            }
        }
        let parameters = sqlite3_bind_parameter_count(handle)
        guard index == parameters else {
            clear()
            throw DatabaseError(
                resultCode: .SQLITE_MISUSE, message: "\(index) values for \(parameters) parameters", sql: statement.sql)
        }
    }

    /// Ends the execution: a statement left mid-step would keep its read transaction open, and
    /// bound text would be kept until the next use.
    private func clear() {
        sqlite3_reset(statement.sqliteStatement)
        sqlite3_clear_bindings(statement.sqliteStatement)
    }

    private func error(_ code: Int32) -> DatabaseError {
        let connection = sqlite3_db_handle(statement.sqliteStatement)
        return DatabaseError(
            resultCode: ResultCode(rawValue: code),
            message: connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) },
            sql: statement.sql)
    }
}

/// A value `DirectStatement` binds to a parameter.
protocol DirectBindable {
    /// Binds the value to parameter `index` of `statement`; returns SQLite's result code.
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32
}

/// SQLite copies the text while binding (the Swift string's storage is only lent for the call).
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension String: DirectBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        var text = self
        return text.withUTF8 { bytes in
            // An empty buffer may have no address, and a null pointer would bind NULL, not "".
            guard let base = bytes.baseAddress else { return sqlite3_bind_text(statement, index, "", 0, transient) }
            return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                sqlite3_bind_text(statement, index, $0, Int32(bytes.count), transient)
            }
        }
    }
}

extension Int64: DirectBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, self) }
}

extension Int: DirectBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        sqlite3_bind_int64(statement, index, Int64(self))
    }
}

extension Optional: DirectBindable where Wrapped: DirectBindable {
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        switch self {
        case .some(let value): value.bind(to: statement, at: index)
        case .none: sqlite3_bind_null(statement, index)
        }
    }
}
