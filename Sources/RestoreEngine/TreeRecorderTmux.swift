import Glibc
import RestoreModel

// Programs that make their own pty children: a tmux server (its panes) and util-linux
// `script` (its one child). Their pty masters are descriptors, which are not restored, so
// instead of their children's terminals the tree records what recreates them: the tmux
// server with its sessions, windows and panes ("tmux"), the script with its argv; their
// children are marked "spawn": "payload", and at restore the program forks them again and
// the pins give them their recorded PIDs.

extension TreeRecorder {
    /// One line of `list-panes -a`.
    struct TmuxPaneLine: Equatable {
        var session: String
        var windowIndex: Int32
        var windowName: String
        var automaticRename: Bool
        var layout: String
        var columns: UInt16
        var rows: UInt16
        var windowActive: Bool
        var paneIndex: Int32
        var panePid: Int32
        var paneActive: Bool
    }

    /// What a tmux server said about itself before the tree was read (and frozen).
    struct TmuxAnswer: Equatable {
        var exe: String
        var socket: String
        var panes: [TmuxPaneLine]
        var defaultShell: String?
    }

    static let tmuxFields = ["#{session_name}", "#{window_index}", "#{window_name}", "#{automatic-rename}", "#{window_layout}",
                             "#{window_width}", "#{window_height}", "#{window_active}", "#{pane_index}", "#{pane_pid}", "#{pane_active}"]
    /// Between fields: a byte no sane session or window name holds (tmux prints it as is).
    static let tmuxSeparator = "\u{1F}"

    /// Asks every tmux server of the tree (program tmux, listening on a unix socket) for its
    /// sessions, windows and panes: `tmux -N -S SOCKET list-panes -a`, 5 s at most each. Done
    /// before any freeze: a frozen server answers nobody. Servers that could not be asked are
    /// listed with the reason (they are then recorded as before: their panes' shells with
    /// terminals run holds).
    static func askTmuxServers(under root: Int32) -> (answers: [Int32: TmuxAnswer], failures: [Int32: String]) {
        var answers: [Int32: TmuxAnswer] = [:], failures: [Int32: String] = [:]
        for pid in descendants(of: root) {
            guard let exe = readLink("/proc/\(pid)/exe"), exe.hasSuffix("/tmux") || exe == "tmux",
                  let socket = listeningUnixSocket(of: pid) else { continue }
            let format = tmuxFields.joined(separator: tmuxSeparator)
            let env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C.UTF-8"]
            let r = CommandRunner.run([exe, "-N", "-S", socket, "list-panes", "-a", "-F", format, ";", "show-options", "-gv", "default-shell"],
                                      environment: env, timeout: 5)
            guard r.status == 0 else {
                failures[pid] = r.timedOut ? "it did not answer `tmux -S \(socket) list-panes` within 5 s"
                    : "`tmux -S \(socket) list-panes` failed: \(r.error.split(separator: "\n").first.map(String.init) ?? "exit \(r.status.map(String.init) ?? "?")")"
                continue
            }
            var answer = TmuxAnswer(exe: exe, socket: socket, panes: [])
            var bad = false
            for line in r.output.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
                let f = line.split(separator: Character(tmuxSeparator), omittingEmptySubsequences: false).map(String.init)
                if f.count == 1 { answer.defaultShell = line; continue }
                guard f.count == tmuxFields.count, let wi = Int32(f[1]), let w = UInt16(f[5]), let h = UInt16(f[6]),
                      let pi = Int32(f[8]), let pp = Int32(f[9]) else { bad = true; break }
                answer.panes.append(TmuxPaneLine(session: f[0], windowIndex: wi, windowName: f[2], automaticRename: f[3] == "1", layout: f[4],
                                                 columns: w, rows: h, windowActive: f[7] == "1", paneIndex: pi, panePid: pp, paneActive: f[10] == "1"))
            }
            if bad || answer.panes.isEmpty {
                failures[pid] = "its answer to list-panes could not be read (a session or window name with a newline or a \\x1f byte?)"
                continue
            }
            answers[pid] = answer
        }
        return (answers, failures)
    }

    /// The path of a unix socket the process listens on (its fds' socket inodes matched with
    /// /proc/PID/net/unix, where a listening socket has the __SO_ACCEPTCON flag 00010000).
    static func listeningUnixSocket(of pid: Int32) -> String? {
        var inodes = Set<String>()
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if Int(name) != nil, let link = readLink("/proc/\(pid)/fd/\(name)"), link.hasPrefix("socket:[") {
                inodes.insert(String(link.dropFirst(8).dropLast()))
            }
        }
        closedir(dir)
        guard !inodes.isEmpty, let table = SystemCalls.readText("/proc/\(pid)/net/unix") else { return nil }
        for line in table.split(separator: "\n").dropFirst() {
            // Num RefCount Protocol Flags Type St Inode Path
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 8, f[3] == "00010000", inodes.contains(String(f[6])), f[7].hasPrefix("/") else { continue }
            return f[7...].joined(separator: " ")
        }
        return nil
    }

    /// Which processes a program of the tree recreates at restore.
    struct Replays {
        /// Host PIDs forked again by their parent's payload: panes, script's child, and what
        /// runs below them.
        var payload: Set<Int32> = []
        /// Replayed tmux servers (host PID -> what it said).
        var servers: [Int32: TmuxAnswer] = [:]
        /// Replayed scripts: host PID -> its child's host PID.
        var scripts: [Int32: Int32] = [:]
        /// Children of a replayed tmux server that are no pane (its run-shell or #() jobs):
        /// left out of the tree, with their descendants (host PIDs).
        var dropped: [Int32] = []
        /// Host PIDs below a pane or script's child (not the pane or child itself).
        var inside: [Int32] = []
        /// tmux servers that answered but are not replayed, and why.
        var notReplayed: [Int32: String] = [:]

        var holders: Set<Int32> { Set(servers.keys).union(scripts.keys) }
    }

    /// Finds the tmux servers and scripts of the agreed snapshots and what they recreate;
    /// returns the snapshots without the dropped ones.
    static func planReplays(_ snaps: [Snapshot], findings: Findings, options: RecordOptions) -> ([Snapshot], Replays) {
        var r = Replays()
        var children: [Int32: [Snapshot]] = [:]
        for s in snaps.dropFirst() { children[s.hostPPid, default: []].append(s) }
        func below(_ pid: Int32) -> [Int32] {
            var out: [Int32] = [], queue = [pid]
            while let p = queue.popLast() { for c in children[p] ?? [] { out.append(c.hostPid); queue.append(c.hostPid) } }
            return out
        }
        for s in snaps where s.state != "Z" && !options.hold.contains(s.hostPid) && !options.spawnByPayload {
            if let answer = findings.tmux[s.hostPid] {
                let panes = Set(answer.panes.map(\.panePid))
                let kids = children[s.hostPid] ?? []
                // Every pane must be a live child: else the answer is stale (a pane ended since).
                guard panes.allSatisfy({ p in kids.contains { $0.nspid.last == p && $0.state != "Z" } }) else {
                    r.notReplayed[s.hostPid] = "a pane it listed is not a live child of it any more (a pane ended, or remain-on-exit keeps a dead one)"
                    continue
                }
                r.servers[s.hostPid] = answer
                for c in kids {
                    if panes.contains(c.nspid.last ?? 0) {
                        r.payload.insert(c.hostPid)
                        let deeper = below(c.hostPid)
                        r.payload.formUnion(deeper)
                        r.inside += deeper
                    } else {
                        r.dropped += [c.hostPid] + below(c.hostPid)
                    }
                }
            } else if let child = scriptChild(s, children[s.hostPid] ?? []) {
                r.scripts[s.hostPid] = child
                r.payload.insert(child)
                let deeper = below(child)
                r.payload.formUnion(deeper)
                r.inside += deeper
            }
        }
        let gone = Set(r.dropped)
        return (snaps.filter { !gone.contains($0.hostPid) }, r)
    }

    /// Sets what recreates the children on the replayed servers and scripts, after the
    /// entries are built (entry i is snapshot i) and before their terminals are recorded.
    static func applyReplays(_ snaps: [Snapshot], _ entries: inout [ProcessEntry], _ r: Replays, level: Int, warnings: inout [String]) {
        let index = Dictionary(snaps.enumerated().map { ($0.element.hostPid, $0.offset) }, uniquingKeysWith: { a, _ in a })
        for (host, answer) in r.servers.sorted(by: { $0.key < $1.key }) {
            guard let i = index[host] else { continue }
            var spec = TmuxServerSpec(socket: answer.socket, sessions: [])
            spec.defaultShell = answer.defaultShell.flatMap { $0.hasPrefix("/") ? $0 : nil }
            spec.configFiles = tmuxConfigFiles(of: host, env: entries[i].process?.env)
            var paneEntries = 0
            for line in answer.panes {
                guard let k = snaps.indices.first(where: { snaps[$0].hostPPid == host && snaps[$0].nspid.last == line.panePid }) else { continue }
                let exe = entries[k].recorded?.exe
                let argv = entries[k].process?.args ?? entries[k].recorded?.cmdline ?? []
                // tmux's default pane runs default-shell as a login shell: argv[0] "-bash".
                let login = exe.map { argv == ["-" + ($0.split(separator: "/").last.map(String.init) ?? $0)] } ?? false
                if login, let exe {
                    var p = entries[k].process ?? ProcessSpec()
                    p.args = [exe]
                    entries[k].process = p
                } else if argv.isEmpty, let exe {
                    var p = entries[k].process ?? ProcessSpec()
                    p.args = [exe]
                    entries[k].process = p
                }
                let pane = TmuxPaneSpec(pid: entries[k].pid, loginShell: login, active: line.paneActive)
                if let s = spec.sessions.firstIndex(where: { $0.name == line.session }) {
                    if let w = spec.sessions[s].windows.firstIndex(where: { $0.index == line.windowIndex }) {
                        spec.sessions[s].windows[w].panes.append(pane)
                    } else {
                        spec.sessions[s].windows.append(window(line, pane))
                    }
                } else {
                    spec.sessions.append(TmuxSessionSpec(name: line.session, windows: [window(line, pane)]))
                }
                paneEntries += 1
            }
            for s in spec.sessions.indices {
                spec.sessions[s].windows.sort { $0.index < $1.index }
            }
            entries[i].tmux = spec
            var p = entries[i].process ?? ProcessSpec()
            p.args = [answer.exe, "-D", "-S", answer.socket]
            entries[i].process = p
            let windows = spec.sessions.reduce(0) { $0 + $1.windows.count }
            warnings.append("process \(entries[i].pid) (host pid \(host)) is a tmux server: recorded with its \(spec.sessions.count) sessions, \(windows) windows and \(paneEntries) panes (\"tmux\"); run starts it again in the foreground (tmux -D -S \(answer.socket)) and it starts each pane's recorded command again, at its recorded PID; what the panes showed (screen, scrollback) and the state of the programs in them are not restored")
        }
        for (host, child) in r.scripts.sorted(by: { $0.key < $1.key }) {
            guard let i = index[host], let c = index[child] else { continue }
            let who = "process \(entries[i].pid) (host pid \(host))"
            if let args = entries[i].process?.args, let call = ScriptInvocation.parse(args), !call.clobbered.isEmpty {
                var p = entries[i].process!
                p.args = ScriptInvocation.appending(args)
                entries[i].process = p
                warnings.append("\(who) is `script` writing \(list(call.clobbered.map { JSONValue.quoted($0, limit: 60) })): recorded with -a (append), so that the restarted script adds to it instead of overwriting it")
            }
            warnings.append("\(who) is `script`: run starts it again with its argv and it forks its session again on a new pty; its child \(entries[c].pid) gets its recorded PID (\"spawn\": \"payload\"), started again as its command")
        }
        for (host, why) in r.notReplayed.sorted(by: { $0.key < $1.key }) {
            warnings.append("host pid \(host) is a tmux server that is not recorded with its sessions: \(why); recorded as any process")
        }
        if !r.dropped.isEmpty {
            warnings.append("host pids \(list(r.dropped.map(String.init))) are jobs of a tmux server (run-shell, #()), not panes: left out (tmux runs its jobs again as it needs them)")
        }
        let inside = r.inside.compactMap { index[$0] }.map { String(entries[$0].pid) }
        if !inside.isEmpty {
            warnings.append("processes \(list(inside)) run below a tmux pane or a script's shell: they are \"spawn\": \"payload\" and come back only if that program forks them again: an interactive bash in a tmux pane starts its jobs again (job replay), other commands start afresh and what they had started is reported as pin missing")
        }
    }

    static func window(_ line: TmuxPaneLine, _ pane: TmuxPaneSpec) -> TmuxWindowSpec {
        TmuxWindowSpec(index: line.windowIndex, name: line.automaticRename ? nil : line.windowName, layout: line.layout,
                       columns: line.columns, rows: line.rows, active: line.windowActive, panes: [pane])
    }

    /// The files the server loaded: `-f FILE` of its command line (a daemonized server keeps
    /// its client's), else tmux's default list with ~ and $XDG_CONFIG_HOME from its environment.
    static func tmuxConfigFiles(of pid: Int32, env: [String]?) -> [String] {
        let argv = (SystemCalls.readFile("/proc/\(pid)/cmdline") ?? []).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        var k = 1
        var given: [String] = []
        while k < argv.count, argv[k].hasPrefix("-"), argv[k] != "--" {
            let a = argv[k]
            if a == "-f", k + 1 < argv.count { given.append(argv[k + 1]); k += 2; continue }
            if a.hasPrefix("-f") { given.append(String(a.dropFirst(2))); k += 1; continue }
            if ["-c", "-L", "-S", "-T"].contains(a) { k += 2; continue }
            k += 1
        }
        func value(_ name: String) -> String? { env?.last { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) } }
        let home = value("HOME")
        let cwd = readLink("/proc/\(pid)/cwd") ?? "/"
        if !given.isEmpty { return given.map { $0.hasPrefix("/") ? $0 : cwd + "/" + $0 } }
        var files = ["/etc/tmux.conf"]
        if let home {
            files.append(home + "/.tmux.conf")
            if let xdg = value("XDG_CONFIG_HOME"), xdg.hasPrefix("/") { files.append(xdg + "/tmux/tmux.conf") }
            files.append(home + "/.config/tmux/tmux.conf")
        }
        var seen = Set<String>()
        return files.filter { seen.insert($0).inserted }
    }

    /// util-linux `script`'s child: its one live child, leading a session of its own on a pty
    /// that script holds the master of. nil when `s` is not such a script.
    static func scriptChild(_ s: Snapshot, _ kids: [Snapshot]) -> Int32? {
        guard let exe = readLink("/proc/\(s.hostPid)/exe"), exe.hasSuffix("/script") else { return nil }
        let live = kids.filter { $0.state != "Z" }
        guard live.count == 1, let child = live.first, child.nspid.last == child.nssid.last,
              Device(ttyNr: child.ttyNr).isPtySlave, holdsPtyMaster(s.hostPid) else { return nil }
        return child.hostPid
    }

    static func holdsPtyMaster(_ pid: Int32) -> Bool {
        guard let dir = opendir("/proc/\(pid)/fd") else { return false }
        defer { closedir(dir) }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard Int(name) != nil else { continue }
            var st = stat()
            if stat("/proc/\(pid)/fd/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR, Device(rdev: UInt64(st.st_rdev)) == Device(major: 5, minor: 2) {
                return true
            }
        }
        return false
    }

    /// The recreated processes' terminals are their recreator's to make: dropped from the
    /// entries, and terminals nobody else has dropped from the tree.
    static func dropRecreatedTerminals(_ snaps: [Snapshot], _ entries: inout [ProcessEntry], _ terminals: inout [TerminalSpec], _ r: Replays) {
        guard !r.payload.isEmpty else { return }
        var recreated = Set<Int32>()
        for (i, s) in snaps.enumerated() where r.payload.contains(s.hostPid) {
            entries[i].terminal = nil
            entries[i].stdio = []
            recreated.insert(entries[i].pid)
        }
        var used = Set<String>()
        for e in entries {
            if let t = e.terminal { used.insert(t) }
            for case let t? in e.stdio { used.insert(t) }
        }
        terminals = terminals.filter { used.contains($0.id) }
        for k in terminals.indices where terminals[k].session.map({ recreated.contains($0) }) ?? false {
            terminals[k].session = nil
            terminals[k].foreground = nil
        }
    }
}
