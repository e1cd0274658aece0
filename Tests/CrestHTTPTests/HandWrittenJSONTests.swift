import CrestCore
import Foundation
import Hummingbird
import NIOCore
import Testing

@testable import CrestHTTP

/// The order path writes and reads its JSON by hand; these hold it to what `Codable` and
/// Foundation would have produced and accepted.
@Suite("Hand-written JSON on the order path")
struct HandWrittenJSONTests {
    static let awkwardTexts = [
        "buyer-1", "", "with \"quotes\" and \\backslash\\", "line\nbreak\ttab\r\u{08}\u{0C}", "\u{01}\u{1F}\u{7F}",
        "ünïcødé 買家 🛒", "slash/es", "\u{2028}\u{2029}",
    ]

    /// Both renderings parsed back, so that member order and spacing do not matter but every
    /// value, escape and omitted `nil` does.
    static func assertSameJSON(_ handWritten: ByteBuffer, _ encodable: some Encodable) throws {
        let expected = try JSONSerialization.jsonObject(with: CrestJSON.sharedEncoder.encode(encodable)) as? NSDictionary
        let actual = try JSONSerialization.jsonObject(with: Data(handWritten.readableBytesView)) as? NSDictionary
        #expect(actual != nil)
        #expect(actual == expected, "\(String(buffer: handWritten))")
    }

    static func order(buyer: String, flag: OrderFlag?, payment: OrderPayment?) -> Order {
        let now = Date(timeIntervalSince1970: 1_795_550_400.123)
        return Order(
            id: .make(now: now), saleID: .make(now: now), buyer: buyer, quantity: 3,
            amount: Money(amount: 599_900, currency: Currency("CNY")!), status: .pendingPayment, createdAt: now,
            expiresAt: now.addingTimeInterval(900), updatedAt: now.addingTimeInterval(1.5), flag: flag,
            payment: payment)
    }

    @Test("an order body is the JSON Codable writes", arguments: awkwardTexts)
    func orderBody(text: String) throws {
        let flagged = OrderFlag(reason: .confirmFailed, flaggedAt: Date(timeIntervalSince1970: 1_795_551_000))
        for (flag, payment) in [
            (nil, nil), (flagged, nil), (nil, OrderPayment(id: text, status: .succeeded, payURL: nil)),
            (flagged, OrderPayment(id: "pay_1", status: .processing, payURL: "https://psp.example/pay?o=\(text)")),
        ] as [(OrderFlag?, OrderPayment?)] {
            let body = OrderBody(Self.order(buyer: text, flag: flag, payment: payment))
            try Self.assertSameJSON(JSONObjectWriter.object(body.write), body)
        }
    }

    @Test("a page of orders is the JSON Codable writes")
    func orderPageBody() throws {
        let orders = Self.awkwardTexts.enumerated().map { index, text in
            OrderBody(
                Self.order(
                    buyer: text, flag: nil,
                    payment: index.isMultiple(of: 2) ? nil : OrderPayment(id: text, status: .created, payURL: "https://psp/\(text)")))
        }
        for page in [
            OrderPageBody(orders: [], next: nil), OrderPageBody(orders: Array(orders.prefix(1)), next: nil),
            OrderPageBody(orders: orders, next: orders.last?.id),
        ] {
            try Self.assertSameJSON(page.body, page)
        }
    }

    @Test("a problem body is the JSON Codable writes", arguments: awkwardTexts)
    func problemBody(text: String) throws {
        var problem = Problem(kind: "invalid-request", title: "The request is not valid", status: .badRequest)
        let plain = problem
        problem.detail = text
        problem.errors = [.init(field: "buyer", message: text), .init(field: text, message: "must not be empty")]
        for var body in [plain, problem] {
            let instance = "/v1/sales/\(text)/orders"
            let response = body.response(instance: instance)
            let buffer = body.body(instance: instance)
            body.instance = instance
            try Self.assertSameJSON(buffer, body)
            #expect(response.headers[.contentType] == "application/problem+json")
            #expect(response.headers[.contentLength] == String(buffer.readableBytes))
        }
    }

    /// The date and time of day as Foundation's ISO 8601 style writes them, and the millisecond
    /// that the stores keep (`t × 1000` rounded down). The style itself sometimes writes one
    /// millisecond less: it truncates the binary fraction (…00.1229999 for …00.123).
    @Test("timestamps are RFC 3339 with the millisecond the stores keep")
    func timestamps() {
        let seconds = Date.ISO8601FormatStyle()
        var generator = SystemRandomNumberGenerator()
        var times: [Double] = [
            0, 0.0005, 0.9995, 0.9999999, 59.999, 951_782_400, 951_868_799.999, 4_107_542_400, 1_795_550_400.123,
            253_402_300_799.999,
        ]
        for _ in 0..<20_000 { times.append(Double.random(in: 0..<253_402_300_800, using: &generator)) }
        for _ in 0..<5_000 {
            // Whole milliseconds, as dates read back from the stores are.
            times.append(Double(Int64.random(in: 0..<4_102_444_800_000, using: &generator)) / 1000)
        }
        let mismatches = times.filter { time in
            // The Date's own Unix time: near 1970 it differs from `time` (Dates count from 2001).
            let millis = Int64((Date(timeIntervalSince1970: time).timeIntervalSince1970 * 1000).rounded(.down))
            let whole = Date(timeIntervalSince1970: Double(millis / 1000)).formatted(seconds)
            let fraction = String(millis % 1000)
            let expected = "\(whole.dropLast()).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)Z"
            return Timestamp.format(Date(timeIntervalSince1970: time)) != expected
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5).map { "\($0): \(Timestamp.format(Date(timeIntervalSince1970: $0)))" })")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_795_550_400.123)) == "2026-11-24T20:00:00.123Z")
        for outside in [-1.5, 253_402_300_800] {
            let date = Date(timeIntervalSince1970: outside)
            #expect(Timestamp.format(date) == date.formatted(Timestamp.style))
        }
    }

    @Test("the plain order body is read without JSONDecoder")
    func plainOrderBodies() throws {
        for (text, buyer, quantity) in [
            (#"{"buyer":"b-1","quantity":1}"#, "b-1", 1),
            (#" { "quantity" : 25 ,"buyer":"x y/z" } "#, "x y/z", 25),
            ("{\n\t\"buyer\": \"\",\r\n\"quantity\": 0}", "", 0),
            (#"{"buyer":"b","quantity":999999999}"#, "b", 999_999_999),
            (#"{"quantity":2}"#, nil, 2),
        ] as [(String, String?, Int)] {
            let body = try #require(PlaceOrderBody(plainJSON: ByteBuffer(string: text)), "\(text)")
            #expect(body.buyer == buyer && body.quantity == quantity)
        }
    }

    @Test("anything but the plain shape goes to JSONDecoder")
    func unusualOrderBodies() {
        for text in [
            #"{"buyer":"b\"1","quantity":1}"#, #"{"buyer":"b\u0031","quantity":1}"#, #"{"buyer":"b","quantity":-1}"#,
            #"{"buyer":"b","quantity":1.0}"#, #"{"buyer":"b","quantity":1e0}"#, #"{"buyer":"b","quantity":01}"#,
            #"{"buyer":"b","quantity":1234567890}"#, #"{"buyer":"b","quantity":1,"note":"x"}"#,
            #"{"buyer":"b","buyer":"c","quantity":1}"#, #"{"buyer":"b"}"#, "{}", "",
            #"{"buyer":"b","quantity":1}x"#, #"{"buyer":"b","quantity":1,}"#, #"{"buyer":"b" "quantity":1}"#,
            #"{"buyer":"ü","quantity":1}"#, "{\"buyer\":\"a\u{7F}\",\"quantity\":1}", #"{"buyer":1,"quantity":1}"#,
            #"{"buyer":"b","quantity":"1"}"#, #"{"buyer":"b","quantity":true}"#, #"[{"buyer":"b","quantity":1}]"#,
            #"{"buyer":"b","quantity":1"#, #"{"buyer":"b,"quantity":1}"#, #"{"buyer":null,"quantity":1}"#,
        ] {
            #expect(PlaceOrderBody(plainJSON: ByteBuffer(string: text)) == nil, "\(text)")
        }
    }

    /// Random edits of a plain body: whatever the hand-written reader accepts, `JSONDecoder` must
    /// read to the same values.
    @Test("the hand-written reader never disagrees with JSONDecoder")
    func agreesWithJSONDecoder() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]":,. -+0123456789eEbuyerquantitynl\u"#.utf8) + [0x09, 0x0A, 0x00, 0xC3, 0xBC]
        let decoder = CrestJSON.decoder()
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = Array(#"{"buyer": "b-1", "quantity": 12}"#.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[at] = alphabet.randomElement(using: &generator)!
                case 1: bytes.insert(alphabet.randomElement(using: &generator)!, at: at)
                default: if bytes.count > 1 { bytes.remove(at: at) }
                }
            }
            guard let fast = PlaceOrderBody(plainJSON: ByteBuffer(bytes: bytes)) else { continue }
            accepted += 1
            let slow = try decoder.decode(PlaceOrderBody.self, from: Data(bytes))
            #expect(slow.buyer == fast.buyer && slow.quantity == fast.quantity, "\(String(decoding: bytes, as: UTF8.self))")
        }
        #expect(accepted > 100)
    }
}
