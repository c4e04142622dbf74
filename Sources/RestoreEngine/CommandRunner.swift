import CRestoreShim
import Glibc
import RestoreModel

/// Runs a helper program (no shell) with a deadline: standard input /dev/null, its output
/// captured, default signal dispositions and an empty signal mask (record blocks the
/// terminating signals while it reads). Killed with SIGKILL at the deadline. Used to ask a
/// tmux server what it holds (record) and to connect the first client to a restored one (run).
enum CommandRunner {
    struct Result {
        /// Exit code; nil when it was killed at the deadline or by a signal.
        var status: Int32?
        var output: String
        var error: String
        var timedOut = false
    }

    static func run(_ argv: [String], environment: [String], timeout: Double, limit: Int = 1 << 20) -> Result {
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        func cloexecPipe(_ fds: inout [Int32]) -> Bool {
            guard pipe(&fds) == 0 else { return false }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return true
        }
        guard cloexecPipe(&out) else { return Result(status: nil, output: "", error: "pipe: \(ErrnoName.describe(errno))") }
        guard cloexecPipe(&err) else {
            close(out[0]); close(out[1])
            return Result(status: nil, output: "", error: "pipe: \(ErrnoName.describe(errno))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, cEnv)
        close(out[1]); close(err[1])
        defer { close(out[0]); close(err[0]) }
        guard rc == 0 else { return Result(status: nil, output: "", error: "posix_spawn \(argv[0]): \(ErrnoName.describe(rc))") }

        var collected: [[UInt8]] = [[], []]
        var open = [true, true]
        let deadline = MonotonicClock.nanoseconds() + UInt64(max(0, timeout) * 1e9)
        var timedOut = false
        while open[0] || open[1] {
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { timedOut = true; break }
            var fds = [pollfd(fd: open[0] ? out[0] : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: open[1] ? err[0] : -1, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if n < 0 && errno != EINTR { break }
            for k in 0..<2 where open[k] && fds[k].revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let got = read(fds[k].fd, &chunk, chunk.count)
                if got <= 0 { open[k] = false } else if collected[k].count < limit { collected[k] += chunk[0..<got] }
            }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        _ = SystemCalls.retrying { waitpid(pid, &status, 0) }
        let code: Int32? = !timedOut && rr_wifexited(status) != 0 ? rr_wexitstatus(status) : nil
        return Result(status: code, output: String(decoding: collected[0], as: UTF8.self),
                      error: String(decoding: collected[1], as: UTF8.self), timedOut: timedOut)
    }
}
