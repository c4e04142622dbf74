// A tmux server recorded as what it holds (`"tmux"` on the server's entry, docs/tree-format.md,
// "tmux servers"): its socket, its sessions, windows and panes. A pane's process is an entry
// of the tree, a child of the server marked "spawn": "payload": at restore the server is
// started in the foreground (`tmux -D -S SOCKET -f CONFIG`) with a generated configuration
// that creates every session, window and pane, so tmux forks each pane itself, in the
// recorded order, and the fork supervisor gives each its recorded PID.

/// `"tmux"`: what a tmux server held.
public struct TmuxServerSpec: Sendable, Equatable {
    /// The server's listening socket (absolute path): restarted with `-S` on it.
    public var socket: String
    /// Files sourced (source-file -q) once every pane exists: the user's configuration.
    public var configFiles: [String] = []
    /// The global default-shell option (a login-shell pane runs it as "-NAME").
    public var defaultShell: String?
    public var sessions: [TmuxSessionSpec]

    public init(socket: String, configFiles: [String] = [], defaultShell: String? = nil, sessions: [TmuxSessionSpec]) {
        self.socket = socket
        self.configFiles = configFiles
        self.defaultShell = defaultShell
        self.sessions = sessions
    }
}

public struct TmuxSessionSpec: Sendable, Equatable {
    public var name: String
    public var windows: [TmuxWindowSpec]

    public init(name: String, windows: [TmuxWindowSpec]) {
        self.name = name
        self.windows = windows
    }
}

public struct TmuxWindowSpec: Sendable, Equatable {
    public var index: Int32
    /// nil: named by automatic-rename, as it was.
    public var name: String?
    /// `#{window_layout}`: applied once its panes exist.
    public var layout: String?
    public var columns: UInt16
    public var rows: UInt16
    public var active: Bool = false
    public var panes: [TmuxPaneSpec]

    public init(index: Int32, name: String? = nil, layout: String? = nil, columns: UInt16, rows: UInt16,
                active: Bool = false, panes: [TmuxPaneSpec]) {
        self.index = index
        self.name = name
        self.layout = layout
        self.columns = columns
        self.rows = rows
        self.active = active
        self.panes = panes
    }
}

/// One pane, in its window's order. What runs in it is its entry's `process` (args, env, cwd).
public struct TmuxPaneSpec: Sendable, Equatable {
    public var pid: Int32
    /// tmux's default pane: the shell `process.args[0]` as a login shell (argv[0] "-bash").
    public var loginShell: Bool = false
    public var active: Bool = false

    public init(pid: Int32, loginShell: Bool = false, active: Bool = false) {
        self.pid = pid
        self.loginShell = loginShell
        self.active = active
    }
}

public enum TmuxReplay {
    /// The keys of each object (TreeParser.knownKeys holds them too, for the schema test).
    public static let knownKeys: [String: [String]] = [
        "tmuxServer": ["socket", "configFiles", "defaultShell", "sessions"],
        "tmuxSession": ["name", "windows"],
        "tmuxWindow": ["index", "name", "layout", "columns", "rows", "active", "panes"],
        "tmuxPane": ["pid", "loginShell", "active"],
    ]

    /// Environment variables tmux sets itself in every pane (new values for the new server).
    static let ownVariables = ["TMUX", "TMUX_PANE"]

    // MARK: - Validation

    /// Problems of the `tmux` fields of a tree, as (entry label, message).
    public static func problems(_ tree: ProcessTree) -> [(String, String)] {
        var out: [(String, String)] = []
        // Entries without an nspid have no pid (the validator says so on its own).
        // Checked first: the filter copies every entry (most trees have no tmux server).
        guard tree.processes.contains(where: { $0.tmux != nil && !$0.nspid.isEmpty }) else { return [] }
        let procs = tree.processes.filter { !$0.nspid.isEmpty }
        var byPid: [Int32: ProcessEntry] = [:]
        for e in procs where byPid[e.pid] == nil { byPid[e.pid] = e }
        var paneOwner: [Int32: String] = [:]
        for server in procs {
            guard let spec = server.tmux else { continue }
            let who = server.label
            func bad(_ m: String) { out.append((who, "tmux." + m)) }
            if !spec.socket.hasPrefix("/") { bad("socket \(JSONValue.quoted(spec.socket, limit: 60)) is not an absolute path") }
            if spec.socket.utf8.count > 107 { bad("socket is longer than a unix socket path may be (107 bytes)") }
            for f in spec.configFiles where !f.hasPrefix("/") { bad("configFiles: \(JSONValue.quoted(f, limit: 60)) is not an absolute path") }
            if let d = spec.defaultShell, !d.hasPrefix("/") { bad("defaultShell \(JSONValue.quoted(d, limit: 60)) is not an absolute path") }
            if server.spawnedByPayload { bad("is on a process spawned by its parent's payload; the runtime must start the server itself (with -D -f)") }
            if (server.process?.args ?? []).isEmpty { bad("is on a process without process.args; the server's program (args[0], with -S SOCKET) is needed") }
            if server.state == .zombie { bad("is on a zombie") }
            if spec.sessions.isEmpty { bad("sessions is empty: a tmux server is recorded with at least one session") }
            var names = Set<String>()
            for (s, session) in spec.sessions.enumerated() {
                let at = "sessions[\(s)]"
                if session.name.isEmpty || session.name.contains(":") || session.name.contains(".") || session.name.utf8.contains(where: { $0 < 0x20 }) {
                    bad("\(at).name \(JSONValue.quoted(session.name, limit: 40)) is not a tmux session name (non-empty, no ':', '.' or control characters)")
                }
                if !names.insert(session.name).inserted { bad("\(at).name \(JSONValue.quoted(session.name, limit: 40)) is used by another session") }
                if session.windows.isEmpty { bad("\(at).windows is empty: a session has at least one window") }
                var indexes = Set<Int32>()
                for (w, window) in session.windows.enumerated() {
                    let wat = "\(at).windows[\(w)]"
                    if window.index < 0 { bad("\(wat).index \(window.index) is negative") }
                    if !indexes.insert(window.index).inserted { bad("\(wat).index \(window.index) is used by another window of the session") }
                    if window.columns == 0 || window.rows == 0 { bad("\(wat): columns and rows must be 1 or more") }
                    if window.panes.isEmpty { bad("\(wat).panes is empty: a window has at least one pane") }
                    for (p, pane) in window.panes.enumerated() {
                        let pat = "\(wat).panes[\(p)]"
                        if let first = paneOwner[pane.pid] { bad("\(pat): pid \(pane.pid) is also \(first)"); continue }
                        paneOwner[pane.pid] = "\(who) \(pat)"
                        guard let e = byPid[pane.pid] else { bad("\(pat): pid \(pane.pid) is not in the tree"); continue }
                        if e.ppid != server.pid { bad("\(pat): \(e.label) is not a child of the server (its ppid is \(e.ppid))") }
                        if !e.spawnedByPayload { bad("\(pat): \(e.label) must be \"spawn\": \"payload\" (tmux forks it)") }
                        if e.state == .zombie { bad("\(pat): \(e.label) is a zombie") }
                        if e.terminal != nil || e.stdio.contains(where: { $0 != nil }) {
                            bad("\(pat): \(e.label) has a recorded terminal; tmux makes its pane's pty, so drop \"terminal\" and \"stdio\"")
                        }
                        let args = e.process?.args ?? []
                        if args.isEmpty { bad("\(pat): \(e.label) has no process.args: nothing to start in the pane") }
                        if pane.loginShell, let first = args.first, !first.hasPrefix("/") {
                            bad("\(pat): a login-shell pane needs the shell's absolute path in process.args[0], found \(JSONValue.quoted(first, limit: 40))")
                        }
                    }
                }
            }
            // Every fork of the server the tree expects is a pane: nothing else would fork it.
            for e in procs where e.ppid == server.pid && e.spawnedByPayload && paneOwner[e.pid] == nil {
                out.append((e.label, "is spawned by the tmux server \(server.label) but is no pane of its tmux.sessions; the server forks nothing else at restore"))
            }
        }
        return out
    }

    // MARK: - The generated configuration

    /// Server PID -> configuration, for every tmux server of a tree (the whole tree: panes too).
    public static func configs(in tree: ProcessTree) -> [Int32: String] {
        var out: [Int32: String] = [:]
        for e in tree.processes where e.tmux != nil { out[e.pid] = config(for: e, in: tree) }
        return out
    }

    /// The PIDs of the server's panes.
    public static func panes(of spec: TmuxServerSpec) -> Set<Int32> {
        Set(spec.sessions.flatMap { $0.windows.flatMap { $0.panes.map(\.pid) } })
    }

    /// The argv that starts the server: its recorded program and arguments, then `-f CONFIG`.
    public static func serverArguments(_ server: ProcessEntry, configPath: String) -> [String] {
        (server.process?.args ?? []) + ["-f", configPath]
    }

    /// The configuration that recreates the server's sessions: panes are created in the order
    /// of their entries in the tree (the order the supervisor hands their PIDs out); each
    /// session's first pane by new-session, each window's by new-window, the rest by
    /// split-window after the pane that precedes them; then layouts, the active windows and
    /// panes, and the user's configuration files.
    public static func config(for server: ProcessEntry, in tree: ProcessTree) -> String {
        guard let spec = server.tmux else { return "" }
        var position: [Int32: Int] = [:]
        for (i, e) in tree.processes.enumerated() where position[e.pid] == nil { position[e.pid] = i }
        var byPid: [Int32: ProcessEntry] = [:]
        for e in tree.processes where byPid[e.pid] == nil { byPid[e.pid] = e }

        struct Slot { var session: Int; var window: Int; var pane: Int; var pid: Int32 }
        var slots: [Slot] = []
        for (s, session) in spec.sessions.enumerated() {
            for (w, window) in session.windows.enumerated() {
                for (p, pane) in window.panes.enumerated() { slots.append(Slot(session: s, window: w, pane: p, pid: pane.pid)) }
            }
        }
        slots.sort { (position[$0.pid] ?? Int.max, $0.session, $0.window, $0.pane) < (position[$1.pid] ?? Int.max, $1.session, $1.window, $1.pane) }

        var lines = ["# Generated by rootless-restore run for \(server.label): recreates the recorded tmux sessions;",
                     "# tmux forks each pane in the recorded order and the runtime gives it its recorded PID."]
        var shell = spec.defaultShell
        if let shell { lines.append("set-option -g default-shell \(quote(shell))") }
        var sessionMade = Set<Int>()
        var sessionSize: [Int: [UInt16]] = [:] // the size new-session gave the session's windows
        var windowPanes: [String: [(pane: Int, id: Int)]] = [:] // created panes per window, in window order
        var paneID: [Int32: Int] = [:]
        var nextID = 0
        for slot in slots {
            let session = spec.sessions[slot.session], window = session.windows[slot.window]
            let pane = window.panes[slot.pane]
            guard let entry = byPid[pane.pid] else { continue }
            let target = "=\(session.name):\(window.index)"
            let key = "\(slot.session)/\(slot.window)"
            var command = ""
            if pane.loginShell, let exe = entry.process?.args?.first, exe != shell {
                lines.append("set-option -g default-shell \(quote(exe))")
                shell = exe
            }
            let start = paneStart(entry, loginShell: pane.loginShell)
            if !sessionMade.contains(slot.session) {
                sessionMade.insert(slot.session)
                sessionSize[slot.session] = [window.columns, window.rows]
                command = "new-session -d -s \(quote(format: session.name))"
                if let n = window.name { command += " -n \(quote(format: n))" }
                command += " -x \(window.columns) -y \(window.rows)" + start
                lines.append(command)
                if window.index != 0 { lines.append("move-window -s \(quote("=\(session.name):0")) -t \(quote(target))") }
                windowPanes[key] = [(slot.pane, nextID)]
            } else if windowPanes[key] == nil {
                command = "new-window -d -t \(quote(target))"
                if let n = window.name { command += " -n \(quote(format: n))" }
                lines.append(command + start)
                if let size = sessionSize[slot.session], size != [window.columns, window.rows] {
                    lines.append("resize-window -t \(quote(target)) -x \(window.columns) -y \(window.rows)")
                }
                windowPanes[key] = [(slot.pane, nextID)]
            } else {
                var made = windowPanes[key]!
                // After the pane that precedes it in the window; before the first one if none does.
                if let before = made.lastIndex(where: { $0.pane < slot.pane }) {
                    lines.append("split-window -d -t %\(made[before].id)" + start)
                    made.insert((slot.pane, nextID), at: before + 1)
                } else {
                    lines.append("split-window -d -b -t %\(made[0].id)" + start)
                    made.insert((slot.pane, nextID), at: 0)
                }
                windowPanes[key] = made
                // Room for the next split: share the window evenly until the recorded layout.
                lines.append("select-layout -t \(quote(target)) tiled")
            }
            paneID[pane.pid] = nextID
            nextID += 1
        }
        for session in spec.sessions {
            for window in session.windows {
                let target = quote("=\(session.name):\(window.index)")
                if window.panes.count > 1, let layout = window.layout { lines.append("select-layout -t \(target) \(quote(layout))") }
                if let active = window.panes.first(where: \.active), let id = paneID[active.pid] { lines.append("select-pane -t %\(id)") }
            }
            if let active = session.windows.first(where: \.active) {
                lines.append("select-window -t \(quote("=\(session.name):\(active.index)"))")
            }
        }
        if shell != spec.defaultShell, let d = spec.defaultShell { lines.append("set-option -g default-shell \(quote(d))") }
        for f in spec.configFiles { lines.append("source-file -q \(quote(f))") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// ` -c CWD -e K=V ... -- ARGV` for a pane: its recorded directory, environment (but the
    /// variables tmux sets itself) and command; none for a login shell (tmux's default pane).
    static func paneStart(_ entry: ProcessEntry, loginShell: Bool) -> String {
        var out = ""
        if let cwd = entry.process?.cwd { out += " -c \(quote(format: cwd))" }
        for v in entry.process?.env ?? [] {
            let name = v.split(separator: "=", maxSplits: 1).first.map(String.init) ?? v
            if v.contains("="), !ownVariables.contains(name) { out += " -e \(quote(v))" }
        }
        guard !loginShell, let args = entry.process?.args, !args.isEmpty else { return out }
        // One argument tmux would hand to `default-shell -c`: exec it, so the pane is the program.
        if args.count == 1 { return out + " -- " + quote("exec " + shellQuote(args[0])) }
        return out + " --" + args.map { " " + quote($0) }.joined()
    }

    /// A tmux configuration word: double quotes, with \ " $ and control characters escaped.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "$": out += "\\$"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    let octal = String(u.value, radix: 8)
                    out += "\\" + String(repeating: "0", count: 3 - octal.count) + octal
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// A word tmux expands as a format (-s, -n, -c): `#` doubled, then quoted.
    static func quote(format s: String) -> String { quote(s.split(separator: "#", omittingEmptySubsequences: false).joined(separator: "##")) }

    /// A POSIX shell word.
    static func shellQuote(_ s: String) -> String { "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" }
}

// MARK: - tree.json

extension TmuxReplay {
    public static func encode(_ spec: TmuxServerSpec) -> JSONOutput {
        var members: [(String, JSONOutput)] = [("socket", .string(spec.socket))]
        if !spec.configFiles.isEmpty { members.append(("configFiles", .strings(spec.configFiles))) }
        if let d = spec.defaultShell { members.append(("defaultShell", .string(d))) }
        members.append(("sessions", .array(spec.sessions.map { session in
            .object([("name", .string(session.name)), ("windows", .array(session.windows.map { w in
                var m: [(String, JSONOutput)] = [("index", .int(w.index))]
                if let n = w.name { m.append(("name", .string(n))) }
                if let l = w.layout { m.append(("layout", .string(l))) }
                m += [("columns", .int(w.columns)), ("rows", .int(w.rows))]
                if w.active { m.append(("active", .bool(true))) }
                m.append(("panes", .array(w.panes.map { p in
                    var pm: [(String, JSONOutput)] = [("pid", .int(p.pid))]
                    if p.loginShell { pm.append(("loginShell", .bool(true))) }
                    if p.active { pm.append(("active", .bool(true))) }
                    return .object(pm)
                })))
                return .object(m)
            }))])
        })))
        return .object(members)
    }

    /// Decodes `"tmux"`; `label` names the entry in messages ("process #0 (pid 100)").
    public static func decode(_ value: JSONValue, label: String) throws -> TmuxServerSpec {
        let d = Decoder(label: label)
        let o = try d.object(value, "tmuxServer", "tmux")
        var spec = TmuxServerSpec(socket: try d.string(try d.required(o, "socket", value, "tmux"), "tmux.socket"), sessions: [])
        if let m = o["configFiles"] {
            spec.configFiles = try d.array(m.value, "tmux.configFiles").enumerated().map { try d.string($1, "tmux.configFiles[\($0)]") }
        }
        spec.defaultShell = try o["defaultShell"].map { try d.string($0.value, "tmux.defaultShell") }
        let sessionsValue = try d.required(o, "sessions", value, "tmux")
        spec.sessions = try d.array(sessionsValue, "tmux.sessions").enumerated().map { s, sv in
            let at = "tmux.sessions[\(s)]"
            let so = try d.object(sv, "tmuxSession", at)
            let windows = try d.array(try d.required(so, "windows", sv, at), "\(at).windows").enumerated().map { w, wv in
                let wat = "\(at).windows[\(w)]"
                let wo = try d.object(wv, "tmuxWindow", wat)
                let panes = try d.array(try d.required(wo, "panes", wv, wat), "\(wat).panes").enumerated().map { p, pv in
                    let pat = "\(wat).panes[\(p)]"
                    let po = try d.object(pv, "tmuxPane", pat)
                    return TmuxPaneSpec(pid: Int32(try d.integer(try d.required(po, "pid", pv, pat), "\(pat).pid", Int64(Int32.min)...Int64(Int32.max))),
                                        loginShell: try po["loginShell"].map { try d.bool($0.value, "\(pat).loginShell") } ?? false,
                                        active: try po["active"].map { try d.bool($0.value, "\(pat).active") } ?? false)
                }
                let size: ClosedRange<Int64> = 0...Int64(UInt16.max)
                return TmuxWindowSpec(index: Int32(try d.integer(try d.required(wo, "index", wv, wat), "\(wat).index", Int64(Int32.min)...Int64(Int32.max))),
                                      name: try wo["name"].map { try d.string($0.value, "\(wat).name") },
                                      layout: try wo["layout"].map { try d.string($0.value, "\(wat).layout") },
                                      columns: UInt16(try d.integer(try d.required(wo, "columns", wv, wat), "\(wat).columns", size)),
                                      rows: UInt16(try d.integer(try d.required(wo, "rows", wv, wat), "\(wat).rows", size)),
                                      active: try wo["active"].map { try d.bool($0.value, "\(wat).active") } ?? false,
                                      panes: panes)
            }
            return TmuxSessionSpec(name: try d.string(try d.required(so, "name", sv, at), "\(at).name"), windows: windows)
        }
        return spec
    }

    /// Typed access with the parser's messages (`process #0 (pid 100), line 3, column 9: ...`).
    struct Decoder {
        let label: String

        func error(_ v: JSONValue, _ message: String) -> RestoreError {
            RestoreError(.invalidTree, operation: "parse", entry: "\(label), \(v.position)", message: message)
        }

        func object(_ v: JSONValue, _ section: String, _ path: String) throws -> JSONObject {
            guard case .object(let o) = v.kind else { throw error(v, "\(path) must be an object, found \(v.shortDescription)") }
            let known = TmuxReplay.knownKeys[section] ?? []
            for m in o.members where !known.contains(where: { JSONObject.sameKey($0, m.key) }) {
                let hint = TreeParser.didYouMean(m.key, known)
                throw RestoreError(.invalidTree, operation: "parse", entry: "\(label), \(m.keyPosition)",
                                   message: "unknown key \(JSONValue.quoted(m.key, limit: 40)) in \(path)" + (hint.isEmpty ? " (known keys: \(known.joined(separator: ", ")))" : hint))
            }
            return o
        }

        func required(_ o: JSONObject, _ key: String, _ v: JSONValue, _ path: String) throws -> JSONValue {
            guard let m = o[key] else { throw error(v, "missing required key \"\(key)\" in \(path)") }
            return m.value
        }

        func string(_ v: JSONValue, _ name: String) throws -> String {
            guard case .string(let s) = v.kind else { throw error(v, "\(name) must be a string, found \(v.shortDescription)") }
            return s
        }

        func bool(_ v: JSONValue, _ name: String) throws -> Bool {
            guard case .bool(let b) = v.kind else { throw error(v, "\(name) must be true or false, found \(v.shortDescription)") }
            return b
        }

        func array(_ v: JSONValue, _ name: String) throws -> [JSONValue] {
            guard case .array(let a) = v.kind else { throw error(v, "\(name) must be an array, found \(v.shortDescription)") }
            return a
        }

        func integer(_ v: JSONValue, _ name: String, _ range: ClosedRange<Int64>) throws -> Int64 {
            guard case .number(let n) = v.kind, let i = n.int64Value else { throw error(v, "\(name) must be an integer, found \(v.shortDescription)") }
            guard range.contains(i) else { throw error(v, "\(name) is \(i), out of range (\(range.lowerBound)...\(range.upperBound))") }
            return i
        }
    }
}
