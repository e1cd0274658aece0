import Foundation
import Hummingbird

/// A request body that is not the JSON a route expects; `detail` names the field and the problem.
struct BodyDecodingError: Error {
    var detail: String
}

extension Request {
    /// Reads the body (at most the context's upload limit, else 413) and decodes it as `T`,
    /// reporting malformed JSON and wrong or missing fields as `BodyDecodingError`.
    func decodeJSON<T: Decodable>(as type: T.Type, context: CrestRequestContext) async throws -> T {
        try Self.decodeJSON(as: type, from: try await collectJSONBody(context: context), context: context)
    }

    /// The body, at most the context's upload limit (else 413); an empty body is a `BodyDecodingError`.
    func collectJSONBody(context: CrestRequestContext) async throws -> ByteBuffer {
        var request = self
        let buffer = try await request.collectBody(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else { throw BodyDecodingError(detail: "the request body is empty") }
        return buffer
    }

    /// `buffer` decoded as `T`, reporting malformed JSON and wrong or missing fields as `BodyDecodingError`.
    static func decodeJSON<T: Decodable>(as type: T.Type, from buffer: ByteBuffer, context: CrestRequestContext) throws
        -> T
    {
        do {
            return try context.requestDecoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw BodyDecodingError(detail: Self.describe(error))
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.isEmpty
                ? "the body"
                : codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
                    .joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)) must be \(Self.name(of: type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) must be \(Self.name(of: type)), not null"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "the body is not valid JSON" }
            return "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "the body does not match the expected shape"
        }
    }

    private static func name(of type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer within range"
        case is Date.Type: "an RFC 3339 timestamp"
        default: "of the documented type"
        }
    }
}
