import ArgumentParser
import CrestStore
import Foundation
import Logging

/// `crest migrate`: applies the store's pending schema migrations and exits (`serve` does it too, at start).
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations to the store and exit.")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        try Console.bootstrapLogging(level: "warning")
        let (opened, description) = try await store.open(Settings(), logger: Logger(label: "crest.migrate"))
        try await opened.close()
        Console.say("migrations applied (\(description))")
    }
}
