import CrestCore
import CrestPayments
import Foundation
import Testing

@Suite("Circuit breaker")
struct CircuitBreakerTests {
    let configuration = CircuitBreaker.Configuration(
        windowSize: 10, minimumCalls: 4, failureRateThreshold: 0.5, slowCallDuration: .milliseconds(100),
        slowCallRateThreshold: 0.75, openDuration: .seconds(5), halfOpenProbes: 1)

    @Test("opens when half the calls in the window failed, refuses while open, probes after the open time")
    func failureRate() throws {
        let breaker = CircuitBreaker(configuration: configuration)
        let start = ContinuousClock.now
        for failed in [false, true, false] {
            try breaker.acquire(now: start)
            breaker.record(failed: failed, duration: .milliseconds(5), now: start)
        }
        #expect(breaker.snapshot.state == .closed, "fewer calls than the minimum never open it")
        try breaker.acquire(now: start)
        breaker.record(failed: true, duration: .milliseconds(5), now: start)
        #expect(breaker.snapshot.state == .open)
        #expect(throws: CircuitBreaker.OpenError.self) { try breaker.acquire(now: start + .seconds(4)) }
        #expect(breaker.snapshot.rejected == 1)

        // Half-open: one probe goes through, a second waits for its result.
        try breaker.acquire(now: start + .seconds(5))
        #expect(breaker.snapshot.state == .halfOpen)
        #expect(throws: CircuitBreaker.OpenError.self) { try breaker.acquire(now: start + .seconds(5)) }
        breaker.record(failed: true, duration: .milliseconds(5), now: start + .seconds(5))
        #expect(breaker.snapshot.state == .open, "a failed probe opens it again")
        #expect(breaker.snapshot.opened == 2)

        try breaker.acquire(now: start + .seconds(10))
        breaker.record(failed: false, duration: .milliseconds(5), now: start + .seconds(10))
        #expect(breaker.snapshot.state == .closed, "a good probe closes it")
        #expect(breaker.snapshot.callsInWindow == 0)
    }

    @Test("opens on slow calls even when they succeed; a slow probe keeps it open")
    func slowCalls() throws {
        let breaker = CircuitBreaker(configuration: configuration)
        let start = ContinuousClock.now
        for _ in 0..<3 {
            try breaker.acquire(now: start)
            breaker.record(failed: false, duration: .milliseconds(500), now: start)
        }
        #expect(breaker.snapshot.state == .closed)
        try breaker.acquire(now: start)
        breaker.record(failed: false, duration: .milliseconds(500), now: start)
        #expect(breaker.snapshot.state == .open)
        try breaker.acquire(now: start + .seconds(6))
        breaker.record(failed: false, duration: .milliseconds(500), now: start + .seconds(6))
        #expect(breaker.snapshot.state == .open)
    }

    @Test("the window slides: old failures leave it")
    func sliding() throws {
        let breaker = CircuitBreaker(configuration: configuration)
        let now = ContinuousClock.now
        for failed in [false, false, false, true, false, false, false, true, false, false] {
            try breaker.acquire(now: now)
            breaker.record(failed: failed, duration: .milliseconds(1), now: now)
        }
        #expect(breaker.snapshot.failureRate == 0.2)
        for _ in 0..<8 {
            try breaker.acquire(now: now)
            breaker.record(failed: false, duration: .milliseconds(1), now: now)
        }
        #expect(breaker.snapshot.state == .closed)
        #expect(breaker.snapshot.failureRate == 0)
        #expect(breaker.snapshot.callsInWindow == 10)
    }

    @Test("a permit given back without an outcome frees the half-open probe and changes no rate")
    func release() throws {
        let breaker = CircuitBreaker(configuration: configuration)
        let start = ContinuousClock.now
        for _ in 0..<4 {
            try breaker.acquire(now: start)
            breaker.record(failed: true, duration: .milliseconds(1), now: start)
        }
        try breaker.acquire(now: start + .seconds(5))
        breaker.release()
        try breaker.acquire(now: start + .seconds(5))
        breaker.record(failed: false, duration: .milliseconds(1), now: start + .seconds(5))
        #expect(breaker.snapshot.state == .closed)
    }

    @Test("a bulkhead refuses the call beyond its limit and takes one again once a call left")
    func bulkhead() throws {
        let bulkhead = Bulkhead(limit: 2)
        try bulkhead.enter()
        try bulkhead.enter()
        #expect(throws: Bulkhead.FullError.self) { try bulkhead.enter() }
        bulkhead.leave()
        try bulkhead.enter()
        #expect(bulkhead.inFlight == 2)
        #expect(bulkhead.rejected == 1)
    }
}

@Suite("Webhook signatures and payment states")
struct SignatureTests {
    let body = Data(#"{"id":"evt_1"}"#.utf8)
    let now = Date(timeIntervalSince1970: 1_790_000_000)

    @Test("a signature verifies with its secret and body, within the tolerance")
    func roundTrip() throws {
        let header = WebhookSignature.sign(body, secret: "s", at: now)
        #expect(header.hasPrefix("t=1790000000,v1="))
        try WebhookSignature.verify(header, body: body, secret: "s", now: now.addingTimeInterval(299))
        #expect(throws: WebhookSignature.Failure.stale) {
            try WebhookSignature.verify(header, body: body, secret: "s", now: now.addingTimeInterval(301))
        }
        #expect(throws: WebhookSignature.Failure.mismatch) {
            try WebhookSignature.verify(header, body: body, secret: "other", now: now)
        }
        #expect(throws: WebhookSignature.Failure.mismatch) {
            try WebhookSignature.verify(header, body: Data("{}".utf8), secret: "s", now: now)
        }
        for bad in [nil, "", "t=1", "v1=00", "t=x,v1=00", "t=1790000000,v1=zz"] as [String?] {
            #expect(throws: WebhookSignature.Failure.malformed) {
                try WebhookSignature.verify(bad, body: body, secret: "s", now: now)
            }
        }
    }

    @Test("any of several v1 signatures may match (secret rotation)")
    func rotation() throws {
        let old = WebhookSignature.sign(body, secret: "old", at: now)
        let new = WebhookSignature.sign(body, secret: "new", at: now)
        let both = old + "," + new.split(separator: ",")[1]
        try WebhookSignature.verify(both, body: body, secret: "new", now: now)
        try WebhookSignature.verify(both, body: body, secret: "old", now: now)
    }

    @Test("payment states only move forward, whatever order they are observed in")
    func paymentStates() {
        let all = PaymentStatus.allCases
        for first in all {
            for second in all {
                #expect(first.merged(with: second) == second.merged(with: first))
            }
        }
        #expect(PaymentStatus.succeeded.merged(with: .processing) == .succeeded)
        #expect(PaymentStatus.failed.merged(with: .succeeded) == .succeeded)
        #expect(PaymentStatus.refunded.merged(with: .succeeded) == .refunded)
        #expect(PaymentStatus.created.merged(with: .processing) == .processing)
    }
}
