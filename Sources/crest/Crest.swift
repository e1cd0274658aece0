import ArgumentParser

@main
struct Crest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crest",
        abstract: "A flash-sale order and payment engine.",
        subcommands: [
            Serve.self, Migrate.self, AuditCommand.self, ReconcileCommand.self, PSPSim.self, LoadTestCommand.self, Demo.self,
            BuyerPassCommand.self,
        ],
        defaultSubcommand: Serve.self
    )

    /// `AsyncParsableCommand.main()`, after the limit on open files is raised (`OpenFiles`).
    static func main() async {
        OpenFiles.raiseSoftLimit()
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
