import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// How every long-running subcommand runs its services, so that a supervisor (systemd,
/// Kubernetes) can always stop it: SIGTERM and SIGINT start a graceful shutdown; a shutdown still
/// going after `drainLimit` is escalated to cancellation, and a cancellation still going after
/// `cancelLimit` ends the process with a fatal error — a crash the supervisor sees, never a
/// process that ignores every signal.
///
/// A service that fails (the server cannot bind its port) cancels the others, and its error is
/// what the command reports.
enum ProcessLifecycle {
    /// Longer than the job runner's 10 s grace for running jobs, plus the batcher's last commit.
    static let drainLimit: Duration = .seconds(30)
    static let cancelLimit: Duration = .seconds(10)

    static func group(_ services: [any Service], logger: Logger) -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = drainLimit
        configuration.maximumCancellationDuration = cancelLimit
        return ServiceGroup(configuration: configuration)
    }
}

/// An HTTP server as a service whose start-up failure says what could not be done: "cannot
/// listen on 127.0.0.1:8080: Address already in use", instead of NIO's `bind(descriptor:…)` text
/// at debug level only.
struct Listener<Server: Service>: Service {
    let server: Server
    /// `host:port` as the operator gave it.
    let address: String
    /// Raised by the server's `onServerRunning`: from then on a failure is not a start-up failure.
    let started: StartedFlag

    func run() async throws {
        do {
            try await server.run()
        } catch let error as IOError where !started.isRaised {
            throw StartupFailure("cannot listen on \(address): \(String(cString: strerror(error.errnoCode)))")
        }
    }
}

/// A flag raised once, read from any thread.
final class StartedFlag: Sendable {
    private let raised = Mutex(false)

    var isRaised: Bool { raised.withLock { $0 } }

    func raise() { raised.withLock { $0 = true } }
}

/// Start-up could not complete; `description` is the one line the operator reads on standard error.
struct StartupFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}
