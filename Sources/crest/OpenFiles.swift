#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process's limit on open files, raised at start from its soft value to its hard one (as Go's
/// runtime and nginx's `worker_rlimit_nofile` do). Many systems start a process with a soft limit
/// of 1,024: a crowd of 1,500 connections, or `crest demo`'s checkouts each waiting on a
/// connection of its own (both ends in the one process), would fail to accept or open sockets
/// past it with `EMFILE`.
enum OpenFiles {
    static func raiseSoftLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
