import CrestCore
import Crypto
import Foundation

/// Signatures of webhook bodies, as `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` — the
/// scheme of the provider's webhooks to Crest and of Crest's webhooks to merchants.
///
/// ```swift
/// let header = WebhookSignature.sign(body, secret: secret, at: Date())
/// try WebhookSignature.verify(header, body: body, secret: secret, now: Date())
/// ```
package enum WebhookSignature {
    package static let defaultTolerance: TimeInterval = 300

    package enum Failure: Error, Sendable, Hashable {
        /// The header is missing or not of the form `t=…,v1=…`.
        case malformed
        /// The timestamp is further than the tolerance from now (a replay, or a badly wrong clock).
        case stale
        /// No `v1` signature matches the body and secret.
        case mismatch
    }

    package static func sign(_ body: Data, secret: String, at time: Date) -> String {
        let timestamp = Int(time.timeIntervalSince1970)
        return "t=\(timestamp),v1=\(hex(mac(body, secret: secret, timestamp: timestamp)))"
    }

    /// Checks `header` against `body`. Every `v1=` value is tried (several while a secret rotates);
    /// the comparison takes the same time wherever the first difference is.
    package static func verify(
        _ header: String?, body: Data, secret: String, now: Date, tolerance: TimeInterval = defaultTolerance
    ) throws(Failure) {
        guard let header else { throw .malformed }
        var timestamp: Int?
        var signatures: [[UInt8]] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { throw .malformed }
            switch pair[0] {
            case "t": timestamp = Int(pair[1])
            case "v1":
                guard let bytes = bytes(hex: pair[1]) else { throw .malformed }
                signatures.append(bytes)
            default: continue
            }
        }
        guard let timestamp, !signatures.isEmpty else { throw .malformed }
        guard abs(now.timeIntervalSince1970 - Double(timestamp)) <= tolerance else { throw .stale }
        let expected = mac(body, secret: secret, timestamp: timestamp)
        var matched = false
        for signature in signatures {
            matched = ConstantTime.equal(signature, expected) || matched
        }
        guard matched else { throw .mismatch }
    }

    private static func mac(_ body: Data, secret: String, timestamp: Int) -> [UInt8] {
        var message = Data("\(timestamp).".utf8)
        message.append(body)
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8))))
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    private static func bytes(hex: String) -> [UInt8]? {
        guard hex.utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.utf8.count / 2)
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}
