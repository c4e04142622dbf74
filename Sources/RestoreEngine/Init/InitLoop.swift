import CRestoreShim
import Glibc
import RestoreModel

/// PID 1 behaviour after the tree is built. The init never execs. A forked init (a single-
/// threaded copy of a single-threaded process) may allocate; one that shares the coordinator's
/// memory (PuppetWorld.sharedInit: never with a fork supervisor) may not, so the path without
/// a supervisor is child-side code: raw calls, no allocation, no errno (ChildSideTests). It
/// keeps the default action for fault signals, so a crash does not start a backtracer in the
/// namespace.
enum InitLoop {
    /// The signals the runtime and its init take over, tini's rule: every signal but the
    /// synchronous fault signals and SIGTTIN/SIGTTOU (SIGCHLD included, for reaping). Made
    /// in C, so that the child side does not iterate a Swift array.
    static func signalSet() -> sigset_t {
        var set = sigset_t()
        rr_forwarded_signals(&set)
        return set
    }

    /// The runtime's own init: forward signals, reap everything, and when nothing is left exit
    /// with the first top-level process's status. Like a container's init, terminating signals
    /// (INT, TERM, HUP, QUIT) go to every process of the namespace, so nothing outlives `run`
    /// by having been orphaned; SIGWINCH goes to the terminal's foreground group when it is in
    /// the namespace; every other signal to the top-level processes.
    static func runtimeInit(_ world: PuppetWorld) -> Never {
        // The caller's descriptors are not the namespace's; a supervising init keeps the
        // supervisor's (ForkSupervisor.closeAllButOwn).
        if let supervisor = world.supervisor { supervisor.closeAllButOwn() } else { rr_close_all_but(-1) }
        var set = world.initSignals
        var old = sigset_t()
        let blocked = rr_block_signals(&set, &old)
        if blocked != 0 {
            // Said without allocating (this init may share the coordinator's memory).
            rr_say_failed(world.strings.initCannotForward, world.strings.sigprocmaskFailed, -blocked)
            _ = rr_kill(-1, SIGKILL)
            _exit(RestoreError.ExitCode.restoreFailed)
        }
        let first: pid_t = world.topLevelCount > 0 ? world.topLevelPids[0] : 0
        var firstStatus: Int32 = 0
        if let supervisor = world.supervisor { supervisingInit(world, supervisor, set: set, first: first) }
        var info = siginfo_t()
        while true {
            // Reap first: children may have ended before we got here.
            reapExited(first: first, firstStatus: &firstStatus)
            let sig = rr_sigwait_timeout(&set, &info, -1)
            if sig > 0 { forward(world, sig) }
        }
    }

    /// Testing aid (`--testing-fault init-allocates`): the released runtime init allocates, which
    /// the allocation guard must catch when it shares the coordinator's memory.
    static func allocateOnPurpose() {
        let text = "rootless-restore testing aid: the runtime's init (pid \(rr_getpid())) allocates after its release\n"
        _ = text.withCString { rr_write(2, $0, strlen($0)) }
    }

    /// The init cannot take over the signals it forwards: without them SIGINT or SIGTERM of `run`
    /// would never reach the tree. Said, and everything in the namespace ends (`run` exits 125).
    static func cannotForward(_ operation: String, _ e: Int32) -> Never {
        SystemCalls.printError("rootless-restore: error: the runtime's init cannot set up signal forwarding: \(operation): \(ErrnoName.describe(e)); the namespace is torn down")
        _ = rr_kill(-1, SIGKILL)
        _exit(RestoreError.ExitCode.restoreFailed)
    }

    /// Reaps every exited child; when none is left, the namespace is empty: exit with the
    /// first top-level process's status.
    /// A supervising init is the tracer of forkers (InterruptedForkRestart), whose stops wait4
    /// reports too: `supervisor` serves those.
    static func reapExited(first: pid_t, firstStatus: inout Int32, supervisor: ForkSupervisor? = nil, atEnd: () -> Void = {}) {
        while true {
            var status: Int32 = 0
            // Raw (no errno): holders share this address space, and so its errno.
            let r = rr_wait4(-1, &status, WNOHANG)
            if r > 0 {
                if let supervisor, supervisor.waited(pid_t(r), status: status) { continue }
                if r == first { firstStatus = exitCode(status) }
                continue
            }
            if r == -Int(ECHILD) {
                atEnd()
                _exit(firstStatus)
            }
            return
        }
    }

    /// Terminating signals to the whole namespace, then SIGCONT, so that stopped processes
    /// end too (a signal stays pending on a stopped process); SIGWINCH to the foreground
    /// group; the rest to the top-level processes.
    static func forward(_ world: PuppetWorld, _ sig: Int32) {
        switch sig {
        case SIGCHLD:
            return
        case SIGINT, SIGTERM, SIGHUP, SIGQUIT:
            _ = rr_kill(-1, sig)
            _ = rr_kill(-1, SIGCONT)
        case SIGWINCH where rr_tcgetpgrp(0) > 0:
            _ = rr_kill(-rr_tcgetpgrp(0), sig)
        default:
            for i in 0..<world.topLevelCount { _ = rr_kill(world.topLevelPids[i], sig) }
        }
    }

    /// The runtime's init when payloads' forks are supervised: one poll loop over signals, the
    /// supervisor socket (new listeners) and every listener.
    static func supervisingInit(_ world: PuppetWorld, _ supervisor: ForkSupervisor, set: sigset_t, first: pid_t) -> Never {
        // One listener per exec'ing process: take every descriptor the hard limit allows.
        var files = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0, files.rlim_cur < files.rlim_max {
            files.rlim_cur = files.rlim_max
            _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)
        }
        if world.fault == .initFileLimit {
            // Testing aid: no descriptor left below the limit, so signalfd really fails (EMFILE).
            var none = rlimit(rlim_cur: 3, rlim_max: 3)
            _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &none)
        }
        var mask = set
        let sfd = signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        // Without it no signal would reach the tree (they stay blocked) and `run` could not be
        // stopped but by SIGKILL: end the restore, loudly.
        if sfd < 0 { cannotForward("signalfd", Glibc.errno) }
        supervisor.startReceiver()
        var firstStatus: Int32 = 0
        while true {
            reapExited(first: first, firstStatus: &firstStatus, supervisor: supervisor) {
                // The namespace is empty: what the supervisor still watches or is owed is said now.
                supervisor.treeEnded()
            }
            let signals = supervisor.turn(extra: [pollfd(fd: sfd, events: Int16(POLLIN), revents: 0)])
            if signals[0].revents != 0 {
                var info = signalfd_siginfo()
                while read(sfd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                    forward(world, Int32(info.ssi_signo))
                }
            }
        }
    }

    /// A recorded PID 1 that holds: it reaps what it adopts and ends on a signal whose
    /// default action terminates (the ignored and stopping ones leave a PID 1 alone). Child
    /// side: no allocation.
    static func holdingInit(_ world: PuppetWorld) -> Never {
        var set = world.initSignals
        var old = sigset_t()
        _ = rr_block_signals(&set, &old)
        var info = siginfo_t()
        while true {
            let sig = rr_sigwait_timeout(&set, &info, -1)
            switch sig {
            case SIGCHLD:
                var status: Int32 = 0
                while rr_wait4(-1, &status, WNOHANG) > 0 {}
            case SIGCONT, SIGURG, SIGWINCH, SIGTSTP, SIGTTIN, SIGTTOU:
                continue
            default:
                if sig > 0 { _exit(128 + sig) }
            }
        }
    }

    static func exitCode(_ status: Int32) -> Int32 {
        if rr_wifexited(status) != 0 { return rr_wexitstatus(status) }
        if rr_wifsignaled(status) != 0 { return 128 + rr_wtermsig(status) }
        return 1
    }
}
