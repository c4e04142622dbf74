import CRestoreShim
import Glibc
import RestoreModel

/// Which node does what with which of the tree's terminals. Terminal k becomes pty k of the
/// namespace's fresh devpts instance (a new instance numbers its ptys from 0, in the order
/// they are opened), so every path is known before any process exists.
struct TerminalPlan {
    let tree: ProcessTree
    let index: [String: Int32]
    /// Terminal k -> (the node of its session leader, the foreground group as that leader's
    /// namespace numbers it), for the leaders the runtime creates.
    var foreground: [(terminal: Int32, leader: Int, pgrp: pid_t)] = []
    /// Terminal k -> the node of its session leader, for the leaders the runtime creates.
    var leaders: [Int: Int] = [:]
    /// Leader node -> the foreground group (its namespace's number) it waits for before it
    /// execs: a shell that was waiting for its foreground job (TerminalAttachment).
    var awaitsJob: [Int: pid_t] = [:]

    static func slavePath(_ k: Int) -> String { "/dev/pts/\(k)" }

    init(tree: ProcessTree, plan: RestorePlan) throws {
        self.tree = tree
        var index: [String: Int32] = [:]
        for (k, t) in tree.terminals.enumerated() { index[t.id] = Int32(k) }
        self.index = index
        for (k, t) in tree.terminals.enumerated() {
            guard let sid = t.session,
                  let leader = plan.nodes.firstIndex(where: { $0.entryIndex.map { tree.processes[$0].pid == sid } ?? false }) else { continue }
            // The controlling terminal is taken in the leader's setsid step.
            guard plan.steps.contains(where: { if case .setsid(leader) = $0 { return true } else { return false } }) else {
                throw RestoreError(.invalidTree, operation: "plan", entry: plan.nodes[leader].label(in: tree),
                                   message: "leads the session of \(t.label(k)) but the plan gives it no setsid of its own, so it cannot take the terminal as its controlling terminal")
            }
            leaders[k] = leader
            guard let fg = t.foreground else { continue }
            guard let group = plan.nodes.firstIndex(where: { $0.pid == fg }) else {
                throw RestoreError(.invalidTree, operation: "plan", entry: t.label(k),
                                   message: "its foreground group \(fg) has no leader PID in the plan")
            }
            let level = plan.nodes[leader].depth - 1
            guard plan.nodes[group].depth > level else { continue }
            let local = plan.nodes[group].nspid[level]
            foreground.append((Int32(k), leader, local))
            let entry = tree.processes[plan.nodes[leader].entryIndex!]
            if fg != entry.pgid, !(entry.process?.args ?? []).isEmpty,
               tree.processes.contains(where: { $0.pgid == fg && $0.ppid == entry.pid && $0.state != .zombie }) {
                awaitsJob[leader] = local
            }
        }
    }

    func prepared(for entry: ProcessEntry, node: Int) -> PreparedTerminals {
        var p = PreparedTerminals()
        guard !tree.terminals.isEmpty else { return p }
        p.awaitForeground = awaitsJob[node] ?? 0
        if let id = entry.terminal, let k = index[id], entry.pid == entry.sid, tree.terminals[Int(k)].session == entry.pid {
            p.controlling = k
        }
        func slot(_ fd: Int) -> Int32 { fd < entry.stdio.count ? entry.stdio[fd].flatMap { index[$0] } ?? -1 : -1 }
        p.stdio = (slot(0), slot(1), slot(2))
        if entry.terminal == nil, entry.pid != entry.sid,
           let k = tree.terminals.firstIndex(where: { $0.session == entry.sid }) {
            p.dropInherited = Int32(k)
        }
        return p
    }
}

/// The runtime's side of the restore's ptys: a master per recorded terminal, opened from
/// outside through the init's root (`/proc/INIT/root/dev/pts/ptmx`) once the init has mounted
/// the namespace's devpts, and one slave descriptor each, held so that a master never reads
/// as hung up while no restored process has the slave open. Without --shell-job the masters
/// are drained: output is read and discarded (a writer never blocks on a full pty), and
/// nothing is ever written, so a read from the terminal blocks, as on a quiet terminal.
final class TerminalMasters {
    private(set) var masters: [Int32] = []
    private var slaves: [Int32] = []

    init(tree: ProcessTree, initHostPid: pid_t) throws {
        let root = "/proc/\(initHostPid)/root"
        do {
            for (k, t) in tree.terminals.enumerated() {
                let m = open(root + "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK)
                guard m >= 0 else {
                    throw RestoreError(.restoreFailed, operation: "open /dev/pts/ptmx", errno: SystemCalls.currentErrno, entry: t.label(k),
                                       message: "cannot create its pty in the namespace's devpts instance")
                }
                masters.append(m)
                let n = rr_pty_unlock(m)
                guard n == k else {
                    throw RestoreError(.restoreFailed, operation: "ioctl(TIOCGPTN)", errno: n < 0 ? -n : nil, entry: t.label(k),
                                       message: n < 0 ? "cannot unlock its pty" : "got pty \(n) instead of \(k) of the namespace's own devpts instance")
                }
                if let rows = t.rows, let cols = t.columns { _ = rr_tty_set_winsize(m, rows, cols) }
                let s = open(root + TerminalPlan.slavePath(k), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK)
                guard s >= 0 else {
                    throw RestoreError(.restoreFailed, operation: "open \(TerminalPlan.slavePath(k))", errno: SystemCalls.currentErrno, entry: t.label(k),
                                       message: "cannot open its pty's slave")
                }
                slaves.append(s)
                if let modes = t.modes {
                    // The recorded termios (stty -echo survives); what cannot be set is left
                    // as the new pty has it.
                    var tio = termios()
                    if tcgetattr(s, &tio) == 0 {
                        tio.c_iflag = modes.iflag
                        tio.c_oflag = modes.oflag
                        tio.c_cflag = modes.cflag
                        tio.c_lflag = modes.lflag
                        withUnsafeMutableBytes(of: &tio.c_cc) { cc in for (i, v) in modes.cc.prefix(cc.count).enumerated() { cc[i] = v } }
                        if tcsetattr(s, TCSANOW, &tio) != 0 {
                            throw RestoreError(.restoreFailed, operation: "tcsetattr", errno: SystemCalls.currentErrno, entry: t.label(k),
                                               message: "cannot set its recorded modes on its pty")
                        }
                    }
                }
            }
        } catch {
            closeAll()
            throw error
        }
    }

    /// Reads and discards what is waiting on master `fd`.
    static func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while read(fd, &buffer, buffer.count) > 0 {}
    }

    func closeAll() {
        for fd in masters + slaves { close(fd) }
        masters = []
        slaves = []
    }

    deinit { closeAll() }
}
