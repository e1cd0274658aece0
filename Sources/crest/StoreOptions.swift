import ArgumentParser
import Foundation

/// Where the embedded store keeps its data (shared by the subcommands that open it).
struct StoreOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory of the embedded store [env: CREST_DATA_DIR] (default: ./crest-data)")
    var dataDirectory: String?

    func directory(_ settings: Settings) throws -> URL {
        URL(filePath: try settings.value(dataDirectory, env: "CREST_DATA_DIR", default: "./crest-data"))
    }
}
