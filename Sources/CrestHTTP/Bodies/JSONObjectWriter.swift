import CrestCore
import HTTPTypes
import Hummingbird

/// Writes one JSON object straight into a `ByteBuffer`.
///
/// For the bodies on the order path — the order (`201`) and the problem (`409 sold out`): profiles
/// of a flash sale showed `JSONEncoder` costing more on them than routing, validation and the
/// stock gate together. Members come out in the order they are written, `nil` members are left
/// out (as `JSONEncoder` leaves out `nil` optionals), and strings are escaped as RFC 8259 requires;
/// `/` is not escaped, like `CrestJSON`'s encoder.
///
/// ```swift
/// let body = JSONObjectWriter.object { json in
///     json.member("type", "urn:crest:problem:sold-out")
///     json.member("status", 409)
/// }
/// ```
struct JSONObjectWriter {
    private(set) var buffer: ByteBuffer
    private var isFirstMember = true

    /// A buffer holding the object that `write` describes.
    static func object(capacity: Int = 512, _ write: (inout JSONObjectWriter) -> Void) -> ByteBuffer {
        var writer = JSONObjectWriter(buffer: ByteBufferAllocator().buffer(capacity: capacity))
        writer.writeObject(write)
        return writer.buffer
    }

    mutating func member(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        writeName(name)
        writeString(value)
    }

    mutating func member(_ name: StaticString, _ value: some BinaryInteger) {
        writeName(name)
        buffer.writeString(String(value))
    }

    /// A nested object; `write` describes its members.
    mutating func member(_ name: StaticString, object write: (inout JSONObjectWriter) -> Void) {
        writeName(name)
        writeObject(write)
    }

    /// An array of objects, each described by `write`; left out when `elements` is `nil`.
    mutating func member<Element>(
        _ name: StaticString, array elements: [Element]?, _ write: (inout JSONObjectWriter, Element) -> Void
    ) {
        guard let elements else { return }
        writeName(name)
        buffer.writeInteger(UInt8(ascii: "["))
        for (index, element) in elements.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            writeObject { write(&$0, element) }
        }
        buffer.writeInteger(UInt8(ascii: "]"))
    }

    /// Writes a nested object into the same buffer (a second writer would copy it).
    private mutating func writeObject(_ write: (inout JSONObjectWriter) -> Void) {
        buffer.writeInteger(UInt8(ascii: "{"))
        let wasFirstMember = isFirstMember
        isFirstMember = true
        write(&self)
        isFirstMember = wasFirstMember
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    private mutating func writeName(_ name: StaticString) {
        if !isFirstMember { buffer.writeInteger(UInt8(ascii: ",")) }
        isFirstMember = false
        buffer.writeInteger(UInt8(ascii: "\""))
        buffer.writeStaticString(name)
        buffer.writeString("\":")
    }

    private mutating func writeString(_ value: String) {
        if PlainJSON.needsNoEscape(value) {
            buffer.writeInteger(UInt8(ascii: "\""))
            buffer.writeString(value)
            buffer.writeInteger(UInt8(ascii: "\""))
        } else {
            var quoted: [UInt8] = []
            PlainJSON.appendQuoted(value, to: &quoted)
            buffer.writeBytes(quoted)
        }
    }
}

extension Response {
    /// A response whose body is the JSON in `body`, with its content type and length.
    init(status: HTTPResponse.Status, json body: ByteBuffer, contentType: String, headers extra: HTTPFields = [:]) {
        var headers = HTTPFields()
        headers.reserveCapacity(2 + extra.count)
        headers.append(.init(name: .contentType, value: contentType))
        headers.append(.init(name: .contentLength, value: String(body.readableBytes)))
        headers.append(contentsOf: extra)
        self.init(status: status, headers: headers, body: .init(byteBuffer: body))
    }
}
