import Foundation

extension Date {
    /// The format style `rfc3339Milliseconds` writes with integer arithmetic.
    public static let rfc3339Style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// RFC 3339 in UTC with milliseconds (`2026-11-24T20:00:00.000Z`), computed from the Unix time
    /// with integer arithmetic: every order answered carries three timestamps, and the format style
    /// cost more than the rest of the body. The millisecond is the one the stores keep
    /// (`millisecondsSince1970`); the style truncates the binary fraction instead and sometimes
    /// wrote one less (`.122` for a date stored as `.123`). Dates outside the years 1970…9999 go to
    /// the format style. The API's timestamps and the JSON log lines are written with it.
    public var rfc3339Milliseconds: String {
        let millis = millisecondsSince1970
        guard millis >= 0, millis < 253_402_300_800_000 else { return formatted(Self.rfc3339Style) }
        let total = Int(millis)
        let (days, millisOfDay) = total.quotientAndRemainder(dividingBy: 86_400_000)
        // Days since 1970-01-01 to a civil date (H. Hinnant, "chrono-Compatible Low-Level Date
        // Algorithms"), for non-negative days.
        let shifted = days + 719_468
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return String(unsafeUninitializedCapacity: 24) { buffer in
            var out = 0
            func put(_ value: Int, digits: Int, then separator: UInt8) {
                var rest = value
                for position in stride(from: out + digits - 1, through: out, by: -1) {
                    buffer[position] = UInt8(ascii: "0") + UInt8(rest % 10)
                    rest /= 10
                }
                buffer[out + digits] = separator
                out += digits + 1
            }
            put(year, digits: 4, then: UInt8(ascii: "-"))
            put(month, digits: 2, then: UInt8(ascii: "-"))
            put(day, digits: 2, then: UInt8(ascii: "T"))
            put(millisOfDay / 3_600_000, digits: 2, then: UInt8(ascii: ":"))
            put(millisOfDay / 60_000 % 60, digits: 2, then: UInt8(ascii: ":"))
            put(millisOfDay / 1000 % 60, digits: 2, then: UInt8(ascii: "."))
            put(millisOfDay % 1000, digits: 3, then: UInt8(ascii: "Z"))
            return out
        }
    }
}
