import CrestCore
import Foundation
import HTTPTypes
import Hummingbird

/// An RFC 9457 problem details body (`application/problem+json`).
///
/// `type` is a stable URN per kind of problem (`urn:crest:problem:sold-out`); clients branch on
/// it, never on `title` or `detail`, which are for people.
package struct Problem: Codable, Sendable, Hashable {
    package var type: String
    package var title: String
    package var status: Int
    package var detail: String?
    package var instance: String?
    /// Per-field problems of an invalid request.
    package var errors: [ValidationError.Issue]?
    /// Extra headers of the response (`Retry-After`, `WWW-Authenticate`); not part of the body.
    package var headers: HTTPFields = [:]

    enum CodingKeys: String, CodingKey {
        case type, title, status, detail, instance, errors
    }

    package static let mediaType = "application/problem+json"
    static let typePrefix = "urn:crest:problem:"

    /// The kind in `type` (`sold-out`).
    var kind: String {
        // By bytes: every problem answered is counted by kind, a sold-out sale's refusals included.
        let prefix = Self.typePrefix.utf8
        guard type.utf8.starts(with: prefix) else { return type }
        return String(decoding: type.utf8.dropFirst(prefix.count), as: UTF8.self)
    }

    package init(kind: String, title: String, status: HTTPResponse.Status, detail: String? = nil) {
        self.type = Self.typePrefix + kind
        self.title = title
        self.status = status.code
        self.detail = detail
    }

    /// The response, its body written by hand (`JSONObjectWriter`): a sold-out sale answers
    /// every request with a problem, so this is as hot as the order itself.
    func response(instance: String) -> Response {
        Response(
            status: HTTPResponse.Status(code: status), json: body(instance: instance), contentType: Self.mediaType,
            headers: headers)
    }

    /// The JSON body, with `instance` set.
    func body(instance: String) -> ByteBuffer {
        JSONObjectWriter.object(capacity: 256) { json in
            json.member("type", type)
            json.member("title", title)
            json.member("status", status)
            json.member("detail", detail)
            json.member("instance", instance)
            json.member("errors", array: errors) { item, issue in
                item.member("field", issue.field)
                item.member("message", issue.message)
            }
        }
    }
}
