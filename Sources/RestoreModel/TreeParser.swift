// tree.json version 1 -> ProcessTree (docs/tree-format.md, docs/tree.schema.json).
//
// The parser checks the shape of the file: JSON syntax, types, integer ranges of the target
// types, required keys, unknown keys (rejected, with a suggestion), `version == 1`, a
// non-empty `processes`, and `nspid[0] == pid`. Whether the tree makes sense (PID ranges,
// duplicates, cycles, zombies, namespaces, id maps) is `TreeValidator`'s job.
//
// Every error is a `RestoreError` of kind `.invalidTree`, operation "parse", whose entry names
// the element and the position, e.g.
//   process #3 (pid 17), line 22, column 7: unknown key "ppdi" (did you mean "ppid"?)

public enum TreeParser {
    /// The largest tree file accepted: 64 MiB (67 108 864 bytes). A process entry with a full
    /// command line and environment takes a few kilobytes, so this leaves room for tens of
    /// thousands of processes while bounding the memory a hostile or corrupt file can claim.
    public static let maxFileSize = 64 * 1024 * 1024

    /// The keys accepted in each kind of object, by section. The section names are the
    /// `$defs` names of docs/tree.schema.json; "tree" is the top-level object.
    public static let knownKeys: [String: [String]] = [
        "tree": ["version", "comment", "processes", "uidMappings", "gidMappings", "terminals"],
        "processEntry": ["pid", "ppid", "pgid", "sid", "nspid", "state", "exitStatus", "threads",
                         "newPidNamespace", "childSubreaper", "spawn", "process", "recorded", "terminal", "stdio", "shellJobs", "tmux"],
        "shellJob": ["pgid", "state", "stopSignal", "members"],
        "terminal": ["id", "session", "foreground", "recordedAs", "rows", "columns", "modes"],
        "terminalModes": ["iflag", "oflag", "cflag", "lflag", "cc"],
        "recordedIdentity": ["exe", "cmdline", "titleRewritten", "forkedNotExeced", "startTime", "forkOrder"],
        "processSpec": ["args", "env", "cwd", "user", "capabilities", "noNewPrivileges", "rlimits", "seccomp"],
        "userSpec": ["uid", "gid", "additionalGids", "umask"],
        "idMapping": ["containerID", "hostID", "size"],
        "exitSignal": ["signal"],
        "capabilities": ["bounding", "effective", "permitted", "inheritable", "ambient"],
        "rlimit": ["type", "soft", "hard"],
        "seccomp": ["defaultAction", "defaultErrnoRet", "architectures", "syscalls"],
        "seccompSyscall": ["names", "action", "errnoRet", "args"],
        "seccompArg": ["index", "value", "valueTwo", "op"],
    ].merging(TmuxReplay.knownKeys) { a, _ in a }

    /// Linux x86_64 signal names 1...31, without the SIG prefix.
    public static let signalNames: [Int32: String] = [
        1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE",
        9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM",
        16: "STKFLT", 17: "CHLD", 18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU",
        23: "URG", 24: "XCPU", 25: "XFSZ", 26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO",
        30: "PWR", 31: "SYS",
    ]

    /// Other names of the same signals: SIGIOT = SIGABRT, SIGPOLL = SIGIO.
    static let signalAliases: [String: Int32] = ["IOT": 6, "POLL": 29]

    /// Every string `exitStatus.signal` accepts, sorted: "HUP", "SIGHUP", ... (the schema's enum).
    public static let acceptedSignalNames: [String] = {
        var names: [String] = []
        for name in Array(signalNames.values) + Array(signalAliases.keys) {
            names.append(name)
            names.append("SIG" + name)
        }
        return names.sorted()
    }()

    /// The number of a signal name such as "SIGKILL" or "KILL" (exact case); nil if unknown.
    public static func signalNumber(named name: String) -> Int32? {
        guard name.utf8.allSatisfy({ $0 >= 0x21 && $0 < 0x7F }) else { return nil }
        let bare = name.hasPrefix("SIG") ? String(name.dropFirst(3)) : name
        if let n = signalAliases[bare] { return n }
        return signalNames.first(where: { $0.value == bare })?.key
    }

    /// Parses tree.json version 1. Throws `RestoreError` (.invalidTree, operation "parse").
    /// `plainEntryFastPath: false` reads every entry the general way (JSONValue, then
    /// decodeProcess): the tests and the fuzzer check that both ways give the same tree or error.
    public static func parse(_ bytes: [UInt8], plainEntryFastPath: Bool = true) throws -> ProcessTree {
        guard bytes.count <= maxFileSize else {
            throw RestoreError(.invalidTree, operation: "parse",
                               message: "the tree file is \(bytes.count) bytes, over the limit of "
                                   + "\(maxFileSize) bytes (64 MiB)")
        }
        // Each process entry is decoded as soon as it is parsed and its JSONValue dropped (a
        // 10^6-process tree never exists as JSONValues). A decoding error is kept and thrown
        // where decodeTree meets the processes, after the syntax of the whole file and the
        // top-level keys checked: the same error, at the same point, as decoding afterwards.
        var streamed = StreamedProcesses()
        // Room for as many entries as the file could hold (the shortest entry takes 35
        // bytes): reserved, not touched, so growing never copies the entries made so far.
        streamed.entries.reserveCapacity(bytes.count / 35 + 1)
        var reader = JSONReader(bytes)
        reader.stream = ("processes", { index, element in
            streamed.count += 1
            guard streamed.error == nil else { return }
            do { streamed.entries.append(try decodeProcess(element, index: index)) } catch { streamed.error = error }
        })
        // Plain entries (ProcessEntryScanner.swift) skip the JSONValue; the others, and all
        // after a decoding error, go the general way.
        if plainEntryFastPath { reader.fastElement = { reader, index in
            guard streamed.error == nil, let entry = reader.scanPlainProcessEntry(index: index) else { return false }
            streamed.count += 1
            streamed.entries.append(entry)
            return true
        } }
        let root = try reader.document()
        reader.stream = nil
        reader.fastElement = nil
        return try decodeTree(root, streamed: &streamed)
    }

    /// The entries of `processes` decoded while parsing.
    private struct StreamedProcesses {
        var entries: [ProcessEntry] = []
        var count = 0
        var error: Error?
    }

    // MARK: - Sections

    private static func decodeTree(_ root: JSONValue, streamed: inout StreamedProcesses) throws -> ProcessTree {
        let at = Place(entry: nil)
        guard case .object(let o) = root.kind else {
            throw at.error(root.position, "the top level must be an object such as "
                           + "{\"version\": 1, \"processes\": [...]}, found \(root.shortDescription)")
        }
        guard let versionMember = o["version"] else {
            throw at.error(root.position, "missing required key \"version\" (this runtime reads "
                           + "tree.json version \(ProcessTree.currentVersion))")
        }
        let version = try integer(versionMember.value, "version", at, as: Int32.self)
        guard version == ProcessTree.currentVersion else {
            throw at.error(versionMember.value.position, "unsupported version \(version): this runtime "
                           + "reads tree.json version \(ProcessTree.currentVersion)")
        }
        try checkKeys(o, section: "tree", at)
        if let comment = o["comment"] {
            _ = try string(comment.value, "comment", at)
        }
        let processesValue = try required(o, "processes", root, at, in: nil)
        let elements = try array(processesValue, "processes", at)
        guard !elements.isEmpty || streamed.count > 0 else {
            throw at.error(processesValue.position, "processes is empty: a tree needs at least one process")
        }
        if let error = streamed.error { throw error }
        // Moved out, not copied: a shared buffer would be copied whole by reserveCapacity.
        var processes: [ProcessEntry] = []
        swap(&processes, &streamed.entries)
        if !elements.isEmpty { processes.reserveCapacity(processes.count + elements.count) }
        for (i, element) in elements.enumerated() {
            processes.append(try decodeProcess(element, index: i))
        }
        return ProcessTree(version: Int(version), processes: processes,
                           uidMappings: try o["uidMappings"].map { try decodeMappings($0.value, "uidMappings") },
                           gidMappings: try o["gidMappings"].map { try decodeMappings($0.value, "gidMappings") },
                           terminals: try o["terminals"].map { try decodeTerminals($0.value) } ?? [])
    }

    private static func decodeTerminals(_ value: JSONValue) throws -> [TerminalSpec] {
        try array(value, "terminals", Place(entry: nil)).enumerated().map { k, element in
            let at = Place(entry: "terminals[\(k)]")
            guard case .object(let o) = element.kind else {
                throw at.error(element.position, "each element of terminals must be an object such as "
                               + "{\"id\": \"pts0\", \"session\": 100, \"foreground\": 100}, found \(element.shortDescription)")
            }
            try checkKeys(o, section: "terminal", at)
            var t = TerminalSpec(id: try string(try required(o, "id", element, at, in: nil), "id", at))
            t.session = try o["session"].map { try integer($0.value, "session", at, as: Int32.self) }
            t.foreground = try o["foreground"].map { try integer($0.value, "foreground", at, as: Int32.self) }
            t.recordedAs = try o["recordedAs"].map { try string($0.value, "recordedAs", at) }
            t.rows = try o["rows"].map { try integer($0.value, "rows", at, as: UInt16.self) }
            t.columns = try o["columns"].map { try integer($0.value, "columns", at, as: UInt16.self) }
            if let m = o["modes"] {
                guard case .object(let mo) = m.value.kind else {
                    throw at.error(m.value.position, "modes must be an object such as {\"iflag\": 17664, \"oflag\": 5, \"cflag\": 191, \"lflag\": 35387, \"cc\": [3, 28, 127]}, found \(m.value.shortDescription)")
                }
                try checkKeys(mo, section: "terminalModes", at, path: "modes")
                func flag(_ key: String) throws -> UInt32 { try integer(try required(mo, key, m.value, at, in: "modes"), "modes.\(key)", at, as: UInt32.self) }
                let ccValue = try required(mo, "cc", m.value, at, in: "modes")
                let cc = try array(ccValue, "modes.cc", at).enumerated().map { try integer($1, "modes.cc[\($0)]", at, as: UInt8.self) }
                guard cc.count <= 32 else {
                    throw at.error(ccValue.position, "modes.cc has \(cc.count) control characters; a termios has at most 32")
                }
                t.modes = TerminalModes(iflag: try flag("iflag"), oflag: try flag("oflag"), cflag: try flag("cflag"), lflag: try flag("lflag"), cc: cc)
            }
            return t
        }
    }

    private static func decodeMappings(_ value: JSONValue, _ name: String) throws -> [IDMapping] {
        let elements = try array(value, name, Place(entry: nil))
        return try elements.enumerated().map { i, element in
            let at = Place(entry: "\(name)[\(i)]")
            guard case .object(let o) = element.kind else {
                throw at.error(element.position, "each element of \(name) must be an object such as "
                               + "{\"containerID\": 0, \"hostID\": 1000, \"size\": 1}, found \(element.shortDescription)")
            }
            try checkKeys(o, section: "idMapping", at)
            func field(_ key: String) throws -> UInt32 {
                try integer(try required(o, key, element, at, in: nil), key, at, as: UInt32.self)
            }
            return IDMapping(containerID: try field("containerID"), hostID: try field("hostID"),
                             size: try field("size"))
        }
    }

    private static func decodeProcess(_ value: JSONValue, index: Int) throws -> ProcessEntry {
        var at = Place(process: index)
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "each element of processes must be an object, found \(value.shortDescription)")
        }
        var pid: Int32?
        if let m = o["pid"] {
            pid = try integer(m.value, "pid", at, as: Int32.self)
            at.process = (index, pid)
        }
        try checkKeys(o, section: "processEntry", at)
        guard let pid else {
            throw at.error(value.position, "missing required key \"pid\"")
        }
        func int32(_ key: String) throws -> Int32 {
            try integer(try required(o, key, value, at, in: nil), key, at, as: Int32.self)
        }
        let ppid = try int32("ppid")
        let pgid = try int32("pgid")
        let sid = try int32("sid")

        var nspid: [Int32]?
        if let m = o["nspid"] {
            let elements = try array(m.value, "nspid", at)
            guard !elements.isEmpty else {
                throw at.error(m.value.position, "nspid is empty (omit it to mean [pid], or list the "
                               + "PIDs outermost first, starting with pid)")
            }
            let list = try elements.enumerated().map { try integer($1, "nspid[\($0)]", at, as: Int32.self) }
            guard list[0] == pid else {
                throw at.error(elements[0].position, "nspid[0] is \(list[0]) but pid is \(pid) (nspid lists "
                               + "the PIDs outermost first, so its first element must equal pid)")
            }
            nspid = list
        }

        var state = ProcessState.running
        if let m = o["state"] {
            let s = try string(m.value, "state", at)
            guard s.utf8.allSatisfy({ $0 < 0x80 }), let st = ProcessState(rawValue: s) else {
                let names = ProcessState.allCases.map(\.rawValue)
                throw at.error(m.value.position, "state must be \"running\", \"stopped\" or \"zombie\", found "
                               + JSONValue.quoted(s, limit: 40) + didYouMean(s, names))
            }
            state = st
        }

        var exitStatus: ExitStatus?
        if let m = o["exitStatus"] {
            exitStatus = try decodeExitStatus(m.value, at)
        }

        // Each thread is a TID (top namespace), or, for a process in a nested namespace, its
        // TIDs at every level outermost first, like nspid.
        var threads: [Int32] = []
        var threadLevels: [[Int32]] = []
        if let m = o["threads"] {
            for (k, item) in try array(m.value, "threads", at).enumerated() {
                if case .array = item.kind {
                    let levels = try array(item, "threads[\(k)]", at).enumerated().map {
                        try integer($1, "threads[\(k)][\($0)]", at, as: Int32.self)
                    }
                    guard let top = levels.first else {
                        throw at.error(item.position, "threads[\(k)] is an empty array; give the thread's TIDs outermost first, like nspid")
                    }
                    threads.append(top)
                    threadLevels.append(levels)
                } else {
                    if !threadLevels.isEmpty {
                        throw at.error(item.position, "threads[\(k)] is a plain TID but earlier threads were given per level: give every thread the same way")
                    }
                    threads.append(try integer(item, "threads[\(k)]", at, as: Int32.self))
                }
            }
            if !threadLevels.isEmpty && threadLevels.count != threads.count {
                throw at.error(m.value.position, "threads mixes plain TIDs and per-level arrays: give every thread the same way")
            }
        }

        let newPidNamespace = try o["newPidNamespace"].map { try bool($0.value, "newPidNamespace", at) } ?? false
        let childSubreaper = try o["childSubreaper"].map { try bool($0.value, "childSubreaper", at) } ?? false
        let process = try o["process"].map { try decodeProcessSpec($0.value, at) }
        var spawnedByPayload = false
        if let m = o["spawn"] {
            switch try string(m.value, "spawn", at) {
            case "runtime": spawnedByPayload = false
            case "payload": spawnedByPayload = true
            case let other:
                throw at.error(m.value.position, "spawn must be \"runtime\" (the runtime creates the process) or \"payload\" (its parent's payload forks it and gets the recorded PID), found \(JSONValue.quoted(other, limit: 40))")
            }
        }

        var entry = ProcessEntry(index: index, line: value.position.line, pid: pid, ppid: ppid, pgid: pgid,
                            sid: sid, nspid: nspid, state: state, exitStatus: exitStatus,
                            threads: threads, newPidNamespace: newPidNamespace,
                            childSubreaper: childSubreaper, process: process)
        entry.spawnedByPayload = spawnedByPayload
        entry.threadLevels = threadLevels
        entry.recorded = try o["recorded"].map { try decodeRecorded($0.value, at) }
        entry.terminal = try o["terminal"].map { try string($0.value, "terminal", at) }
        entry.tmux = try o["tmux"].map { try TmuxReplay.decode($0.value, label: at.label ?? "process #\(index)") }
        if let m = o["stdio"] {
            let items = try array(m.value, "stdio", at)
            guard items.count <= 3 else {
                throw at.error(m.value.position, "stdio has \(items.count) elements; it lists descriptors 0, 1 and 2 only")
            }
            entry.stdio = try items.enumerated().map { k, item in
                if case .null = item.kind { return nil }
                guard case .string(let id) = item.kind else {
                    throw at.error(item.position, "stdio[\(k)] must be a terminal id (a string) or null, found \(item.shortDescription)")
                }
                return id
            }
        }
        if let m = o["shellJobs"] {
            entry.shellJobs = try array(m.value, "shellJobs", at).enumerated().map { try decodeShellJob($1, k: $0, at) }
        }
        return entry
    }

    private static func decodeShellJob(_ value: JSONValue, k: Int, _ at: Place) throws -> ShellJobSpec {
        let name = "shellJobs[\(k)]"
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "\(name) must be an object such as {\"pgid\": 205, \"state\": \"running\", \"members\": [205, 206]}, found \(value.shortDescription)")
        }
        try checkKeys(o, section: "shellJob", at, path: name)
        let pgid = try integer(try required(o, "pgid", value, at, in: name), "\(name).pgid", at, as: Int32.self)
        let stateValue = try required(o, "state", value, at, in: name)
        let stateName = try string(stateValue, "\(name).state", at)
        guard let state = ShellJobSpec.State(rawValue: stateName) else {
            throw at.error(stateValue.position, "\(name).state must be \"running\", \"stopped\" or \"foreground\", found \(JSONValue.quoted(stateName, limit: 40))")
        }
        var job = ShellJobSpec(pgid: pgid, state: state, members: [])
        if let m = o["stopSignal"] {
            let signal = try string(m.value, "\(name).stopSignal", at)
            guard let n = signalNumber(named: signal), [19, 20, 21, 22].contains(n) else {
                throw at.error(m.value.position, "\(name).stopSignal must be a stop signal (SIGTSTP, SIGSTOP, SIGTTIN or SIGTTOU), found \(JSONValue.quoted(signal, limit: 40))")
            }
            job.stopSignal = n
        }
        let members = try required(o, "members", value, at, in: name)
        job.members = try array(members, "\(name).members", at).enumerated().map { try integer($1, "\(name).members[\($0)]", at, as: Int32.self) }
        if job.members.isEmpty {
            throw at.error(members.position, "\(name).members is empty: a job has at least one process, its group leader first")
        }
        return job
    }

    private static func decodeRecorded(_ value: JSONValue, _ at: Place) throws -> RecordedIdentity {
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "recorded must be an object such as {\"exe\": \"/usr/bin/sleep\"}, "
                           + "found \(value.shortDescription)")
        }
        try checkKeys(o, section: "recordedIdentity", at, path: "recorded")
        var r = RecordedIdentity()
        r.exe = try o["exe"].map { try string($0.value, "recorded.exe", at) }
        r.cmdline = try o["cmdline"].map { m in
            try array(m.value, "recorded.cmdline", at).enumerated().map { try string($1, "recorded.cmdline[\($0)]", at) }
        }
        r.titleRewritten = try o["titleRewritten"].map { try bool($0.value, "recorded.titleRewritten", at) } ?? false
        r.forkedNotExeced = try o["forkedNotExeced"].map { try bool($0.value, "recorded.forkedNotExeced", at) } ?? false
        r.startTime = try o["startTime"].map { try uint64($0.value, "recorded.startTime", at) }
        r.forkOrder = try o["forkOrder"].map { Int(try integer($0.value, "recorded.forkOrder", at, as: Int32.self)) }
        if let n = r.forkOrder, n < 0, let m = o["forkOrder"] {
            throw at.error(m.value.position, "recorded.forkOrder must be 0 or more, found \(n)")
        }
        return r
    }

    private static func decodeExitStatus(_ value: JSONValue, _ at: Place) throws -> ExitStatus {
        switch value.kind {
        case .number:
            return .code(try integer(value, "exitStatus", at, as: Int32.self))
        case .object(let o):
            try checkKeys(o, section: "exitSignal", at, path: "exitStatus")
            let signal = try required(o, "signal", value, at, in: "exitStatus")
            switch signal.kind {
            case .number:
                return .signal(try integer(signal, "exitStatus.signal", at, as: Int32.self))
            case .string(let name):
                guard let n = signalNumber(named: name) else {
                    let guess = name.hasPrefix("SIG") ? acceptedSignalNames.filter { $0.hasPrefix("SIG") }
                                                      : acceptedSignalNames.filter { !$0.hasPrefix("SIG") }
                    throw at.error(signal.position, "exitStatus.signal \(JSONValue.quoted(name, limit: 40)) is not "
                                   + "a Linux signal name\(didYouMean(name, guess)); names are SIGHUP...SIGSYS "
                                   + "(or HUP...SYS), realtime signals are given as numbers")
                }
                return .signal(n)
            default:
                throw at.error(signal.position, "exitStatus.signal must be a signal number or a name such "
                               + "as \"SIGKILL\", found \(signal.shortDescription)")
            }
        default:
            throw at.error(value.position, "exitStatus must be an exit code (an integer) or an object such "
                           + "as {\"signal\": \"SIGKILL\"}, found \(value.shortDescription)")
        }
    }

    private static func decodeProcessSpec(_ value: JSONValue, _ at: Place) throws -> ProcessSpec {
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "process must be an object such as {\"args\": [\"/bin/true\"]}, "
                           + "found \(value.shortDescription)")
        }
        try checkKeys(o, section: "processSpec", at, path: "process")
        func strings(_ key: String) throws -> [String]? {
            try o[key].map { m in
                try array(m.value, "process.\(key)", at).enumerated().map {
                    try string($1, "process.\(key)[\($0)]", at)
                }
            }
        }
        var spec = ProcessSpec(args: try strings("args"), env: try strings("env"))
        spec.cwd = try o["cwd"].map { try string($0.value, "process.cwd", at) }
        if let m = o["user"] {
            guard case .object(let u) = m.value.kind else {
                throw at.error(m.value.position, "process.user must be an object such as "
                               + "{\"uid\": 0, \"gid\": 0}, found \(m.value.shortDescription)")
            }
            try checkKeys(u, section: "userSpec", at, path: "process.user")
            let uid = try integer(try required(u, "uid", m.value, at, in: "process.user"), "process.user.uid",
                                  at, as: UInt32.self)
            let gid = try integer(try required(u, "gid", m.value, at, in: "process.user"), "process.user.gid",
                                  at, as: UInt32.self)
            var groups: [UInt32] = []
            if let g = u["additionalGids"] {
                groups = try array(g.value, "process.user.additionalGids", at).enumerated().map {
                    try integer($1, "process.user.additionalGids[\($0)]", at, as: UInt32.self)
                }
            }
            spec.user = UserSpec(uid: uid, gid: gid, additionalGids: groups)
            spec.user?.umask = try u["umask"].map { try integer($0.value, "process.user.umask", at, as: UInt32.self) }
        }
        spec.capabilities = try o["capabilities"].map { try decodeCapabilities($0.value, at) }
        spec.noNewPrivileges = try o["noNewPrivileges"].map { try bool($0.value, "process.noNewPrivileges", at) }
        spec.rlimits = try o["rlimits"].map { try decodeRlimits($0.value, at) }
        spec.seccomp = try o["seccomp"].map { try decodeSeccomp($0.value, at) }
        return spec
    }

    // MARK: - Capabilities, rlimits, seccomp (OCI runtime-spec names)

    private static func decodeCapabilities(_ value: JSONValue, _ at: Place) throws -> CapabilitySpec {
        let path = "process.capabilities"
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "\(path) must be an object such as {\"bounding\": [\"CAP_KILL\"]}, "
                           + "found \(value.shortDescription)")
        }
        try checkKeys(o, section: "capabilities", at, path: path)
        func set(_ key: String) throws -> [String]? {
            try o[key].map { m in
                try array(m.value, "\(path).\(key)", at).enumerated().map { i, element in
                    let name = try string(element, "\(path).\(key)[\(i)]", at)
                    guard Capabilities.number(named: name) != nil else {
                        throw at.error(element.position, "\(path).\(key)[\(i)] \(JSONValue.quoted(name, limit: 40)) is not "
                                       + "a Linux capability\(nameHint(name, Capabilities.names, prefix: "CAP_")); names are "
                                       + "CAP_CHOWN ... CAP_CHECKPOINT_RESTORE, in capitals")
                    }
                    return name
                }
            }
        }
        return CapabilitySpec(bounding: try set("bounding"), effective: try set("effective"),
                              permitted: try set("permitted"), inheritable: try set("inheritable"),
                              ambient: try set("ambient"))
    }

    private static func decodeRlimits(_ value: JSONValue, _ at: Place) throws -> [RlimitSpec] {
        try array(value, "process.rlimits", at).enumerated().map { i, element in
            let path = "process.rlimits[\(i)]"
            guard case .object(let o) = element.kind else {
                throw at.error(element.position, "each element of process.rlimits must be an object such as "
                               + "{\"type\": \"RLIMIT_NOFILE\", \"soft\": 1024, \"hard\": 4096}, found \(element.shortDescription)")
            }
            try checkKeys(o, section: "rlimit", at, path: path)
            let typeValue = try required(o, "type", element, at, in: path)
            let type = try string(typeValue, "\(path).type", at)
            guard ResourceLimits.number(named: type) != nil else {
                throw at.error(typeValue.position, "\(path).type \(JSONValue.quoted(type, limit: 40)) is not a Linux "
                               + "resource limit\(nameHint(type, ResourceLimits.names, prefix: "RLIMIT_")); types are "
                               + ResourceLimits.names.joined(separator: ", "))
            }
            return RlimitSpec(type: type,
                              soft: try uint64(try required(o, "soft", element, at, in: path), "\(path).soft", at),
                              hard: try uint64(try required(o, "hard", element, at, in: path), "\(path).hard", at))
        }
    }

    private static func decodeSeccomp(_ value: JSONValue, _ at: Place) throws -> SeccompSpec {
        let path = "process.seccomp"
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "\(path) must be an object such as {\"defaultAction\": \"SCMP_ACT_ALLOW\", "
                           + "\"syscalls\": [...]}, found \(value.shortDescription)")
        }
        try checkKeys(o, section: "seccomp", at, path: path)
        var spec = SeccompSpec(defaultAction: try action(try required(o, "defaultAction", value, at, in: path),
                                                         "\(path).defaultAction", at))
        spec.defaultErrnoRet = try o["defaultErrnoRet"].map { try integer($0.value, "\(path).defaultErrnoRet", at, as: UInt32.self) }
        spec.architectures = try o["architectures"].map { m in
            try array(m.value, "\(path).architectures", at).enumerated().map { i, element in
                let name = try string(element, "\(path).architectures[\(i)]", at)
                guard SeccompSpec.architectureNames.contains(where: { $0.utf8.elementsEqual(name.utf8) }) else {
                    throw at.error(element.position, "\(path).architectures[\(i)] \(JSONValue.quoted(name, limit: 40)) is "
                                   + "not an architecture of the OCI runtime spec"
                                   + nameHint(name, SeccompSpec.architectureNames, prefix: "SCMP_ARCH_")
                                   + "; names are SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...")
                }
                return name
            }
        }
        spec.syscalls = try o["syscalls"].map { m in
            try array(m.value, "\(path).syscalls", at).enumerated().map { i, element in
                try decodeSyscallRule(element, "\(path).syscalls[\(i)]", at)
            }
        }
        return spec
    }

    private static func decodeSyscallRule(_ value: JSONValue, _ path: String, _ at: Place) throws -> SeccompSyscall {
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "\(path) must be an object such as {\"names\": [\"mkdir\"], "
                           + "\"action\": \"SCMP_ACT_ERRNO\"}, found \(value.shortDescription)")
        }
        try checkKeys(o, section: "seccompSyscall", at, path: path)
        let names = try array(try required(o, "names", value, at, in: path), "\(path).names", at).enumerated().map {
            try string($1, "\(path).names[\($0)]", at)
        }
        var rule = SeccompSyscall(names: names, action: try action(try required(o, "action", value, at, in: path),
                                                                   "\(path).action", at))
        rule.errnoRet = try o["errnoRet"].map { try integer($0.value, "\(path).errnoRet", at, as: UInt32.self) }
        rule.args = try o["args"].map { m in
            try array(m.value, "\(path).args", at).enumerated().map { k, element in
                let argPath = "\(path).args[\(k)]"
                guard case .object(let a) = element.kind else {
                    throw at.error(element.position, "\(argPath) must be an object such as {\"index\": 0, "
                                   + "\"value\": 1, \"op\": \"SCMP_CMP_EQ\"}, found \(element.shortDescription)")
                }
                try checkKeys(a, section: "seccompArg", at, path: argPath)
                let opValue = try required(a, "op", element, at, in: argPath)
                let op = try string(opValue, "\(argPath).op", at)
                guard SeccompSpec.operators.contains(where: { $0.utf8.elementsEqual(op.utf8) }) else {
                    throw at.error(opValue.position, "\(argPath).op \(JSONValue.quoted(op, limit: 40)) is not a comparison"
                                   + nameHint(op, SeccompSpec.operators, prefix: "SCMP_CMP_") + "; operators are "
                                   + SeccompSpec.operators.joined(separator: ", "))
                }
                return SeccompArg(index: try integer(try required(a, "index", element, at, in: argPath), "\(argPath).index",
                                                     at, as: UInt32.self),
                                  value: try uint64(try required(a, "value", element, at, in: argPath), "\(argPath).value", at),
                                  valueTwo: try a["valueTwo"].map { try uint64($0.value, "\(argPath).valueTwo", at) },
                                  op: op)
            }
        }
        return rule
    }

    /// A seccomp action name: one of SeccompSpec.actions.
    private static func action(_ v: JSONValue, _ name: String, _ at: Place) throws -> String {
        let s = try string(v, name, at)
        if SeccompSpec.actions.contains(where: { $0.utf8.elementsEqual(s.utf8) }) { return s }
        if let why = SeccompSpec.unsupportedActions[s] {
            throw at.error(v.position, "\(name) \(JSONValue.quoted(s, limit: 40)) is not supported: \(why)")
        }
        throw at.error(v.position, "\(name) \(JSONValue.quoted(s, limit: 40)) is not a seccomp action"
                       + nameHint(s, SeccompSpec.actions, prefix: "SCMP_ACT_") + "; actions are "
                       + SeccompSpec.actions.joined(separator: ", "))
    }

    /// " (did you mean "CAP_KILL"?)" for a close name, also when the prefix or capitals are missing.
    static func nameHint(_ word: String, _ names: [String], prefix: String) -> String {
        let upper = word.uppercased()
        let full = upper.hasPrefix(prefix) ? upper : prefix + upper
        if let same = names.first(where: { $0 == full }) { return " (did you mean \"\(same)\"?)" }
        return didYouMean(full, names)
    }

    // MARK: - Typed access

    /// The element being decoded, for the entry part of messages.
    private struct Place {
        var entry: String?
        /// A process entry's index and pid: its label is made only for an error (not twice
        /// per entry of a 10^6-process tree).
        var process: (index: Int, pid: Int32?)?

        init(entry: String?) { self.entry = entry }
        init(process index: Int) { process = (index, nil) }

        var label: String? {
            guard let p = process else { return entry }
            return p.pid.map { "process #\(p.index) (pid \($0))" } ?? "process #\(p.index)"
        }

        func error(_ position: JSONPosition, _ message: String) -> RestoreError {
            RestoreError(.invalidTree, operation: "parse",
                         entry: label.map { "\($0), \(position)" } ?? position.description,
                         message: message)
        }
    }

    private static func required(_ o: JSONObject, _ key: String, _ object: JSONValue, _ at: Place,
                                 in path: String?) throws -> JSONValue {
        guard let m = o[key] else {
            throw at.error(object.position, "missing required key \"\(key)\"" + (path.map { " in \($0)" } ?? ""))
        }
        return m.value
    }

    private static func integer<T: FixedWidthInteger>(_ v: JSONValue, _ name: String, _ at: Place,
                                                      as type: T.Type) throws -> T {
        guard case .number(let n) = v.kind else {
            throw at.error(v.position, "\(name) must be an integer, found \(v.shortDescription)")
        }
        guard n.isInteger else {
            throw at.error(v.position, "\(name) must be an integer, found \(v.shortDescription) (write "
                           + "integers without a fraction or an exponent)")
        }
        guard let wide = n.int64Value, let value = T(exactly: wide) else {
            let kind = "a \(T.bitWidth)-bit \(T.isSigned ? "signed" : "unsigned") integer"
            throw at.error(v.position, "\(name) is \(v.shortDescription), out of range for \(kind) "
                           + "(\(T.min)...\(T.max))")
        }
        return value
    }

    /// An integer 0...UInt64.max (rlimits, seccomp argument values).
    private static func uint64(_ v: JSONValue, _ name: String, _ at: Place) throws -> UInt64 {
        guard case .number(let n) = v.kind else {
            throw at.error(v.position, "\(name) must be an integer, found \(v.shortDescription)")
        }
        guard n.isInteger else {
            throw at.error(v.position, "\(name) must be an integer, found \(v.shortDescription) (write "
                           + "integers without a fraction or an exponent)")
        }
        guard let value = UInt64(n.text) else {
            throw at.error(v.position, "\(name) is \(v.shortDescription), out of range for a 64-bit unsigned integer "
                           + "(0...\(UInt64.max))")
        }
        return value
    }

    private static func string(_ v: JSONValue, _ name: String, _ at: Place) throws -> String {
        guard case .string(let s) = v.kind else {
            throw at.error(v.position, "\(name) must be a string, found \(v.shortDescription)")
        }
        return s
    }

    private static func bool(_ v: JSONValue, _ name: String, _ at: Place) throws -> Bool {
        guard case .bool(let b) = v.kind else {
            throw at.error(v.position, "\(name) must be true or false, found \(v.shortDescription)")
        }
        return b
    }

    private static func array(_ v: JSONValue, _ name: String, _ at: Place) throws -> [JSONValue] {
        guard case .array(let a) = v.kind else {
            throw at.error(v.position, "\(name) must be an array, found \(v.shortDescription)")
        }
        return a
    }

    // MARK: - Unknown keys

    /// Where each section lives, for "it belongs ..." hints.
    private static let sectionHomes: [(section: String, home: String)] = [
        ("tree", "at the top level"),
        ("processEntry", "in each element of \"processes\""),
        ("processSpec", "inside \"process\""),
        ("userSpec", "inside \"process\": {\"user\": {...}}"),
        ("idMapping", "in each element of \"uidMappings\" and \"gidMappings\""),
        ("terminal", "in each element of \"terminals\""),
        ("shellJob", "in each element of a process's \"shellJobs\""),
        ("terminalModes", "inside a terminal's \"modes\""),
        ("exitSignal", "inside \"exitStatus\": {\"signal\": ...}"),
        ("capabilities", "inside \"process\": {\"capabilities\": {...}}"),
        ("rlimit", "in each element of \"process\": {\"rlimits\": [...]}"),
        ("seccomp", "inside \"process\": {\"seccomp\": {...}}"),
        ("seccompSyscall", "in each element of \"seccomp\": {\"syscalls\": [...]}"),
        ("seccompArg", "in each element of \"syscalls\": [{\"args\": [...]}]"),
    ]

    private static func checkKeys(_ o: JSONObject, section: String, _ at: Place, path: String? = nil) throws {
        let known = knownKeys[section] ?? []
        for member in o.members where !known.contains(where: { JSONObject.sameKey($0, member.key) }) {
            var message = "unknown key \(JSONValue.quoted(member.key, limit: 40))"
            if let path { message += " in \(path)" }
            throw at.error(member.keyPosition, message + suggestion(for: member.key, section: section))
        }
    }

    /// " (did you mean "ppid"?)", " (it belongs inside "process")" or " (known keys: ...)".
    private static func suggestion(for key: String, section: String) -> String {
        let known = knownKeys[section] ?? []
        let norm = normalized(key)
        if let same = known.first(where: { normalized($0) == norm }) {
            return " (did you mean \"\(same)\"?)"
        }
        for (other, home) in sectionHomes where other != section {
            if (knownKeys[other] ?? []).contains(where: { $0.utf8.elementsEqual(key.utf8) }) {
                return " (it belongs \(home))"
            }
        }
        let guess = didYouMean(key, known)
        if !guess.isEmpty { return guess }
        return " (known keys: \(known.joined(separator: ", ")))"
    }

    /// " (did you mean "x"?)" for the candidate closest to `word`, if close enough; else "".
    public static func didYouMean(_ word: String, _ candidates: [String]) -> String {
        let w = normalized(word)
        var best: (String, Int)?
        for c in candidates {
            let nc = normalized(c)
            let d = editDistance(w, nc)
            let allowed = max(1, min(3, nc.count / 3))
            if d <= allowed, best == nil || d < best!.1 {
                best = (c, d)
            }
        }
        return best.map { " (did you mean \"\($0.0)\"?)" } ?? ""
    }

    /// Lowercased scalars without '_' and '-': "exit_status" and "ExitStatus" both match.
    private static func normalized(_ s: String) -> [Unicode.Scalar] {
        s.lowercased().unicodeScalars.filter { $0 != "_" && $0 != "-" }
    }

    /// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    /// two adjacent characters each cost 1 ("ppdi" -> "ppid" is 1).
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        if a.count > 64 || b.count > 64 { return max(a.count, b.count) }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
