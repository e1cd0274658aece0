import ArgumentParser
import CrestCore
import CrestHTTP
import CrestIdentity
import Foundation
import Logging

/// How `crest serve` verifies buyer passes: the shop's keys, the development secret, or off.
struct BuyerPassOptions: ParsableArguments {
    static let buyerAuth = TextSetting(
        env: "CREST_BUYER_AUTH", defaultValue: "on",
        meaning:
            "on: every buyer route needs a buyer pass; off: the request body names the buyer and anyone may read or cancel any order — closed networks only"
    )
    @Option(help: Self.buyerAuth.help) var buyerAuth: String?

    @Option(
        help:
            "HS256 secret the shop signs buyer passes with, at least 32 bytes; repeat it to accept several while rotating [env: CREST_BUYER_PASS_SECRETS, comma-separated] (default: with neither this nor --buyer-pass-jwks, a development secret generated once in the data directory)"
    )
    var buyerPassSecret: [String] = []

    static let jwks = TextSetting(
        env: "CREST_BUYER_PASS_JWKS",
        meaning:
            "File with a JSON Web Key Set of the shop's public keys (EC P-256 for ES256, OKP Ed25519 for EdDSA), each with a kid; read at start"
    )
    @Option(help: Self.jwks.help) var buyerPassJwks: String?

    @Option(help: Self.clockSkew.help) var buyerPassClockSkewSeconds: Int?

    static let clockSkew = IntSetting(
        name: "buyer pass clock skew", env: "CREST_BUYER_PASS_CLOCK_SKEW_SECONDS", defaultValue: 60, range: 0...600,
        unit: " seconds",
        meaning: "How far the shop's clock may be from Crest's: a pass counts from its nbf/iat less this until its exp plus this")

    /// The buyer routes' authentication. `dataDirectory` is where the development secret is kept
    /// (`nil` on PostgreSQL: several nodes must share real keys).
    func authentication(_ settings: Settings, dataDirectory: URL?, logger: Logger) async throws -> BuyerAuthentication {
        switch Self.buyerAuth.value(buyerAuth, in: settings) {
        case "on": break
        case "off":
            let warning =
                "buyer authentication is OFF (--buyer-auth off): the request body names the buyer, and anyone can read or cancel any order. Use this only on a closed network."
            Console.complain("WARNING: \(warning)")
            logger.warning("\(warning)")
            return .off
        case let other: throw ValidationError("--buyer-auth must be on or off, got \(other)")
        }
        var secrets = buyerPassSecret.isEmpty ? Self.environmentSecrets(settings) : buyerPassSecret
        var jwks: String?
        if let path = Self.jwks.resolve(buyerPassJwks, in: settings) {
            do {
                jwks = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read the buyer-pass JWKS file \(path): \(error.localizedDescription)")
            }
        }
        if secrets.isEmpty, jwks == nil {
            guard let dataDirectory else {
                throw ValidationError(
                    "with --database-url, give --buyer-pass-secret or --buyer-pass-jwks (every node must verify the same passes), or --buyer-auth off"
                )
            }
            let kept = try KeptSecret.buyerPassSecret.resolve(given: nil, dataDirectory: dataDirectory)
            Console.say(
                "buyer passes: development mode — signed with the secret \(kept.generated ? "generated now and " : "")kept in \(KeptSecret.buyerPassSecret.file(in: dataDirectory).path); mint one with `crest buyer-pass <buyer>`"
            )
            secrets = [kept.secret]
        }
        let keys: BuyerPassKeys
        do {
            keys = try await BuyerPassKeys.make(secrets: secrets, jwks: jwks)
        } catch {
            throw ValidationError(error.description)
        }
        var configuration = BuyerPassVerifier.Configuration()
        configuration.clockSkew = .seconds(try Self.clockSkew.resolve(buyerPassClockSkewSeconds, in: settings))
        logger.info("buyer passes verified with: \(keys.summary.joined(separator: ", "))")
        return .passes(BuyerPassVerifier(keys: keys, clock: SystemClock(), configuration: configuration))
    }

    /// The secrets of `CREST_BUYER_PASS_SECRETS`, comma-separated.
    static func environmentSecrets(_ settings: Settings) -> [String] {
        (settings.optional(nil, env: "CREST_BUYER_PASS_SECRETS") ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The secret a client of Crest mints passes with: `given`, else the first of
    /// `CREST_BUYER_PASS_SECRETS`, else the development secret kept in the data directory (`nil`
    /// when there is none); and that directory, for messages.
    static func signingSecret(given: String?, dataDirectory: String?, settings: Settings) throws
        -> (secret: String?, directory: URL)
    {
        let directory = URL(filePath: TextSetting.dataDirectory.value(dataDirectory, in: settings))
        if let given { return (given, directory) }
        if let first = environmentSecrets(settings).first { return (first, directory) }
        return (try KeptSecret.buyerPassSecret.stored(in: directory), directory)
    }
}

/// `crest buyer-pass`: mints a buyer pass with an HS256 secret — the development secret of a
/// data directory, or a given one — as a shop's backend would.
struct BuyerPassCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "buyer-pass",
        abstract: "Print a buyer pass (a signed JWT) for trying Crest out.",
        discussion: """
            Signs with --secret, else the first of CREST_BUYER_PASS_SECRETS, else the development secret \
            `crest serve` keeps in its data directory. Send the pass as `Authorization: Bearer <pass>`.
            """)

    @Argument(help: "The buyer's id (the pass's subject)") var buyer: String

    @Option(help: "A sale the pass admits; repeat for several (default: every sale)") var sale: [String] = []

    @Option(help: "How long the pass lasts, e.g. 15m, 1h (default: 15m)", transform: parseDuration)
    var ttl: Duration = .seconds(900)

    @Option(help: "Units this buyer may hold in a sale, instead of the sale's per-buyer limit") var perBuyerLimit: Int?

    @Option(help: "HS256 secret to sign with [env: CREST_BUYER_PASS_SECRETS, first one]") var secret: String?

    @Option(name: .customLong("data-dir"), help: TextSetting.dataDirectory.help) var dataDirectory: String?

    func run() async throws {
        let settings = Settings()
        var sales: [SaleID] = []
        for text in sale {
            guard let id = SaleID(text) else { throw ValidationError("--sale must be a sale id, got \(text)") }
            sales.append(id)
        }
        guard ttl > .zero else { throw ValidationError("--ttl must be longer than 0") }
        let (found, directory) = try BuyerPassOptions.signingSecret(
            given: secret, dataDirectory: dataDirectory, settings: settings)
        guard let signingSecret = found else {
            throw ValidationError(
                "no buyer-pass secret in \(directory.path): start `crest serve` there once (it generates one), or give --secret")
        }
        let now = Date()
        let pass = BuyerPass(
            buyer: buyer, expiresAt: now + ttl.seconds, issuedAt: now, sales: sales.isEmpty ? nil : sales,
            perBuyerLimit: perBuyerLimit)
        do {
            _ = try BuyerPassVerifier.verified(pass, clockSkew: .zero)
        } catch {
            throw ValidationError(error.description)
        }
        Console.say(try BuyerPassSigner(secret: signingSecret).sign(pass))
    }
}
