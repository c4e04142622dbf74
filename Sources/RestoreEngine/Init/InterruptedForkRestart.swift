import CRestoreShim
import Glibc

/// Forks that a signal interrupts before the supervisor has received them restart, as a real
/// fork does, instead of failing with EINTR.
///
/// Until a notification is received the kernel waits for it interruptibly, and a signal then
/// fails the fork with -ERESTARTSYS, which a handler without SA_RESTART turns into EINTR: dash
/// says "Cannot fork" and exits (a `cmd &` loop of 300 jobs failed in 10 of 10 runs). A real
/// fork returns -ERESTARTNOINTR there, restarted after the handler whatever its flags. With the
/// forker ptraced, the signal first causes a signal-delivery-stop, before the kernel chooses
/// between the two: the supervisor (the tracer) rewrites the pending -ERESTARTSYS of a
/// clone-family call into -ERESTARTNOINTR and passes the signal on.
///
/// What is traced, and for how long: a thread-group leader, from when its listener arrives (an
/// exec'ing process restored running) or from its first received fork (then it waits killably,
/// so the seize itself is safe), until it stops or exits. At a group stop it
/// is detached, so a stopped process reads `T (stopped)` as recorded, not `t`; it is seized
/// again at its next fork. A process that never forks is never traced. While traced, its
/// TracerPid is the supervisor's and a debugger cannot attach; `--interrupted-forks fail`
/// turns all of this off.
extension ForkSupervisor {
    /// Seizes `forker` (no stop, no options: its children are not traced).
    func trace(_ forker: Int32) {
        guard restartsInterruptedForks, !traced.contains(forker) else { return }
        // Refused when traced by someone else (gdb, strace) or gone: left alone, asked again at
        // its next fork (one system call; a set of refusals would go stale as PIDs are reused).
        if rr_ptrace(RR_PTRACE_SEIZE, forker, 0, 0, nil) == 0 { traced.insert(forker) }
    }

    /// A wait status of `pid` that a reaper got (wait4 reports a tracee's stops too): a stop of
    /// a traced process is served here (true); an exit ends its tracing (false: the caller
    /// goes on with it).
    func waited(_ pid: Int32, status: Int32) -> Bool {
        guard traced.contains(pid) else { return false }
        guard rr_wifstopped(status) != 0 else {
            traced.remove(pid)
            return false
        }
        if rr_ptrace_event(status) != 0 {
            groupStopped(pid)
        } else {
            signalStopped(pid, signal: (status >> 8) & 0xff)
        }
        return true
    }

    /// Serves every stop of a traced process that is waiting, without reaping anything: for
    /// where the supervisor waits inside a turn (settleInFlight); between turns the reaper's
    /// wait4 reports the stops (`waited`).
    func serviceTraceStops() {
        guard !traced.isEmpty else { return }
        while true {
            let pid = Int32(truncatingIfNeeded: rr_wait_any_stopped())
            if pid <= 0 { return }
            guard traced.contains(pid) else { continue }
            let delivered = rr_ptrace_stop_signal(pid)
            if delivered > 0 {
                signalStopped(pid, signal: delivered)
            } else if delivered == -EINVAL {
                groupStopped(pid)
            } else {
                traced.remove(pid)
            }
        }
    }

    /// The server beside a tree's PID 1 is the parent of none of its tracees: it reaps their
    /// exits itself (the real parent hears of an exit only once the tracer has waited for it).
    func reapTracees() {
        guard !traced.isEmpty else { return }
        while true {
            var status: Int32 = 0
            let pid = rr_wait4(-1, &status, WNOHANG)
            if pid <= 0 { return }
            _ = waited(pid_t(pid), status: status)
        }
    }

    /// A signal is about to be delivered: an interrupted fork is made to restart, the signal
    /// passed on.
    private func signalStopped(_ pid: Int32, signal: Int32) {
        _ = rr_restart_interrupted_fork(pid)
        if rr_ptrace(RR_PTRACE_CONT, pid, 0, UInt64(signal), nil) != 0 { traced.remove(pid) }
    }

    /// A group stop (SIGSTOP, SIGTSTP, ...): detached, so that it is an ordinary stop in /proc
    /// and to its parent; seized again at its next fork.
    private func groupStopped(_ pid: Int32) {
        _ = rr_ptrace(RR_PTRACE_DETACH, pid, 0, 0, nil)
        traced.remove(pid)
    }
}
