import CrestCore
import Foundation
import HTTPTypes
import Hummingbird

/// An RFC 9457 problem details body (`application/problem+json`).
///
/// `type` is a stable URN per kind of problem (`urn:crest:problem:sold-out`); clients branch on
/// it, never on `title` or `detail`, which are for people.
public struct Problem: Codable, Sendable, Hashable {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String?
    public var instance: String?
    /// Per-field problems of an invalid request.
    public var errors: [ValidationError.Issue]?
    /// Extra headers of the response (`Retry-After`, `WWW-Authenticate`); not part of the body.
    public var headers: [String: String] = [:]

    enum CodingKeys: String, CodingKey {
        case type, title, status, detail, instance, errors
    }

    public static let mediaType = "application/problem+json"

    public init(kind: String, title: String, status: HTTPResponse.Status, detail: String? = nil) {
        self.type = "urn:crest:problem:\(kind)"
        self.title = title
        self.status = status.code
        self.detail = detail
    }

    func response(instance: String) throws -> Response {
        var body = self
        body.instance = instance
        let data = try CrestJSON.sharedEncoder.encode(body)
        var fields = HTTPFields()
        fields[.contentType] = Self.mediaType
        for (name, value) in headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        return Response(
            status: HTTPResponse.Status(code: status), headers: fields,
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
