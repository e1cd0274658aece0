import ArgumentParser
import Foundation

/// A secret Crest generates once and keeps in its data directory when the operator gives none:
/// the admin token, and the development signing secret of buyer passes.
struct KeptSecret {
    static let adminToken = KeptSecret(fileName: "admin-token")
    /// Signs and verifies buyer passes when no shop key is configured (development mode).
    static let buyerPassSecret = KeptSecret(fileName: "buyer-pass-secret")

    let fileName: String

    func file(in dataDirectory: URL) -> URL { dataDirectory.appending(path: fileName) }

    /// The secret kept in the data directory, if there is one.
    func stored(in dataDirectory: URL) throws -> String? {
        let file = file(in: dataDirectory)
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        // An unreadable or emptied file is the operator's to fix: replacing it would silently
        // lock out every client that holds the old secret.
        let stored = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !stored.isEmpty else {
            throw ValidationError("\(file.path) is empty: write a secret into it, or delete it to generate one")
        }
        return stored
    }

    /// The secret to use and whether it was generated now (and must be shown to the operator once).
    func resolve(given: String?, dataDirectory: URL) throws -> (secret: String, generated: Bool) {
        if let given { return (given, false) }
        if let stored = try stored(in: dataDirectory) { return (stored, false) }
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }
            .joined()
        let file = file(in: dataDirectory)
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        guard
            FileManager.default.createFile(
                atPath: file.path, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file.path])
        }
        return (secret, true)
    }
}
