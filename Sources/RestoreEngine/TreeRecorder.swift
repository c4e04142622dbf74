import Glibc
import RestoreModel

/// Options of `record`.
public struct RecordOptions: Sendable {
    public var includeEnv = true
    /// Stop the tree with SIGSTOP while reading it, resume it after.
    public var freeze = false
    /// Record what can be read and warn about the rest instead of refusing.
    public var partial = false
    /// Mark every process but the root `"spawn": "payload"`: the root's payload forks them.
    public var spawnByPayload = false
    /// How many times the tree is read at most until two consecutive reads agree.
    public var maxPasses = 6

    public init() {}
}

/// Reads a live process tree from /proc into tree.json form: PIDs at every level from the
/// root's own PID namespace down, ppid/pgid/sid, state and zombie status, threads, argv, env,
/// cwd and credentials. The tree is read until two passes agree (start times detect PID reuse).
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
    }

    public static func record(root: Int32, options: RecordOptions = RecordOptions()) throws -> (tree: ProcessTree, warnings: [String]) {
        guard StatLine.read(root) != nil else {
            throw RestoreError(.input, operation: "open /proc/\(root)/stat", errno: ESRCH, entry: "process \(root)", message: "no such process")
        }
        var stopped: [Int32] = []
        var preFreezeStates: [Int32: Character] = [:]
        if options.freeze {
            for pid in descendants(of: root) {
                guard let s = StatLine.read(pid) else { continue }
                preFreezeStates[pid] = s.state
                if s.state != "T" && s.state != "t" && s.state != "Z" && kill(pid, SIGSTOP) == 0 { stopped.append(pid) }
            }
            waitUntilStopped(stopped)
        }
        defer { for pid in stopped { kill(pid, SIGCONT) } }

        var previous: [Snapshot]?
        for _ in 0..<options.maxPasses {
            let now = try snapshot(root: root)
            if let previous, previous == now {
                return try build(now, root: root, options: options, preFreezeStates: preFreezeStates)
            }
            previous = now
        }
        throw RestoreError(.input, operation: "record", entry: "process \(root)",
                           message: "the tree kept changing while it was read (\(options.maxPasses) passes never agreed: processes started, ended or changed groups); try --freeze")
    }

    static func waitUntilStopped(_ pids: [Int32]) {
        let deadline = MonotonicClock.nanoseconds() + 2_000_000_000
        for pid in pids {
            while let s = StatLine.read(pid), s.state != "T", s.state != "t", s.state != "Z",
                  MonotonicClock.nanoseconds() < deadline {
                var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                nanosleep(&ts, nil)
            }
        }
    }

    /// The root and all its descendants, parents before children.
    static func descendants(of root: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for pid in allPids() {
            if let s = StatLine.read(pid) { children[s.ppid, default: []].append(pid) }
        }
        var out = [root]
        var i = 0
        while i < out.count {
            out += (children[out[i]] ?? []).sorted()
            i += 1
        }
        return out
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
            guard let stat = StatLine.read(pid), let status = ProcStatus.read(pid),
                  let text = SystemCalls.readText("/proc/\(pid)/status") else { continue }
            var uid: UInt32 = 0, gid: UInt32 = 0, groups: [UInt32] = []
            for line in text.split(separator: "\n") {
                let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
                guard let key = fields.first else { continue }
                if key == "Uid:", fields.count > 1 { uid = UInt32(fields[1]) ?? 0 }
                if key == "Gid:", fields.count > 1 { gid = UInt32(fields[1]) ?? 0 }
                if key == "Groups:" { groups = fields.dropFirst().compactMap { UInt32($0) } }
            }
            var tasks: [[Int32]] = []
            if let dir = opendir("/proc/\(pid)/task") {
                var tids: [Int32] = []
                while let e = readdir(dir) {
                    let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                    if let t = Int32(name) { tids.append(t) }
                }
                closedir(dir)
                for t in tids.sorted() {
                    if let ts = ProcStatus.read(t, procRoot: "/proc/\(pid)/task") { tasks.append(ts.nspid) }
                }
            }
            out.append(Snapshot(hostPid: pid, startTime: stat.startTime, hostPPid: stat.ppid, nspid: status.nspid,
                                nspgid: status.nspgid, nssid: status.nssid, state: stat.state, exitCode: stat.exitCode,
                                taskNSpids: tasks, uid: uid, gid: gid, groups: groups))
        }
        guard out.first?.hostPid == root else {
            throw RestoreError(.input, operation: "record", entry: "process \(root)", message: "the process ended while it was read")
        }
        return out
    }

    static func build(_ snaps: [Snapshot], root: Int32, options: RecordOptions,
                      preFreezeStates: [Int32: Character]) throws -> (tree: ProcessTree, warnings: [String]) {
        let level = max(0, snaps[0].nspid.count - 1)
        var atLevel: [Int32: Int32] = [:] // host pid -> pid at the root's level
        for s in snaps where s.nspid.count > level { atLevel[s.hostPid] = s.nspid[level] }
        var warnings: [String] = []
        var problems: [String] = []
        var entries: [ProcessEntry] = []
        let euid = UInt32(geteuid()), egid = UInt32(getegid())
        for (i, s) in snaps.enumerated() {
            let pid = atLevel[s.hostPid] ?? 0
            var ppid: Int32 = atLevel[s.hostPPid] ?? 0
            if ppid == 0, let p = ProcStatus.read(s.hostPPid), p.nspid.count > level { ppid = p.nspid[level] }
            let stateLetter = preFreezeStates[s.hostPid] ?? s.state
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
            entry.threads = s.taskNSpids.count > 1 ? s.taskNSpids.compactMap { $0.count > level ? $0[level] : nil } : []
            if entry.nspid.count > 1 && s.taskNSpids.count > 1 {
                entry.threadLevels = s.taskNSpids.map { Array($0.dropFirst(level)) }
            }
            entry.spawnedByPayload = options.spawnByPayload && i > 0
            if state != .zombie {
                var spec = ProcessSpec()
                let who = "process \(pid) (host pid \(s.hostPid))"
                if let raw = SystemCalls.readFile("/proc/\(s.hostPid)/cmdline") {
                    let args = raw.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
                    let trimmed = args.last == "" ? Array(args.dropLast()) : args
                    if !trimmed.isEmpty { spec.args = trimmed }
                } else {
                    problems.append("\(who): cannot read /proc/\(s.hostPid)/cmdline")
                }
                if options.includeEnv {
                    if let raw = SystemCalls.readFile("/proc/\(s.hostPid)/environ") {
                        spec.env = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                    } else {
                        problems.append("\(who): cannot read /proc/\(s.hostPid)/environ (\(ErrnoName.describe(Glibc.errno))): not your process?")
                    }
                }
                var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlink("/proc/\(s.hostPid)/cwd", &buf, buf.count - 1)
                if n > 0 {
                    spec.cwd = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                } else {
                    problems.append("\(who): cannot read /proc/\(s.hostPid)/cwd (\(ErrnoName.describe(Glibc.errno)))")
                }
                spec.user = UserSpec(uid: s.uid, gid: s.gid, additionalGids: s.groups.filter { $0 != s.gid })
                recordConfinement(of: s.hostPid, into: &spec, who: who, warnings: &warnings)
                entry.process = spec
            }
            entries.append(entry)
        }
        if !problems.isEmpty {
            if !options.partial {
                throw RestoreError(.input, operation: "record", entry: "process \(root)",
                                   message: "cannot read everything of the tree; nothing was written (use --partial to record what can be read):\n  " + problems.joined(separator: "\n  "))
            }
            warnings += problems
        }
        var tree = ProcessTree(processes: entries)
        if snaps.allSatisfy({ $0.uid == euid }) { tree.uidMappings = [IDMapping(containerID: euid, hostID: euid, size: 1)] }
        if snaps.allSatisfy({ $0.gid == egid }) { tree.gidMappings = [IDMapping(containerID: egid, hostID: egid, size: 1)] }
        warnings.append("the child-subreaper flag is not visible in /proc; set \"childSubreaper\": true by hand where a process used PR_SET_CHILD_SUBREAPER")
        return (tree, warnings)
    }
}

extension TreeRecorder {
    /// umask, capability sets and no_new_privs from /proc/PID/status, rlimits from
    /// /proc/PID/limits. A seccomp filter cannot be read back: it is reported, not recorded.
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
            if let mode = LinuxFormats.statusField(status, "Seccomp")?.first, mode != "0" {
                warnings.append("\(who): runs under seccomp (Seccomp: \(mode)), whose filter /proc does not show; it is not recorded (add process.seccomp by hand)")
            }
        }
        if let limits = SystemCalls.readText("/proc/\(pid)/limits") {
            let parsed = ResourceLimits.parseProcLimits(limits)
            if !parsed.isEmpty { spec.rlimits = parsed }
        }
    }
}

/// The fields of /proc/PID/stat that `record` needs.
struct StatLine {
    var state: Character
    var ppid: Int32
    var startTime: UInt64
    var exitCode: Int32

    static func read(_ pid: Int32) -> StatLine? {
        guard let text = SystemCalls.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ppid = Int32(fields[1]) else { return nil }
        let exit = fields.count > 49 ? Int32(fields[49].prefix(while: { $0.isNumber || $0 == "-" })) ?? 0 : 0
        return StatLine(state: state, ppid: ppid, startTime: UInt64(fields[19]) ?? 0, exitCode: exit)
    }
}
