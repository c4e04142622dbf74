// CRIU images, as `crit decode --pretty` prints them -> ProcessTree (docs/record-and-criu.md).
//
// Input: the JSON of pstree.img (`{"magic": "PSTREE", "entries": [...]}`) and, optionally, the
// JSON of the core-<PID>.img files of the same dump, keyed by PID. From the pstree come pid,
// ppid (0 for the dump's root), pgid, sid and the thread IDs; from each process's core, in
// `tc`, its task state, the exit status of a zombie and the child-subreaper flag.
//
// What crit prints needs care in three places:
// - `task_state` is printed through a label table that differs between crit versions. crit 3.17
//   and 4.2 label 1 "Alive", 3 "Zombie" (CRIU's TASK_STOPPED) and 6 "Stopped" (compel's
//   TASK_ZOMBIE), and print a real zombie (2, TASK_DEAD) as a bare 2; later crit labels 1
//   "Alive", 2 "Dead", 3 "Stopped", 6 "Zombie". Numbers are read by CRIU's own enum (1 alive,
//   2 dead, 3 stopped, 6 zombie). The labels "Zombie" and "Stopped" are ambiguous between
//   versions, so they are decided by the core itself: CRIU writes a dead task's core with
//   `tc` only, and every live or stopped task's with `thread_info`.
// - The `threads` list of a zombie entry is not written by CRIU (4.2) and holds whatever was in
//   memory: [0], [2524422240], ... It is ignored for zombies; without cores, an entry whose
//   threads do not include its own pid is refused with a pointer to --criu-cores.
// - `exit_code` is the wait(2) status: 51200 is exit code 200, 9 is SIGKILL. CRIU's own
//   restore exits with `(code >> 8) & 0x7f` and so turns 200 into 72; we keep all eight bits.
//
// Errors are `RestoreError`s of kind `.invalidTree`, operation "import CRIU pstree", whose
// entry names the element: `pstree entry #3 (pid 17), line 22, column 13`, or
// `pstree entry #3 (pid 17), core-17.json, line 8, column 17`.

public enum CRIUImport {
    /// True when `bytes` is the JSON crit prints for pstree.img: a top-level object whose
    /// `"magic"` is `"PSTREE"`. Cheap for ordinary tree.json files: the full document is parsed
    /// only when `"magic"` is not the first key but appears somewhere in the text.
    public static func isPstree(_ bytes: [UInt8]) -> Bool {
        if let first = leadingMagic(bytes) { return first == "PSTREE" }
        guard contains(bytes, Array("\"magic\"".utf8)),
              let root = try? JSONValue.parse(bytes), case .object(let o) = root.kind,
              let magic = o["magic"], case .string(let s) = magic.value.kind else { return false }
        return s == "PSTREE"
    }

    /// Builds the tree of a CRIU dump. `cores` maps a PID to the bytes of its decoded
    /// core-PID.img; when it is empty every process is taken to be running, and when it is not,
    /// every pstree entry needs its core. Threads' own cores (no `tc`) are not needed.
    public static func tree(pstree: [UInt8], cores: [Int32: [UInt8]]) throws -> ProcessTree {
        let root = try reparse(pstree, file: nil)
        let top = Place(entry: nil, file: nil)
        guard case .object(let o) = root.kind else {
            throw top.error(root.position, "a CRIU pstree must be an object such as {\"magic\": \"PSTREE\", \"entries\": [...]}, found \(root.shortDescription)")
        }
        try checkMagic(o, root, expected: "PSTREE", what: "pstree.img", top)
        guard let entriesMember = o["entries"] else {
            throw top.error(root.position, "missing required key \"entries\" (the processes of the dump)")
        }
        let elements = try array(entriesMember.value, "entries", top)
        guard !elements.isEmpty else {
            throw top.error(entriesMember.value.position, "entries is empty: the dump has no process")
        }
        var processes: [ProcessEntry] = []
        processes.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            processes.append(try entry(element, index: i, cores: cores))
        }
        return ProcessTree(processes: processes)
    }

    // MARK: - Entries

    private static func entry(_ value: JSONValue, index: Int, cores: [Int32: [UInt8]]) throws -> ProcessEntry {
        var at = Place(entry: "pstree entry #\(index)", file: nil)
        guard case .object(let o) = value.kind else {
            throw at.error(value.position, "each element of entries must be an object, found \(value.shortDescription)")
        }
        guard let pidMember = o["pid"] else { throw at.error(value.position, "missing required key \"pid\"") }
        let pid = try int32(pidMember.value, "pid", at)
        at.entry = "pstree entry #\(index) (pid \(pid))"
        func field(_ key: String) throws -> Int32 {
            guard let m = o[key] else { throw at.error(value.position, "missing required key \"\(key)\"") }
            return try int32(m.value, key, at)
        }
        let ppid = try field("ppid"), pgid = try field("pgid"), sid = try field("sid")

        var rawThreads: [(Int64, JSONPosition)] = []
        if let m = o["threads"] {
            for (k, t) in try array(m.value, "threads", at).enumerated() {
                guard case .number(let n) = t.kind, let v = n.int64Value else {
                    throw at.error(t.position, "threads[\(k)] must be an integer, found \(t.shortDescription)")
                }
                rawThreads.append((v, t.position))
            }
        }

        var state = ProcessState.running
        var exitStatus: ExitStatus?
        var childSubreaper = false
        if !cores.isEmpty {
            guard let bytes = cores[pid] else {
                throw at.error(nil, "no core-\(pid).json among the cores given: every process of the pstree needs the `crit decode --pretty` output of its core-\(pid).img")
            }
            (state, exitStatus, childSubreaper) = try core(bytes, pid: pid, at: at)
        }

        var threads: [Int32] = []
        if state != .zombie {
            let includesPid = rawThreads.contains { $0.0 == Int64(pid) }
            if !rawThreads.isEmpty && !includesPid {
                let shown = rawThreads.prefix(4).map { String($0.0) }.joined(separator: ", ")
                let hint = cores.isEmpty
                    ? "; CRIU writes such lists for zombies, whose threads it never fills in: give the decoded core files (--criu-cores DIR) so the zombie and its exit status are known"
                    : ""
                throw at.error(rawThreads[0].1, "threads [\(shown)\(rawThreads.count > 4 ? ", ..." : "")] do not include the process's own pid \(pid)\(hint)")
            }
            for (k, (tid, position)) in rawThreads.enumerated() {
                guard let t = Int32(exactly: tid), t > 0 else {
                    throw at.error(position, "threads[\(k)] is \(tid), not a thread ID (1...\(Int32.max))")
                }
                threads.append(t)
            }
            if threads == [pid] { threads = [] }
        }

        return ProcessEntry(index: index, line: value.position.line, pid: pid, ppid: ppid, pgid: pgid, sid: sid,
                            state: state, exitStatus: exitStatus, threads: threads,
                            childSubreaper: childSubreaper)
    }

    // MARK: - Cores

    private static func core(_ bytes: [UInt8], pid: Int32, at entry: Place) throws -> (ProcessState, ExitStatus?, Bool) {
        var at = entry
        at.file = "core-\(pid).json"
        let root = try reparse(bytes, file: at)
        guard case .object(let o) = root.kind else {
            throw at.error(root.position, "a decoded core image must be an object such as {\"magic\": \"CORE\", \"entries\": [...]}, found \(root.shortDescription)")
        }
        try checkMagic(o, root, expected: "CORE", what: "core-\(pid).img", at)
        guard let entries = o["entries"] else { throw at.error(root.position, "missing required key \"entries\"") }
        let list = try array(entries.value, "entries", at)
        guard let first = list.first, case .object(let core) = first.kind else {
            throw at.error(entries.value.position, "entries must hold one object (the task's core), found \(list.first?.shortDescription ?? "an empty array")")
        }
        guard let tcMember = core["tc"], case .object(let tc) = tcMember.value.kind else {
            throw at.error(first.position, "the core has no \"tc\" object (task state, exit code): is this the core of a thread rather than of process \(pid)?")
        }
        guard let stateMember = tc["task_state"] else {
            throw at.error(tcMember.value.position, "missing required key \"task_state\" in tc")
        }
        // A dead task's core holds `tc` only; live and stopped tasks also have thread_info.
        let hasThreadState = core["thread_info"] != nil || core["thread_core"] != nil
        let state = try taskState(stateMember.value, hasThreadState: hasThreadState, at)

        var exitStatus: ExitStatus?
        if state == .zombie {
            var status: Int64 = 0
            if let m = tc["exit_code"] {
                guard case .number(let n) = m.value.kind, let v = n.int64Value else {
                    throw at.error(m.value.position, "tc.exit_code must be an integer, found \(m.value.shortDescription)")
                }
                status = v
            }
            exitStatus = try waitStatus(status, position: tc["exit_code"]?.value.position ?? tcMember.value.position, at)
        }

        var subreaper = false
        if let m = tc["child_subreaper"] {
            guard case .bool(let b) = m.value.kind else {
                throw at.error(m.value.position, "tc.child_subreaper must be true or false, found \(m.value.shortDescription)")
            }
            subreaper = b
        }
        return (state, exitStatus, subreaper)
    }

    /// CRIU's task states (criu/include/pid.h, compel/include/uapi/task-state.h).
    static let taskStateNumbers: [Int64: ProcessState] = [1: .running, 2: .zombie, 3: .stopped, 6: .zombie]

    private static func taskState(_ v: JSONValue, hasThreadState: Bool, _ at: Place) throws -> ProcessState {
        let known = "CRIU's task states are 1 (alive), 2 (dead: a zombie), 3 (stopped) and 6 (zombie); crit labels them \"Alive\", \"Dead\", \"Stopped\" and \"Zombie\", older crit 3 \"Zombie\" and 6 \"Stopped\""
        switch v.kind {
        case .number(let n):
            guard let k = n.int64Value, let state = taskStateNumbers[k] else {
                throw at.error(v.position, "tc.task_state \(v.shortDescription) is not a state a dump holds: \(known)")
            }
            return state
        case .string(let s):
            if let k = Int64(s), let state = taskStateNumbers[k] { return state }
            switch s.lowercased() {
            case "alive": return .running
            case "dead": return .zombie
            // Ambiguous between crit versions (see the top of this file): the core's shape decides.
            case "zombie", "stopped": return hasThreadState ? .stopped : .zombie
            default:
                throw at.error(v.position, "tc.task_state \(JSONValue.quoted(s, limit: 40)) is not a task state: \(known)")
            }
        default:
            throw at.error(v.position, "tc.task_state must be a number or a crit label such as \"Alive\", found \(v.shortDescription)")
        }
    }

    /// A zombie's wait(2) status: `code << 8` for an exit, the signal number (plus 0x80 when it
    /// dumped core) for a kill.
    private static func waitStatus(_ w: Int64, position: JSONPosition, _ at: Place) throws -> ExitStatus {
        guard w >= 0, w <= 0xFFFF else {
            throw at.error(position, "tc.exit_code \(w) is not a wait status (0...65535: exit code << 8, or a signal number)")
        }
        let signal = Int32(w & 0x7F)
        if signal == 0x7F {
            throw at.error(position, "tc.exit_code \(w) is the wait status of a stopped process, not of a zombie")
        }
        if signal == 0 && w & 0xFF == 0 { return .code(Int32(w >> 8)) }
        if signal != 0 && w >> 8 == 0 { return .signal(signal) }
        throw at.error(position, "tc.exit_code \(w) is not the wait status of a zombie (an exit code << 8, or a signal number, plus 128 when it dumped core)")
    }

    // MARK: - Helpers

    private struct Place {
        var entry: String?
        var file: String?

        func error(_ position: JSONPosition?, _ message: String) -> RestoreError {
            let parts = [entry, file, position?.description].compactMap { $0 }
            return RestoreError(.invalidTree, operation: "import CRIU pstree",
                                entry: parts.isEmpty ? nil : parts.joined(separator: ", "), message: message)
        }
    }

    /// JSONValue.parse, with syntax errors moved to this importer's operation and place.
    private static func reparse(_ bytes: [UInt8], file: Place?) throws -> JSONValue {
        do {
            return try JSONValue.parse(bytes)
        } catch var e as RestoreError {
            e.operation = "import CRIU pstree"
            if let file {
                let parts = [file.entry, file.file, e.entry].compactMap { $0 }
                e.entry = parts.joined(separator: ", ")
            }
            throw e
        }
    }

    private static func checkMagic(_ o: JSONObject, _ root: JSONValue, expected: String, what: String, _ at: Place) throws {
        guard let m = o["magic"] else {
            throw at.error(root.position, "missing \"magic\": not the output of `crit decode --pretty` for \(what)")
        }
        guard case .string(let s) = m.value.kind, s == expected else {
            throw at.error(m.value.position, "magic is \(m.value.shortDescription), expected \"\(expected)\" (the output of `crit decode --pretty` for \(what))")
        }
    }

    private static func array(_ v: JSONValue, _ name: String, _ at: Place) throws -> [JSONValue] {
        guard case .array(let a) = v.kind else {
            throw at.error(v.position, "\(name) must be an array, found \(v.shortDescription)")
        }
        return a
    }

    private static func int32(_ v: JSONValue, _ name: String, _ at: Place) throws -> Int32 {
        guard case .number(let n) = v.kind, n.isInteger else {
            throw at.error(v.position, "\(name) must be an integer, found \(v.shortDescription)")
        }
        guard let wide = n.int64Value, let value = Int32(exactly: wide), value >= 0 else {
            throw at.error(v.position, "\(name) is \(v.shortDescription), out of range for a PID (0...\(Int32.max))")
        }
        return value
    }

    /// The value of `"magic"` when it is the first key of the top-level object, else nil.
    private static func leadingMagic(_ b: [UInt8]) -> String? {
        var i = 0
        func skip() { while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 } }
        func literal(_ s: String) -> Bool {
            let u = Array(s.utf8)
            guard i + u.count <= b.count, Array(b[i..<i + u.count]) == u else { return false }
            i += u.count
            return true
        }
        skip()
        guard literal("{") else { return nil }
        skip()
        guard literal("\"magic\"") else { return nil }
        skip()
        guard literal(":") else { return nil }
        skip()
        guard literal("\"") else { return nil }
        let start = i
        while i < b.count, b[i] != 0x22, b[i] != 0x5C, i - start < 32 { i += 1 }
        guard i < b.count, b[i] == 0x22 else { return nil }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        // Over raw buffers: the generic elementsEqual of two slices, tried at every quote of a
        // 60 MB tree.json, was a few percent of `validate`.
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                let first = n[0]
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first {
                        var k = 1
                        while k < n.count && h[i + k] == n[k] { k += 1 }
                        if k == n.count { return true }
                    }
                    i += 1
                }
                return false
            }
        }
    }
}
