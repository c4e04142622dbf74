// Structural checks of a ProcessTree: what no Linux system could have produced, or what the
// runtime cannot rebuild. Session and process-group feasibility is the planner's.
//
// `validate` collects every problem. One problem is thrown as is (its entry names the
// process, e.g. `process #3 (pid 17), line 22: ppid -1 is negative ...`); several are thrown
// as one RestoreError without entry whose message is `N problems in the tree:` followed by
// the first `maxReportedProblems` problems, one per line, each indented by two spaces, and
// `... and K more` when some were left out. `problems(in:pidMax:)` returns them all.

public enum TreeValidator {
    /// Linux's largest pid_max (PID_MAX_LIMIT on 64-bit); PIDs are 1...pidMax-1.
    public static let defaultPidMax: Int32 = 4_194_304
    /// Linux nests PID namespaces at most 32 deep (MAX_PID_NS_LEVEL), so an nspid has at most
    /// 32 levels when the runtime itself runs in the initial namespace.
    public static let maxNamespaceDepth = 32
    /// The kernel accepts at most 340 lines in a uid_map or gid_map.
    public static let maxMappingLines = 340
    /// How many problems a thrown error lists.
    public static let maxReportedProblems = 20

    /// Signals whose default action does not terminate a process, so a zombie cannot have
    /// died of them, with that default action.
    static let nonTerminatingSignals: [Int32: String] = [
        17: "ignore it", 18: "continue the process", 19: "stop the process", 20: "stop the process",
        21: "stop the process", 22: "stop the process", 23: "ignore it", 28: "ignore it",
    ]

    /// Throws the problems of `tree` (see the file comment for the form); returns if none.
    public static func validate(_ tree: ProcessTree, pidMax: Int32 = 4_194_304) throws {
        let found = problems(in: tree, pidMax: pidMax)
        if found.isEmpty { return }
        if found.count == 1 { throw found[0] }
        var lines = ["\(found.count) problems in the tree:"]
        for problem in found.prefix(maxReportedProblems) {
            lines.append("  " + problem.description)
        }
        if found.count > maxReportedProblems {
            lines.append("  ... and \(found.count - maxReportedProblems) more")
        }
        throw RestoreError(.invalidTree, operation: "validate", message: lines.joined(separator: "\n"))
    }

    /// The problems of a process spec's user, capabilities, rlimits and seccomp profile, as
    /// messages (the caller names the entry). Names were checked by the parser; syscall names
    /// are checked against libseccomp when the profile is compiled.
    public static func confinementProblems(_ spec: ProcessSpec) -> [String] {
        var out: [String] = []
        if let mask = spec.user?.umask, mask > 0o777 {
            out.append("process.user.umask is \(mask) (0o\(String(mask, radix: 8))); a umask is 0...511 (0o777)")
        }
        if let caps = spec.capabilities {
            for (name, list) in caps.sets {
                var seen = Set<String>()
                for c in list ?? [] where !seen.insert(c).inserted {
                    out.append("process.capabilities.\(name) lists \(c) twice")
                }
            }
            let effective = CapabilitySpec.mask(caps.effective), permitted = CapabilitySpec.mask(caps.permitted)
            let inheritable = CapabilitySpec.mask(caps.inheritable), ambient = CapabilitySpec.mask(caps.ambient)
            let notPermitted = Capabilities.names(of: effective & ~permitted).names
            if !notPermitted.isEmpty {
                out.append("process.capabilities.effective has \(notPermitted.joined(separator: ", ")), which "
                           + "permitted lacks; the effective set is a subset of the permitted set (add them to permitted)")
            }
            let notAmbient = Capabilities.names(of: ambient & ~(permitted & inheritable)).names
            if !notAmbient.isEmpty {
                out.append("process.capabilities.ambient has \(notAmbient.joined(separator: ", ")), which must also be "
                           + "in both permitted and inheritable (the kernel refuses to raise an ambient capability otherwise)")
            }
        }
        if let limits = spec.rlimits {
            var first: [String: Int] = [:]
            for (k, l) in limits.enumerated() {
                if let j = first[l.type] {
                    out.append("process.rlimits[\(k)] sets \(l.type) again (first in process.rlimits[\(j)]); "
                               + "each type may appear once")
                } else {
                    first[l.type] = k
                }
                if l.soft > l.hard {
                    out.append("process.rlimits[\(k)] (\(l.type)) has soft \(limitText(l.soft)) above hard "
                               + "\(limitText(l.hard)); the soft limit cannot exceed the hard one")
                }
            }
        }
        if let seccomp = spec.seccomp {
            let path = "process.seccomp"
            if seccomp.defaultErrnoRet != nil, !SeccompSpec.actionsWithErrno.contains(seccomp.defaultAction) {
                out.append("\(path).defaultErrnoRet is set but defaultAction is \(seccomp.defaultAction); it "
                           + "applies only to SCMP_ACT_ERRNO and SCMP_ACT_TRACE")
            }
            if let e = seccomp.defaultErrnoRet, let limit = SeccompSpec.maxErrnoRet[seccomp.defaultAction], e > limit {
                out.append("\(path).defaultErrnoRet is \(e); \(seccomp.defaultAction) takes at most \(limit)"
                           + (limit == 4095 ? " (the kernel's MAX_ERRNO)" : " (16 bits of filter data)"))
            }
            var seenArch = Set<String>()
            for a in seccomp.architectures ?? [] where !seenArch.insert(a).inserted {
                out.append("\(path).architectures lists \(a) twice")
            }
            for (k, rule) in (seccomp.syscalls ?? []).enumerated() {
                let at = "\(path).syscalls[\(k)]"
                if rule.names.isEmpty {
                    out.append("\(at).names is empty: list at least one system call")
                }
                for (n, name) in rule.names.enumerated() where name.isEmpty {
                    out.append("\(at).names[\(n)] is an empty string")
                }
                // A C string ends at the first NUL: "mkdir\u0000x" would filter mkdir.
                for (n, name) in rule.names.enumerated() where name.utf8.contains(0) {
                    out.append("\(at).names[\(n)] \(JSONValue.quoted(name, limit: 40)) contains a NUL character; a system call name must be exact")
                }
                if let e = rule.errnoRet, let limit = SeccompSpec.maxErrnoRet[rule.action], e > limit {
                    out.append("\(at).errnoRet is \(e); \(rule.action) takes at most \(limit)"
                               + (limit == 4095 ? " (the kernel's MAX_ERRNO)" : " (16 bits of filter data)"))
                }
                if rule.errnoRet != nil, !SeccompSpec.actionsWithErrno.contains(rule.action) {
                    out.append("\(at).errnoRet is set but the action is \(rule.action); it applies only to "
                               + "SCMP_ACT_ERRNO and SCMP_ACT_TRACE")
                }
                let args = rule.args ?? []
                if args.count > SeccompSpec.maxArguments {
                    out.append("\(at).args has \(args.count) comparisons; a system call has at most "
                               + "\(SeccompSpec.maxArguments) arguments")
                }
                for (n, arg) in args.enumerated() where arg.index >= UInt32(SeccompSpec.maxArguments) {
                    out.append("\(at).args[\(n)].index is \(arg.index); arguments are numbered 0...\(SeccompSpec.maxArguments - 1)")
                }
            }
        }
        return out
    }

    /// How `mappingProblems` names things: tree keys, or the command line's inner:outer:count.
    public struct MappingWords: Sendable {
        public var inner: String, outer: String, innerIDs: String, outerIDs: String
        public static let tree = MappingWords(inner: "containerID", outer: "hostID",
                                              innerIDs: "container ids", outerIDs: "host ids")
        public static let commandLine = MappingWords(inner: "inner", outer: "outer",
                                                     innerIDs: "inner ids", outerIDs: "outer ids")
    }

    /// The problems of one uid or gid map, as (entry, message): empty, more than 340 lines, a
    /// line of size 0, a range past the largest id, lines overlapping inside or outside.
    /// `name(k)` names line k (default `field[k]`).
    public static func mappingProblems(_ mappings: [IDMapping], field: String, words: MappingWords = .tree,
                                       name: ((Int) -> String)? = nil) -> [(entry: String?, message: String)] {
        let label = name ?? { "\(field)[\($0)]" }
        var out: [(entry: String?, message: String)] = []
        if mappings.isEmpty {
            out.append((nil, "\(field) is empty (omit it for the default map of your own id to 0)"))
            return out
        }
        if mappings.count > maxMappingLines {
            out.append((nil, "\(field) has \(mappings.count) lines; the kernel accepts at most \(maxMappingLines)"))
        }
        let lastValid: UInt64 = 0xFFFF_FFFE  // (uid_t)-1 is never a valid id
        for (k, m) in mappings.enumerated() {
            if m.size == 0 {
                out.append((label(k), "size is 0: a mapping covers at least one id"))
                continue
            }
            for (side, first) in [(words.inner, m.containerID), (words.outer, m.hostID)]
            where UInt64(first) + UInt64(m.size) - 1 > lastValid {
                out.append((label(k), "\(side) \(first) + size \(m.size) runs past \(lastValid), the largest id"))
            }
        }
        guard mappings.count <= maxMappingLines else { return out }
        func overlap(_ a: UInt32, _ b: UInt32, _ size1: UInt32, _ size2: UInt32) -> Bool {
            UInt64(a) < UInt64(b) + UInt64(size2) && UInt64(b) < UInt64(a) + UInt64(size1)
        }
        func range(_ first: UInt32, _ size: UInt32) -> String {
            "\(first)...\(UInt64(first) + UInt64(size) - 1)"
        }
        for j in mappings.indices where mappings[j].size > 0 {
            for i in 0..<j where mappings[i].size > 0 {
                let a = mappings[i], b = mappings[j]
                if overlap(a.containerID, b.containerID, a.size, b.size) {
                    out.append((label(j), "\(words.innerIDs) \(range(b.containerID, b.size)) overlap "
                                + "\(label(i)) (\(range(a.containerID, a.size)))"))
                }
                if overlap(a.hostID, b.hostID, a.size, b.size) {
                    out.append((label(j), "\(words.outerIDs) \(range(b.hostID, b.size)) overlap "
                                + "\(label(i)) (\(range(a.hostID, a.size)))"))
                }
            }
        }
        return out
    }

    static func limitText(_ v: UInt64) -> String { v == RlimitSpec.unlimited ? "unlimited" : String(v) }

    /// Every problem of `tree`, in a stable order: tree-wide, per process, across processes,
    /// namespaces, then the id maps.
    public static func problems(in tree: ProcessTree, pidMax: Int32 = 4_194_304) -> [RestoreError] {
        var checker = Checker(tree: tree, pidMax: pidMax)
        checker.run()
        return checker.problems
    }
}

private struct Checker {
    let tree: ProcessTree
    let pidMax: Int32
    let procs: [ProcessEntry]
    var problems: [RestoreError] = []
    /// Array position of the first process with each pid.
    var byPid = PIDIndex(count: 0)
    /// Array position of each process's in-tree parent (nil: none; itself: a one-process cycle).
    var parent: [Int?] = []
    /// Processes that are part of a parent cycle.
    var inCycle: [Bool] = []

    init(tree: ProcessTree, pidMax: Int32) {
        self.tree = tree
        self.pidMax = pidMax
        self.procs = tree.processes
    }

    // MARK: naming

    /// `process #3 (pid 17)`, or `process #3` when the entry has no nspid.
    func name(_ i: Int) -> String {
        let e = procs[i]
        return e.nspid.isEmpty ? "process #\(e.index)" : e.label
    }

    /// The entry of a message: the name plus the source line when known.
    func entry(_ i: Int) -> String {
        procs[i].line.map { "\(name(i)), line \($0)" } ?? name(i)
    }

    mutating func report(_ i: Int, _ message: String) {
        problems.append(.invalid(entry(i), message))
    }

    mutating func report(entry: String?, _ message: String) {
        problems.append(.invalid(entry, message))
    }

    var pidRange: String { "PIDs are 1...\(Int64(pidMax) - 1) (pid_max \(pidMax))" }

    func inRange(_ p: Int32) -> Bool { p >= 1 && p < pidMax }

    // MARK: run

    mutating func run() {
        if tree.version != ProcessTree.currentVersion {
            report(entry: nil, "unsupported version \(tree.version): this runtime reads tree.json "
                   + "version \(ProcessTree.currentVersion)")
        }
        if procs.isEmpty {
            report(entry: nil, "the tree has no processes: it needs at least one")
        }
        for i in procs.indices { checkLocal(i) }
        indexPids()
        checkThreads()
        findParents()
        checkInits()
        checkZombieChildren()
        checkNamespaces()
        checkTerminals()
        checkShellJobs()
        for (entry, message) in TmuxReplay.problems(tree) { report(entry: entry, message) }
        checkMappings(tree.uidMappings, "uidMappings")
        checkMappings(tree.gidMappings, "gidMappings")
    }

    // MARK: one process at a time

    mutating func checkLocal(_ i: Int) {
        let e = procs[i]
        if e.nspid.isEmpty {
            report(i, "nspid is empty: it lists the PIDs outermost first, starting with pid")
        } else {
            if !inRange(e.pid) {
                report(i, "pid \(e.pid) is out of range: \(pidRange)")
            }
            if e.nspid.count > TreeValidator.maxNamespaceDepth {
                report(i, "nspid has \(e.nspid.count) levels; Linux nests PID namespaces at most "
                       + "\(TreeValidator.maxNamespaceDepth) levels deep")
            }
            for (k, p) in e.nspid.enumerated().dropFirst() where !inRange(p) {
                report(i, "nspid[\(k)] = \(p) is out of range: \(pidRange)")
            }
            if e.newPidNamespace, let last = e.nspid.last, last != 1 {
                report(i, "newPidNamespace is true, so the process is the init of its own PID namespace "
                       + "and the last element of nspid must be 1, not \(last)")
            }
            if !e.newPidNamespace, e.nspid.count > 1, e.nspid.last == 1 {
                report(i, "nspid ends in 1, so the process is the init of a nested PID namespace: "
                       + "set newPidNamespace to true")
            }
            if e.newPidNamespace, e.pid == 1 {
                report(i, "pid 1 is the init of the tree's own PID namespace; it cannot also be the "
                       + "init of a nested one (newPidNamespace)")
            }
        }
        if e.ppid < 0 {
            report(i, "ppid \(e.ppid) is negative (use 0 for a process that hangs under the namespace init)")
        }
        if e.pgid < 0 {
            report(i, "pgid \(e.pgid) is negative (use 0 for a group led from outside the namespace)")
        }
        if e.sid < 0 {
            report(i, "sid \(e.sid) is negative (use 0 for a session led from outside the namespace)")
        }
        checkExit(i)
        for tid in e.threads where !inRange(tid) {
            report(i, "thread \(tid) is out of range: TIDs share the PID space, \(pidRange)")
        }
        if !e.threads.isEmpty, !e.nspid.isEmpty, !e.threads.contains(e.pid) {
            report(i, "threads does not list the main thread (TID \(e.pid), the pid): list every "
                   + "thread, the main one included, or omit threads")
        }
        for levels in e.threadLevels where levels.count != e.nspid.count {
            report(i, "thread \(levels) has \(levels.count) level(s) but the process has \(e.nspid.count) (nspid \(e.nspid)): a thread lives in its process's namespaces")
        }
        for levels in e.threadLevels where levels.first == e.pid && levels != e.nspid {
            report(i, "the main thread's TIDs \(levels) must equal nspid \(e.nspid)")
        }
        for levels in e.threadLevels { for tid in levels.dropFirst() where !inRange(tid) {
            report(i, "thread \(levels) has a TID out of range: \(pidRange)")
        } }
        if e.nspid.count > 1, e.threadLevels.isEmpty, e.threads.contains(where: { $0 != e.pid }) {
            report(i, "lives in a nested PID namespace, so its threads need their TIDs at every level: give each as an array outermost first, like nspid (e.g. [[\(e.nspid.map(String.init).joined(separator: ", "))], ...])")
        }
        if let spec = e.process { checkSpec(i, spec) }
    }

    mutating func checkExit(_ i: Int) {
        let e = procs[i]
        guard e.state == .zombie else {
            if let status = e.exitStatus {
                report(i, "exitStatus (\(status)) is given but the state is \(e.state.rawValue); only a "
                       + "zombie has one (set \"state\": \"zombie\" or remove exitStatus)")
            }
            return
        }
        switch e.exitStatus {
        case nil:
            report(i, "the process is a zombie but has no exitStatus (give an exit code 0...255 or "
                   + "{\"signal\": N})")
        case .code(let c):
            if !(0...255).contains(c) {
                report(i, "exit code \(c) is outside 0...255")
            }
        case .signal(let s):
            if !(1...64).contains(s) {
                report(i, "signal \(s) is outside 1...64")
            } else if let action = TreeValidator.nonTerminatingSignals[s] {
                report(i, "signal \(s) (SIG\(TreeParser.signalNames[s] ?? "?")) cannot have killed the "
                       + "process: its default action is to \(action)")
            }
        }
    }

    mutating func checkSpec(_ i: Int, _ spec: ProcessSpec) {
        if let args = spec.args {
            if args.isEmpty {
                report(i, "process.args is empty: omit args to make the process hold")
            } else if args[0].isEmpty {
                report(i, "process.args[0] is an empty string; it names the program to run")
            }
            for (k, a) in args.enumerated() where a.utf8.contains(0) {
                report(i, "process.args[\(k)] contains a NUL character, which exec cannot pass")
            }
        }
        if let env = spec.env {
            for (k, v) in env.enumerated() {
                if !v.utf8.contains(UInt8(ascii: "=")) {
                    report(i, "process.env[\(k)] \(JSONValue.quoted(v, limit: 40)) has no '=' "
                           + "(entries are KEY=VALUE)")
                }
                if v.utf8.contains(0) {
                    report(i, "process.env[\(k)] contains a NUL character, which exec cannot pass")
                }
            }
        }
        if let cwd = spec.cwd {
            if !cwd.hasPrefix("/") {
                report(i, "process.cwd \(JSONValue.quoted(cwd, limit: 60)) is not an absolute path "
                       + "(it must start with '/')")
            } else if cwd.utf8.contains(0) {
                report(i, "process.cwd contains a NUL character")
            }
        }
        for message in TreeValidator.confinementProblems(spec) { report(i, message) }
    }

    // MARK: across processes

    mutating func indexPids() {
        var top: Int32 = 0
        for i in procs.indices { top = max(top, procs[i].nspid.first ?? 0) }
        byPid = PIDIndex(maxKey: top, count: procs.count)
        for i in procs.indices where !procs[i].nspid.isEmpty {
            let pid = procs[i].pid
            if let j = byPid.insertIfAbsent(pid, i) {
                if pid == 1 {
                    report(i, "two processes claim PID 1 (the namespace init): process #\(procs[j].index) "
                           + "and process #\(procs[i].index)")
                } else {
                    report(i, "duplicate pid \(pid): \(name(j)) has it too")
                }
            }
        }
    }

    /// Shell jobs: only an interactive bash that the runtime starts has them; each names, in
    /// pipeline order, payload-spawned children of that shell in one process group of its
    /// session, led by the first; no process is in two jobs; at most one is in the foreground.
    mutating func checkShellJobs() {
        for i in procs.indices where !procs[i].shellJobs.isEmpty {
            let shell = procs[i]
            if !ShellJobReplay.isBash(shell) {
                report(i, "has shellJobs, but it does not run bash (\(shell.recorded?.exe ?? shell.process?.args?.first ?? "it holds")): job replay starts the jobs again from bash's PROMPT_COMMAND; drop \"shellJobs\" and \"spawn\": \"payload\" of its jobs")
                continue
            }
            if (shell.process?.args ?? []).isEmpty {
                report(i, "has shellJobs, but it holds (no process.args): a holding process starts no jobs")
                continue
            }
            if shell.spawnedByPayload, !(byPid[shell.ppid].map { procs[$0].tmux.map { TmuxReplay.panes(of: $0).contains(shell.pid) } ?? false } ?? false) {
                report(i, "has shellJobs, but it is spawned by its parent's payload, which gives it its environment: job replay needs a shell the runtime starts (or a tmux pane's, which tmux starts with its recorded environment)")
                continue
            }
            var seen: [Int32: Int] = [:]
            var foregrounds = 0
            for (k, job) in shell.shellJobs.enumerated() {
                let what = "shellJobs[\(k)] (pgid \(job.pgid))"
                if job.state == .foreground { foregrounds += 1 }
                if job.stopSignal != nil && job.state != .stopped {
                    report(i, "\(what) has a stopSignal but is \(job.state.rawValue); only a stopped job has one")
                }
                if job.members.first != job.pgid {
                    report(i, "\(what): its first member \(job.members.first.map(String.init) ?? "-") is not its group leader \(job.pgid); bash makes the first process of a pipeline the job's group leader")
                }
                if job.pgid == shell.pgid {
                    report(i, "\(what) is the shell's own process group; a job-control job has a group of its own")
                }
                for m in job.members {
                    if let other = seen[m] {
                        report(i, "\(what) lists pid \(m), which shellJobs[\(other)] lists too; a process is in one job")
                        continue
                    }
                    seen[m] = k
                    guard let j = byPid[m] else {
                        report(i, "\(what) lists pid \(m), which is not in the tree")
                        continue
                    }
                    let e = procs[j]
                    if e.ppid != shell.pid {
                        report(i, "\(what) lists \(name(j)), which is not a child of this shell (its ppid is \(e.ppid)); the shell forks only its own children")
                    } else if !e.spawnedByPayload {
                        report(i, "\(what) lists \(name(j)), which the runtime would create too: mark it \"spawn\": \"payload\" (the shell forks it again)")
                    } else if e.state == .zombie {
                        report(i, "\(what) lists \(name(j)), a zombie; a job's processes are live")
                    } else if e.pgid != job.pgid || e.sid != shell.sid {
                        report(i, "\(what) lists \(name(j)), whose group \(e.pgid) and session \(e.sid) are not the job's \(job.pgid) in the shell's session \(shell.sid)")
                    } else if (e.process?.args ?? e.recorded?.cmdline ?? []).isEmpty {
                        report(i, "\(what) lists \(name(j)), which has no argv (process.args or recorded.cmdline): its command cannot be given to the shell")
                    }
                }
            }
            if foregrounds > 1 {
                report(i, "has \(foregrounds) foreground jobs; a terminal has one foreground group")
            }
        }
    }

    /// Terminals: unique ids; a terminal's session is led by a live process of the tree whose
    /// controlling terminal it is; its foreground group is a group of that session; a process
    /// names as controlling terminal only the terminal of its own session; stdio names known ids.
    mutating func checkTerminals() {
        var index: [String: Int] = [:]
        let terms = tree.terminals
        // Every (session, group) pair of the tree, once: a search of all processes per
        // terminal was quadratic in trees of many ptys (tmux panes).
        struct Group: Hashable { var sid: Int32; var pgid: Int32 }
        let groups = terms.isEmpty ? [] : Set(procs.map { Group(sid: $0.sid, pgid: $0.pgid) })
        for (k, t) in terms.enumerated() {
            let who = t.label(k)
            if t.id.isEmpty { report(entry: "terminals[\(k)]", "id is empty: give each terminal a name its processes refer to") }
            if let j = index[t.id] {
                report(entry: who, "the id is used by terminals[\(j)] too; each terminal needs its own")
            } else {
                index[t.id] = k
            }
            guard let session = t.session else {
                if let fg = t.foreground {
                    report(entry: who, "has foreground group \(fg) but no session; a foreground group belongs to the session whose controlling terminal it is")
                }
                continue
            }
            guard let leader = byPid[session] else {
                report(entry: who, "its session \(session) has no leader in the tree (no process has pid \(session)); a session that lost its leader has no controlling terminal any more (the kernel detaches it), so drop \"session\" or add the leader")
                continue
            }
            let l = procs[leader]
            if l.sid != l.pid {
                report(entry: who, "its session \(session) is led by \(name(leader)), which is not a session leader (its sid is \(l.sid)); session is the pid of a process with sid == pid")
            } else if l.state == .zombie {
                report(entry: who, "its session leader \(name(leader)) is a zombie; a session leader that exits detaches its controlling terminal, so drop \"session\"")
            } else if l.terminal != t.id {
                report(entry: who, "its session leader \(name(leader)) does not have it as controlling terminal (give that process \"terminal\": \(JSONValue.quoted(t.id, limit: 40)))")
            }
            if let fg = t.foreground, !groups.contains(Group(sid: session, pgid: fg)) {
                report(entry: who, "its foreground group \(fg) is not a process group of session \(session): no process of the tree has pgid \(fg) and sid \(session)")
            }
        }
        for i in procs.indices {
            let e = procs[i]
            if let id = e.terminal {
                if let k = index[id] {
                    let t = terms[k]
                    if t.session != e.sid {
                        report(i, "has controlling terminal \(JSONValue.quoted(id, limit: 40)), the controlling terminal of "
                               + (t.session.map { "session \($0)" } ?? "no session") + ", but it is in session \(e.sid); a process's controlling terminal is its session's")
                    }
                } else {
                    report(i, "terminal \(JSONValue.quoted(id, limit: 40)) is not in terminals" + TreeParser.didYouMean(id, terms.map(\.id)))
                }
            }
            for (fd, id) in e.stdio.enumerated() {
                if let id, index[id] == nil {
                    report(i, "stdio[\(fd)] \(JSONValue.quoted(id, limit: 40)) is not in terminals" + TreeParser.didYouMean(id, terms.map(\.id)))
                }
            }
            if e.state == .zombie && (e.terminal != nil || e.stdio.contains(where: { $0 != nil })) {
                report(i, "is a zombie but has a terminal: a zombie has no descriptors or controlling terminal")
            }
        }
    }

    mutating func checkThreads() {
        var owner: [Int32: Int] = [:]
        for i in procs.indices {
            let e = procs[i]
            var seen = Set<Int32>()
            for tid in e.threads {
                if !seen.insert(tid).inserted {
                    report(i, "thread \(tid) is listed twice")
                    continue
                }
                if !e.nspid.isEmpty, tid == e.pid { continue }
                if let j = byPid[tid], j != i {
                    report(i, "thread \(tid) has the same ID as \(name(j)) (TIDs and PIDs share one space)")
                } else if let j = owner[tid], j != i {
                    report(i, "thread \(tid) is also listed as a thread of \(name(j))")
                } else {
                    owner[tid] = i
                }
            }
        }
    }

    /// Finds each in-tree parent and reports parent cycles.
    mutating func findParents() {
        parent = procs.indices.map { i in
            let ppid = procs[i].ppid
            guard ppid > 0, let j = byPid[ppid] else { return nil }
            return j
        }
        inCycle = Array(repeating: false, count: procs.count)
        // 0 = unvisited, 1 = on the current walk, 2 = done.
        var mark = Array(repeating: 0, count: procs.count)
        for start in procs.indices where mark[start] == 0 {
            var path: [Int] = []
            var i: Int? = start
            while let cur = i, mark[cur] == 0 {
                mark[cur] = 1
                path.append(cur)
                i = parent[cur]
            }
            if let cur = i, mark[cur] == 1, let from = path.firstIndex(of: cur) {
                let cycle = Array(path[from...])
                for c in cycle { inCycle[c] = true }
                reportCycle(cycle)
            }
            for p in path { mark[p] = 2 }
        }
    }

    mutating func reportCycle(_ cycle: [Int]) {
        if cycle.count == 1 {
            let i = cycle[0]
            report(i, "the process is its own parent (ppid \(procs[i].ppid) is its pid)")
            return
        }
        // Start at the lowest position, so the message does not depend on where the walk began.
        let lowest = cycle.firstIndex(of: cycle.min()!)!
        let ordered = Array(cycle[lowest...] + cycle[..<lowest])
        let chain = (ordered + [ordered[0]]).map { name($0) }.joined(separator: " -> ")
        report(ordered[0], "parent cycle: \(chain) (each names the next as its ppid)")
    }

    /// The init of the tree's namespace has its parent outside the namespace.
    mutating func checkInits() {
        for i in procs.indices where !procs[i].nspid.isEmpty && procs[i].pid == 1 {
            if let j = parent[i], !inCycle[i] {
                report(i, "pid 1 is the init of the tree's PID namespace, so its parent is outside the "
                       + "tree, but its ppid \(procs[i].ppid) is \(name(j)) (use ppid 0)")
            }
        }
    }

    mutating func checkZombieChildren() {
        var children: [Int: [Int]] = [:]
        for i in procs.indices {
            if let p = parent[i], procs[p].state == .zombie { children[p, default: []].append(i) }
        }
        for z in children.keys.sorted() {
            let kids = children[z]!
            let listed = kids.prefix(5).map { name($0) }.joined(separator: ", ")
                + (kids.count > 5 ? " and \(kids.count - 5) more" : "")
            report(z, "the process is a zombie but has children in the tree: \(listed) (a dead "
                   + "process's children are reparented to a subreaper or the namespace init; record "
                   + "them with that ppid)")
        }
    }

    // MARK: namespaces

    /// Depths follow parents: a child is in its parent's PID namespace (same nspid length) or,
    /// when newPidNamespace is true, one level deeper. A namespace is identified by its init;
    /// local PIDs at every nested level are unique within their namespace.
    mutating func checkNamespaces() {
        // chain[i]: the namespaces process i is in, outermost first; -1 is the tree's own,
        // otherwise the position of the nested namespace's init. nil: unknown (error above).
        var chain: [[Int]?] = Array(repeating: nil, count: procs.count)
        let topChain = [-1]  // shared by every process without an in-tree parent
        var done = Array(repeating: false, count: procs.count)
        for start in procs.indices where !done[start] {
            // Walk up to a process whose chain is known or that has no in-tree parent.
            var path: [Int] = []
            var i = start
            while !done[i] {
                path.append(i)
                guard !inCycle[i], let p = parent[i] else { break }
                i = p
            }
            for k in path.reversed() {
                done[k] = true
                if inCycle[k] || procs[k].nspid.isEmpty { continue }
                let base: [Int]
                if let p = parent[k] {
                    guard let pc = chain[p] else { continue }
                    base = pc
                } else {
                    base = topChain
                }
                let newPidNamespace = procs[k].newPidNamespace, levelCount = procs[k].nspid.count
                let expected = base.count + (newPidNamespace ? 1 : 0)
                if levelCount != expected {
                    let levels = levelCount == 1 ? "1 level" : "\(levelCount) levels"
                    if let p = parent[k] {
                        report(k, "nspid has \(levels) but its parent \(name(p)) has \(base.count); a child is "
                               + "in its parent's PID namespace (as many levels) or, with newPidNamespace, "
                               + "one level deeper (\(expected) here)")
                    } else {
                        report(k, "nspid has \(levels) but the process has no parent in the tree, so it "
                               + "hangs under the namespace init and must have \(expected)"
                               + (newPidNamespace ? " (newPidNamespace adds one)" : ""))
                    }
                    continue
                }
                chain[k] = newPidNamespace ? base + [k] : base
            }
        }
        // Local PIDs per nested namespace: (init position, level, local pid) -> first holder.
        struct Key: Hashable { var ns: Int; var level: Int; var pid: Int32 }
        var holder: [Key: Int] = [:]
        for i in procs.indices {
            guard let c = chain[i] else { continue }
            for level in 1..<max(1, c.count) {
                let key = Key(ns: c[level], level: level, pid: procs[i].nspid[level])
                if let j = holder[key] {
                    report(i, "nspid[\(level)] = \(key.pid) is also the PID of \(name(j)) in the same "
                           + "nested PID namespace (the one whose init is \(name(c[level])))")
                } else {
                    holder[key] = i
                }
            }
        }
    }

    // MARK: id maps

    mutating func checkMappings(_ mappings: [IDMapping]?, _ field: String) {
        guard let mappings else { return }
        for p in TreeValidator.mappingProblems(mappings, field: field) {
            report(entry: p.entry, p.message)
        }
    }
}
