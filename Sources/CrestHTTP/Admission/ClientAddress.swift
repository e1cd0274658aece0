import Foundation
import HTTPTypes

/// An IPv4 or IPv6 network, `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
package struct CIDR: Sendable, Hashable, CustomStringConvertible {
    let bytes: [UInt8]
    let prefix: Int

    /// `nil` for anything that is not an address with an optional prefix length in range.
    package init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let bytes = Self.address(first) else { return nil }
        let maximum = bytes.count * 8
        if parts.count == 2 {
            guard let prefix = Int(parts[1]), (0...maximum).contains(prefix) else { return nil }
            self.prefix = prefix
        } else {
            self.prefix = maximum
        }
        self.bytes = bytes
    }

    /// Whether `address` (bytes of the same family) is in this network.
    func contains(_ address: [UInt8]) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = prefix
        for index in bytes.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if address[index] & mask != bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    package var description: String {
        let text = bytes.count == 4 ? bytes.map(String.init).joined(separator: ".") : Self.text(of: bytes)
        return "\(text)/\(prefix)"
    }

    /// The 4 or 16 bytes of a textual IPv4 or IPv6 address.
    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    private static func text(of bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        return inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)).map { String(cString: $0) } ?? "?"
    }
}

/// The client's address: the socket's peer, or — when the peer is a trusted proxy — the address
/// the proxies say they forwarded for (`Forwarded: for=…`, else `X-Forwarded-For`), read from the
/// right, skipping trusted proxies: the first address not trusted is the client. A client cannot
/// choose its address by sending the headers itself: they count only from a trusted peer.
package struct ClientAddresses: Sendable, Hashable {
    package let trustedProxies: [CIDR]

    package init(trustedProxies: [CIDR]) {
        self.trustedProxies = trustedProxies
    }

    private static let forwardedFor = HTTPField.Name("X-Forwarded-For")!
    private static let forwarded = HTTPField.Name("Forwarded")!

    func client(peer: String?, headers: HTTPFields) -> String? {
        guard let peer else { return nil }
        guard isTrusted(peer) else { return peer }
        var hops: [String] = []
        if let forwarded = headers[values: Self.forwarded].nonEmpty {
            // `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"` (RFC 7239).
            for element in forwarded.joined(separator: ",").split(separator: ",") {
                for pair in element.split(separator: ";") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "for" else { continue }
                    hops.append(Self.bareAddress(String(parts[1])))
                }
            }
        } else {
            for value in headers[values: Self.forwardedFor] {
                hops += value.split(separator: ",").map { Self.bareAddress(String($0)) }
            }
        }
        for hop in hops.reversed() where !isTrusted(hop) {
            return CIDR.address(hop) == nil ? peer : hop
        }
        return hops.first ?? peer
    }

    func isTrusted(_ address: String) -> Bool {
        guard let bytes = CIDR.address(address) else { return false }
        return trustedProxies.contains { $0.contains(bytes) }
    }

    /// `"[2001:db8::1]:4711"` → `2001:db8::1`; `192.0.2.60:80` → `192.0.2.60`.
    static func bareAddress(_ raw: String) -> String {
        var text = raw.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
        if text.hasPrefix("["), let end = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<end])
        }
        if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") { return String(text[..<colon]) }
        return text
    }
}

extension Array {
    fileprivate var nonEmpty: Self? { isEmpty ? nil : self }
}
