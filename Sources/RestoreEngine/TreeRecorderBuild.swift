import Glibc
import RestoreModel

// Turning agreed snapshots into tree entries: programs, titles, namespaces, credentials,
// subreaper flags; and the check that `run` would accept the result.

extension TreeRecorder {
    /// What /proc says about one live process beyond its snapshot.
    struct Program {
        var exe: String?
        var exeDeleted = false
        var exeFile: (dev: UInt64, ino: UInt64)?
        var layout: [UInt64] = []
        var userNamespace: String?
        var pidNamespace: String?
    }

    static func program(of pid: Int32) -> Program {
        var p = Program()
        if var exe = readLink("/proc/\(pid)/exe") {
            if exe.hasSuffix(" (deleted)") { exe.removeLast(" (deleted)".count); p.exeDeleted = true }
            p.exe = exe
        }
        var st = stat()
        if stat("/proc/\(pid)/exe", &st) == 0 { p.exeFile = (UInt64(st.st_dev), UInt64(st.st_ino)) }
        p.layout = StatLine.read(pid)?.layout ?? []
        p.userNamespace = readLink("/proc/\(pid)/ns/user")
        p.pidNamespace = readLink("/proc/\(pid)/ns/pid")
        return p
    }

    static func readLink(_ path: String) -> String? { readLinkOrErrno(path).target }

    /// readlink(2), with the errno read right after a failure (before anything can clobber it).
    static func readLinkOrErrno(_ path: String) -> (target: String?, errno: Int32) {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return (nil, n < 0 ? Glibc.errno : ENOENT) }
        return (String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self), 0)
    }

    /// Whether `name`, looked up as execvp would (a `/` in it: relative to `cwd`; else in
    /// `PATH`), is the file `file`; looked up under `root` (the process's /proc/PID/root: a
    /// process of a container sees the container's files, not the recorder's).
    static func resolves(_ name: String, to file: (dev: UInt64, ino: UInt64), path: String?, cwd: String?, root: String = "") -> Bool {
        func same(_ candidate: String) -> Bool {
            var st = stat()
            let absolute = candidate.hasPrefix("/") ? candidate : (cwd ?? "") + "/" + candidate
            return stat(root + absolute, &st) == 0 && UInt64(st.st_dev) == file.dev && UInt64(st.st_ino) == file.ino
        }
        guard !name.isEmpty else { return false }
        if name.contains("/") {
            return same(name.hasPrefix("/") || cwd == nil ? name : cwd! + "/" + name)
        }
        let dirs = (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":", omittingEmptySubsequences: false)
        return dirs.contains { same(($0.isEmpty ? "." : String($0)) + "/" + name) }
    }

    static func build(_ recorded: [Snapshot], root: Int32, options: RecordOptions,
                      findings: Findings) throws -> (tree: ProcessTree, warnings: [String], notes: [String]) {
        // tmux servers and scripts recreate their pty children (TreeRecorderTmux).
        let (snaps, replays) = planReplays(recorded, findings: findings, options: options)
        let level = max(0, snaps[0].nspid.count - 1)
        var atLevel: [Int32: Int32] = [:] // host pid -> pid at the root's level
        for s in snaps where s.nspid.count > level { atLevel[s.hostPid] = s.nspid[level] }
        let byHost = Dictionary(snaps.map { ($0.hostPid, $0) }, uniquingKeysWith: { a, _ in a })
        var warnings: [String] = []
        var problems: [String] = []
        var programs: [Int32: Program] = [:]
        for s in snaps where s.state != "Z" { programs[s.hostPid] = program(of: s.hostPid) }
        let aslr = (SystemCalls.readText("/proc/sys/kernel/randomize_va_space")?.first ?? "2") != "0"

        // Creation order among siblings, by start time.
        var siblings: [Int32: [Snapshot]] = [:]
        for s in snaps.dropFirst() { siblings[s.hostPPid, default: []].append(s) }
        var forkOrder: [Int32: Int] = [:]
        for (_, list) in siblings {
            for (k, s) in list.sorted(by: { ($0.startTime, $0.hostPid) < ($1.startTime, $1.hostPid) }).enumerated() { forkOrder[s.hostPid] = k }
        }

        // The root's user namespace becomes the tree's; ids are kept as that namespace sees them.
        let ownUserNS = readLink("/proc/self/ns/user")
        let rootUserNS = programs[root]?.userNamespace
        var uidMap: [IDMapping]?, gidMap: [IDMapping]?
        var unmapped = false
        if let rootUserNS, rootUserNS != ownUserNS {
            uidMap = parseIDMap(SystemCalls.readText("/proc/\(root)/uid_map") ?? "")
            gidMap = parseIDMap(SystemCalls.readText("/proc/\(root)/gid_map") ?? "")
            if uidMap?.isEmpty == true || gidMap?.isEmpty == true {
                // `unshare --user` without a map: everyone inside is the overflow id 65534,
                // which a restore cannot reproduce (its namespace needs a map to exec).
                unmapped = true
                uidMap = nil
                gidMap = nil
                warnings.append("the root's user namespace (\(rootUserNS)) has no uid or gid map, so its processes run as the overflow id 65534; recorded with the default map instead (your uid and gid as 0 inside)")
            }
        }
        func inside(_ id: UInt32, _ map: [IDMapping]?) -> UInt32 {
            guard let map else { return id }
            for m in map where id >= m.hostID && UInt64(id) < UInt64(m.hostID) + UInt64(m.size) { return m.containerID + (id - m.hostID) }
            return 65534
        }

        var forked: [String] = []
        var envLost: [String] = []
        var seccompInherited = 0
        var seccompOwn: [String] = []
        let mySeccomp = SeccompState.of("self")
        var entries: [ProcessEntry] = []
        var hostOf: [Int: Int32] = [:]
        for (i, s) in snaps.enumerated() {
            let pid = atLevel[s.hostPid] ?? 0
            var ppid: Int32 = atLevel[s.hostPPid] ?? 0
            if ppid == 0, let p = ProcStatus.read(s.hostPPid), p.nspid.count > level { ppid = p.nspid[level] }
            let stateLetter = findings.preFreezeStates[s.hostPid] ?? s.state
            let state: ProcessState = stateLetter == "Z" ? .zombie : (stateLetter == "T" || stateLetter == "t") ? .stopped : .running
            var exitStatus: ExitStatus?
            if state == .zombie {
                let code = s.exitCode
                exitStatus = (code & 0x7f) == 0 ? .code((code >> 8) & 0xff) : .signal(code & 0x7f)
            }
            var entry = ProcessEntry(index: i, pid: pid, ppid: ppid,
                                     pgid: s.nspgid.count > level ? s.nspgid[level] : 0,
                                     sid: s.nssid.count > level ? s.nssid[level] : 0,
                                     nspid: Array(s.nspid.dropFirst(level)), state: state, exitStatus: exitStatus)
            hostOf[i] = s.hostPid
            entry.threads = s.taskNSpids.count > 1 ? s.taskNSpids.compactMap { $0.count > level ? $0[level] : nil } : []
            if entry.nspid.count > 1 && s.taskNSpids.count > 1 {
                entry.threadLevels = s.taskNSpids.map { Array($0.dropFirst(level)) }
            }
            entry.spawnedByPayload = (options.spawnByPayload && i > 0) || replays.payload.contains(s.hostPid)
            entry.childSubreaper = findings.subreaper[s.hostPid] ?? false
            let who = "process \(pid) (host pid \(s.hostPid))"
            let parent = i > 0 ? byHost[s.hostPPid] : nil

            // A process one PID-namespace level below its parent is the init of a nested one.
            if let parent, s.nspid.count > parent.nspid.count {
                if s.nspid.last == 1 && s.nspid.count == parent.nspid.count + 1 {
                    entry.newPidNamespace = true
                } else {
                    problems.append("\(who): is in a PID namespace below its parent's but is not that namespace's init (its PIDs \(s.nspid)); this runtime creates a nested namespace only with its init as the child of a process in the tree")
                }
            }

            if state != .zombie, let prog = programs[s.hostPid] {
                if let rootUserNS, let ns = prog.userNamespace, ns != rootUserNS {
                    let map = (SystemCalls.readText("/proc/\(s.hostPid)/uid_map") ?? "").split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }.joined(separator: ", ")
                    problems.append("\(who): is in a user namespace of its own (\(ns), uid_map \(map)), below the root's; a tree is restored in one user namespace: record PID \(s.hostPid) instead, whose map then becomes the tree's")
                }
                var spec = ProcessSpec()
                let (cwd, cwdErrno) = readLinkOrErrno("/proc/\(s.hostPid)/cwd")
                if cwd == nil { problems.append("\(who): cannot read /proc/\(s.hostPid)/cwd (\(ErrnoName.describe(cwdErrno)))") }
                spec.cwd = cwd
                let cmdline = SystemCalls.readFile("/proc/\(s.hostPid)/cmdline")
                if cmdline == nil { problems.append("\(who): cannot read /proc/\(s.hostPid)/cmdline") }
                let environ = SystemCalls.readFile("/proc/\(s.hostPid)/environ")
                let environError = Glibc.errno
                let areas = prog.layout.count == 10
                    ? CommandLineReading.Areas(argStart: prog.layout[6], argEnd: prog.layout[7], envStart: prog.layout[8], envEnd: prog.layout[9]) : nil
                // PATH as the process would look its program up.
                let firstPass = CommandLineReading.read(cmdline: cmdline ?? [], environ: environ, areas: areas, argv0IsProgram: true)
                let path = firstPass.env?.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
                // The process's own view of the files where the recorder may look through it
                // (not for a non-dumpable process: then the recorder's view).
                let fileRoot = access("/proc/\(s.hostPid)/root/", X_OK) == 0 ? "/proc/\(s.hostPid)/root" : ""
                let argv0IsProgram = prog.exeFile.map { resolves(firstPass.args.first ?? "", to: $0, path: path, cwd: cwd, root: fileRoot) } ?? true
                let reading = CommandLineReading.read(cmdline: cmdline ?? [], environ: environ, areas: areas, argv0IsProgram: argv0IsProgram)

                var isFork = false
                if aslr, let parent, let pp = programs[parent.hostPid], let exe = prog.exe, exe == pp.exe,
                   prog.layout.count == 10, prog.layout == pp.layout, prog.layout.contains(where: { $0 != 0 }) {
                    isFork = true
                }
                entry.recorded = RecordedIdentity(exe: prog.exe, cmdline: reading.args, titleRewritten: reading.titleRewritten,
                                                  forkedNotExeced: isFork, startTime: s.startTime, forkOrder: i > 0 ? forkOrder[s.hostPid] : nil)

                if let given = options.argvOverrides[s.hostPid] {
                    spec.args = given
                } else if options.hold.contains(s.hostPid) {
                    spec.args = nil
                } else if entry.spawnedByPayload {
                    // Its parent's payload forks it; an argv would never be used.
                    if !isFork && !reading.titleRewritten && !reading.args.isEmpty { spec.args = reading.args }
                } else if isFork {
                    forked.append("\(pid)")
                } else if reading.titleRewritten {
                    let title = reading.args.first ?? ""
                    let what = "\(who) (\(prog.exe ?? "?")): overwrote its command line with a process title \(JSONValue.quoted(title, limit: 60)) (\(reading.titleReason ?? "")): the argv it was started with cannot be read"
                    if options.partial {
                        warnings.append(what + "; recorded holding (give its argv with --args \(s.hostPid)='[\"\(prog.exe ?? "PROGRAM")\", ...]')")
                    } else {
                        problems.append(what + "; give it with --args \(s.hostPid)='[\"\(prog.exe ?? "PROGRAM")\", ...]' (a JSON array), or use --partial to record it holding")
                    }
                } else if reading.args.isEmpty {
                    warnings.append("\(who): has an empty command line (its argument area is empty): recorded holding")
                } else if prog.exeDeleted {
                    problems.append("\(who): its program \(prog.exe ?? "?") was deleted or replaced after it started: a restore would run another program or none")
                } else if !argv0IsProgram, let exe = prog.exe {
                    var args = reading.args
                    let was = args[0]
                    if exe.hasSuffix("/busybox") {
                        args[0] = String(was.split(separator: "/").last ?? Substring(was))
                        args.insert(exe, at: 0)
                    } else {
                        args[0] = exe
                    }
                    spec.args = args
                    warnings.append("\(who): argv[0] \(JSONValue.quoted(was, limit: 60)) does not name its program \(exe) (in its PATH and cwd); recorded with \(JSONValue.quoted(args[0], limit: 60)), so the program sees that as argv[0]")
                } else {
                    spec.args = reading.args
                }

                if options.includeEnv {
                    if environ == nil {
                        problems.append("\(who): cannot read /proc/\(s.hostPid)/environ (\(ErrnoName.describe(environError))): not your process?")
                    } else if let env = reading.env {
                        spec.env = env
                    } else if !entry.spawnedByPayload && !isFork {
                        envLost.append("\(pid)")
                    }
                }
                // A program that changed directory after it started (PostgreSQL into its data
                // directory) is restarted where it was started, so relative paths in its argv work.
                if let dir = cwd, let args = spec.args, let env = reading.env,
                   let found = CommandLineReading.launchDirectory(cwd: dir, env: env, args: args,
                                                                  exists: { access(fileRoot + $0, F_OK) == 0 }) {
                    spec.cwd = found.dir
                    warnings.append("\(who): its cwd is \(dir), but its argument \(JSONValue.quoted(found.argument, limit: 60)) is a path relative to \(found.dir), where it was started (its PWD): recorded cwd \(found.dir), so that the restarted program finds it")
                }
                let user = UserSpec(uid: inside(s.uid, uidMap), gid: inside(s.gid, gidMap),
                                    additionalGids: s.groups.filter { $0 != s.gid }.map { inside($0, gidMap) })
                spec.user = unmapped ? nil : user
                recordConfinement(of: s.hostPid, into: &spec, who: who, warnings: &warnings)
                if let theirs = SeccompState.read(String(s.hostPid)), theirs.mode != 0 {
                    if mySeccomp.mode == 2 && theirs.mode == 2 && theirs.filters <= mySeccomp.filters { seccompInherited += 1 }
                    else { seccompOwn.append("\(pid)") }
                }
                entry.process = spec
            }
            entries.append(entry)
        }
        if !forked.isEmpty {
            warnings.append("processes \(list(forked)) are forks of their parents that never exec'd (same program and memory layout): no argv can start them again, so they are recorded holding; if the parent's program forks them again when restored, record with --spawn-by-payload")
        }
        if !envLost.isEmpty {
            warnings.append("processes \(list(envLost)): their environment area was overwritten (a process title), so their environment cannot be read: recorded without env (they get run's environment)")
        }
        if seccompInherited > 0 {
            warnings.append("\(seccompInherited) processes run under the seccomp filter rootless-restore runs under too (inherited, e.g. from the container): not recorded; a restore here inherits it again")
        }
        if !seccompOwn.isEmpty {
            warnings.append("processes \(list(seccompOwn)) run under a seccomp filter of their own, which /proc does not show: not recorded (add process.seccomp by hand)")
        }
        if !problems.isEmpty {
            if !options.partial {
                throw RestoreError(.input, operation: "record", entry: "process \(root)",
                                   message: "cannot record everything of the tree; nothing was written (use --partial to record what can be read):\n  " + problems.joined(separator: "\n  "))
            }
            warnings += problems
        }
        applyReplays(snaps, &entries, replays, level: level, warnings: &warnings)
        for (host, why) in findings.tmuxUnasked.sorted(by: { $0.key < $1.key }) {
            warnings.append("host pid \(host) is a tmux server that could not be asked what it holds: \(why); recorded as any process")
        }
        var terminals = recordTerminals(snaps, &entries, level: level, hold: options.hold.union(replays.holders), warnings: &warnings)
        var notes: [String] = []
        if options.jobReplay { recordShellJobs(snaps, &entries, options: options, stopCodes: findings.preFreezeExitCodes, warnings: &warnings, notes: &notes) }
        dropRecreatedTerminals(snaps, &entries, &terminals, replays)
        var tree = ProcessTree(processes: entries, terminals: terminals)
        if let uidMap, let gidMap {
            tree.uidMappings = uidMap
            tree.gidMappings = gidMap
        } else if !unmapped {
            let euid = UInt32(geteuid()), egid = UInt32(getegid())
            if snaps.allSatisfy({ $0.uid == euid }) { tree.uidMappings = [IDMapping(containerID: euid, hostID: euid, size: 1)] }
            if snaps.allSatisfy({ $0.gid == egid }) { tree.gidMappings = [IDMapping(containerID: egid, hostID: egid, size: 1)] }
        }

        // Subreaper flags that could not be read: the fewest processes that must have had the
        // flag for the tree's shape to be possible.
        let unknown = entries.indices.filter { hostOf[$0].map { findings.subreaperUnknown[$0] != nil } ?? false }
        if !unknown.isEmpty {
            let reasons = Dictionary(grouping: unknown, by: { findings.subreaperUnknown[hostOf[$0]!]! })
                .map { "\(list($0.value.map { String(entries[$0].pid) })): \($0.key)" }.sorted()
            var note = "the child-subreaper flag could not be read for " + reasons.joined(separator: "; ")
            if acceptance(tree) != nil {
                let parents = Set(entries.map(\.ppid))
                let candidates = unknown.filter { parents.contains(entries[$0].pid) }.prefix(64)
                var trial = tree
                for c in candidates { trial.processes[c].childSubreaper = true }
                if acceptance(trial) == nil {
                    for c in candidates {
                        trial.processes[c].childSubreaper = false
                        if acceptance(trial) != nil { trial.processes[c].childSubreaper = true }
                    }
                    tree = trial
                    let set = candidates.filter { trial.processes[$0].childSubreaper }.map { String(entries[$0].pid) }
                    note += "; inferred from the tree's shape: set on \(list(set)) (orphans below them need a reaper), not set on the others"
                }
            } else {
                note += "; recorded as not set (the tree's shape does not need it)"
            }
            warnings.append(note)
        }

        if let problem = acceptance(tree) {
            let message = "the recorded tree would not restore: \(problem.description)"
            if !options.partial {
                throw RestoreError(.input, operation: "record", entry: "process \(root)",
                                   message: message + "\nnothing was written (--partial writes it anyway)")
            }
            warnings.append(message)
        }
        return (tree, warnings, notes)
    }

    /// What `run` would refuse about a tree, or nil: the same parse, validation, split of
    /// payload forks and plan as `run` and `validate`.
    static func acceptance(_ tree: ProcessTree) -> RestoreError? {
        do {
            let parsed = try TreeParser.parse(Array(TreeEncoder.encode(tree).utf8))
            try TreeValidator.validate(parsed)
            let (rest, _) = try PinnedForks.split(ShellJobReplay.apply(to: parsed, callerEnvironment: []))
            _ = try RestorePlanner.plan(rest)
            return nil
        } catch let e as RestoreError {
            return e
        } catch {
            return RestoreError(.invalidTree, operation: "record", message: "\(error)")
        }
    }

    static func list(_ items: [String]) -> String {
        items.count <= 12 ? items.joined(separator: ", ") : items.prefix(12).joined(separator: ", ") + " and \(items.count - 12) more"
    }

    /// `inside outside count` lines of /proc/PID/uid_map as the reader sees them.
    static func parseIDMap(_ text: String) -> [IDMapping] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true).compactMap { UInt32($0) }
            return f.count == 3 ? IDMapping(containerID: f[0], hostID: f[1], size: f[2]) : nil
        }
    }
}

extension TreeRecorder {
    /// umask, capability sets and no_new_privs from /proc/PID/status, rlimits from
    /// /proc/PID/limits. A seccomp filter cannot be read back: `build` reports it.
    static func recordConfinement(of pid: Int32, into spec: inout ProcessSpec, who: String, warnings: inout [String]) {
        if let status = SystemCalls.readText("/proc/\(pid)/status") {
            if let word = LinuxFormats.statusField(status, "Umask")?.first, let mask = UInt32(word, radix: 8) {
                spec.user?.umask = mask
            }
            var caps = CapabilitySpec()
            var unknown: Set<Int> = []
            func set(_ key: String) -> [String]? {
                guard let mask = LinuxFormats.parseCapabilityMask(status, key) else { return nil }
                let (names, extra) = Capabilities.names(of: mask)
                unknown.formUnion(extra)
                return names
            }
            caps.bounding = set("CapBnd")
            caps.effective = set("CapEff")
            caps.permitted = set("CapPrm")
            caps.inheritable = set("CapInh")
            caps.ambient = set("CapAmb")
            if caps.bounding != nil || caps.effective != nil { spec.capabilities = caps }
            if !unknown.isEmpty {
                warnings.append("\(who): capabilities \(unknown.sorted().map(String.init).joined(separator: ", ")) have no name this runtime knows; they are not recorded")
            }
            if LinuxFormats.statusField(status, "NoNewPrivs")?.first == "1" { spec.noNewPrivileges = true }
        }
        if let limits = SystemCalls.readText("/proc/\(pid)/limits") {
            let parsed = ResourceLimits.parseProcLimits(limits)
            if !parsed.isEmpty { spec.rlimits = parsed }
        }
    }
}

/// `Seccomp:` (0 none, 1 strict, 2 filter) and `Seccomp_filters:` of /proc/PID/status.
struct SeccompState {
    var mode: Int
    var filters: Int

    static func read(_ pid: String) -> SeccompState? {
        guard let status = SystemCalls.readText("/proc/\(pid)/status") else { return nil }
        let mode = LinuxFormats.statusField(status, "Seccomp")?.first.flatMap { Int($0) } ?? 0
        let filters = LinuxFormats.statusField(status, "Seccomp_filters")?.first.flatMap { Int($0) } ?? (mode == 2 ? 1 : 0)
        return SeccompState(mode: mode, filters: filters)
    }
}

extension SeccompState {
    /// As `read`, with "none" when the status cannot be read.
    static func of(_ pid: String) -> SeccompState { read(pid) ?? SeccompState(mode: 0, filters: 0) }
}

/// The fields of /proc/PID/stat that `record` needs.
struct StatLine {
    /// The name between the parentheses (comm).
    var comm: Substring
    var state: Character
    var ppid: Int32
    var startTime: UInt64
    var exitCode: Int32
    /// tty_nr (the controlling terminal's device, 0: none) and tpgid (its foreground group,
    /// in the reader's PID namespace; -1: none).
    var ttyNr: UInt32 = 0
    var tpgid: Int32 = -1
    /// startcode, endcode, startstack, start_data, end_data, start_brk, arg_start, arg_end,
    /// env_start, env_end (fields 26-28, 45-51): equal in a parent and a fork that never exec'd.
    var layout: [UInt64]
    /// exit_signal (field 38): what the parent gets when it ends; SIGCHLD for fork and
    /// clone(SIGCHLD), 0 for a task cloned without one (the fork supervisor's receiver).
    var exitSignal: Int32

    static func read(_ pid: Int32) -> StatLine? {
        guard let text = SystemCalls.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ppid = Int32(fields[1]) else { return nil }
        let exit = fields.count > 49 ? Int32(fields[49].prefix(while: { $0.isNumber || $0 == "-" })) ?? 0 : 0
        var layout: [UInt64] = []
        if fields.count > 48 {
            layout = ([23, 24, 25] + Array(42...48)).map { UInt64(fields[$0]) ?? 0 }
        }
        let name = text.firstIndex(of: "(").map { text[text.index(after: $0)..<close] } ?? ""
        return StatLine(comm: name, state: state, ppid: ppid, startTime: UInt64(fields[19]) ?? 0, exitCode: exit,
                        ttyNr: UInt32(truncatingIfNeeded: Int64(fields[4]) ?? 0), tpgid: Int32(fields[5]) ?? -1, layout: layout,
                        exitSignal: fields.count > 35 ? Int32(fields[35]) ?? Int32(SIGCHLD) : Int32(SIGCHLD))
    }
}
