import CRestoreShim
import Glibc
import RestoreModel

/// Phase 6: the runtime stays outside as the shim. Forwards the signals it receives to the
/// namespace init until the init exits, and returns its status.
enum Shim {
    static func wait(for namespace: LiveNamespace, shellJob: ShellJob? = nil) -> Int32 {
        shellJob?.start()
        defer {
            shellJob?.forwardOutput()
            shellJob?.stop()
        }
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
            if let input = shellJob?.inputFD { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
            let leaderAt = fds.count
            if let leader = shellJob?.leaderFD, leader >= 0 { fds.append(pollfd(fd: leader, events: Int16(POLLIN), revents: 0)) }
            let firstMaster = fds.count
            fds += (namespace.terminals?.masters ?? []).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 1000)
            if leaderAt == 2, fds[1].revents != 0 { shellJob?.forwardInput() }
            if firstMaster > leaderAt, fds[leaderAt].revents != 0 { shellJob?.leaderEnded() }
            // What the shell job's terminal prints goes to the caller; what the others print
            // is discarded.
            for p in fds[firstMaster...] where p.revents != 0 {
                if p.fd == shellJob?.master { shellJob?.forwardOutput() } else { TerminalMasters.drain(p.fd) }
            }
            var info = signalfd_siginfo()
            while read(namespace.signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                let sig = Int32(info.ssi_signo)
                if sig == SIGWINCH, let shellJob { shellJob.copyWindowSize(); continue }
                if sig != SIGCHLD, namespace.initHostPid > 0 { _ = rr_kill(namespace.initHostPid, sig) }
                // As when a terminal closes: its session gets SIGHUP (interactive shells ignore
                // SIGTERM and SIGINT, not a hang-up).
                if sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT {
                    if shellJob != nil { shellJob?.forwardOutput() }
                    namespace.terminals?.closeAll()
                }
            }
        }
    }
}
