import CrestFixtures
import CrestHTTP
import Foundation
import Hummingbird
import Testing
import Yams

@Suite("docs/openapi.yaml")
struct OpenAPIDocumentTests {
    static let documentURL = URL(filePath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "docs/openapi.yaml")

    static func document() throws -> [String: Any] {
        let text = try String(contentsOf: documentURL, encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    @Test("describes exactly the routes the server serves")
    func routesMatch() async throws {
        let paths = try #require(try Self.document()["paths"] as? [String: Any])
        let methods: Set<String> = ["get", "put", "post", "delete", "patch", "head", "options"]
        var documented: Set<String> = []
        for (path, item) in paths {
            for method in (item as? [String: Any] ?? [:]).keys where methods.contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        let served = try await HTTPFixture.with { fixture in
            Set(
                CrestHTTPServer.router(
                    engine: fixture.engine, adminToken: "t", buyerAuthentication: .off, metrics: TestMetrics.registry
                )
                .routes.map { "\($0.method) \($0.path)" })
        }
        #expect(served == documented, "served only: \(served.subtracting(documented)); documented only: \(documented.subtracting(served))")
    }

    @Test("lists every problem type the server can answer with")
    func problemTypesDocumented() throws {
        let description = try #require((try Self.document()["info"] as? [String: Any])?["description"] as? String)
        let source = try String(
            contentsOf: Self.documentURL.deletingLastPathComponent().deletingLastPathComponent()
                .appending(path: "Sources/CrestHTTP/Problems/Problem+Errors.swift"), encoding: .utf8)
        let kinds = try Regex(#"kind: "([a-z-]+)""#)
        let used = Set(source.matches(of: kinds).compactMap { $0.output[1].substring.map(String.init) })
        #expect(!used.isEmpty)
        for kind in used {
            #expect(description.contains("urn:crest:problem:\(kind)`"), "problem type \(kind) is not documented")
        }
    }
}
