/// Verification of a built tree, before any payload runs: pure, so it is unit-tested without a
/// kernel. The engine reads /proc once (one `ProcStatus` per node) and passes the snapshots
/// here; the same pass gives the report.
public enum RestoreVerification {
    /// What the engine observed of one restore.
    public struct Observation: Sendable {
        /// Host PID (as the runtime's /proc names it) of every plan node; 0: never created or
        /// already gone by design (helpers).
        public var hostPids: [Int32]
        /// /proc/PID/status of each node with a host PID; nil: it vanished.
        public var statuses: [ProcStatus?]
        /// The runtime's own PID as its /proc names it: the parent of the namespace init.
        public var runtimePid: Int32
        /// PID-namespace levels from the runtime's /proc down to the runtime's own level.
        public var ownLevels: Int
        /// For trees with terminals: tty_nr and tpgid (fields 7 and 8 of /proc/PID/stat; tpgid in
        /// the runtime's /proc numbering) of each node; empty: not read.
        public var terminals: [(ttyNr: UInt32, tpgid: Int32)?] = []

        public init(hostPids: [Int32], statuses: [ProcStatus?], runtimePid: Int32, ownLevels: Int,
                    terminals: [(ttyNr: UInt32, tpgid: Int32)?] = []) {
            self.hostPids = hostPids
            self.statuses = statuses
            self.runtimePid = runtimePid
            self.ownLevels = ownLevels
            self.terminals = terminals
        }
    }

    /// tty_nr of pty k of the restore's own devpts instance (Unix98 slaves: major 136 + k/256,
    /// minor k%256; the kernel's new_encode_dev).
    public static func ptyDevice(_ k: Int) -> UInt32 {
        let major = UInt32(136 + k / 256), minor = UInt32(k % 256)
        return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)
    }

    /// Every entry where the tree says, as one error naming the first entry that is not; and
    /// the report's processes, read from the same snapshots.
    public struct Result: Sendable {
        public var problems: [RestoreError]
        public var processes: [RestoreReport.Process]
    }

    public static func verify(tree: ProcessTree, plan: RestorePlan, observed: Observation) -> Result {
        let k = observed.ownLevels
        // Host PID -> PID in the tree's top namespace, for every node the runtime made.
        var topPidOfHost: [Int32: Int32] = [:]
        topPidOfHost.reserveCapacity(observed.hostPids.count)
        for (node, host) in observed.hostPids.enumerated() where host > 0 && node < plan.nodes.count {
            topPidOfHost[host] = plan.nodes[node].pid
        }
        let treePids = Set(tree.processes.map(\.pid))
        var problems: [RestoreError] = []
        var processes: [RestoreReport.Process] = []
        processes.reserveCapacity(tree.processes.count)
        for (i, entry) in tree.processes.enumerated() {
            let node = plan.nodeOfEntry[i]
            let host = node < observed.hostPids.count ? observed.hostPids[node] : 0
            guard host > 0, node < observed.statuses.count, let s = observed.statuses[node] else {
                problems.append(RestoreError(.restoreFailed, operation: "verify", entry: entry.label,
                                             message: "vanished before its payload started"))
                continue
            }
            let nspid = Array(s.nspid.dropFirst(k))
            let pgid = s.nspgid.count > k ? s.nspgid[k] : 0
            let sid = s.nssid.count > k ? s.nssid[k] : 0
            let ppid: Int32 = s.hostPPid == observed.runtimePid ? 0 : (topPidOfHost[s.hostPPid] ?? -1)
            let expected = expectedParent(entry, treeHasInit: plan.treeHasInit, treePids: treePids)
            var wrong: [String] = []
            if nspid != entry.nspid { wrong.append("PIDs \(nspid) instead of \(entry.nspid)") }
            if ppid != expected { wrong.append("ppid \(ppid < 0 ? "unknown (host \(s.hostPPid))" : String(ppid)) instead of \(expected)") }
            if pgid != entry.pgid { wrong.append("pgid \(pgid) instead of \(entry.pgid)") }
            if sid != entry.sid { wrong.append("sid \(sid) instead of \(entry.sid)") }
            if entry.state == .zombie && !s.isDead { wrong.append("state \(s.state) instead of zombie") }
            wrong += terminalProblems(entry, node: node, tree: tree, observed: observed, treePids: treePids)
            if !wrong.isEmpty {
                problems.append(RestoreError(.restoreFailed, operation: "verify", entry: entry.label,
                                             message: "was restored with " + wrong.joined(separator: ", ")))
            }
            processes.append(RestoreReport.Process(
                index: i, hostPid: host, nspid: nspid, ppid: max(ppid, 0), pgid: pgid, sid: sid,
                nspgid: Array(s.nspgid.dropFirst(k)), nssid: Array(s.nssid.dropFirst(k)),
                state: s.stateName, threads: s.threads))
        }
        return Result(problems: problems, processes: processes)
    }

    /// A recorded controlling terminal must be pty k of the restore's devpts, and the session
    /// leader's terminal must have the recorded foreground group (the rest of the session drops
    /// an inherited terminal it had not only at release, after this check).
    static func terminalProblems(_ entry: ProcessEntry, node: Int, tree: ProcessTree, observed: Observation,
                                 treePids: Set<Int32>) -> [String] {
        guard let id = entry.terminal, node < observed.terminals.count, let seen = observed.terminals[node],
              let k = tree.terminals.firstIndex(where: { $0.id == id }),
              let session = tree.terminals[k].session, treePids.contains(session) else { return [] }
        var wrong: [String] = []
        let want = ptyDevice(k)
        if seen.ttyNr != want {
            wrong.append("controlling terminal tty_nr \(seen.ttyNr) instead of \(want) (pty \(k) of its devpts, for \(tree.terminals[k].label(k)))")
        }
        if entry.pid == session, let fg = tree.terminals[k].foreground {
            // tpgid is a PID in the runtime's numbering: the group whose nspgid[0] it is.
            let level = observed.ownLevels
            let now = observed.statuses.lazy.compactMap { $0 }.first { $0.nspgid.first == seen.tpgid && $0.nspgid.count > level }
                .map { $0.nspgid[level] }
            if now != fg { wrong.append("foreground group \(now.map(String.init) ?? "unknown (tpgid \(seen.tpgid))") instead of \(fg)") }
        }
        return wrong
    }

    /// The parent a restored entry must have: its recorded one when that is in the tree,
    /// else the namespace init (PID 1); the tree's own PID 1 has none inside.
    public static func expectedParent(_ entry: ProcessEntry, treeHasInit: Bool, treePids: Set<Int32>) -> Int32 {
        if treeHasInit && entry.pid == 1 { return 0 }
        if entry.ppid != entry.pid && treePids.contains(entry.ppid) { return entry.ppid }
        return 1
    }

    /// The report's view after release: processes the release saw stop are stopped, and
    /// holding processes run the threads they were given.
    public static func afterRelease(_ processes: [RestoreReport.Process], tree: ProcessTree,
                                    stopped: Set<Int>, threadsStarted: [Int: Int]) -> [RestoreReport.Process] {
        processes.map { p in
            var p = p
            if stopped.contains(p.index) { p.state = "stopped" }
            if let n = threadsStarted[p.index] { p.threads = n }
            return p
        }
    }
}
