import ArgumentParser
import Foundation

/// Resolves one setting: the command-line flag, else the `CREST_…` environment variable, else the default.
///
/// Every option of every subcommand goes through here, so the rule is written once.
struct Settings {
    var environment: [String: String] = ProcessInfo.processInfo.environment

    func value<T: LosslessStringConvertible>(_ flag: T?, env name: String, default fallback: T) throws -> T {
        if let flag { return flag }
        guard let raw = environment[name], !raw.isEmpty else { return fallback }
        guard let parsed = T(raw) else {
            throw ValidationError("environment variable \(name)=\(raw) is not a valid value")
        }
        return parsed
    }

    func optional(_ flag: String?, env name: String) -> String? {
        if let flag { return flag }
        guard let raw = environment[name], !raw.isEmpty else { return nil }
        return raw
    }
}
