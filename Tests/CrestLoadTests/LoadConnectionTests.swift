import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import CrestLoad

/// The load generator's own HTTP/1.1 connection against a scripted server: answers are read
/// whole and in order, a silent server times a request out (also after earlier answers), and a
/// closed connection fails at once.
@Suite("crest loadtest: its HTTP connection")
struct LoadConnectionTests {
    @Test("answers on one keep-alive connection: status, Location, replay marker and body, fixed-length or chunked")
    func answersAreReadWhole() async throws {
        try await ScriptedServer.with([
            .answer(
                "HTTP/1.1 201 Created\r\nLocation: /v1/orders/o-1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: 11\r\n\r\n{\"id\":\"o1\"}"),
            .answer(
                "HTTP/1.1 201 Created\r\nlocation: /v1/orders/o-1\r\nidempotent-replayed: true\r\n"
                    + "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"id\r\n7\r\n\":\"o1\"}\r\n0\r\n\r\n"),
            .answer("HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n"),
        ]) { server in
            let connection = try await LoadConnection.connect(host: "127.0.0.1", port: server.port)
            let first = try await connection.send(method: .GET, path: "/a", timeout: .seconds(10))
            #expect(first.status == 201)
            #expect(first.location == "/v1/orders/o-1")
            #expect(!first.replayed)
            #expect(String(buffer: first.body) == #"{"id":"o1"}"#)
            let second = try await connection.send(method: .GET, path: "/b", timeout: .seconds(10))
            #expect(second.status == 201 && second.replayed)
            #expect(second.location == "/v1/orders/o-1")
            #expect(String(buffer: second.body) == #"{"id":"o1"}"#)
            let third = try await connection.send(
                method: .POST, path: "/c", headers: [("Idempotency-Key", "k-3")], json: #"{"buyer":"b"}"#,
                timeout: .seconds(10))
            #expect(third.status == 409 && third.location == nil && third.body.readableBytes == 0)
            await connection.close()
            #expect(
                server.requests == [
                    "GET /a HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\n\r\n",
                    "GET /b HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\n\r\n",
                    "POST /c HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\nIdempotency-Key: k-3\r\n"
                        + "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"buyer\":\"b\"}",
                ])
        }
    }

    @Test("a server that stops answering times the request out, also after answers in time, and the connection closes")
    func silenceTimesOut() async throws {
        try await ScriptedServer.with([.answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), .silence]) { server in
            let connection = try await LoadConnection.connect(host: "127.0.0.1", port: server.port)
            // The connection's one timer is armed by the first request and fires at its deadline,
            // after that request was answered: it must wait on for the second's deadline.
            let answered = try await connection.send(method: .GET, path: "/fast", timeout: .milliseconds(600))
            #expect(answered.status == 200)
            try await Task.sleep(for: .milliseconds(300))
            let sent = ContinuousClock.now
            await #expect(throws: LoadConnection.TimedOut.self) {
                try await connection.send(method: .GET, path: "/stalls", timeout: .milliseconds(600))
            }
            let waited = ContinuousClock.now - sent
            #expect(waited >= .milliseconds(590), "timed out after \(waited), before its own deadline")
            // It ends (a missed deadline would wait forever); how soon after it depends on the
            // machine's load, which the whole suite on two cores makes heavy.
            #expect(waited < .seconds(30))
            #expect(!connection.isActive)
        }
    }

    @Test("a connection the server closed fails the request at once, not at its timeout")
    func closedConnectionFails() async throws {
        try await ScriptedServer.with([.close, .close]) { server in
            let connection = try await LoadConnection.connect(host: "127.0.0.1", port: server.port)
            let sent = ContinuousClock.now
            await #expect(throws: LoadConnection.Closed.self) {
                try await connection.send(method: .GET, path: "/x", timeout: .seconds(30))
            }
            await #expect(throws: LoadConnection.Closed.self) {
                try await connection.send(method: .GET, path: "/y", timeout: .seconds(30))
            }
            #expect(ContinuousClock.now - sent < .seconds(10))
        }
    }

    @Test("a path or header with a line break is refused before anything is sent")
    func lineBreaksAreRefused() async throws {
        try await ScriptedServer.with([]) { server in
            let connection = try await LoadConnection.connect(host: "127.0.0.1", port: server.port)
            await #expect(throws: LoadConnection.Unframeable.self) {
                try await connection.send(method: .GET, path: "/a\r\nX-Evil: 1", timeout: .seconds(5))
            }
            await #expect(throws: LoadConnection.Unframeable.self) {
                try await connection.send(
                    method: .GET, path: "/a", headers: [("Idempotency-Key", "k\n1")], timeout: .seconds(5))
            }
            await connection.close()
            #expect(server.requests.isEmpty)
        }
    }
}

/// A loopback server that plays one step per request it reads (requests are recognised by their
/// blank line and `Content-Length`): answer with fixed bytes, say nothing, or close.
/// The load test's reads of Crest (the audit after the load) against a scripted server.
@Suite("crest loadtest: reading Crest's account")
struct CrestAPIReadTests {
    static let shed =
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/problem+json\r\nContent-Length: 61\r\n\r\n"
        + #"{"type":"urn:crest:problem:shed","status":503,"title":"shed"}"#
    static let emptyPage = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n" + #"{"orders":[],"next":null}"#

    @Test("a read refused for load (503 shed) is asked again after its Retry-After, and the answer that follows counts")
    func shedReadIsRetried() async throws {
        try await ScriptedServer.with([.answer(Self.shed), .answer(Self.emptyPage)]) { server in
            let api = CrestAPI(http: .shared, base: "http://127.0.0.1:\(server.port)", adminToken: "t", passes: nil)
            let started = ContinuousClock.now
            let orders = try await api.orders(saleID: "s")
            #expect(orders.isEmpty)
            #expect(server.requests.count == 2)
            #expect(ContinuousClock.now - started >= .seconds(1), "Retry-After was honoured")
        }
    }

    @Test("a read whose connection closed without an answer is sent once more, and only once")
    func lostConnectionIsRetriedOnce() async throws {
        try await ScriptedServer.with([.close, .answer(Self.emptyPage)]) { server in
            let api = CrestAPI(http: .shared, base: "http://127.0.0.1:\(server.port)", adminToken: "t", passes: nil)
            let orders = try await api.orders(saleID: "s")
            #expect(orders.isEmpty)
            #expect(server.requests.count == 2)
        }
        try await ScriptedServer.with([.close, .close, .answer(Self.emptyPage)]) { server in
            let api = CrestAPI(http: .shared, base: "http://127.0.0.1:\(server.port)", adminToken: "t", passes: nil)
            await #expect(throws: CrestAPI.Failure.self) { try await api.orders(saleID: "s") }
            #expect(server.requests.count == 2)
        }
    }

    @Test("a 503 that is not a refusal for load (the store unavailable) is the answer at once")
    func unavailableIsNotRetried() async throws {
        let unavailable =
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/problem+json\r\nContent-Length: 74\r\n\r\n"
            + #"{"type":"urn:crest:problem:store-unavailable","status":503,"title":"down"}"#
        try await ScriptedServer.with([.answer(unavailable), .answer(Self.emptyPage)]) { server in
            let api = CrestAPI(http: .shared, base: "http://127.0.0.1:\(server.port)", adminToken: "t", passes: nil)
            await #expect(throws: CrestAPI.Failure.self) { try await api.orders(saleID: "s") }
            #expect(server.requests.count == 1)
        }
    }
}
