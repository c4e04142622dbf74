import CRestoreShim
import Glibc

/// The puppet side of the fork supervisor: child-side code (system calls on prepared buffers).
extension ForkSupervisor {
    /// In an exec'ing puppet, before its identity changes (installing needs CAP_SYS_ADMIN in
    /// the namespace): install the notify filter and hand the listener to the init.
    func installAndHandOver(node: Int) -> (PuppetStage, Int32)? {
        let fd = rr_seccomp_install_listener(instructions, instructionCount)
        if fd < 0 { return (.seccompNotify, -fd) }
        let r = rr_send_fd(sendFD, Int32(node), fd)
        close(fd)
        return r < 0 ? (.seccompNotify, -r) : nil
    }
}
