import CRestoreShim
import Glibc
import RestoreModel

/// Options of `record`.
public struct RecordOptions: Sendable {
    public var includeEnv = true
    /// Hold the tree still (ptrace stops, not SIGSTOP) while reading it, resume it after.
    public var freeze = false
    /// Record what can be read and warn about the rest instead of refusing.
    public var partial = false
    /// Mark every process but the root `"spawn": "payload"`: the root's payload forks them.
    public var spawnByPayload = false
    /// Record the jobs of interactive bash shells for job replay (`shellJobs`).
    public var jobReplay = true
    /// How many times the tree is read at most until two consecutive reads agree.
    public var maxPasses = 6
    /// argv given by the user for processes whose own was overwritten (host PID -> argv).
    public var argvOverrides: [Int32: [String]] = [:]
    /// Processes to record holding whatever they run (host PIDs): launchers such as
    /// `unshare --fork` that only wait for the children the runtime rebuilds.
    public var hold: Set<Int32> = []
    /// Testing aid: with `freeze`, keep the tree frozen this long after reading it, so that a
    /// test can signal `record` while it holds the tree.
    public var holdFrozenSeconds: Double = 0
    /// Called once the hold begins, with how many processes are frozen: from then on no system
    /// call is being injected, so even SIGKILL of `record` leaves every process as it was.
    public var onHoldFrozen: (@Sendable (Int) -> Void)? = nil

    public init() {}
}

/// Reads a live process tree from /proc into tree.json form: PIDs at every level from the
/// root's own PID namespace down, ppid/pgid/sid, state and zombie status, threads, argv, env,
/// cwd, credentials, the child-subreaper flag (read inside each process by ptrace), and what
/// each process is (`recorded`). The tree is read until two passes agree (start times detect
/// PID reuse), and what is written is checked to be a tree `run` accepts.
public enum TreeRecorder {
    struct Snapshot: Equatable {
        var hostPid: Int32
        var startTime: UInt64
        var hostPPid: Int32
        var nspid: [Int32]
        var nspgid: [Int32]
        var nssid: [Int32]
        var state: Character
        var exitCode: Int32
        var taskNSpids: [[Int32]]
        var uid: UInt32
        var gid: UInt32
        var groups: [UInt32]
        var ttyNr: UInt32 = 0
        var tpgid: Int32 = -1
    }

    /// What a recording found out beyond the snapshot.
    struct Findings {
        var preFreezeStates: [Int32: Character] = [:]
        /// exit_code of /proc/PID/stat before the freeze: a stopped process's stop signal
        /// (a ptrace stop replaces it).
        var preFreezeExitCodes: [Int32: Int32] = [:]
        /// host PID -> the flag, for every process whose flag was read.
        var subreaper: [Int32: Bool] = [:]
        /// host PID -> why its flag could not be read.
        var subreaperUnknown: [Int32: String] = [:]
        /// tmux servers' answers about their sessions (asked before any freeze), and why a
        /// server could not be asked (TreeRecorderTmux).
        var tmux: [Int32: TmuxAnswer] = [:]
        var tmuxUnasked: [Int32: String] = [:]
    }

    public static func record(root: Int32, options: RecordOptions = RecordOptions()) throws -> (tree: ProcessTree, warnings: [String], notes: [String]) {
        guard StatLine.read(root) != nil else {
            throw RestoreError(.input, operation: "open /proc/\(root)/stat", errno: ESRCH, entry: "process \(root)", message: "no such process")
        }
        guard root != getpid() else {
            throw RestoreError(.input, operation: "record", entry: "process \(root)", message: "is rootless-restore itself")
        }
        // Declared first, so it is released last: after the freezer has thawed everything.
        let signals = SignalGuard()
        defer { signals.release() }
        let freezer = TaskFreezer()
        defer { freezer.thawAll() }
        func checkSignals() throws {
            if let sig = signals.pending() {
                throw RestoreError(.interrupted(signal: sig), operation: "record", entry: "process \(root)",
                                   message: "interrupted by SIG\(TreeParser.signalNames[sig] ?? String(sig)); nothing was written, every process was left as it was")
            }
        }

        var findings = Findings()
        (findings.tmux, findings.tmuxUnasked) = askTmuxServers(under: root)
        if options.freeze {
            try freezeTree(root: root, freezer: freezer, findings: &findings, check: checkSignals)
        }
        var previous: [Snapshot]?
        var agreed: [Snapshot]?
        for _ in 0..<options.maxPasses {
            try checkSignals()
            let now = try snapshot(root: root)
            if let previous, previous == now { agreed = now; break }
            previous = now
        }
        guard let snaps = agreed else {
            throw RestoreError(.input, operation: "record", entry: "process \(root)",
                               message: "the tree kept changing while it was read (\(options.maxPasses) passes never agreed: processes started, ended or changed groups); try --freeze")
        }
        try readSubreaperFlags(snaps, freezer: freezer, findings: &findings, check: checkSignals)
        let result = try build(snaps, root: root, options: options, findings: findings)
        if options.freeze && options.holdFrozenSeconds > 0 {
            let end = MonotonicClock.nanoseconds() + UInt64(options.holdFrozenSeconds * 1e9)
            options.onHoldFrozen?(freezer.frozen.count)
            while MonotonicClock.nanoseconds() < end {
                try checkSignals()
                var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
                nanosleep(&ts, nil)
            }
        }
        freezer.thawAll()
        return result
    }

    /// Freezes the root and every descendant, again and again until no new process appears
    /// (one that forked while the others were being frozen). Zombies cannot be traced and
    /// need not be: they change nothing.
    static func freezeTree(root: Int32, freezer: TaskFreezer, findings: inout Findings, check: () throws -> Void) throws {
        for _ in 0..<16 {
            var fresh = false
            for pid in descendants(of: root) where freezer.frozen[pid] == nil {
                try check()
                guard let s = StatLine.read(pid), s.state != "Z", s.state != "X" else { continue }
                if findings.preFreezeStates[pid] == nil {
                    findings.preFreezeStates[pid] = s.state
                    findings.preFreezeExitCodes[pid] = s.exitCode
                }
                switch freezer.freeze(pid, startTime: s.startTime) {
                case .frozen: fresh = true
                case .gone: continue
                case .refused(let e):
                    throw RestoreError(.input, operation: "ptrace(PTRACE_SEIZE)", errno: e, entry: "process \(pid)",
                                       message: "cannot be frozen: --freeze holds processes with ptrace (no job-control stop), which is refused here "
                                       + "(\(ptraceRefusalHint(e))); record without --freeze. Every process was left as it was, nothing was written")
                case .timedOut(let tid):
                    throw RestoreError(.input, operation: "ptrace(PTRACE_INTERRUPT)", entry: "process \(pid)",
                                       message: "thread \(tid) did not stop within 2 s (uninterruptible sleep?); every process was left as it was, nothing was written")
                }
            }
            if !fresh { return }
        }
    }

    /// Reads PR_GET_CHILD_SUBREAPER inside every live process. A process that is not frozen yet
    /// (no --freeze) is frozen just for the read and thawed right after.
    static func readSubreaperFlags(_ snaps: [Snapshot], freezer: TaskFreezer, findings: inout Findings, check: () throws -> Void) throws {
        let mine = SeccompState.of("self")
        for s in snaps where s.state != "Z" && s.state != "X" {
            try check()
            let pid = s.hostPid
            if let theirs = SeccompState.read(String(pid)), theirs.mode == 2,
               !(mine.mode == 2 && theirs.filters <= mine.filters) {
                // A filter of its own may kill the process for a prctl it did not expect.
                findings.subreaperUnknown[pid] = "it runs under a seccomp filter of its own, which could kill it for an injected system call"
                continue
            }
            let wasFrozen = freezer.frozen[pid] != nil
            if !wasFrozen {
                switch freezer.freeze(pid, startTime: s.startTime) {
                case .frozen: break
                case .gone: findings.subreaperUnknown[pid] = "it ended while it was read"; continue
                case .refused(let e): findings.subreaperUnknown[pid] = "ptrace refused: \(ptraceRefusalHint(e))"; continue
                case .timedOut(let tid): findings.subreaperUnknown[pid] = "thread \(tid) did not stop within 2 s"; continue
                }
            }
            let (flag, reason) = freezer.childSubreaper(of: pid)
            if !wasFrozen { freezer.thaw(pid) }
            if let flag { findings.subreaper[pid] = flag } else { findings.subreaperUnknown[pid] = reason ?? "unknown" }
        }
    }

    static func ptraceRefusalHint(_ e: Int32) -> String {
        var why = ErrnoName.describe(e)
        if e == EPERM {
            if let scope = SystemCalls.readText("/proc/sys/kernel/yama/ptrace_scope")?.split(separator: "\n").first.map(String.init), scope != "0" {
                why += ": kernel.yama.ptrace_scope = \(scope) lets ordinary users trace only their own descendants"
            } else {
                why += ": a process that is not dumpable (prctl PR_SET_DUMPABLE 0, set-id programs), another user's, or one already traced by a debugger"
            }
        }
        return why
    }

    /// The root and all its descendants, parents before children, siblings in the order they
    /// were created (start time, then PID). rootless-restore itself is left out, and so is the
    /// fork supervisor's receiver of a restored tree (the runtime's, not the tree's).
    static func descendants(of root: Int32) -> [Int32] {
        var children: [Int32: [(UInt64, Int32)]] = [:]
        let me = getpid()
        for pid in allPids() where pid != me {
            if let s = StatLine.read(pid), !isForkReceiver(pid, s) { children[s.ppid, default: []].append((s.startTime, pid)) }
        }
        var out = [root]
        var i = 0
        while i < out.count {
            out += (children[out[i]] ?? []).sorted { $0 < $1 }.map(\.1)
            i += 1
        }
        return out
    }

    /// ForkSupervisor.startReceiver's process: named so, cloned without an exit signal (both in
    /// the stat line already read, so other processes cost nothing more) and running
    /// rootless-restore's binary. A payload that merely has that name and binary (exec'd through
    /// a link called rr-fork-recv) was forked with SIGCHLD, and is recorded.
    static func isForkReceiver(_ pid: Int32, _ stat: StatLine) -> Bool {
        guard stat.comm == "rr-fork-recv", stat.exitSignal == 0, let exe = readLink("/proc/\(pid)/exe") else { return false }
        return exe.hasSuffix("/rootless-restore") || exe.hasSuffix("/rootless-restore (deleted)")
    }

    static func allPids() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    static func snapshot(root: Int32) throws -> [Snapshot] {
        var out: [Snapshot] = []
        for pid in descendants(of: root) {
            guard let stat = StatLine.read(pid), let status = ProcStatus.read(pid) else { continue }
            var tasks: [[Int32]] = []
            for t in TaskFreezer.threads(of: pid) {
                if let ts = ProcStatus.read(t, procRoot: "/proc/\(pid)/task") { tasks.append(ts.nspid) }
            }
            out.append(Snapshot(hostPid: pid, startTime: stat.startTime, hostPPid: stat.ppid, nspid: status.nspid,
                                nspgid: status.nspgid, nssid: status.nssid, state: stat.state, exitCode: stat.exitCode,
                                taskNSpids: tasks, uid: status.uid, gid: status.gid, groups: status.groups,
                                ttyNr: stat.ttyNr, tpgid: stat.tpgid))
        }
        guard out.first?.hostPid == root else {
            throw RestoreError(.input, operation: "record", entry: "process \(root)", message: "the process ended while it was read")
        }
        return out
    }
}
