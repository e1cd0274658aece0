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

/// An integer option declared once — its meaning, environment variable, default, range and unit —
/// so that its help text, its value (flag, else environment, else default) and the message for a
/// value out of range all come from the same place and cannot drift apart.
///
/// ```swift
/// static let port = IntSetting(name: "port", env: "CREST_PORT", defaultValue: 8080, range: 0...65_535,
///                              meaning: "Port to listen on; 0 picks a free one")
/// @Option(help: Serve.Options.port.help) var port: Int?
/// let port = try Serve.Options.port.resolve(port, in: settings)   // "port must be 0…65,535"
/// ```
struct IntSetting: Sendable {
    /// How the refusal names it: "<name> must be <range>".
    var name: String
    var env: String
    var defaultValue: Int
    var range: ClosedRange<Int>
    /// Appended to the range and the default, with its space: " ms", " seconds".
    var unit: String = ""
    /// What the option does, the first words of its help.
    var meaning: String

    var rangeText: String { "\(Self.grouped(range.lowerBound))…\(Self.grouped(range.upperBound))\(unit)" }

    var help: ArgumentHelp {
        ArgumentHelp("\(meaning). Range \(rangeText) [env: \(env)] (default: \(defaultValue)\(unit))")
    }

    /// The flag, else the environment variable, else the default; a value outside the range is a
    /// usage error that names the setting and its range.
    /// `default` stands in for `defaultValue` where a command's other settings change it.
    func resolve(_ flag: Int?, in settings: Settings, default: Int? = nil) throws -> Int {
        let value = try settings.value(flag, env: env, default: `default` ?? defaultValue)
        guard range.contains(value) else { throw ValidationError("\(name) must be \(rangeText)") }
        return value
    }

    /// 10000000 → "10,000,000".
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var text = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { text.append(",") }
            text.append(digit)
        }
        return value < 0 ? "-" + text : text
    }
}

/// A text option declared once — its meaning, environment variable and default — so that its help
/// text and its value (flag, else environment, else default) cannot drift apart, and an option
/// shared by several commands (the data directory, the log level) is written once.
///
/// ```swift
/// static let host = TextSetting(env: "CREST_HOST", defaultValue: "127.0.0.1", meaning: "Address to listen on")
/// @Option(help: Serve.host.help) var host: String?
/// let host = Serve.host.resolve(host, in: settings)    // "127.0.0.1" unless given
/// ```
struct TextSetting: Sendable {
    var env: String
    /// The value when neither the flag nor the environment gives one; nil: the option is unset.
    var defaultValue: String?
    /// How the help says what happens by default when that is not a plain value ("generated once").
    var defaultText: String?
    /// What the option does, the first words of its help.
    var meaning: String

    init(env: String, defaultValue: String? = nil, defaultText: String? = nil, meaning: String) {
        self.env = env
        self.defaultValue = defaultValue
        self.defaultText = defaultText
        self.meaning = meaning
    }

    var help: ArgumentHelp {
        let fallback = defaultText ?? defaultValue
        return ArgumentHelp("\(meaning) [env: \(env)]" + (fallback.map { " (default: \($0))" } ?? ""))
    }

    /// The flag, else the environment variable (an empty one counts as unset), else the default.
    func resolve(_ flag: String?, in settings: Settings) -> String? {
        settings.optional(flag, env: env) ?? defaultValue
    }

    /// As `resolve`, for a setting that has a default.
    func value(_ flag: String?, in settings: Settings) -> String {
        guard let value = resolve(flag, in: settings) else { preconditionFailure("\(env) has no default") }
        return value
    }

    /// The same setting, its help saying what this command uses it for.
    func meaning(_ text: String) -> TextSetting {
        var setting = self
        setting.meaning = text
        return setting
    }

    /// The data directory of `crest serve`, which other commands read too.
    static let dataDirectory = TextSetting(env: "CREST_DATA_DIR", defaultValue: "./crest-data", meaning: "Data directory of `crest serve`")

    static let logFormat = TextSetting(
        env: "CREST_LOG_FORMAT", defaultValue: "text",
        meaning: "Log format: text (one line a person reads) or json (one JSON object per line, for a log shipper)")

    static let logLevel = TextSetting(
        env: "CREST_LOG_LEVEL", defaultValue: "info", meaning: "Log level: trace, debug, info, notice, warning, error, critical")
}
