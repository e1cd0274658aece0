import CrestCore
import CrestHTTP
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import CrestHTTP

/// A clock that moves only when told: buckets refill by `advance`, never because the machine is
/// slow (an `AdjustableClock` flows with real time, and a loaded run takes seconds per request).
final class StoppedClock: CrestClock {
    private let time = Mutex(Date())

    func now() -> Date { time.withLock { $0 } }
    func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
    func advance(by duration: Duration) { time.withLock { $0 += duration.seconds } }
}

/// Rate limits of order attempts: per buyer, per client address, per sale; on a stopped clock.
@Suite("Rate limits")
struct RateLimitTests {
    static func limits(buyer: RateLimit? = nil, address: RateLimit? = nil, sale: RateLimit? = nil) -> AdmissionLimits {
        var limits = AdmissionLimits.none
        limits.perBuyer = buyer
        limits.perAddress = address
        limits.perSale = sale
        return limits
    }

    @Test(
        "a buyer past its rate gets 429 with Retry-After and RateLimit headers; the same key succeeds once the bucket refills; others are not held"
    )
    func perBuyer() async throws {
        let clock = StoppedClock()
        try await HTTPFixture.with(admission: Self.limits(buyer: RateLimit(rate: 1, burst: 2)), clock: clock) { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 100, perBuyerLimit: 10)
                let first = try await client.placeOrder(sale: sale, key: "a1", buyer: "ana")
                #expect(first.status == .created)
                #expect(first.headers[HTTPField.Name("RateLimit-Policy")!] == #""buyer";q=2;w=2"#)
                #expect(first.headers[HTTPField.Name("RateLimit")!] == #""buyer";r=1;t=1"#)
                #expect(try await client.placeOrder(sale: sale, key: "a2", buyer: "ana").status == .created)
                let refused = try await client.placeOrder(sale: sale, key: "a3", buyer: "ana")
                refused.expectProblem(.tooManyRequests, "rate-limited")
                #expect(refused.headers[.retryAfter] == "1")
                #expect(refused.headers[HTTPField.Name("RateLimit")!] == #""buyer";r=0;t=1"#)
                #expect(try await client.placeOrder(sale: sale, key: "b1", buyer: "bob").status == .created, "another buyer")
                clock.advance(by: .seconds(1))
                let again = try await client.placeOrder(sale: sale, key: "a3", buyer: "ana")
                #expect(again.status == .created, "the refused key was not consumed")
                #expect(again.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect((response.object["stock"] as? [String: Int])?["reserved"] == 4)
                }
            }
        }
    }

    @Test("served with the channel's refusals (as crest serve is): the same answers, and the same key succeeds once refilled")
    func perBuyerInTheChannel() async throws {
        let clock = StoppedClock()
        try await HTTPFixture.with(
            buyerAuthentication: .off, admission: Self.limits(buyer: RateLimit(rate: 1, burst: 1)), clock: clock,
            channelRefusals: true
        ) { fixture in
            try await fixture.app.test(.live) { client in
                let sale = try await client.createSale(stock: 100, perBuyerLimit: 10)
                #expect(try await client.placeOrder(sale: sale, key: "a1", buyer: "ana").status == .created)
                // The sale's limits were read for the first attempt: the channel knows them now.
                let refused = try await client.placeOrder(sale: sale, key: "a2", buyer: "ana")
                refused.expectProblem(.tooManyRequests, "rate-limited")
                #expect(refused.headers[.retryAfter] == "1")
                #expect(refused.headers[HTTPField.Name("RateLimit")!] == #""buyer";r=0;t=1"#)
                #expect(try await client.placeOrder(sale: sale, key: "b1", buyer: "bob").status == .created, "another buyer")
                clock.advance(by: .seconds(1))
                let again = try await client.placeOrder(sale: sale, key: "a2", buyer: "ana")
                #expect(again.status == .created, "the refused key was not consumed")
                #expect(again.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
            }
        }
    }

    @Test("a sale past its rate refuses everyone until it refills")
    func perSale() async throws {
        let clock = StoppedClock()
        try await HTTPFixture.with(admission: Self.limits(sale: RateLimit(rate: 2, burst: 2)), clock: clock) { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 100)
                let other = try await client.createSale(stock: 100)
                #expect(try await client.placeOrder(sale: sale, key: "k1", buyer: "ana").status == .created)
                #expect(try await client.placeOrder(sale: sale, key: "k2", buyer: "bob").status == .created)
                try await client.placeOrder(sale: sale, key: "k3", buyer: "cid").expectProblem(.tooManyRequests, "rate-limited")
                #expect(try await client.placeOrder(sale: other, key: "k4", buyer: "cid").status == .created, "another sale")
                clock.advance(by: .milliseconds(500))
                #expect(try await client.placeOrder(sale: sale, key: "k3", buyer: "cid").status == .created)
            }
        }
    }

    @Test(
        "a sale's own limits replace the server's for that sale only: set on create, shown when read, changed and removed by PATCH"
    )
    func perSaleOverrides() async throws {
        let clock = StoppedClock()
        try await HTTPFixture.with(admission: Self.limits(buyer: RateLimit(rate: 10, burst: 10)), clock: clock) { fixture in
            try await fixture.app.test(.router) { client in
                let strict = try await client.createSale(
                    stock: 100, perBuyerLimit: 10, extra: ["limits": ["perBuyer": ["rate": 1, "burst": 1]]])
                let relaxed = try await client.createSale(stock: 100, perBuyerLimit: 10)
                try await client.execute(uri: "/v1/sales/\(strict)", method: .get) { response in
                    let limits = response.object["limits"] as? [String: Any]
                    #expect((limits?["perBuyer"] as? [String: Int]) == ["rate": 1, "burst": 1], "\(response.object)")
                    #expect(limits?["perSale"] == nil)
                }
                #expect(try await client.placeOrder(sale: strict, key: "s1", buyer: "ana").status == .created)
                let refused = try await client.placeOrder(sale: strict, key: "s2", buyer: "ana")
                refused.expectProblem(.tooManyRequests, "rate-limited")
                #expect(refused.headers[HTTPField.Name("RateLimit-Policy")!] == #""buyer";q=1;w=1"#)
                #expect(try await client.placeOrder(sale: relaxed, key: "r1", buyer: "ana").status == .created)
                #expect(try await client.placeOrder(sale: relaxed, key: "r2", buyer: "ana").status == .created)

                // Raised by an operator: applies at once.
                try await client.execute(
                    uri: "/v1/sales/\(strict)", method: .patch, headers: HTTPFixture.adminHeaders,
                    body: HTTPFixture.json(["limits": ["perBuyer": ["rate": 5, "burst": 5], "perSale": ["rate": 1, "burst": 2]]])
                ) { response in
                    #expect(response.status == .ok, "\(String(buffer: response.body))")
                    #expect(((response.object["limits"] as? [String: Any])?["perSale"] as? [String: Int]) == ["rate": 1, "burst": 2])
                }
                // A bucket keeps its tokens across a change of limit, and refills at the new rate.
                clock.advance(by: .seconds(1))
                #expect(try await client.placeOrder(sale: strict, key: "s2", buyer: "ana").status == .created)
                #expect(try await client.placeOrder(sale: strict, key: "s3", buyer: "bob").status == .created)
                try await client.placeOrder(sale: strict, key: "s4", buyer: "cid").expectProblem(.tooManyRequests, "rate-limited")

                // Removed: the server's limits again.
                try await client.execute(
                    uri: "/v1/sales/\(strict)", method: .patch, headers: HTTPFixture.adminHeaders,
                    body: ByteBuffer(string: #"{"limits": null}"#)
                ) { response in
                    #expect(response.status == .ok)
                    #expect((response.object["limits"] as? [String: Any])?.isEmpty == true, "\(response.object)")
                }
                #expect(try await client.placeOrder(sale: strict, key: "s4", buyer: "cid").status == .created)

                // Bad changes are refused, naming the field; only an operator may change limits.
                for (body, field) in [
                    (#"{"limits": {"perBuyer": {"rate": 0, "burst": 1}}}"#, "limits.perBuyer.rate"),
                    (#"{"title": "Other"}"#, "title"),
                    (#"{}"#, "limits"),
                ] {
                    try await client.execute(
                        uri: "/v1/sales/\(strict)", method: .patch, headers: HTTPFixture.adminHeaders,
                        body: ByteBuffer(string: body)
                    ) { response in
                        response.expectProblem(.badRequest, "invalid-request")
                        #expect(String(buffer: response.body).contains(field), "\(body)")
                    }
                }
                try await client.execute(
                    uri: "/v1/sales/\(strict)", method: .patch, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: #"{"limits": null}"#)
                ) { $0.expectProblem(.unauthorized, "unauthorized") }
                try await client.execute(
                    uri: "/v1/sales", method: .post, headers: HTTPFixture.adminHeaders,
                    body: HTTPFixture.saleBody(extra: ["limits": ["perSale": ["rate": -1, "burst": 1]]])
                ) { $0.expectProblem(.badRequest, "invalid-request") }
            }
        }
    }

    @Test("an address past its rate gets 429 whoever the buyer (over a real socket)")
    func perAddress() async throws {
        try await HTTPFixture.with(admission: Self.limits(address: RateLimit(rate: 1, burst: 1)), clock: StoppedClock()) {
            fixture in
            try await fixture.app.test(.live) { client in
                let sale = try await client.createSale(stock: 100)
                #expect(try await client.placeOrder(sale: sale, key: "k1", buyer: "ana").status == .created)
                try await client.placeOrder(sale: sale, key: "k2", buyer: "bob").expectProblem(.tooManyRequests, "rate-limited")
            }
        }
    }

    @Test("forwarded headers name the client only when the peer is a trusted proxy")
    func forwardedHeaders() throws {
        let addresses = ClientAddresses(trustedProxies: [try #require(CIDR("10.0.0.0/8")), try #require(CIDR("::1"))])
        let forwardedFor: HTTPFields = [HTTPField.Name("X-Forwarded-For")!: "198.51.100.9, 203.0.113.7, 10.0.0.2"]
        #expect(addresses.client(peer: "192.0.2.1", headers: forwardedFor) == "192.0.2.1", "an untrusted peer's header is ignored")
        #expect(addresses.client(peer: "10.1.2.3", headers: forwardedFor) == "203.0.113.7", "the right-most untrusted hop")
        #expect(addresses.client(peer: "10.1.2.3", headers: [:]) == "10.1.2.3")
        let forwarded: HTTPFields = [HTTPField.Name("Forwarded")!: #"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#]
        #expect(addresses.client(peer: "::1", headers: forwarded) == "2001:db8::1")
        #expect(addresses.client(peer: "10.0.0.1", headers: [HTTPField.Name("X-Forwarded-For")!: "nonsense"]) == "10.0.0.1")
        #expect(CIDR("10.0.0.0/33") == nil && CIDR("not-an-address") == nil && CIDR("::/129") == nil)
        #expect(try #require(CIDR("192.168.0.0/16")).contains(try #require(CIDR.address("192.168.7.1"))))
        #expect(try #require(CIDR("192.168.0.0/16")).contains(try #require(CIDR.address("192.169.0.1"))) == false)
    }

    @Test("the buckets hold at most their capacity, whatever the crowd of distinct keys")
    func keyCap() {
        let buckets = TokenBuckets<String>(capacity: 64)
        let now = Date()
        let limit = RateLimit(rate: 1, burst: 5)
        for index in 0..<10_000 { _ = buckets.take("buyer-\(index)", limit: limit, at: now) }
        #expect(buckets.count <= 64)
        // A key refused in its window stays refused while it is tracked.
        for _ in 0..<5 { _ = buckets.take("greedy", limit: limit, at: now) }
        #expect(buckets.take("greedy", limit: limit, at: now) == .refused(retryAfter: 1))
        #expect(buckets.take("greedy", limit: limit, at: now + 1) == .allowed(remaining: 0, reset: 5))
    }
}
