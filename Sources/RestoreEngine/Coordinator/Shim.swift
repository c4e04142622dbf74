import CRestoreShim
import Glibc
import RestoreModel

/// Phase 6: the runtime stays outside as the shim. Forwards the signals it receives to the
/// namespace init until the init exits, and returns its status.
enum Shim {
    static func wait(for namespace: LiveNamespace) -> Int32 {
        while true {
            namespace.reapKeeper()
            if let status = namespace.reapIfExited() {
                // The fork supervisor of a tree's own PID 1 may have ended the restore (pin
                // mismatch); it dies with the namespace, so its keeper ends now too.
                namespace.reapKeeper(block: true)
                if namespace.supervisorExit == RestoreError.ExitCode.restoreFailed { return RestoreError.ExitCode.restoreFailed }
                return InitLoop.exitCode(status)
            }
            var fds = [pollfd(fd: namespace.signalFD, events: Int16(POLLIN), revents: 0)]
            fds += (namespace.terminals?.masters ?? []).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 1000)
            // Without a caller's terminal, what the restored terminals print is discarded.
            for p in fds.dropFirst() where p.revents != 0 { TerminalMasters.drain(p.fd) }
            var info = signalfd_siginfo()
            while read(namespace.signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                let sig = Int32(info.ssi_signo)
                if sig != SIGCHLD, namespace.initHostPid > 0 { _ = rr_kill(namespace.initHostPid, sig) }
            }
        }
    }
}
