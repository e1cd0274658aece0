/// Reads the plain JSON that nearly every client sends — objects of known members, strings of
/// printable ASCII without escapes, whole numbers without sign, fraction or exponent — without
/// `JSONDecoder`, which costs more than the work the JSON asks for on Crest's hottest paths (an
/// order's body; a buyer pass's claims). Every read answers `nil` or `false` for anything else,
/// and the caller then hands the whole text to `JSONDecoder`, which has the full rules and the
/// error messages: what this accepts, `JSONDecoder` accepts with the same values.
///
/// ```swift
/// var json = PlainJSON(bytes)
/// var quantity: Int?
/// let plain = json.object { name, json in
///     guard name.elementsEqual("quantity".utf8), quantity == nil else { return false }
///     quantity = json.integer(maxDigits: 9)
///     return quantity != nil
/// } && json.isAtEnd
/// ```
public struct PlainJSON {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    /// Valid only while `bytes` are.
    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Whether only whitespace is left.
    public var isAtEnd: Bool {
        mutating get {
            skipWhitespace()
            return index == bytes.count
        }
    }

    /// Takes `byte`, after any whitespace; `false` (and nothing taken) when another byte comes.
    public mutating func take(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// An object: `member` is called with each member's name, the reader just past its colon, and
    /// takes the member's value; `false` from it, or a broken object, gives `false`. An empty
    /// object is `false` too (no caller's object is empty).
    public mutating func object(_ member: (UnsafeRawBufferPointer, inout PlainJSON) -> Bool) -> Bool {
        guard take(UInt8(ascii: "{")) else { return false }
        repeat {
            guard let name = string(), take(UInt8(ascii: ":")), member(name, &self) else { return false }
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    /// A string's bytes (without its quotes), after any whitespace: printable ASCII, no escapes.
    public mutating func string() -> UnsafeRawBufferPointer? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\"") { return UnsafeRawBufferPointer(rebasing: bytes[start..<index - 1]) }
            guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
        }
        return nil
    }

    /// A string as `String` (see `string()`).
    public mutating func text() -> String? {
        string().map { String(decoding: $0, as: UTF8.self) }
    }

    /// A whole number of at most `maxDigits` digits (at most 18), after any whitespace: no sign, no
    /// leading zero, no fraction or exponent.
    public mutating func integer(maxDigits: Int) -> Int? {
        precondition(maxDigits <= 18, "an Int holds 18 digits")
        skipWhitespace()
        let start = index
        var value = 0
        while index < bytes.count, index - start <= maxDigits, (0x30...0x39).contains(bytes[index]) {
            value = value &* 10 &+ Int(bytes[index] - 0x30)  // past maxDigits it is not used
            index += 1
        }
        let digits = index - start
        guard digits > 0, digits <= maxDigits, digits == 1 || bytes[start] != 0x30 else { return nil }
        if index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
            default: break
            }
        }
        return value
    }

    /// Takes a string or a whole number (see `string()` and `integer(maxDigits:)`): the value of a
    /// member the caller does not use.
    public mutating func skipScalar() -> Bool {
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "\"") { return string() != nil }
        return integer(maxDigits: 18) != nil
    }

    /// An array of strings (see `text()`), empty or not.
    public mutating func texts() -> [String]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var texts: [String] = []
        if take(UInt8(ascii: "]")) { return texts }
        repeat {
            guard let text = text() else { return nil }
            texts.append(text)
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? texts : nil
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }
}

extension PlainJSON {
    /// Appends `text` as a JSON string, quotes included, escaped as RFC 8259 requires (`/` is not
    /// escaped, as `CrestJSON`'s encoder leaves it).
    public static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        if needsNoEscape(text) {
            out.append(contentsOf: text.utf8)
        } else {
            for byte in text.utf8 { appendEscaped(byte, to: &out) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Whether `text` goes between quotes as it is.
    @inlinable public static func needsNoEscape(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }

    private static func appendEscaped(_ byte: UInt8, to out: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
        case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
        case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
        case UInt8(ascii: "\r"): out.append(contentsOf: "\\r".utf8)
        case UInt8(ascii: "\t"): out.append(contentsOf: "\\t".utf8)
        case 0x08: out.append(contentsOf: "\\b".utf8)
        case 0x0C: out.append(contentsOf: "\\f".utf8)
        case ..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            out.append(contentsOf: "\\u00".utf8)
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0F)])
        default: out.append(byte)
        }
    }
}
