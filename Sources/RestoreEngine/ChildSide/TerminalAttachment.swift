import CRestoreShim
import Glibc

/// A node's recorded terminals, as indices into `PuppetWorld.terminalPaths` (-1: none).
struct PreparedTerminals {
    /// Session leader: takes this pty as controlling terminal right after its setsid, before
    /// it forks anyone of its session, so that they inherit it (the kernel gives a controlling
    /// terminal only to a session leader, and copies it to children at fork).
    var controlling: Int32 = -1
    /// Descriptors 0, 1, 2: the pty slave to put there before exec.
    var stdio: (Int32, Int32, Int32) = (-1, -1, -1)
    /// A member of a terminal's session that had no controlling terminal (TIOCNOTTY): drops
    /// the one it inherited, before exec.
    var dropInherited: Int32 = -1
    /// A session leader whose terminal's foreground group is a job of its own children (a
    /// shell waiting for its foreground pipeline): before exec it waits for that job, as the
    /// shell did, then takes the terminal back and execs. 0: none.
    var awaitForeground: pid_t = 0

    var attachesStdio: Bool { stdio.0 >= 0 || stdio.1 >= 0 || stdio.2 >= 0 || dropInherited >= 0 }
}

/// The child side of terminals: the only place a puppet touches a pty. System calls on
/// prepared paths only (no allocation). The coordinator made the ptys beforehand
/// (TerminalMasters), in the namespace's own devpts instance that the init mounted.
enum TerminalAttachment {
    /// After setsid: TIOCSCTTY on the pty slave. Returns errno, or 0.
    static func takeControlling(_ world: PuppetWorld, _ me: Int) -> Int32 {
        let k = world.nodes[me].terminals.controlling
        guard k >= 0, let path = world.terminalPaths?[Int(k)] else { return 0 }
        let fd = rr_open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        if fd < 0 { return -fd }
        let r = rr_tty_set_controlling(fd)
        _ = rr_close(fd)
        return r < 0 ? -r : 0
    }

    /// Session leader, once every group exists: make group `pgrp` (as this process's
    /// namespace numbers it) the foreground group of terminal `k`. Returns errno, or 0.
    static func setForeground(_ world: PuppetWorld, terminal k: Int32, pgrp: pid_t) -> Int32 {
        guard k >= 0, k < world.terminalCount, let path = world.terminalPaths?[Int(k)] else { return EINVAL }
        let fd = rr_open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        if fd < 0 { return -fd }
        let r = rr_tty_set_foreground(fd, pgrp)
        _ = rr_close(fd)
        return r < 0 ? -r : 0
    }

    /// Right before exec, with the answer socket already closed: wait until no child of the
    /// foreground group is left running (exited ones reaped, as the shell would have; a
    /// stopped one ends the wait, as ^Z gives a shell its terminal back), then make the own
    /// group the foreground group again (SIGTTOU blocked meanwhile, as shells do), so the
    /// freshly started shell finds itself in the foreground.
    static func awaitForegroundJob(_ world: PuppetWorld, _ me: Int) {
        let t = world.nodes[me].terminals
        guard t.awaitForeground > 0, t.controlling >= 0, let path = world.terminalPaths?[Int(t.controlling)] else { return }
        var status: Int32 = 0
        while true {
            let r = rr_wait4(-t.awaitForeground, &status, WUNTRACED)
            if r > 0 { if rr_wifstopped(status) != 0 { break } else { continue } }
            break
        }
        var ttou = sigset_t(), old = sigset_t()
        sigemptyset(&ttou)
        sigaddset(&ttou, SIGTTOU)
        _ = rr_block_signals(&ttou, &old)
        let fd = rr_open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        if fd >= 0 {
            _ = rr_tty_set_foreground(fd, getpgrp())
            _ = rr_close(fd)
        }
        _ = rr_set_signal_mask(&old)
    }

    /// Before exec (or holding): the pty slaves onto 0, 1, 2 as recorded, and an inherited
    /// controlling terminal dropped where the recording had none. Returns errno, or 0.
    static func attachStdio(_ world: PuppetWorld, _ me: Int) -> Int32 {
        let t = world.nodes[me].terminals
        guard t.attachesStdio, let paths = world.terminalPaths else { return 0 }
        if t.dropInherited >= 0, let path = paths[Int(t.dropInherited)] {
            let fd = rr_open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
            if fd < 0 { return -fd }
            let r = rr_tty_drop_controlling(fd)
            close(fd)
            if r < 0 && r != -ENOTTY { return -r }
        }
        // In order 0, 1, 2 (no array: nothing allocates here).
        var e = place(paths, t.stdio.0, on: 0)
        if e == 0 { e = place(paths, t.stdio.1, on: 1) }
        if e == 0 { e = place(paths, t.stdio.2, on: 2) }
        return e
    }

    private static func place(_ paths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, _ k: Int32, on target: Int32) -> Int32 {
        guard k >= 0, let path = paths[Int(k)] else { return 0 }
        let fd = rr_open(path, O_RDWR | O_NOCTTY)
        if fd < 0 { return -fd }
        if fd != target {
            let r = rr_dup_onto(fd, target)
            _ = rr_close(fd)
            if r < 0 { return -r }
        }
        return 0
    }
}
