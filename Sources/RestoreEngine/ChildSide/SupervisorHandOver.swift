import CRestoreShim
import Glibc

/// The puppet side of the fork supervisor: child-side code (system calls on prepared buffers).
extension ForkSupervisor {
    /// How long a puppet keeps trying while the kernel refuses the hand-over with ETOOMANYREFS.
    static let handOverPatienceNs = 5_000_000_000
    static let handOverFirstPauseNs = 100_000
    static let handOverMaxPauseNs = 10_000_000

    /// In an exec'ing puppet, before its identity changes (installing needs CAP_SYS_ADMIN in
    /// the namespace): install the notify filter and hand the listener to the init.
    func installAndHandOver(node: Int) -> (PuppetStage, Int32)? {
        // A fork waiting for the supervisor sleeps interruptibly: a signal then (a child's
        // SIGCHLD) fails it with EINTR under a handler without SA_RESTART, which no program
        // expects of fork (dash says "Cannot fork"). Once the supervisor has read the
        // notification, WAIT_KILLABLE_RECV makes the wait killable only; kernels before 5.19
        // do not know the flag and get the interruptible wait (probed once: listenerFlags).
        let fd = rr_seccomp_install_listener(instructions, instructionCount, listenerFlags)
        if fd < 0 { return (.seccompNotify, -fd) }
        // The kernel refuses SCM_RIGHTS with ETOOMANYREFS while the sending user has more
        // descriptors in flight (sent, not yet received, by any of its processes) than the
        // sender's RLIMIT_NOFILE. Puppets run ahead of the init's poll loop, so a burst of
        // hand-overs under a low limit hits it although the init drains them: each receive
        // lowers the count, so waiting briefly and sending again is correct; the bound keeps
        // an init that no longer receives from hanging the puppet.
        var r = rr_send_fd(sendFD, Int32(node), fd)
        var waited = 0
        var pause = Self.handOverFirstPauseNs
        while r == -ETOOMANYREFS && waited < Self.handOverPatienceNs {
            _ = rr_sleep_ns(pause)
            waited += pause
            pause = min(pause * 2, Self.handOverMaxPauseNs)
            r = rr_send_fd(sendFD, Int32(node), fd)
        }
        _ = rr_close(fd)
        return r < 0 ? (.listenerHandOver, -r) : nil
    }
}
