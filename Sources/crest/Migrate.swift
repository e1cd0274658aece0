import ArgumentParser
import CrestStore
import Foundation

/// `crest migrate`: applies the store's pending schema migrations and exits (`serve` does it too, at start).
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations to the store and exit.")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        let directory = try store.directory(Settings())
        let opened = try SQLiteStore(directory: directory)
        try await opened.close()
        Console.say("migrations applied to \(directory.path)")
    }
}
