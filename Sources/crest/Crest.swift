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
}
