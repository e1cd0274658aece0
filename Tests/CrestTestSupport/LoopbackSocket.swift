import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket on a loopback port of its own, for tests of what clients and servers do when a
/// port is taken, or when a peer accepts connections and never answers: connections to it are
/// completed by the kernel (up to the backlog) and never read.
///
/// `close()` it, or let it go, to free the port — which then refuses connections.
public final class LoopbackSocket: @unchecked Sendable {
    // @unchecked: `descriptor` is written once in init; close() is called by the owning test only.
    public let port: Int
    private var descriptor: Int32

    public init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.descriptor = descriptor
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && listen(descriptor, 16) == 0
                    && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard listening else {
            Glibc.close(descriptor)
            throw POSIXError(.EADDRNOTAVAIL)
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Stops listening: from now on the port refuses connections (until someone else takes it).
    public func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    deinit { close() }
}
