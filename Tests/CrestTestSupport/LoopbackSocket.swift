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

/// Opens `count` TCP connections to 127.0.0.1:`port` at once and waits up to `timeout` for their
/// handshakes; returns how many completed, then closes them all. A listener that accepts nothing
/// (stopped, or busy) completes as many as its listen backlog holds, plus one; the kernel drops the
/// others' handshakes, which the client sends again a second or more later.
public func completedHandshakes(toPort port: Int, count: Int, within timeout: Duration) -> Int {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var pending: [pollfd] = []
    var opened: [Int32] = []
    defer {
        for descriptor in opened { Glibc.close(descriptor) }
    }
    var completed = 0
    for _ in 0..<count {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { break }
        opened.append(descriptor)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result == 0 {
            completed += 1
        } else if errno == EINPROGRESS {
            pending.append(pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0))
        }
    }
    let deadline = ContinuousClock.now + timeout
    while !pending.isEmpty, ContinuousClock.now < deadline {
        let left = deadline - ContinuousClock.now
        let milliseconds = Int32(max(1, left.components.seconds * 1_000 + left.components.attoseconds / 1_000_000_000_000_000))
        guard poll(&pending, nfds_t(pending.count), milliseconds) > 0 else { continue }
        pending.removeAll { entry in
            guard entry.revents != 0 else { return false }
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(entry.fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0, failure == 0 { completed += 1 }
            return true
        }
    }
    return completed
}
