import CRestoreShim
import Glibc
import RestoreModel

/// `run --shell-job`: the restored terminal of the tree's foreground session is connected to
/// the caller's terminal, as `script` or a terminal emulator would be: what the caller types
/// goes to the pty master, what the restored processes print comes back, the caller's
/// terminal is in raw mode meanwhile (so ^C, ^Z and ^\ reach the restored terminal's line
/// discipline and its foreground group, not `run`), and a SIGWINCH of the caller's becomes
/// the pty's window size (the kernel then sends SIGWINCH to the restored foreground group).
public final class ShellJob {
    /// Which terminal: the one whose session the tree's first process is in, else the only one
    /// that has a session. Throws (before anything exists) when there is none or no clear one.
    public static func terminal(of tree: ProcessTree) throws -> Int {
        let led = tree.terminals.indices.filter { tree.terminals[$0].session != nil }
        if let first = tree.processes.first, let k = led.first(where: { tree.terminals[$0].session == first.sid }) { return k }
        if led.count == 1 { return led[0] }
        if tree.terminals.isEmpty {
            throw RestoreError(.invalidTree, operation: "--shell-job", entry: nil,
                               message: "the tree has no terminal to connect (no \"terminals\"): record a process that has a controlling terminal, or run without --shell-job")
        }
        let names = led.isEmpty ? tree.terminals.indices.map { tree.terminals[$0].label($0) } : led.map { tree.terminals[$0].label($0) }
        throw RestoreError(.invalidTree, operation: "--shell-job", entry: nil,
                           message: led.isEmpty
                               ? "no terminal of the tree is a session's controlling terminal (\(names.joined(separator: ", "))), so there is no shell job to connect"
                               : "the tree's first process is in none of the sessions with a terminal, and there are several (\(names.joined(separator: ", "))): record the session you want to connect")
    }

    let master: Int32
    /// A pidfd of the terminal's session leader: when it ends (the shell exits), the caller
    /// gets the terminal back, while run waits for what is left in the namespace.
    private(set) var leaderFD: Int32 = -1
    private let leaderPid: pid_t
    private var saved = termios()
    private var raw = false
    private var inputOpen = true

    init(master: Int32, leader: pid_t) {
        self.master = master
        leaderPid = leader
        if leader > 0 {
            let fd = rr_pidfd_open(leader)
            if fd >= 0 { leaderFD = fd }
        }
    }

    /// The session leader ended: show what is left of its output, give the terminal back.
    func leaderEnded() {
        forwardOutput()
        stop()
        inputOpen = false
        close(leaderFD)
        leaderFD = -1
        let note = "rootless-restore: the shell job's session leader (host pid \(leaderPid)) ended; run waits for the rest of the namespace (Ctrl-C ends it)\n"
        _ = note.withCString { write(2, $0, strlen($0)) }
    }

    /// Raw mode on the caller's terminal and its window size on the pty.
    func start() {
        copyWindowSize()
        guard tcgetattr(0, &saved) == 0 else { return }
        var t = saved
        cfmakeraw(&t)
        if tcsetattr(0, TCSADRAIN, &t) == 0 { raw = true }
    }

    /// Puts the caller's terminal back as it was; every way out of `Shim.wait` calls it.
    func stop() {
        if raw { _ = tcsetattr(0, TCSADRAIN, &saved); raw = false }
    }

    deinit {
        stop()
        if leaderFD >= 0 { close(leaderFD) }
    }

    func copyWindowSize() {
        var rows: UInt16 = 0, cols: UInt16 = 0
        if rr_tty_get_winsize(0, &rows, &cols) == 0 { _ = rr_tty_set_winsize(master, rows, cols) }
    }

    /// Descriptors to poll besides the signalfd and the masters: the caller's input.
    var inputFD: Int32? { inputOpen ? 0 : nil }

    /// The caller typed something: pass it on (nothing is lost: waits while the pty is full).
    func forwardInput() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(0, &buffer, buffer.count)
        if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { inputOpen = false; return }
        if n > 0 { writeAll(master, buffer, n) }
    }

    /// The restored terminal printed something: show it.
    func forwardOutput() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { return }
            writeAll(1, buffer, n)
        }
    }

    private func writeAll(_ fd: Int32, _ buffer: [UInt8], _ count: Int) {
        var done = 0
        var stalls = 0
        while done < count {
            let (n, e) = SystemCalls.retrying { buffer.withUnsafeBytes { write(fd, $0.baseAddress! + done, count - done) } }
            if n > 0 { done += n; stalls = 0; continue }
            guard n < 0 && e == EAGAIN, stalls < 100 else { return }
            // A full pty: wait (bounded) for room, while its output is still taken off.
            stalls += 1
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, 50)
            if fd == master { forwardOutput() }
        }
    }
}
