import CRestoreShim
import Glibc
import RestoreModel

/// The one way rootless-restore runs a helper program (no shell): posix_spawn, so that the
/// caller stays single-threaded and nothing of it runs between fork and exec. Standard input
/// is /dev/null, the output is captured, signal dispositions are the defaults and the mask is
/// empty (the coordinator and `record` block the signals they read). The helper runs in a
/// process group of its own, so that the deadline kills whatever it started too. The wait is
/// on a pidfd next to the output pipes: no polling.
///
/// Used for newuidmap/newgidmap (run, check), to ask a tmux server what it holds (record) and
/// to connect the first client to a restored one (run).
public enum CommandRunner {
    public struct Result: Sendable {
        /// Exit code; nil when it could not start, was killed at the deadline or by a signal.
        public var status: Int32?
        /// The signal that ended it (the deadline's SIGKILL included).
        public var signal: Int32?
        /// Standard output; with `mergeOutput`, standard error too.
        public var output: String
        /// Standard error (empty with `mergeOutput`), or why it could not be started.
        public var error: String
        public var timedOut = false
        /// posix_spawn's (or pipe's) error when it never ran.
        public var startErrno: Int32?

        /// "exit code 1", "signal 9", "killed at the deadline", "not started: ENOENT ...".
        public var how: String {
            if let e = startErrno { return "not started: \(ErrnoName.describe(e))" }
            if timedOut { return "killed at the deadline" }
            if let s = signal { return "signal \(s)" }
            return "exit code \(status ?? -1)"
        }
    }

    /// Runs `argv` (argv[0] is a path) with exactly `environment`, for at most `timeout`
    /// seconds. At most `limit` bytes of each output stream are kept.
    public static func run(_ argv: [String], environment: [String], timeout: Double,
                           mergeOutput: Bool = false, limit: Int = 1 << 20) -> Result {
        func failed(_ what: String, _ e: Int32) -> Result {
            Result(status: nil, signal: nil, output: "", error: "\(what): \(ErrnoName.describe(e))", startErrno: e)
        }
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        var e = rr_pipe_cloexec(&out)
        guard e == 0 else { return failed("pipe", -e) }
        if !mergeOutput {
            e = rr_pipe_cloexec(&err)
            guard e == 0 else {
                close(out[0]); close(out[1])
                return failed("pipe", -e)
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, mergeOutput ? out[1] : err[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, cEnv)
        close(out[1])
        if !mergeOutput { close(err[1]) }
        defer { close(out[0]); if !mergeOutput { close(err[0]) } }
        guard rc == 0 else { return failed("posix_spawn \(argv[0])", rc) }
        let pidfd = rr_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }

        // Read both streams until the helper has exited and its output is drained (what a
        // process it left behind writes later is not waited for), or the deadline.
        var collected: [[UInt8]] = [[], []]
        var open = [true, !mergeOutput]
        var exited = false
        let deadline = MonotonicClock.nanoseconds() + UInt64(max(0, min(timeout, 1e6)) * 1e9)
        var timedOut = false
        var chunk = [UInt8](repeating: 0, count: 4096)
        while open[0] || open[1] || !exited {
            let now = MonotonicClock.nanoseconds()
            if now >= deadline { timedOut = true; break }
            // Without a pidfd (kernels before 5.3), the helper's end is its pipes closing.
            if pidfd < 0 && !open[0] && !open[1] { break }
            var fds = [pollfd(fd: open[0] ? out[0] : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: open[1] ? err[0] : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: exited ? -1 : pidfd, events: Int16(POLLIN), revents: 0)]
            let wait = exited ? 0 : Int32(min(1000, (deadline - now) / 1_000_000 + 1))
            let n = poll(&fds, 3, wait)
            if n < 0 && errno != EINTR { break }
            if fds[2].revents != 0 { exited = true }
            var progressed = false
            for k in 0..<2 where open[k] && fds[k].revents != 0 {
                let got = read(fds[k].fd, &chunk, chunk.count)
                if got <= 0 { open[k] = false } else {
                    progressed = true
                    if collected[k].count < limit { collected[k] += chunk[0..<min(got, limit - collected[k].count)] }
                }
            }
            // Exited and nothing more to read now: the rest belongs to whatever it left.
            if exited && !progressed && n == 0 { break }
        }
        if timedOut { _ = rr_kill(-pid, SIGKILL) }
        var status: Int32 = 0
        _ = SystemCalls.retrying { waitpid(pid, &status, 0) }
        let exitedNormally = rr_wifexited(status) != 0
        return Result(status: !timedOut && exitedNormally ? rr_wexitstatus(status) : nil,
                      signal: exitedNormally ? nil : rr_wtermsig(status),
                      output: String(decoding: collected[0], as: UTF8.self),
                      error: String(decoding: collected[1], as: UTF8.self), timedOut: timedOut)
    }
}
