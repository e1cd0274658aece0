/// The rule for short identifying text (sku, title, buyer id, idempotency key): not blank,
/// not longer than a limit counted in characters, and free of control characters.
public struct TextRule: Sendable {
    public var maxLength: Int

    public init(maxLength: Int) {
        self.maxLength = maxLength
    }

    /// The broken parts of the rule for `value`, reported under `field`; empty when it holds.
    public func issues(_ value: String, field: String) -> [ValidationError.Issue] {
        if value.allSatisfy(\.isWhitespace) {
            return [.init(field: field, message: "must not be empty")]
        }
        // UTF-8 length bounds the character count, so most values skip counting graphemes.
        if value.utf8.count > maxLength, value.count > maxLength {
            return [.init(field: field, message: "must be at most \(maxLength) characters")]
        }
        // Printable ASCII — nearly every value — has none; only other text is scanned scalar by scalar.
        let isPrintableASCII = value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        if !isPrintableASCII, value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return [.init(field: field, message: "must not contain control characters")]
        }
        return []
    }
}
