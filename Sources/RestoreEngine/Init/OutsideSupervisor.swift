import CRestoreShim
import Glibc
import RestoreModel

/// The fork supervisor when the tree has its own PID 1 (a container whose PID 1 is `mpirun`).
///
/// The runtime's init normally serves the payloads' fork notifications; a tree's own PID 1 runs
/// its payload instead. So the supervisor runs as a process of its own, inside the namespace
/// but nobody's child there: a keeper forked by the coordinator (outside) joins the namespace's
/// user, PID and mount namespaces with setns() (as the namespace's owner it holds every
/// capability there) and forks the server, which is thus in the PID namespace (it may write its
/// ns_last_pid and sees its /proc) with its parent outside: the tree's PID 1 never sees it as a
/// child, and `ps` inside shows it with PPid 0, at a PID above every PID of the tree. It dies
/// with the namespace. On `--pin-mismatch error` the server exits 125 at once (kill(-1) from
/// inside could not reach the tree's PID 1); the keeper then kills the tree's PID 1 from
/// outside, which ends the namespace, and exits 125, which `run` returns.
enum OutsideSupervisor {
    /// Starts the keeper; returns its host PID.
    static func start(_ supervisor: ForkSupervisor, initHostPid: pid_t, abovePid: Int32) throws -> pid_t {
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for kind in ["user", "pid", "mnt"] {
            let fd = open("/proc/\(initHostPid)/ns/\(kind)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw RestoreError(.restoreFailed, operation: "open /proc/\(initHostPid)/ns/\(kind)", errno: SystemCalls.currentErrno,
                                   message: "cannot reach the namespace for the fork supervisor")
            }
            fds.append(fd)
        }
        let keeper = fork()
        if keeper < 0 {
            throw RestoreError(.restoreFailed, operation: "fork", errno: SystemCalls.currentErrno, message: "cannot start the fork supervisor")
        }
        if keeper > 0 { return keeper }
        // The keeper (outside; dies with the coordinator).
        _ = rr_prctl_set_pdeathsig(SIGKILL)
        // A keeper that cannot start the server says why and ends the restore: without it the
        // payloads' forks would fail (their listeners unserved).
        func giveUp(_ what: String, _ e: Int32) -> Never {
            SystemCalls.printError("rootless-restore: error: the fork supervisor beside the tree's PID 1 cannot start: \(what) (\(ErrnoName.describe(e)))")
            _ = rr_kill(initHostPid, SIGKILL)
            _exit(RestoreError.ExitCode.restoreFailed)
        }
        for (fd, kind) in zip(fds, ["user", "pid", "mnt"]) {
            let r = rr_setns(fd, 0)
            if r != 0 { giveUp("setns into the namespace's \(kind) namespace", -r) }
        }
        var tid = [Int32(abovePid + 1)]
        var server = rr_clone3(0, SIGCHLD, &tid, 1)
        if server == -Int(ENOSYS) {
            // No clone3 (an older kernel, or a profile that hides it): the ns_last_pid dance.
            // ns_last_pid is that of the writer's own PID namespace, which setns() does not
            // change for the keeper: a short-lived child (in the namespace) writes it. Nothing
            // else forks there now (no payload is released yet).
            let setter = rr_fork_flags(0, SIGCHLD)
            if setter == 0 { _exit(SystemCalls.writeFile("/proc/sys/kernel/ns_last_pid", "\(abovePid)") == 0 ? 0 : 1) }
            var status: Int32 = 0
            if setter > 0 { _ = SystemCalls.retrying { waitpid(pid_t(setter), &status, 0) } }
            server = rr_fork_flags(0, SIGCHLD)
        } else if server == -Int(EEXIST) || server == -Int(EINVAL) {
            server = rr_clone3(0, SIGCHLD, nil, 0)
        }
        if server < 0 { giveUp("fork in the namespace", Int32(-server)) }
        if server == 0 {
            _ = rr_prctl_set_pdeathsig(SIGKILL)
            // Inside the namespace: nothing of the caller's or the coordinator's.
            supervisor.closeAllButOwn()
            supervisor.besideTreeInit = true
            serve(supervisor)
        }
        rr_close_all_but(-1)
        var status: Int32 = 0
        _ = SystemCalls.retrying { waitpid(pid_t(server), &status, 0) }
        let code = InitLoop.exitCode(status)
        if code == RestoreError.ExitCode.restoreFailed { _ = rr_kill(initHostPid, SIGKILL) }
        _exit(code)
    }

    /// The server's loop: new listeners, notifications, and the checks of pinned forks.
    static func serve(_ supervisor: ForkSupervisor) -> Never {
        // The stops and exits of the forkers it traces come as SIGCHLD: read from a signalfd.
        // Without one they would go unserved, so nothing is traced then.
        var chld = sigset_t()
        sigemptyset(&chld)
        sigaddset(&chld, SIGCHLD)
        var old = sigset_t()
        let sfd = sigprocmask(SIG_BLOCK, &chld, &old) == 0 ? signalfd(-1, &chld, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) : -1
        if sfd < 0 { supervisor.restartsInterruptedForks = false }
        supervisor.startReceiver()
        let extra = sfd >= 0 ? [pollfd(fd: sfd, events: Int16(POLLIN), revents: 0)] : []
        while true {
            let ready = supervisor.turn(extra: extra)
            if let p = ready.first, p.revents != 0 {
                var info = signalfd_siginfo()
                while read(sfd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {}
            }
            supervisor.reapTracees()
        }
    }
}
