import CrestConcurrency
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A second listener for the control plane — probes, scrapes and the provider's webhooks — on an
/// event-loop thread of its own, its requests' tasks kept on that thread.
///
/// On the main listener a crowd's connections fill both event loops and the task pool: a request
/// waits for a round of every other ready connection before it is even read (~30 ms with 1,500
/// connections on two cores), and nothing inside Crest can give it priority before that. Here the
/// crowd is not in the queue: the thread is idle until a probe or a webhook comes, and the kernel
/// runs it at once. The engine work a webhook waits for (its payment's record) loops on a thread
/// of its own too (`GroupCommitter(ownThread:)`); what it still shares is the store's one writer.
struct OperationsListener<Server: Service>: Service {
    let app: Server
    let executor: EventLoopTaskExecutor
    let address: String
    let started: StartedFlag

    func run() async throws {
        // Child tasks inherit the preference: Hummingbird's task per connection runs on the thread.
        try await withTaskExecutorPreference(executor) {
            try await Listener(server: app, address: address, started: started).run()
        }
    }
}
