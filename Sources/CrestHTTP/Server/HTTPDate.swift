import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `Date` header's value now (RFC 9110 §5.6.7, IMF-fixdate: `Sat, 05 Dec 2026 05:54:36 GMT`),
/// made at most once a second. Hummingbird stamps the route's answers with its own cache; the
/// answers written in the channel (`ChannelOrders`) take theirs from here, so every answer of the
/// server carries a `Date`, as an origin server with a clock must send.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static var now: String {
        var seconds = time_t()
        time(&seconds)
        return cache.withLock { cache in
            if cache.second != Int(seconds) { cache = (Int(seconds), format(seconds)) }
            return cache.text
        }
    }

    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func format(_ seconds: time_t) -> String {
        var seconds = seconds
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
