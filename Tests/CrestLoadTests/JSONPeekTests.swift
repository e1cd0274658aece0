import NIOCore
import Testing

@testable import CrestLoad

@Suite("Reading a problem's type out of a body")
struct JSONPeekTests {
    @Test("the member's string is found wherever it is, and nothing is made up when it is not there")
    func peek() {
        func kind(_ text: String) -> String? { JSONPeek.problemKind(in: ByteBuffer(string: text)) }
        #expect(kind(#"{"type":"urn:crest:problem:sold-out","title":"The sale is sold out","status":409}"#) == "sold-out")
        #expect(kind(#"{"status":503,"title":"x","type":"urn:crest:problem:overloaded"}"#) == "overloaded")
        // A member whose name ends like it, and a value that names it, are not it.
        #expect(kind(#"{"subtype":"a","detail":"\"type\":\"no\"","type":"urn:crest:problem:shed"}"#) == "shed")
        #expect(kind(#"{"type":"plain"}"#) == "plain")
        #expect(kind(#"{"type":""}"#) == "")
        for absent in ["", "{}", #"{"type":"#, #"{"type":"unterminated"#, #""type":"#, #"{"kind":"x"}"#] {
            #expect(kind(absent) == nil, "\(absent)")
        }
        var offset = ByteBuffer(string: #"xx{"type":"urn:crest:problem:sale-closed"}"#)
        offset.moveReaderIndex(forwardBy: 2)
        #expect(JSONPeek.problemKind(in: offset) == "sale-closed")
    }
}
