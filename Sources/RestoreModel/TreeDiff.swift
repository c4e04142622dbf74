// Compares two process trees field by field, per PID (`rootless-restore diff A B`).
//
// Processes are matched by `pid` (the PID in the tree's top namespace). For each PID in both
// trees the compared fields are nspid, ppid, pgid, sid, state, exitStatus, threads, and of
// `process` args, cwd and user; the terminal (with its modes); an interactive bash's job table
// (`shellJobs`) and a tmux server's sessions, windows and panes (env only when asked:
// environments are long and often differ in harmless ways).
//
// Parents outside the tree. A process whose ppid is 0 or a PID that is not in its own tree is a
// *top* process: its parent was not recorded. `run` hangs such a process under the namespace's
// PID 1, so a record of the restored tree shows ppid 1 (or the PID of whatever lies outside),
// while the recording shows the original parent. By default the two sides are equal when both
// parents are outside their trees, whatever the numbers; `exactTopPPid` compares the numbers.
//
// `restored` says that B was recorded from a restore of A, and leaves out what a restore
// does not reproduce by design: a process of A that holds (no args) or is stopped has not
// exec'd in the restored tree, so its args, env and cwd in B are the runtime's; a stopped one
// stops itself before anything of its own is set up, so its threads and user are not compared
// either; a process of A that runs args has the threads its new payload starts, not the
// recorded ones; and a field A leaves out (no env, cwd or user) means "the runtime's default",
// which B's value cannot contradict.

public enum TreeDiff {
    /// The fields compared, in report order.
    public enum Field: String, Sendable, CaseIterable, Comparable {
        case nspid, ppid, pgid, sid, state, exitStatus, threads, args, env, cwd, user, terminal, shellJobs, tmux

        public static func < (a: Field, b: Field) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    public struct Options: Sendable, Equatable {
        /// Compare `process.env` too.
        public var compareEnv = false
        /// Compare the ppid of top processes as numbers (default: both outside the tree is equal).
        public var exactTopPPid = false
        /// B is a record of A's restore (see the top of this file).
        public var restored = false
        /// Fields not compared at all.
        public var ignored: Set<Field> = []

        public init(compareEnv: Bool = false, exactTopPPid: Bool = false, restored: Bool = false,
                    ignored: Set<Field> = []) {
            self.compareEnv = compareEnv
            self.exactTopPPid = exactTopPPid
            self.restored = restored
            self.ignored = ignored
        }

        /// The fields these options compare, in report order.
        public var comparedFields: [Field] {
            Field.allCases.filter { !ignored.contains($0) && ($0 != .env || compareEnv) }
        }
    }

    /// One difference. `field` is nil when the PID is in one tree only.
    public struct Difference: Sendable, Equatable, CustomStringConvertible {
        public var pid: Int32
        public var field: Field?
        /// The value in A and in B, rendered for people; "(absent)" for a missing process.
        public var a: String
        public var b: String

        public init(pid: Int32, field: Field?, a: String, b: String) {
            self.pid = pid
            self.field = field
            self.a = a
            self.b = b
        }

        public var description: String {
            guard let field else {
                return a == absent ? "pid \(pid): only in B: \(b)" : "pid \(pid): only in A: \(a)"
            }
            return "pid \(pid) \(field.rawValue): A \(a) | B \(b)"
        }
    }

    static let absent = "(absent)"

    /// The differences between `a` and `b`, ordered by PID (A's order first, then B's extra
    /// processes) and field. Duplicate PIDs are the validator's business: the first entry wins.
    public static func compare(_ a: ProcessTree, _ b: ProcessTree, options: Options = Options()) -> [Difference] {
        let aByPid = index(a), bByPid = index(b)
        var out: [Difference] = []
        var seen = Set<Int32>()
        for pa in a.processes where seen.insert(pa.pid).inserted {
            guard let pb = bByPid[pa.pid] else {
                out.append(Difference(pid: pa.pid, field: nil, a: summary(pa), b: absent))
                continue
            }
            out += compare(pa, pb, aTree: aByPid, bTree: bByPid, options)
            if options.comparedFields.contains(.terminal) {
                // Terminal ids are names (pts3 when recorded, pts0 after a restore): compared by
                // what they are, the session they control, its foreground group and modes.
                // With `restored`, a recording without modes (an older `record`) says nothing
                // B's modes can contradict.
                var x = terminalText(pa, a, modes: true)
                let modes = !options.restored || x != terminalText(pa, a, modes: false)
                if !modes { x = terminalText(pa, a, modes: false) }
                let y = terminalText(pb, b, modes: modes)
                if x != y { out.append(Difference(pid: pa.pid, field: .terminal, a: x, b: y)) }
            }
        }
        for pb in b.processes where aByPid[pb.pid] == nil && seen.insert(pb.pid).inserted {
            out.append(Difference(pid: pb.pid, field: nil, a: absent, b: summary(pb)))
        }
        return out
    }

    private static func index(_ t: ProcessTree) -> [Int32: ProcessEntry] {
        var d: [Int32: ProcessEntry] = [:]
        for p in t.processes where d[p.pid] == nil { d[p.pid] = p }
        return d
    }

    private static func compare(_ pa: ProcessEntry, _ pb: ProcessEntry, aTree: [Int32: ProcessEntry],
                                bTree: [Int32: ProcessEntry], _ options: Options) -> [Difference] {
        var out: [Difference] = []
        let fields = options.comparedFields
        func check(_ f: Field, _ x: String, _ y: String) {
            if fields.contains(f) && x != y { out.append(Difference(pid: pa.pid, field: f, a: x, b: y)) }
        }
        check(.nspid, ints(pa.nspid), ints(pb.nspid))
        check(.ppid, parent(pa, in: aTree, exact: options.exactTopPPid), parent(pb, in: bTree, exact: options.exactTopPPid))
        check(.pgid, String(pa.pgid), String(pb.pgid))
        check(.sid, String(pa.sid), String(pb.sid))
        check(.state, pa.state.rawValue, pb.state.rawValue)
        check(.exitStatus, pa.exitStatus.map(\.description) ?? "none", pb.exitStatus.map(\.description) ?? "none")

        let aRuns = pa.process?.args.map { !$0.isEmpty } ?? false
        // In a restore, a process of A that holds or is stopped has not exec'd (yet); a stopped
        // one stops before its threads and credentials are set up, too.
        let stoppedEarly = options.restored && pa.state == .stopped
        let unexeced = options.restored && (!aRuns || pa.state == .stopped)
        if !(options.restored && aRuns) && !stoppedEarly {
            check(.threads, ints(threadSet(pa)), ints(threadSet(pb)))
        }
        // A zombie has no command line, environment or directory left to compare.
        guard pa.state != .zombie && pb.state != .zombie else { return out }
        let sa = pa.process ?? ProcessSpec(), sb = pb.process ?? ProcessSpec()
        // With `restored`, what A leaves out is the runtime's default: not compared.
        func skip(_ aValueMissing: Bool) -> Bool { unexeced || (options.restored && aValueMissing) }
        if !skip(sa.args == nil) { check(.args, strings(sa.args), strings(sb.args)) }
        if !skip(sa.env == nil), fields.contains(.env), let (x, y) = envDifference(sa.env, sb.env) {
            out.append(Difference(pid: pa.pid, field: .env, a: x, b: y))
        }
        if !skip(sa.cwd == nil) { check(.cwd, sa.cwd.map(quoted) ?? "none", sb.cwd.map(quoted) ?? "none") }
        if !(options.restored && sa.user == nil) && !stoppedEarly { check(.user, user(sa.user), user(sb.user)) }
        if pa.shellJobs != pb.shellJobs { check(.shellJobs, jobs(pa.shellJobs), jobs(pb.shellJobs)) }
        if pa.tmux != pb.tmux {
            // A restored server reads a configuration of the runtime's first, then the user's:
            // B's list of files is not A's by design.
            check(.tmux, tmux(pa.tmux, files: !options.restored), tmux(pb.tmux, files: !options.restored))
        }
        return out
    }

    /// "controlling terminal of session 100 (foreground 105); stdio 0 1 2 on it", "none", ...
    private static func terminalText(_ p: ProcessEntry, _ tree: ProcessTree, modes: Bool) -> String {
        func what(_ id: String) -> String {
            guard let t = tree.terminals.first(where: { $0.id == id }) else { return "an unknown terminal" }
            let m = modes ? t.modes.map { " [" + modesText($0) + "]" } ?? "" : ""
            guard let s = t.session else { return "a terminal of no session" + m }
            return "the terminal of session \(s)" + (t.foreground.map { " (foreground \($0))" } ?? "") + m
        }
        var parts: [String] = []
        if let id = p.terminal { parts.append("controlled by " + what(id)) }
        for (fd, id) in p.stdio.enumerated() { if let id { parts.append("fd \(fd) on " + what(id)) } }
        return parts.isEmpty ? "none" : parts.joined(separator: "; ")
    }

    /// "iflag 0x500 oflag 0x5 cflag 0xbf lflag 0x8a3b cc 03 1c 7f ...": termios as numbers.
    private static func modesText(_ m: TerminalModes) -> String {
        func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
        let cc = m.cc.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
        return "iflag \(hex(m.iflag)) oflag \(hex(m.oflag)) cflag \(hex(m.cflag)) lflag \(hex(m.lflag)) cc \(cc)"
    }

    /// "pgid 105 running [105, 106]; pgid 107 stopped (signal 20) [107]", or "none".
    private static func jobs(_ jobs: [ShellJobSpec]) -> String {
        guard !jobs.isEmpty else { return "none" }
        return jobs.map { j in
            "pgid \(j.pgid) \(j.state.rawValue)" + (j.stopSignal.map { " (signal \($0))" } ?? "") + " " + ints(j.members)
        }.joined(separator: "; ")
    }

    /// "socket \"/tmp/tmux-1000/default\", shell \"/bin/bash\"; session \"0\": window 0 \"bash\"
    /// 80x24 layout ... active, panes [100 active, 101]", or "none".
    private static func tmux(_ spec: TmuxServerSpec?, files: Bool) -> String {
        guard let spec else { return "none" }
        var s = "socket " + quoted(spec.socket)
        if files { s += ", config files " + strings(spec.configFiles) }
        if let shell = spec.defaultShell { s += ", shell " + quoted(shell) }
        for session in spec.sessions {
            s += "; session " + quoted(session.name) + ":"
            s += session.windows.map { w in
                var t = " window \(w.index)" + (w.name.map { " " + quoted($0) } ?? "") + " \(w.columns)x\(w.rows)"
                if let layout = w.layout { t += " layout " + quoted(layout) }
                if w.active { t += " active" }
                let panes = w.panes.map { "\($0.pid)" + ($0.active ? " active" : "") + ($0.loginShell ? " login" : "") }
                return t + ", panes [" + panes.joined(separator: ", ") + "]"
            }.joined(separator: ";")
        }
        return s
    }

    /// "17", or "outside the tree" when the parent is not in the tree (unless exact).
    private static func parent(_ p: ProcessEntry, in tree: [Int32: ProcessEntry], exact: Bool) -> String {
        if exact || tree[p.ppid] != nil { return String(p.ppid) }
        return "outside the tree"
    }

    /// The thread IDs as a sorted list, the main thread's included ([] and [pid] are the same).
    private static func threadSet(_ p: ProcessEntry) -> [Int32] {
        let t = Set(p.threads).union([p.pid])
        return t.sorted()
    }

    private static func ints(_ a: [Int32]) -> String { "[" + a.map(String.init).joined(separator: ", ") + "]" }

    private static func strings(_ a: [String]?) -> String {
        guard let a else { return "none (holds)" }
        return "[" + a.map(quoted).joined(separator: ", ") + "]"
    }

    private static func quoted(_ s: String) -> String { JSONValue.quoted(s, limit: 200) }

    private static func user(_ u: UserSpec?) -> String {
        guard let u else { return "default (uid 0, gid 0)" }
        var s = "uid \(u.uid), gid \(u.gid)"
        if !u.additionalGids.isEmpty { s += ", groups " + u.additionalGids.sorted().map(String.init).joined(separator: " ") }
        return s
    }

    /// How two environments differ, rendered for A and B; nil when they are the same set of
    /// KEY=VALUE strings. Each side names the entries only it has, so the report shows the
    /// variables that differ rather than two long lists.
    private static func envDifference(_ x: [String]?, _ y: [String]?) -> (String, String)? {
        func render(_ e: [String]?, _ other: [String]?) -> String {
            guard let e else { return "the runtime's environment" }
            let only = Set(e).subtracting(other ?? []).sorted()
            var s = "\(e.count) variables"
            if other != nil, !only.isEmpty {
                s += ", only here: " + only.prefix(5).map(quoted).joined(separator: ", ")
                if only.count > 5 { s += " and \(only.count - 5) more" }
            }
            return s
        }
        switch (x, y) {
        case (nil, nil): return nil
        case (let a?, let b?) where Set(a) == Set(b) && a.count == b.count: return nil
        default: return (render(x, y), render(y, x))
        }
    }

    /// A one-line description of a process, for "only in A" lines.
    public static func summary(_ p: ProcessEntry) -> String {
        var s = "ppid \(p.ppid), pgid \(p.pgid), sid \(p.sid), \(p.state.rawValue)"
        if let e = p.exitStatus { s += " (\(e))" }
        if let args = p.process?.args { s += ", args " + strings(args) }
        return s
    }
}
