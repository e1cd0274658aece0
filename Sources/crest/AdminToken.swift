import ArgumentParser
import Foundation

/// The admin bearer token: given by the operator, or generated once and kept in the data directory.
enum AdminToken {
    static let fileName = "admin-token"

    /// The token to use and whether it was generated now (and must be shown to the operator once).
    static func resolve(given: String?, dataDirectory: URL) throws -> (token: String, generated: Bool) {
        if let given { return (given, false) }
        let file = dataDirectory.appending(path: fileName)
        if FileManager.default.fileExists(atPath: file.path) {
            // An unreadable or emptied token file is the operator's to fix: replacing it would
            // silently lock out every client that holds the old token.
            let stored = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !stored.isEmpty else {
                throw ValidationError("\(file.path) is empty: write a token into it, or delete it to generate one")
            }
            return (stored, false)
        }
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }
            .joined()
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        guard
            FileManager.default.createFile(
                atPath: file.path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file.path])
        }
        return (token, true)
    }
}
