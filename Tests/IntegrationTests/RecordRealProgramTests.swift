// `record` → kill → `run` on what users really run, as the unprivileged test user: nginx
// (master + 2 workers, process titles, forks that never exec'd) serving HTTP afterwards;
// PostgreSQL 15 accepting connections afterwards; `tini -s` with orphans (the subreaper flag
// read by ptrace, then shown to work after the restore); `unshare --user --pid --fork` started
// from an interactive shell under `script` (nested PID namespace, the user namespace's map);
// and `record --freeze` leaving nothing stopped whatever ends it (SIGINT, SIGTERM, SIGHUP,
// SIGKILL), with bash's job table unchanged. Before each kill the tree is read from /proc with
// the harness's own reader; after the restore the namespace is compared with that table.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

// MARK: - Helpers of this file

/// pid -> (ppid, pgid, sid, NSpid) at the tests' own level, read with the harness's reader.
private struct Row: Equatable, CustomStringConvertible {
    var ppid: Int32, pgid: Int32, sid: Int32, nspid: [Int32]
    var description: String { "ppid \(ppid) pgid \(pgid) sid \(sid) nspid \(nspid)" }
}

/// The host PIDs of `root` and every process below it, children after parents.
private func treeBelow(_ root: Int32) -> [Int32] {
    let all = ProcFS.scan()
    var out = [root]
    var i = 0
    while i < out.count {
        out += all.filter { $0.hostPPid == out[i] }.map(\.hostPid).sorted()
        i += 1
    }
    return out.filter { readFile("/proc/\($0)/stat") != nil }
}

private func table(of root: Int32) -> [Int32: Row] {
    var rows: [Int32: Row] = [:]
    let level = ProcFS.ownDepth - 1
    for pid in treeBelow(root) {
        guard let s = ProcFS.parseStatus(readFile("/proc/\(pid)/status") ?? [], hostPid: pid) else { continue }
        func at(_ list: [Int32]) -> Int32 { list.count > level ? list[level] : 0 }
        rows[pid] = Row(ppid: s.hostPPid, pgid: at(s.nspgid), sid: at(s.nssid), nspid: Array(s.nspid.dropFirst(level)))
    }
    return rows
}

/// Compares the restored namespace with the table read before the kill: every process with
/// its PIDs at every level, parent (the root's: the runtime's init), group and session.
private func compare(_ before: [Int32: Row], root: Int32, with seen: [NamespaceProcess]) -> [String] {
    var problems: [String] = []
    for (pid, row) in before.sorted(by: { $0.key < $1.key }) {
        guard let s = seen.first(where: { $0.pid == pid }) else { problems.append("pid \(pid) missing"); continue }
        let wantPPid: Int32 = pid == root ? 1 : row.ppid
        if (s.ppid, s.pgid, s.sid) != (wantPPid, row.pgid, row.sid) {
            problems.append("pid \(pid): ppid/pgid/sid \(s.ppid)/\(s.pgid)/\(s.sid), before \(wantPPid)/\(row.pgid)/\(row.sid)")
        }
        let nspid = Array(s.host.nspid.dropFirst(ProcFS.ownDepth + OuterNamespace.levels))
        if nspid != row.nspid { problems.append("pid \(pid): NSpid \(nspid), before \(row.nspid)") }
    }
    let extra = seen.filter { $0.pid != 1 && !$0.isForkReceiver && before[$0.pid] == nil && !$0.host.state.hasPrefix("Z") }
    if !extra.isEmpty { problems.append("processes not in the recording: \(extra)") }
    return problems
}

/// `rootless-restore ARGS` as the test user in `run`'s directory; waits (bounded).
private func rr(_ run: RestoreRun, _ arguments: [String], name: String, timeout: Double = 60) throws -> (Termination, String) {
    let out = "\(run.directory)/\(name).out", err = "\(run.directory)/\(name).err"
    let argv = try Identity.prefix(for: run.user) + ["/bin/sh", "-c", "umask 022 && exec \"$0\" \"$@\"", run.binary] + arguments
    let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: run.directory, stdout: out, stderr: err)
    return (try waitForExit(pid, timeout: timeout), readText(err))
}

/// Starts ARGV as the test user (through setsid, so it leads its own session).
private func startAsUser(_ run: RestoreRun, _ argv: [String], log: String) throws -> pid_t {
    let setsid = try #require(Paths.tool("setsid"), "setsid (util-linux) is missing")
    return try spawn(try Identity.prefix(for: run.user) + [setsid] + argv, env: Identity.cleanEnvironment,
                     cwd: run.directory, stdout: "\(run.directory)/\(log)", stderr: "\(run.directory)/\(log)")
}

/// SIGKILLs `pids`, reaps `child` if it is ours, and waits until all have left /proc.
private func killAll(_ pids: [Int32], child: pid_t? = nil) {
    for p in pids { kill(p, SIGKILL) }
    if let child { _ = try? waitForExit(child, timeout: 10) }
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline, pids.contains(where: { ProcFS.parseStatus(readFile("/proc/\($0)/status") ?? [], hostPid: $0).map { !$0.state.hasPrefix("Z") } ?? false }) {
        usleep(20_000)
    }
}

private func poll(_ timeout: Double, _ what: String, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > deadline { throw HarnessError("timed out after \(timeout) s waiting for \(what)") }
        usleep(20_000)
    }
}

/// A loopback TCP port nobody listens on right now.
private func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw HarnessError("no free loopback port: \(String(cString: strerror(errno)))") }
    return UInt16(bigEndian: addr.sin_port)
}

/// GET / over loopback TCP (2 s timeouts); the whole response, or nil.
private func httpGet(port: UInt16) -> String? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    let connected = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { return nil }
    let request = Array("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8)
    guard write(fd, request, request.count) == request.count else { return nil }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
}

/// The `processes` of a tree file as JSON objects.
private func entries(_ path: String) throws -> [[String: Any]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let top = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    return try #require(top["processes"] as? [[String: Any]])
}

private func cmdline(_ hostPid: Int32) -> [String] {
    let bytes = readFile("/proc/\(hostPid)/cmdline") ?? []
    return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
}

/// An interactive bash (job control on, a terminal from `script`) of the test user, in its
/// own session, reading its commands from a fifo the test writes to.
private final class InteractiveShell {
    let session: pid_t
    let input: Int32
    let directory: String
    private var ended = false

    init(_ run: RestoreRun) throws {
        directory = run.directory
        let script = try #require(Paths.tool("script"), "script (util-linux) is missing")
        mkfifo(directory + "/shell-in", 0o666)
        chmod(directory + "/shell-in", 0o666)
        session = try startAsUser(run, ["/bin/sh", "-c", "exec 3<>\(directory)/shell-in; exec \(script) -qfc 'bash --norc -i' /dev/null <&3"],
                                  log: "script.log")
        input = open(directory + "/shell-in", O_RDWR | O_CLOEXEC)  // O_RDWR: never blocks
    }

    func send(_ line: String) { _ = (line + "\n").withCString { write(input, $0, strlen($0)) } }

    /// bash's own PID (it writes it when asked).
    func bashPid() throws -> Int32 {
        send("echo $$ > \(directory)/bash.pid")
        try poll(10, "bash (\(readText(directory + "/script.log")))") { Int32(readText(directory + "/bash.pid").trimmingCharacters(in: .whitespacesAndNewlines)) != nil }
        return Int32(readText(directory + "/bash.pid").trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    func end() {
        guard !ended else { return }
        ended = true
        close(input)
        killAll(treeBelow(session), child: session)
    }

    deinit { end() }
}

// MARK: - Real programs

@Suite("record → kill → run: real programs", .serialized)
struct RecordRealProgramTests {
    @Test("nginx master + 2 workers in the foreground: titles detected, workers pinned, HTTP served again",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("nginx") != nil))
    func nginx() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let nginx = try #require(Paths.tool("nginx"))
        let port = try freePort()
        let temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map { "\($0)_temp_path \(dir)/\($0);" }.joined(separator: " ")
        let conf = try run.write("nginx.conf", Data("""
            worker_processes 2;
            pid \(dir)/nginx.pid;
            error_log \(dir)/error.log;
            events { worker_connections 64; }
            http {
              access_log off; \(temp)
              server { listen 127.0.0.1:\(port); location / { return 200 "restored nginx\\n"; } }
            }
            """.utf8))
        let argv = [nginx, "-e", "\(dir)/error.log", "-p", dir, "-c", conf, "-g", "daemon off;"]
        let master = try startAsUser(run, argv, log: "nginx.log")
        var killed = false
        defer { if !killed { killAll(treeBelow(master), child: master) } }
        try poll(15, "nginx with 2 workers answering on port \(port) (\(readText(dir + "/error.log")))") {
            treeBelow(master).count == 3 && httpGet(port: port)?.contains("restored nginx") == true
        }

        // Without its argv, record refuses the master by name and says what to do.
        var (t, err) = try rr(run, ["record", String(master), "-o", dir + "/refused.json"], name: "refused")
        #expect(t == .exited(66), "\(err)")
        #expect(err.contains("process \(master)") && err.contains("process title") && err.contains("--args \(master)="), "\(err)")
        #expect(access(dir + "/refused.json", F_OK) != 0)

        let argsJSON = String(decoding: try JSONSerialization.data(withJSONObject: argv), as: UTF8.self)
        (t, err) = try rr(run, ["record", "--spawn-by-payload", "--args", "\(master)=\(argsJSON)", String(master), "-o", dir + "/nginx.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        let listed = try entries(dir + "/nginx.json")
        try #require(listed.count == 3, "\(listed)")
        let rootRecorded = try #require(listed[0]["recorded"] as? [String: Any])
        #expect(rootRecorded["titleRewritten"] as? Bool == true && rootRecorded["exe"] as? String == nginx)
        for worker in listed.dropFirst() {
            let r = worker["recorded"] as? [String: Any] ?? [:]
            #expect(worker["spawn"] as? String == "payload" && r["forkedNotExeced"] as? Bool == true
                    && (r["cmdline"] as? [String])?.first == "nginx: worker process", "\(worker)")
        }
        for e in listed {
            let env = (e["process"] as? [String: Any])?["env"] as? [String] ?? []
            #expect(env.allSatisfy { $0.contains("=") && !$0.hasPrefix("=") }, "an env entry that is not KEY=VALUE: \(env)")
        }
        let before = table(of: master)
        #expect(before.count == 3)

        killAll(treeBelow(master), child: master)
        killed = true
        #expect(httpGet(port: port) == nil, "nothing may answer between the kill and the restore")

        try run.startRun(treeFile: dir + "/nginx.json")
        try run.waitUntilReady()
        // The workers are forked by the restored master itself, after the runtime is ready.
        let seen = (try? run.waitForNamespace(timeout: 15, "the 2 workers forked by the master") { now in
            before.keys.allSatisfy { pid in now.contains { $0.pid == pid } }
        }) ?? run.namespace()
        let problems = compare(before, root: master, with: seen)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        var answer: String?
        try? poll(10, "HTTP") { answer = httpGet(port: port); return answer != nil }
        #expect(answer?.contains("200 OK") == true && answer?.contains("restored nginx") == true, "\(answer ?? "no answer")")
        for p in run.namespace() where p.pid != 1 && p.pid != master && !p.isForkReceiver {
            #expect(p.host.commandLine.hasPrefix("nginx: worker process"), "pid \(p.pid) runs \(p.host.commandLine)")
        }
        run.tearDown()
    }

    @Test("PostgreSQL 15 (initdb, pg_ctl start on loopback): every role back at its recorded PID (the startup process gives its PID back), psql answers, each pinned PID matched",
          .enabled(if: Prerequisites.userNamespacesWork && access("/usr/lib/postgresql/15/bin/pg_ctl", X_OK) == 0 && Paths.tool("psql") != nil))
    func postgres() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let bin = "/usr/lib/postgresql/15/bin"
        let port = try freePort()
        let data = dir + "/pgdata"
        let psql = try #require(Paths.tool("psql"))
        let user = try Identity.prefix(for: run.user)
        func asUser(_ argv: [String], _ name: String, timeout: Double = 120) throws -> Termination {
            let pid = try spawn(user + argv, env: Identity.cleanEnvironment, cwd: dir, stdout: "\(dir)/\(name).log", stderr: "\(dir)/\(name).log")
            return try waitForExit(pid, timeout: timeout)
        }
        try #require(try asUser(["\(bin)/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"], "initdb") == .exited(0),
                     "initdb: \(readText(dir + "/initdb.log"))")
        var postmaster: Int32 = 0
        defer { if postmaster > 0 { killAll(treeBelow(postmaster)) } }
        // `-D pgdata`, relative, as users type it: the server changes into its data directory,
        // so record must restart it where it was started (its PWD), not in its cwd now.
        try #require(try asUser(["\(bin)/pg_ctl", "-D", "pgdata", "-l", "\(dir)/server.log", "-w", "-t", "60", "-o",
                                 "-p \(port) -k \(dir) -c listen_addresses=127.0.0.1 -c fsync=off", "start"], "pg_ctl") == .exited(0),
                     "pg_ctl: \(readText(dir + "/pg_ctl.log")) \(readText(dir + "/server.log"))")
        postmaster = Int32(readText(data + "/postmaster.pid").split(separator: "\n").first ?? "") ?? 0
        try #require(postmaster > 0)
        var queries = 0
        func query() throws -> (Termination, String) {
            queries += 1
            let t = try asUser([psql, "-h", dir, "-p", String(port), "-U", "postgres", "-Atc", "select 6 * 7", "postgres"], "psql-\(queries)", timeout: 20)
            return (t, readText(dir + "/psql-\(queries).log"))
        }
        let first = try query()
        try #require(first == (.exited(0), "42\n"), "psql before: \(first)")
        // Its auxiliary processes: checkpointer, background writer, walwriter, autovacuum
        // launcher, logical replication launcher.
        try poll(20, "the 5 auxiliary processes") { treeBelow(postmaster).count == 6 }

        let (t, err) = try rr(run, ["record", "--spawn-by-payload", String(postmaster), "-o", dir + "/pg.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        let listed = try entries(dir + "/pg.json")
        try #require(listed.count == 6, "\(listed.map { $0["pid"] ?? "?" })")
        let spec = listed[0]["process"] as? [String: Any] ?? [:]
        #expect((spec["args"] as? [String])?.contains("pgdata") == true && spec["cwd"] as? String == dir,
                "the postmaster's argv and cwd: \(spec["args"] ?? "none"), \(spec["cwd"] ?? "none")")
        #expect(err.contains("its cwd is \(data)") && err.contains("\"pgdata\""), "record should say why it moved the cwd: \(err)")
        let before = table(of: postmaster)
        var titles: [Int32: String] = [:]
        for e in listed.dropFirst() {
            let r = e["recorded"] as? [String: Any] ?? [:]
            #expect(r["forkedNotExeced"] as? Bool == true && r["titleRewritten"] as? Bool == true, "\(e)")
            titles[Int32(e["pid"] as? Int ?? 0)] = (r["cmdline"] as? [String])?.first ?? ""
        }
        #expect(Set(titles.values) == ["postgres: checkpointer ", "postgres: background writer ", "postgres: walwriter ",
                                       "postgres: autovacuum launcher ", "postgres: logical replication launcher "], "\(titles)")
        let orders = listed.dropFirst().compactMap { ($0["recorded"] as? [String: Any])?["forkOrder"] as? Int }
        #expect(orders == Array(0..<5), "payload children are listed in creation order: \(orders)")

        killAll(treeBelow(postmaster))
        postmaster = -postmaster
        // --pin-mismatch error: a role on another PID, or a recorded role never created, ends
        // the restore (exit 125) instead of leaving a wrong server running.
        try run.startRun(treeFile: dir + "/pg.json", extra: ["--pin-log", dir + "/pin.log", "--pin-mismatch", "error"])
        try run.waitUntilReady(timeout: 120)
        // The startup process exists only while the server starts: it takes the walwriter's
        // PID, ends, and that PID is pinned again for the next fork (PinLedger), so every
        // recorded role comes back at its PID. The pin log says each one matched.
        func checks() -> [[String: Any]] {
            readText(dir + "/pin.log").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }.filter { $0["kind"] as? String == "check" }
        }
        // Connect only once the server has started its roles: a backend forked for a
        // connection during startup that is still there (or unreaped) when the next role is
        // forked holds that role's PID, which the runtime reports but cannot undo (README).
        try? poll(20, "a check for each of the 5 pinned PIDs") {
            Set(checks().filter { $0["matched"] as? Bool == true }.compactMap { $0["pid"] as? Int }).count == titles.count
                || checks().contains { $0["matched"] as? Bool == false }
        }
        var answer: (Termination, String) = (.exited(-1), "")
        try? poll(30, "psql after the restore") { answer = (try? query()) ?? answer; return answer == (.exited(0), "42\n") }
        #expect(answer == (.exited(0), "42\n"), "psql after: \(answer.1)\n\(run.stderr)\n\(readText(dir + "/server.log").suffix(2000))")
        let seen = run.namespace()
        let root = -postmaster
        let moved = compare(before, root: root, with: seen)
        #expect(moved.isEmpty, "\(moved)\n\(run.stderr)")
        var wrong: [(Int32, String)] = []
        for (pid, title) in titles.sorted(by: { $0.key < $1.key }) {
            guard let s = seen.first(where: { $0.pid == pid }) else { wrong.append((pid, "recorded \(title), now missing")); continue }
            let now = cmdline(s.host.hostPid).first ?? ""
            if !now.hasPrefix(title.trimmingCharacters(in: .whitespaces)) { wrong.append((pid, "recorded \(title), now \(now)")) }
        }
        print("postgres: \(wrong.count) of \(titles.count) pinned PIDs missing or doing another job after the restore: \(wrong)")
        #expect(wrong.isEmpty, "roles moved: \(wrong)\n\(run.stderr)\n\(readText(dir + "/pin.log"))")
        let matched = Set(checks().filter { $0["matched"] as? Bool == true }.compactMap { $0["pid"] as? Int })
        #expect(matched == Set(titles.keys.map { Int($0) }), "pin log: \(readText(dir + "/pin.log"))")
        let repinned = checks().filter { $0["repinned"] as? Bool == true }
        #expect(!repinned.isEmpty && repinned.allSatisfy { titles.keys.contains(Int32($0["pid"] as? Int ?? 0)) },
                "the startup process should have taken a recorded PID and given it back: \(readText(dir + "/pin.log"))")
        #expect(!run.stderr.contains("pin mismatch") && !run.stderr.contains("pin missing"), "\(run.stderr)")
        run.tearDown()
    }

    @Test("tini -s with orphans: the subreaper flag is read by ptrace, restored, and adopts orphans again",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("tini") != nil))
    func tiniSubreaper() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let tini = try #require(Paths.tool("tini"))
        // Orphans 1001/1002 (their parent exited) end up under tini; sh (the middle one) has
        // a child sleep 1004 that becomes an orphan when the restored sh is killed.
        let script = try run.write("tini-job.sh", Data("""
            #!/bin/sh
            sh -c 'sleep 1001 & sleep 1002 &'
            sh -c 'sleep 1004; :' &
            exec sleep 1003
            """.utf8), mode: 0o755)
        let root = try startAsUser(run, [tini, "-s", "--", "/bin/sh", script], log: "tini.log")
        defer { killAll(treeBelow(root), child: root) }
        try poll(10, "the tini tree") {
            let t = treeBelow(root)
            return t.count == 6 && t.contains { cmdline($0) == ["sleep", "1004"] }
                && t.contains { cmdline($0) == ["sleep", "1003"] }
        }
        let before = table(of: root)
        let orphans = before.filter { $0.value.ppid == root }.map(\.key).filter { ["1001", "1002"].contains(cmdline($0).last ?? "") }
        try #require(orphans.count == 2, "the orphans are not tini's children: \(before)")

        // tini and the middle sh only wait for children the restore rebuilds: they hold.
        let middleHost = try #require(before.keys.first { cmdline($0).first == "sh" })
        let (t, err) = try rr(run, ["record", "--hold", String(root), "--hold", String(middleHost), String(root), "-o", dir + "/tini.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        #expect(!err.contains("childSubreaper") && !err.contains("subreaper"), "the flags were read, nothing to warn about: \(err)")
        let listed = try entries(dir + "/tini.json")
        for e in listed {
            let pid = Int32(e["pid"] as? Int ?? 0)
            #expect((e["childSubreaper"] as? Bool ?? false) == (pid == root), "pid \(pid): childSubreaper \(e["childSubreaper"] ?? false)")
        }
        // The tree was left as it was: nothing stopped, nobody traced.
        for pid in treeBelow(root) {
            let status = readText("/proc/\(pid)/status")
            #expect(status.contains("TracerPid:\t0") && !status.contains("State:\tT") && !status.contains("State:\tt"), "pid \(pid) after record")
        }

        killAll(treeBelow(root), child: root)
        try run.startRun(treeFile: dir + "/tini.json")
        try run.waitUntilReady()
        let problems = compare(before, root: root, with: run.namespace())
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")

        // The flag works: kill the restored middle sh, and its child is adopted by tini, not
        // by the namespace init.
        let seen = run.namespace()
        let sleeper = try #require(seen.first { cmdline($0.host.hostPid) == ["sleep", "1004"] })
        let middle = try #require(seen.first { $0.pid == sleeper.ppid })
        kill(middle.host.hostPid, SIGKILL)
        var adopted: Int32 = -1
        try? poll(10, "sleep 1004 reparented") {
            adopted = run.namespace().first { $0.pid == sleeper.pid }?.ppid ?? -1
            return adopted != middle.pid
        }
        #expect(adopted == root, "the orphan went to \(adopted), not to the restored subreaper \(root)")
        run.tearDown()
    }

    @Test("a stopped job's flags are read too: a tini -s and its child stopped with SIGSTOP keep their stop, and tini's subreaper flag is read, not inferred",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("tini") != nil))
    func stoppedSubreaperRead() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let tini = try #require(Paths.tool("tini"))
        let root = try startAsUser(run, [tini, "-s", "--", "sleep", "1000"], log: "tini.log")
        defer { killAll(treeBelow(root), child: root) }
        try poll(10, "tini and its sleep") { treeBelow(root).contains { cmdline($0) == ["sleep", "1000"] } }
        // A group stop, as of a job stopped from its shell: the injected prctl must get past
        // the stop the task reports again when it is resumed.
        for pid in treeBelow(root) { kill(pid, SIGSTOP) }
        try poll(10, "the tree stopped") { treeBelow(root).allSatisfy { readText("/proc/\($0)/status").contains("State:\tT") } }
        let (t, err) = try rr(run, ["record", String(root), "-o", dir + "/stopped.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        #expect(!err.contains("could not be read"), "the flags of stopped processes are read: \(err)")
        let listed = try entries(dir + "/stopped.json")
        for e in listed {
            let pid = Int32(e["pid"] as? Int ?? 0)
            #expect((e["childSubreaper"] as? Bool ?? false) == (pid == root), "pid \(pid): childSubreaper \(e["childSubreaper"] ?? false)")
            #expect(e["state"] as? String == "stopped", "pid \(pid) recorded as \(e["state"] ?? "running")")
        }
        for pid in treeBelow(root) {
            let status = readText("/proc/\(pid)/status")
            #expect(status.contains("TracerPid:\t0") && status.contains("State:\tT"), "pid \(pid) after record: still stopped, not traced")
        }
        killAll(treeBelow(root), child: root)
        run.tearDown()
    }

    @Test("a daemonizing double fork under tini -s, pinned: the wrapper exec'ing its program matches, the daemon whose forker exited is reported, not silently moved",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("tini") != nil))
    func daemonizingForkPinned() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let tini = try #require(Paths.tool("tini"))
        // The daemon (sleep 1000) is forked by an intermediate sh that exits at once, so tini
        // (a subreaper) adopts it; the outer sh execs sleep 1001.
        let root = try startAsUser(run, [tini, "-s", "--", "/bin/sh", "-c", "sh -c 'sleep 1000 &'; exec sleep 1001"], log: "tini.log")
        defer { killAll(treeBelow(root), child: root) }
        try poll(10, "tini with its child and the adopted daemon") {
            let t = treeBelow(root)
            return t.count == 3 && t.contains { cmdline($0) == ["sleep", "1000"] } && t.contains { cmdline($0) == ["sleep", "1001"] }
        }
        let daemon = try #require(treeBelow(root).first { cmdline($0) == ["sleep", "1000"] })
        let child = try #require(treeBelow(root).first { cmdline($0) == ["sleep", "1001"] })
        let (t, err) = try rr(run, ["record", "--spawn-by-payload", String(root), "-o", dir + "/daemon.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        let listed = try entries(dir + "/daemon.json")
        try #require(listed.count == 3 && listed[0]["childSubreaper"] as? Bool == true, "\(listed)")

        killAll(treeBelow(root), child: root)
        try run.startRun(treeFile: dir + "/daemon.json", extra: ["--pin-wait", "2", "--pin-log", dir + "/pins.log"])
        try run.waitUntilReady()
        // The restored outer sh takes the child's PID and execs sleep 1001 there: matched, even
        // though it ran sh first. The intermediate sh is nobody the recording knows: its fork
        // of the daemon is not pinned, so the daemon's PID is owed by tini, which never forks
        // again: reported missing after --pin-wait.
        try run.waitForNamespace(timeout: 20, "the daemon's PID reported missing") { _ in run.stderr.contains("pin missing") }
        let seen = run.namespace()
        #expect(seen.first { $0.pid == child }?.host.commandLine == "sleep 1001", "\(seen)")
        #expect(run.stderr.contains("(pid \(daemon)): pin missing: not created yet"), "\(run.stderr)")
        #expect(!run.stderr.contains("(pid \(child)): pin mismatch"), "\(run.stderr)")
        let checks = readText(dir + "/pins.log").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["kind"] as? String == "check" }
        #expect(checks.contains { $0["pid"] as? Int == Int(child) && $0["matched"] as? Bool == true }, "\(checks)")
        #expect(checks.contains { $0["pid"] as? Int == Int(daemon) && $0["created"] as? Bool == false }, "\(checks)")
        let moved = seen.first { $0.host.commandLine == "sleep 1000" }
        #expect(moved != nil && moved?.pid != daemon, "the daemon runs again, at another PID: \(String(describing: moved))")
        run.tearDown()
    }

    @Test("where ptrace is refused (a non-dumpable tini), the subreaper flag is inferred from the tree's shape and said so",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("tini") != nil && (try? Identity.user.get())?.dropsPrivileges == true))
    func subreaperInferred() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        // Root's copy that the test user may execute but not read: the kernel makes such a
        // process non-dumpable, so its owner may not ptrace it (nor read its cwd).
        let tini = dir + "/tini-x"
        try FileManager.default.copyItem(atPath: try #require(Paths.tool("tini")), toPath: tini)
        chown(tini, 0, 0)
        chmod(tini, 0o711)
        // Two orphans in two sessions whose leaders died: only a reaper explains them.
        let root = try startAsUser(run, [tini, "-s", "--", "/bin/sh", "-c",
                                         "setsid sh -c 'sleep 1001 &'; setsid sh -c 'sleep 1002 &'; exec sleep 1003"], log: "tini.log")
        defer { killAll(treeBelow(root), child: root) }
        try poll(10, "the tini tree") { treeBelow(root).count == 4 && treeBelow(root).allSatisfy { cmdline($0).first != "sh" } }
        let before = table(of: root)

        let (t, err) = try rr(run, ["record", "--no-env", "--partial", "--hold", String(root), String(root), "-o", dir + "/inferred.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        #expect(err.contains("could not be read for \(root)") && err.contains("ptrace refused") && err.contains("inferred from the tree's shape: set on \(root)"), "\(err)")
        let listed = try entries(dir + "/inferred.json")
        for e in listed {
            let pid = Int32(e["pid"] as? Int ?? 0)
            #expect((e["childSubreaper"] as? Bool ?? false) == (pid == root), "pid \(pid): childSubreaper \(e["childSubreaper"] ?? false)")
        }
        killAll(treeBelow(root), child: root)
        try run.startRun(treeFile: dir + "/inferred.json")
        try run.waitUntilReady()
        let problems = compare(before, root: root, with: run.namespace())
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        run.tearDown()
    }

    @Test("unshare --user --map-root-user --pid --fork from an interactive shell under script: nested PIDs and the user namespace's map come back",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("script") != nil && Paths.tool("unshare") != nil))
    func unsharePidFromShell() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let inner = try run.write("inner.sh", Data("""
            #!/bin/bash
            [ -e "$1/recorded" ] || { sleep 1000 & sleep 1001 & }
            echo started > "$1/inner-started"
            read -r _ <> "$1/inner-hold"
            """.utf8), mode: 0o755)
        mkfifo(dir + "/inner-hold", 0o666)
        chmod(dir + "/inner-hold", 0o666)
        let shell = try InteractiveShell(run)
        defer { shell.end() }
        _ = try shell.bashPid()
        shell.send("unshare --user --map-root-user --pid --fork --mount-proc \(inner) \(dir) & echo $! > \(dir)/unshare.pid")
        try poll(15, "unshare's tree (\(readText(dir + "/script.log")))") {
            access(dir + "/inner-started", F_OK) == 0
                && (Int32(readText(dir + "/unshare.pid").trimmingCharacters(in: .whitespacesAndNewlines)).map { treeBelow($0).count == 4 } ?? false)
        }
        let unshare = try #require(Int32(readText(dir + "/unshare.pid").trimmingCharacters(in: .whitespacesAndNewlines)))
        let before = table(of: unshare)
        let uidMap = readText("/proc/\(unshare)/uid_map").split(separator: " ").joined(separator: " ")
        #expect(before.values.filter { $0.nspid.count == 2 }.count == 3, "\(before)")
        // --mount-proc: the nested namespace's /proc lists its own PIDs, as seen from inside
        // (through the nested init's root, in its mount namespace).
        func procInside(_ rows: [(host: Int32, nspid: [Int32])]) -> (listed: [Int32], own: [Int32]) {
            guard let initHost = rows.first(where: { $0.nspid.count == 2 && $0.nspid[1] == 1 })?.host else { return ([], [1]) }
            let listed = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(initHost)/root/proc")) ?? []).compactMap { Int32($0) }.sorted()
            return (listed, rows.filter { $0.nspid.count == 2 }.map { $0.nspid[1] }.sorted())
        }
        let procBefore = procInside(before.map { ($0.key, $0.value.nspid) })
        #expect(procBefore.listed == procBefore.own, "the recorded nested namespace's /proc: \(procBefore)")

        let (t, err) = try rr(run, ["record", "--hold", String(unshare), String(unshare), "-o", dir + "/unshare.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        let listed = try entries(dir + "/unshare.json")
        let nested = listed.filter { ($0["nspid"] as? [Int])?.count == 2 }
        #expect(nested.count == 3 && nested.filter { $0["newPidNamespace"] as? Bool == true }.count == 1, "\(listed)")
        let top = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/unshare.json"))) as? [String: Any]
        let maps = top?["uidMappings"] as? [[String: Any]] ?? []
        #expect(maps.count == 1 && maps[0]["containerID"] as? Int == 0 && maps[0]["hostID"] as? Int == Int(run.user.uid), "\(maps)")

        try run.write("recorded", Data())
        killAll(treeBelow(unshare))
        try run.startRun(treeFile: dir + "/unshare.json")
        try run.waitUntilReady()
        let seen = run.namespace()
        let problems = compare(before, root: unshare, with: seen)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        for p in seen where before[p.pid] != nil {
            let map = readText("/proc/\(p.host.hostPid)/uid_map").split(separator: " ").joined(separator: " ")
            #expect(map == uidMap, "pid \(p.pid): uid_map \(map), before \(uidMap)")
        }
        // The restored nested namespace has a /proc of its own again, listing exactly its PIDs.
        let procAfter = procInside(seen.map { ($0.host.hostPid, Array($0.host.nspid.dropFirst(ProcFS.ownDepth))) })
        #expect(procAfter.listed == procAfter.own && procAfter.own == procBefore.own, "the restored nested namespace's /proc: \(procAfter), before \(procBefore)")
        shell.end()
        run.tearDown()
    }
}

// MARK: - record --freeze leaves no trace

@Suite("record --freeze: ptrace stops, thawed on every exit path", .serialized)
struct RecordFreezeTests {
    @Test("SIGINT, SIGTERM, SIGHUP or SIGKILL of record --freeze leave nothing stopped; bash's jobs stay Running",
          .enabled(if: Paths.tool("script") != nil))
    func signalsLeaveNothingStopped() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let shell = try InteractiveShell(run)
        defer { shell.end() }
        let bash = try shell.bashPid()
        shell.send("sleep 1000 & sleep 1001 & sleep 1002 &")
        shell.send("until read -r comm < /proc/$!/comm && [ \"$comm\" = sleep ]; do :; done; kill -STOP $!")
        try poll(15, "bash and its 3 jobs, one stopped") {
            treeBelow(bash).count == 4 && treeBelow(bash).contains { readText("/proc/\($0)/status").contains("State:\tT") }
        }
        let stoppedJob = try #require(treeBelow(bash).first { cmdline($0) == ["sleep", "1002"] })
        func states() -> [Int32: String] {
            var out: [Int32: String] = [:]
            for p in treeBelow(bash) { out[p] = ProcFS.parseStatus(readFile("/proc/\(p)/status") ?? [], hostPid: p)?.state ?? "?" }
            return out
        }
        let original = states()
        #expect(original[stoppedJob] == "T")

        // SIGINT, SIGTERM and SIGHUP are safe at any moment (record blocks them while it holds
        // processes): sent as soon as every task shows "t", they may land in the middle of the
        // system call injected to read the subreaper flag. SIGKILL cannot be blocked, and is
        // safe only once no injection is in flight: sent (like every signal in the second
        // round) after record said the hold began.
        let rounds = [SIGINT, SIGTERM, SIGHUP].map { ($0, false) } + [SIGINT, SIGTERM, SIGHUP, SIGKILL].map { ($0, true) }
        for (sig, inHold) in rounds {
            unlink(dir + "/rec.err")
            let argv = try Identity.prefix(for: run.user) + [run.binary, "record", "--freeze", "--hold-frozen", "30", String(bash), "-o", "\(dir)/frozen.json"]
            let recorder = try spawn(argv, env: Identity.cleanEnvironment, cwd: dir, stdout: "\(dir)/rec.out", stderr: "\(dir)/rec.err")
            if inHold {
                try poll(15, "record holding the tree (\(readText(dir + "/rec.err")))") { readText(dir + "/rec.err").contains("holding") }
                #expect(readText(dir + "/rec.err").contains("holding 4 processes frozen"), "\(readText(dir + "/rec.err"))")
                // Frozen: every task in a ptrace stop ("t"), traced by record.
                #expect(states().values.allSatisfy { $0 == "t" }, "held by record: \(states())")
            } else {
                try poll(15, "the tree frozen by record (\(readText(dir + "/rec.err")))") {
                    states().values.allSatisfy { $0 == "t" }
                }
            }
            let t0 = Date()
            kill(recorder, sig)
            let end = try waitForExit(recorder, timeout: 10)
            #expect(Date().timeIntervalSince(t0) < 5, "record took \(Date().timeIntervalSince(t0)) s to end after signal \(sig)\(inHold ? " in the hold" : "")")
            #expect(end == .signaled(sig) || end == .exited(128 + sig), "record after signal \(sig)\(inHold ? " in the hold" : ""): \(end) \(readText(dir + "/rec.err"))")
            #expect(access("\(dir)/frozen.json", F_OK) != 0, "nothing may be written after signal \(sig)\(inHold ? " in the hold" : "")")
            var now: [Int32: String] = [:]
            try? poll(5, "the tree as it was") { now = states(); return now == original }
            #expect(now == original, "after signal \(sig)\(inHold ? " in the hold" : ""): \(now), before \(original)")
            for p in treeBelow(bash) {
                #expect(readText("/proc/\(p)/status").contains("TracerPid:\t0"), "pid \(p) still traced after signal \(sig)\(inHold ? " in the hold" : "")")
            }
        }
        // bash saw no job-control stop: the two running jobs are Running, the stopped one Stopped.
        shell.send("jobs > \(dir)/jobs.txt; echo done > \(dir)/jobs.done")
        try poll(10, "bash's jobs") { access(dir + "/jobs.done", F_OK) == 0 }
        let jobs = readText(dir + "/jobs.txt")
        #expect(jobs.components(separatedBy: "Running").count - 1 == 2 && jobs.components(separatedBy: "Stopped").count - 1 == 1, "\(jobs)")
        shell.end()
        run.tearDown()
    }

    @Test("record --freeze of a tree with a process ptrace may not stop is refused by name, and what was frozen is thawed",
          .enabled(if: Paths.tool("tini") != nil && (try? Identity.user.get())?.dropsPrivileges == true))
    func freezeRefusedThaws() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let tini = dir + "/tini-x"   // executable, not readable: not dumpable, so not traceable
        try FileManager.default.copyItem(atPath: try #require(Paths.tool("tini")), toPath: tini)
        chown(tini, 0, 0)
        chmod(tini, 0o711)
        let job = try startAsUser(run, ["/bin/bash", "-c", "\(tini) -s -- sleep 1000 & wait"], log: "job.log")
        defer { killAll(treeBelow(job), child: job) }
        try poll(10, "bash, tini and sleep") { treeBelow(job).count == 3 && cmdline(treeBelow(job)[2]) == ["sleep", "1000"] }
        let tiniPid = treeBelow(job)[1]
        let (t, err) = try rr(run, ["record", "--freeze", String(job), "-o", dir + "/frozen.json"], name: "record")
        #expect(t == .exited(66) && err.contains("process \(tiniPid)") && err.contains("cannot be frozen") && err.contains("EPERM"), "\(t) \(err)")
        #expect(access(dir + "/frozen.json", F_OK) != 0)
        for pid in treeBelow(job) {
            let status = readText("/proc/\(pid)/status")
            #expect(status.contains("TracerPid:\t0") && status.contains("State:\tS"), "pid \(pid) after the refusal: \(status.split(separator: "\n").prefix(3))")
        }
        killAll(treeBelow(job), child: job)
        run.tearDown()
    }

    @Test("a signal sent while record --freeze holds the tree waits, and is handled once record lets go")
    func signalsWhileFrozenAreKept() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        mkfifo(dir + "/hold", 0o666)
        chmod(dir + "/hold", 0o666)
        let script = try run.write("trap.sh", Data("""
            #!/bin/bash
            trap 'echo usr1 >> "$1/got"' USR1
            echo ready > "$1/ready"
            while :; do read -r -t 0.05 _ <> "$1/hold"; done
            """.utf8), mode: 0o755)
        let job = try startAsUser(run, ["/bin/bash", script, dir], log: "trap.log")
        defer { killAll([job], child: job) }
        try poll(10, "the trap script") { access(dir + "/ready", F_OK) == 0 }
        let argv = try Identity.prefix(for: run.user) + [run.binary, "record", "-q", "--freeze", "--hold-frozen", "1.5", String(job), "-o", "\(dir)/held.json"]
        let recorder = try spawn(argv, env: Identity.cleanEnvironment, cwd: dir, stdout: "\(dir)/rec.out", stderr: "\(dir)/rec.err")
        try poll(10, "the script frozen") { readText("/proc/\(job)/status").contains("State:\tt") }
        kill(job, SIGUSR1)
        usleep(300_000)
        #expect(access(dir + "/got", F_OK) != 0, "the frozen script handled a signal")
        #expect(try waitForExit(recorder, timeout: 20) == .exited(0), "\(readText(dir + "/rec.err"))")
        try? poll(5, "the signal handled after the thaw") { readText(dir + "/got") == "usr1\n" }
        #expect(readText(dir + "/got") == "usr1\n", "the signal sent during the freeze was lost")
        killAll([job], child: job)
        run.tearDown()
    }

    @Test("inside a container-like tree whose seccomp filter everyone inherits, record says so once, not once per process",
          .enabled(if: Prerequisites.userNamespacesWork))
    func inheritedSeccompIsOneLine() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        // The restored root runs under a filter (mkdir denied), starts 3 sleeps and records
        // itself from inside, with record under the same filter as every process it reads.
        try run.write("inside.sh", Data("""
            #!/bin/sh
            sleep 1000 & sleep 1001 & sleep 1002 &
            "$1/rootless-restore" record $$ -o "$1/inside.json" 2> "$1/inside.err"
            echo $? > "$1/inside.rc"
            mkdir "$1/denied" 2>/dev/null || echo denied > "$1/mkdir.txt"
            exec sleep 1003
            """.utf8), mode: 0o755)
        let tree = try run.write("seccomp.json", Data("""
            {"version": 1, "processes": [{"pid": 50, "ppid": 0, "pgid": 50, "sid": 50, "process": {
              "args": ["/bin/sh", "\(dir)/inside.sh", "\(dir)"], "cwd": "\(dir)",
              "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}}}]}
            """.utf8))
        try run.startRun(treeFile: tree)
        try run.waitUntilReady()
        try poll(30, "record inside the tree (\(run.stderr))") { readText(dir + "/inside.rc").hasSuffix("\n") && readText(dir + "/mkdir.txt").hasSuffix("\n") }
        #expect(readText(dir + "/mkdir.txt") == "denied\n", "the filter is in force")
        let err = readText(dir + "/inside.err")
        #expect(readText(dir + "/inside.rc") == "0\n", "record inside: \(err)")
        print("record inside the seccomp tree said: \(err)")
        let lines = err.split(separator: "\n").filter { $0.contains("seccomp") }
        #expect(lines.count == 1 && lines[0].contains("4 processes run under the seccomp filter rootless-restore runs under too"), "\(err)")
        #expect(!err.contains("subreaper"), "the flags were read inside the filter: \(err)")
        let listed = try entries(dir + "/inside.json")
        #expect(listed.count == 4, "\(listed.map { $0["pid"] ?? "?" })")
        run.tearDown()
    }

    @Test("record to a standard output that others may read is refused (environments hold secrets); --no-env or a private file is fine; a lone sleep gets no warning")
    func standardOutputMode() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let sleeper = try startAsUser(run, ["sleep", "1000"], log: "sleep.log")
        defer { killAll([sleeper], child: sleeper) }
        try poll(5, "sleep") { cmdline(sleeper) == ["sleep", "1000"] }
        func record(_ extra: [String], into file: String, mode: String) throws -> (Termination, String) {
            let argv = try Identity.prefix(for: run.user) + ["/bin/sh", "-c", "umask \(mode) && exec \"$0\" \"$@\" > \(file)", run.binary, "record", "-q"] + extra + [String(sleeper)]
            let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: dir, stdout: "/dev/null", stderr: "\(dir)/stdout.err")
            return (try waitForExit(pid, timeout: 30), readText(dir + "/stdout.err"))
        }
        var (t, err) = try record([], into: dir + "/open.json", mode: "022")
        #expect(t == .exited(64) && err.contains("others may read") && err.contains("-o FILE"), "\(t) \(err)")
        #expect(!readText(dir + "/open.json").contains("\"env\""), "no environment may reach a readable file")
        (t, err) = try record([], into: dir + "/private.json", mode: "077")
        #expect(t == .exited(0) && readText(dir + "/private.json").contains("\"env\""), "\(t) \(err)")
        (t, err) = try record(["--no-env"], into: dir + "/noenv.json", mode: "022")
        #expect(t == .exited(0) && readText(dir + "/noenv.json").contains("\"processes\""), "\(t) \(err)")
        // A lone sleep gets no warning at all (no generic one every tree used to get).
        let (lone, loneErr) = try rr(run, ["record", String(sleeper), "-o", dir + "/lone.json"], name: "lone")
        #expect(lone == .exited(0) && loneErr.isEmpty, "\(lone) \(loneErr)")
        killAll([sleeper], child: sleeper)
        run.tearDown()
    }
}
