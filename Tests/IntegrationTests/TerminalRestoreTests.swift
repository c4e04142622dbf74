// Terminals, record → kill → run, as the unprivileged test user: an interactive bash under
// `script` with a foreground pipeline, a background job and a stopped job, restored with
// `run --shell-job` driven from a pty the test owns; a tmux server with 3 windows restored by
// tmux itself; a `script` session restored with --shell-job. What the
// restored namespace has is read from /proc with the harness's own reader: pid/ppid/pgid/sid,
// and tty_nr and tpgid of /proc/PID/stat.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

// MARK: - Helpers of this file

/// A pty the test owns: the caller's terminal of `run --shell-job`.
private final class TestTerminal {
    let master: Int32
    let slavePath: String
    private(set) var output = ""

    init(rows: UInt16, columns: UInt16) throws {
        // posix_openpt by hand (Glibc's module hides it): open, unlock, ask its number.
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        var unlock: Int32 = 0, number: Int32 = -1
        guard master >= 0, ioctl(master, 0x4004_5431 /* TIOCSPTLCK */, &unlock) == 0, ioctl(master, 0x8004_5430 /* TIOCGPTN */, &number) == 0 else {
            throw HarnessError("cannot allocate a pty for the test: \(String(cString: strerror(errno)))")
        }
        slavePath = "/dev/pts/\(number)"
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        resize(rows: rows, columns: columns)
    }

    deinit { close(master) }

    /// TIOCSWINSZ on the master: the kernel sends SIGWINCH to the slave's foreground group.
    func resize(rows: UInt16, columns: UInt16) {
        var w = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &w)
    }

    func type(_ text: String) {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(master, $0.baseAddress!, $0.count) }
            if n > 0 { done += n } else { pump(); usleep(10_000) }
        }
    }

    /// Takes what the terminal shows so far.
    func pump() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { return }
            output += String(decoding: buffer[0..<n], as: UTF8.self)
        }
    }

    /// Waits (bounded) until `text` appears after position `from` of the output; returns the
    /// output from `from` up to and including it.
    @discardableResult
    func waitFor(_ text: String, from: Int, timeout: Double = 20) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            pump()
            let tail = String(output.dropFirst(from))
            if let r = tail.range(of: text) { return String(tail[..<r.upperBound]) }
            if Date() > deadline {
                throw HarnessError("the terminal did not show \(text.debugDescription) within \(timeout) s; it shows:\n\(tail.suffix(2000))")
            }
            usleep(20_000)
        }
    }

    /// The slave's local modes, as its next user would find them.
    func localModes() -> tcflag_t {
        let fd = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var t = termios()
        return tcgetattr(fd, &t) == 0 ? t.c_lflag : 0
    }
}

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

private func status(_ pid: Int32) -> HostProcess? { ProcFS.parseStatus(readFile("/proc/\(pid)/status") ?? [], hostPid: pid) }

private func poll(_ timeout: Double, _ what: String, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > deadline { throw HarnessError("timed out after \(timeout) s waiting for \(what)") }
        usleep(20_000)
    }
}

private func commandLine(_ pid: Int32) -> [String] {
    (readFile("/proc/\(pid)/cmdline") ?? []).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
}

/// `rootless-restore record ARGS` as the test user; waits (bounded).
private func record(_ run: RestoreRun, _ arguments: [String]) throws -> (Termination, String) {
    let err = run.directory + "/record.err"
    let pid = try spawn(try Identity.prefix(for: run.user) + [run.binary, "record"] + arguments,
                        env: Identity.cleanEnvironment, cwd: run.directory, stdout: run.directory + "/record.out", stderr: err)
    return (try waitForExit(pid, timeout: 60), readText(err))
}

private func treeJSON(_ path: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
}

/// An interactive bash of the test user under `script` (a pty of the host's devpts), in a
/// session of its own, reading its commands from a fifo the test writes to.
private final class ScriptShell {
    let session: pid_t
    let input: Int32
    let directory: String
    private var ended = false

    init(_ run: RestoreRun) throws {
        directory = run.directory
        let script = try #require(Paths.tool("script"), "script (util-linux) is missing")
        let setsid = try #require(Paths.tool("setsid"), "setsid (util-linux) is missing")
        mkfifo(directory + "/shell-in", 0o666)
        chmod(directory + "/shell-in", 0o666)
        session = try spawn(try Identity.prefix(for: run.user) + [setsid, "/bin/sh", "-c",
                            "exec 3<>\(directory)/shell-in; exec \(script) -qfc 'exec bash --norc -i' /dev/null <&3"],
                            env: Identity.cleanEnvironment, cwd: directory,
                            stdout: directory + "/script.log", stderr: directory + "/script.log")
        input = open(directory + "/shell-in", O_RDWR | O_CLOEXEC)
    }

    func send(_ line: String) { _ = (line + "\n").withCString { write(input, $0, strlen($0)) } }

    func bashPid() throws -> Int32 {
        send("echo $$ > \(directory)/bash.pid")
        try poll(10, "bash (\(readText(directory + "/script.log")))") {
            Int32(readText(directory + "/bash.pid").trimmingCharacters(in: .whitespacesAndNewlines)) != nil
        }
        return Int32(readText(directory + "/bash.pid").trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    func end() {
        guard !ended else { return }
        ended = true
        close(input)
        killProcessTree(root: session)
    }

    deinit { end() }
}

/// SIGKILLs processes that are not the test's children (a daemon) and waits until they are gone.
private func killOutside(_ pids: [Int32]) {
    for p in pids { kill(p, SIGKILL) }
    try? poll(10, "\(pids) gone") { pids.allSatisfy { status($0).map { $0.state.hasPrefix("Z") } ?? true } }
}

/// The devpts instance a descriptor of a process is on (st_dev of /proc/PID/fd/N's target).
private func deviceOf(_ path: String) -> (dev: UInt64, rdev: UInt64)? {
    var st = stat()
    return stat(path, &st) == 0 ? (UInt64(st.st_dev), UInt64(st.st_rdev)) : nil
}

// MARK: - Tests

@Suite("terminals: record → kill → run, --shell-job", .serialized)
struct TerminalRestoreTests {
    @Test("bash under script with a foreground pipeline, a background job and a stopped job, recorded without job replay, restored with --shell-job from a pty the test owns",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("script") != nil && Paths.tool("setsid") != nil))
    func bashJobsShellJob() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let shell = try ScriptShell(run)
        defer { shell.end() }
        let bash = try shell.bashPid()
        shell.send("sleep 1000 &")
        shell.send("sleep 1001 & until read -r c < /proc/$!/comm && [ \"$c\" = sleep ]; do :; done; kill -STOP $!")
        shell.send("for i in $(seq 100); do jobs -l | grep -q Stopped && break; sleep 0.1; done; jobs -l > \(dir)/jobs.before; echo > \(dir)/jobs.done")
        try poll(20, "bash's jobs (\(readText(dir + "/script.log")))") { access(dir + "/jobs.done", F_OK) == 0 }
        shell.send("sleep 1002 | sleep 1003")
        let jobsBefore = readText(dir + "/jobs.before")
        #expect(jobsBefore.contains("Running") && jobsBefore.contains("Stopped"), "\(jobsBefore)")

        // The pipeline is the terminal's foreground group (tpgid), bash leads the session.
        var pipeline: Int32 = 0
        try poll(20, "the foreground pipeline") {
            let pids = treeBelow(bash)
            guard pids.count == 5, let leader = pids.first(where: { commandLine($0) == ["sleep", "1002"] }),
                  let fg = ProcFS.terminal(bash)?.tpgid, fg == leader else { return false }
            pipeline = leader
            return true
        }
        let pids = treeBelow(bash)
        let bg = try #require(pids.first { commandLine($0) == ["sleep", "1000"] })
        let stopped = try #require(pids.first { commandLine($0) == ["sleep", "1001"] })
        let before = Dictionary(uniqueKeysWithValues: pids.compactMap { p in status(p).map { (p, $0) } })
        let tty = try #require(ProcFS.terminal(bash)).ttyNr
        #expect(tty != 0 && pids.allSatisfy { ProcFS.terminal($0)?.ttyNr == tty }, "every process of bash's session has its terminal")
        #expect(before[stopped]?.state == "T")

        let treeFile = dir + "/bash.json"
        // Without job replay: the jobs come back as processes bash did not fork.
        let (t, err) = try record(run, ["--no-job-replay", String(bash), "-o", treeFile])
        try #require(t == .exited(0), "record: \(err)")
        #expect(!err.contains("job replay:") && !readText(treeFile).contains("shellJobs"), "\(err)")
        let json = try treeJSON(treeFile)
        let terminals = try #require(json["terminals"] as? [[String: Any]], "no terminals in \(json)")
        #expect(terminals.count == 1)
        #expect(terminals.first?["session"] as? Int == Int(bash) && terminals.first?["foreground"] as? Int == Int(pipeline), "\(terminals) \(err) \(readText(treeFile).split(separator: "\n").map { $0.prefix(120) })")
        let entries = try #require(json["processes"] as? [[String: Any]])
        #expect(entries.allSatisfy { $0["terminal"] as? String == terminals.first?["id"] as? String }, "\(entries.map { $0["terminal"] ?? "-" })")
        shell.end()

        // Restore from a pty the test owns: run leads its session with it (setsid --ctty).
        let term = try TestTerminal(rows: 33, columns: 111)
        let modesBefore = term.localModes()
        let setsid = try #require(Paths.tool("setsid"))
        try run.start(["run", "--shell-job", "--report", run.reportPath, treeFile], launcher: [setsid, "--ctty"], terminal: term.slavePath)
        try run.waitUntilReady()
        let seen = run.namespace()
        func restored(_ pid: Int32) -> NamespaceProcess? { seen.first { $0.pid == pid } }
        for (pid, was) in before {
            guard let now = restored(pid) else { Issue.record("pid \(pid) was not restored: \(seen)"); continue }
            let wantPPid: Int32 = pid == bash ? 1 : was.hostPPid
            #expect((now.ppid, now.pgid, now.sid) == (wantPPid, was.nspgid[0], was.nssid[0]), "pid \(pid): \(now), before ppid \(wantPPid) pgid \(was.nspgid[0]) sid \(was.nssid[0])")
            // Its controlling terminal: a pty (major 136) of a devpts instance of the restore's
            // own (not the host's /dev/pts), the same for the whole session.
            let ctty = ProcFS.terminal(now.host.hostPid)
            #expect(ctty.map { $0.ttyNr >> 8 == 136 } ?? false, "pid \(pid): tty_nr \(String(describing: ctty))")
            #expect(ctty?.ttyNr == ProcFS.terminal(restored(bash)!.host.hostPid)?.ttyNr)
            if let fd0 = deviceOf("/proc/\(now.host.hostPid)/fd/2"), let host = deviceOf("/dev/pts/ptmx") {
                #expect(fd0.dev != host.dev, "pid \(pid): its stderr is on the host's devpts, not the restore's own")
            }
        }
        // The foreground group as recorded: tpgid names (in host numbers) the restored pipeline.
        let fgHost = try #require(ProcFS.terminal(restored(bash)!.host.hostPid)?.tpgid)
        #expect(seen.first { $0.host.hostPid == fgHost }?.pid == pipeline, "tpgid \(fgHost): \(seen)")
        #expect(restored(stopped)?.host.state == "T" && restored(bg)?.host.state == "S")

        // bash was waiting for its pipeline: it starts once the pipeline ends (^C here).
        var mark = term.output.count
        term.type("\u{3}")
        try poll(20, "bash back in the foreground (\(term.output.suffix(500)))") {
            term.pump()
            guard let b = restored(bash)?.host.hostPid else { return false }
            return commandLine(b).first == "bash" && ProcFS.terminal(b)?.tpgid == b
        }
        try term.waitFor("$ ", from: mark)
        mark = term.output.count
        term.type("jobs; echo JOBS-END\r")
        let jobs = try term.waitFor("\nJOBS-END", from: mark)
        // bash's job table lived in its memory: the restarted bash has none.
        #expect(!jobs.contains("Running") && !jobs.contains("Stopped"), "\(jobs)")
        // What survives: the jobs' processes, its children, with their groups and states.
        mark = term.output.count
        term.type("ps -o pid=,pgid=,stat= --ppid $$ | tr -s ' ' > \(dir)/ps.after; stty size; echo PS-END\r")
        let size = try term.waitFor("\nPS-END", from: mark)
        #expect(size.contains("33 111"), "\(size)")
        let children = readText(dir + "/ps.after").split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(children.contains { $0.count >= 3 && $0[0] == String(bg) && $0[1] == String(bg) && $0[2].hasPrefix("S") }, "\(children)")
        #expect(children.contains { $0.count >= 3 && $0[0] == String(stopped) && $0[1] == String(stopped) && $0[2].hasPrefix("T") }, "\(children)")
        #expect(jobsBefore.contains(String(bg)) && jobsBefore.contains(String(stopped)), "\(jobsBefore)")
        // A window size change of the caller's terminal reaches the restored one.
        term.resize(rows: 44, columns: 122)
        try poll(10, "the new size") {
            mark = term.output.count
            term.type("stty size\r")
            return (try? term.waitFor("44 122", from: mark, timeout: 1)) != nil
        }
        // The stopped job resumes as the program it was.
        term.type("kill -CONT \(stopped)\r")
        try poll(10, "the stopped job running") { restored(stopped).map { commandLine($0.host.hostPid) == ["sleep", "1001"] } ?? false }

        // exit: the terminal comes back to the caller as it was (not raw); run waits for the
        // jobs that outlive bash, and a ^C of the caller's (a SIGINT of run's) ends them.
        mark = term.output.count
        term.type("exit\r")
        try term.waitFor("session leader", from: mark)
        try poll(5, "the caller's terminal out of raw mode") { term.localModes() == modesBefore }
        #expect(term.localModes() & tcflag_t(ICANON) != 0)
        #expect(restored(bg).map { readFile("/proc/\($0.host.hostPid)/stat") != nil } ?? false, "the background job ended with bash")
        term.type("\u{3}")
        _ = try run.waitForExit(timeout: 20)
        run.tearDown()
    }

    @Test("job replay: bash under script with a background job, a job stopped with ^Z and a foreground pipeline, restored with --shell-job: bash forks its jobs again with their PIDs and `jobs -l` shows what it showed before",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("script") != nil && Paths.tool("setsid") != nil))
    func bashJobReplay() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let shell = try ScriptShell(run)
        defer { shell.end() }
        let bash = try shell.bashPid()
        // The terminal's modes as the user set them (a new pty echoes).
        shell.send("stty -echo")
        func job(_ argv: [String]) -> Int32? { treeBelow(bash).first { commandLine($0) == argv } }
        func foreground(_ argv: [String]) -> Bool { job(argv).map { ProcFS.terminal(bash)?.tpgid == $0 } ?? false }
        // As a user does: a job in the background, one in the foreground suspended with ^Z
        // (typed on script's terminal), then a pipeline in the foreground.
        shell.send("sleep 1000 &")
        shell.send("sleep 1001")
        try poll(20, "sleep 1001 in the foreground (\(readText(dir + "/script.log")))") { foreground(["sleep", "1001"]) }
        shell.send("\u{1a}")
        try poll(20, "sleep 1001 stopped by ^Z") { job(["sleep", "1001"]).flatMap(status)?.state == "T" && ProcFS.terminal(bash)?.tpgid == bash }
        shell.send("sleep 1002 | sleep 1003")
        try poll(20, "the foreground pipeline") { foreground(["sleep", "1002"]) && job(["sleep", "1003"]) != nil }
        let pids = treeBelow(bash)
        try #require(pids.count == 5, "\(pids)")
        let before = Dictionary(uniqueKeysWithValues: pids.compactMap { p in status(p).map { (p, $0) } })
        let argvBefore = Dictionary(uniqueKeysWithValues: pids.map { ($0, commandLine($0)) })
        let bg = try #require(job(["sleep", "1000"])), stopped = try #require(job(["sleep", "1001"]))
        let pipeline = try #require(job(["sleep", "1002"])), second = try #require(job(["sleep", "1003"]))

        let treeFile = dir + "/bash.json"
        let (t, err) = try record(run, [String(bash), "-o", treeFile])
        try #require(t == .exited(0), "record: \(err)")
        #expect(err.contains("process \(bash) (bash, host pid \(bash)): job replay: the restored shell starts its 3 jobs again"), "\(err)")
        let entries = try #require(try treeJSON(treeFile)["processes"] as? [[String: Any]])
        let jobs = try #require(entries.first?["shellJobs"] as? [[String: Any]], "\(entries.first ?? [:])")
        #expect(jobs.map { $0["members"] as? [Int] ?? [] } == [[Int(bg)], [Int(stopped)], [Int(pipeline), Int(second)]], "\(jobs)")
        #expect(jobs.map { $0["state"] as? String ?? "" } == ["running", "stopped", "foreground"] && jobs[1]["stopSignal"] as? String == "SIGTSTP", "\(jobs)")
        #expect(entries.dropFirst().allSatisfy { $0["spawn"] as? String == "payload" }, "\(entries)")
        let modes = try #require((try treeJSON(treeFile)["terminals"] as? [[String: Any]])?.first?["modes"] as? [String: Any])
        #expect((modes["lflag"] as? Int).map { $0 & Int(ECHO) == 0 && $0 & Int(ICANON) != 0 } ?? false, "\(modes)")

        // What the same shell shows once its foreground pipeline is suspended too: what the
        // restored one must show.
        shell.send("\u{1a}")
        try poll(20, "the pipeline stopped by ^Z") { status(pipeline)?.state == "T" && ProcFS.terminal(bash)?.tpgid == bash }
        shell.send("jobs -l > \(dir)/jobs.before; echo > \(dir)/jobs.done")
        try poll(20, "bash's jobs") { access(dir + "/jobs.done", F_OK) == 0 }
        let jobsBefore = readText(dir + "/jobs.before")
        #expect(jobsBefore.contains("Running") && jobsBefore.contains("Stopped") && jobsBefore.contains(String(second)), "\(jobsBefore)")
        shell.end()

        let term = try TestTerminal(rows: 30, columns: 100)
        let setsid = try #require(Paths.tool("setsid"))
        let pinLog = dir + "/pins.jsonl"
        try run.start(["run", "--shell-job", "--pin-mismatch", "error", "--pin-log", pinLog, "--report", run.reportPath, treeFile],
                      launcher: [setsid, "--ctty"], terminal: term.slavePath)
        try run.waitUntilReady()
        // bash forks its jobs again from PROMPT_COMMAND: each with its recorded PID, group and
        // state, the pipeline in the foreground.
        var seen: [NamespaceProcess] = []
        func restored(_ pid: Int32) -> NamespaceProcess? { seen.first { $0.pid == pid } }
        try poll(30, "the jobs started again by bash (\(term.output.suffix(500)))") {
            term.pump()
            seen = run.namespace()
            guard let b = restored(bash), let p = restored(pipeline), restored(second) != nil,
                  ProcFS.terminal(b.host.hostPid)?.tpgid == p.host.hostPid else { return false }
            return commandLine(p.host.hostPid) == ["sleep", "1002"] && restored(stopped)?.host.state == "T"
        }
        for (pid, was) in before {
            guard let now = restored(pid) else { Issue.record("pid \(pid) was not restored: \(seen)"); continue }
            let wantPPid: Int32 = pid == bash ? 1 : was.hostPPid
            #expect((now.ppid, now.pgid, now.sid) == (wantPPid, was.nspgid[0], was.nssid[0]), "pid \(pid): \(now), before ppid \(wantPPid) pgid \(was.nspgid[0]) sid \(was.nssid[0])")
            #expect(now.host.state == was.state, "pid \(pid): state \(now.host.state), before \(was.state)")
            #expect(commandLine(now.host.hostPid) == argvBefore[pid], "pid \(pid) runs \(commandLine(now.host.hostPid)), before \(argvBefore[pid] ?? [])")
        }
        // Nothing else: the recorded processes and the runtime's init (and its fork receiver).
        #expect(Set(seen.filter { !$0.isForkReceiver }.map(\.pid)) == Set(before.keys).union([1]), "\(seen)")
        // Every job's PID was handed to bash's fork and matched the recorded program.
        let pinLines = readText(pinLog).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        for pid in [bg, stopped, pipeline, second] {
            #expect(pinLines.contains { $0["kind"] as? String == "fork" && $0["forker"] as? Int == Int(bash) && $0["got"] as? Int == Int(pid) && $0["pinned"] as? Bool == true }, "pid \(pid): \(pinLines)")
            #expect(pinLines.contains { $0["kind"] as? String == "check" && $0["pid"] as? Int == Int(pid) && $0["matched"] as? Bool == true }, "pid \(pid): \(pinLines)")
        }

        // ^Z on the caller's terminal suspends the restored pipeline; bash's job table is the
        // one the shell had: same job numbers, PIDs, states and commands.
        var mark = term.output.count
        term.type("\u{1a}")
        try term.waitFor("$ ", from: mark)
        try poll(20, "the restored pipeline stopped") { restored(pipeline).map { status($0.host.hostPid)?.state == "T" } ?? false }
        mark = term.output.count
        // (echo is off, as recorded: what is typed is not shown, so the marks are computed)
        term.type("jobs -l > \(dir)/jobs.after; echo JOBS-$((6*7))\r")
        try term.waitFor("JOBS-42", from: mark)
        let jobsAfter = readText(dir + "/jobs.after")
        #expect(jobsAfter == jobsBefore, "jobs -l after the restore:\n\(jobsAfter)\nbefore the kill:\n\(jobsBefore)")
        // The recorded modes are the restored terminal's: echo off, as stty -echo left it.
        mark = term.output.count
        term.type("stty -a > \(dir)/stty.after; echo STTY-$((6*7))\r")
        try term.waitFor("STTY-42", from: mark)
        let stty = readText(dir + "/stty.after")
        #expect(stty.contains(" -echo ") && stty.contains(" icanon "), "\(stty)")
        // The job table works: %1 is the background sleep.
        mark = term.output.count
        term.type("kill %1; wait %1; echo KILLED-$?\r")
        try term.waitFor("KILLED-143", from: mark)
        #expect(restored(bg).map { status($0.host.hostPid) == nil || status($0.host.hostPid)?.state == "Z" } ?? false)
        run.tearDown()
    }

    @Test("record --freeze of a script session (script, its bash, a running and a stopped job) leaves every job as it was",
          .enabled(if: Paths.tool("script") != nil && Paths.tool("setsid") != nil))
    func freezeScriptSession() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let shell = try ScriptShell(run)
        defer { shell.end() }
        let bash = try shell.bashPid()
        shell.send("sleep 1000 &")
        shell.send("sleep 1001 & until read -r c < /proc/$!/comm && [ \"$c\" = sleep ]; do :; done; kill -STOP $!")
        try poll(20, "the session with its jobs") { treeBelow(shell.session).count == 4 && treeBelow(bash).contains { status($0)?.state == "T" } }
        // The session's root: script itself (its child bash leads the pty's session).
        let script = try #require(treeBelow(shell.session).first { commandLine($0).first?.hasSuffix("script") ?? false })
        func states() -> [Int32: String] { Dictionary(uniqueKeysWithValues: treeBelow(script).map { ($0, status($0)?.state ?? "?") }) }
        let original = states()
        let (t, err) = try record(run, ["--freeze", String(script), "-o", dir + "/script.json"])
        #expect(t == .exited(0), "record --freeze: \(err)")
        // script holds its pty's master: it is recorded to fork its shell again, not warned about.
        #expect(!err.contains("hold the master side of a terminal") && err.contains("is `script`"), "\(err)")
        #expect(states() == original, "after record --freeze: \(states()), before \(original)")
        for p in treeBelow(script) { #expect(readText("/proc/\(p)/status").contains("TracerPid:\t0"), "pid \(p) still traced") }
        shell.send("jobs > \(dir)/jobs.txt; echo > \(dir)/jobs.done")
        try poll(10, "bash's jobs") { access(dir + "/jobs.done", F_OK) == 0 }
        let jobs = readText(dir + "/jobs.txt")
        #expect(jobs.components(separatedBy: "Running").count == 2 && jobs.components(separatedBy: "Stopped").count == 2, "\(jobs)")
        shell.end()
        run.tearDown()
    }

    @Test("--shell-job refuses a standard input that is not a terminal, and a tree without terminals, before creating anything",
          .enabled(if: Prerequisites.userNamespacesWork))
    func shellJobRefusals() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let tree = try run.write("t.json", Data(#"{"version": 1, "processes": [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"]}}]}"#.utf8))
        try run.start(["run", "--shell-job", tree])
        #expect(try run.waitForExit(timeout: 20) == .exited(64))
        #expect(run.stderr.contains("--shell-job connects the restored terminal to yours, but standard input is not a terminal"), "\(run.stderr)")
        run.tearDown()

        let again = try RestoreRun()
        defer { again.tearDown() }
        let tree2 = try again.write("t.json", Data(#"{"version": 1, "processes": [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"]}}]}"#.utf8))
        let term = try TestTerminal(rows: 24, columns: 80)
        try again.start(["run", "--shell-job", tree2], terminal: term.slavePath)
        #expect(try again.waitForExit(timeout: 20) == .exited(65))
        try term.waitFor("the tree has no terminal to connect", from: 0, timeout: 5)
        #expect(again.namespace().isEmpty)
        again.tearDown()
    }

    @Test("a tmux server with 3 windows, started as a user does: recorded with its sessions, restored by tmux itself (tmux -D and a generated configuration) with every pane at its recorded PID, and usable from outside the namespace",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("tmux") != nil))
    func tmuxServer() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let tmux = try #require(Paths.tool("tmux"))
        let socket = dir + "/tmux.sock"
        let env = Identity.cleanEnvironment.filter { !$0.hasPrefix("HOME=") } + ["HOME=\(dir)", "TERM=xterm"]
        /// `tmux -S SOCKET ARGS` as the test user, from outside any namespace; its output.
        func client(_ args: [String]) throws -> (Termination, String) {
            let out = dir + "/tmux-client.out"
            unlink(out)
            let pid = try spawn(try Identity.prefix(for: run.user) + [tmux, "-S", socket] + args, env: env, cwd: dir, stdout: out, stderr: out)
            return (try waitForExit(pid, timeout: 20), readText(out))
        }
        let (started, startLog) = try client(["new-session", "-d", "-s", "rr", "-x", "100", "-y", "30", "bash --norc -i", ";",
                                              "new-window", "-t", "rr", "bash --norc -i", ";", "new-window", "-t", "rr", "-n", "third", "bash --norc -i"])
        #expect(started == .exited(0), "\(startLog)")
        // tmux daemonized (a double fork): its server hangs under PID 1 or a subreaper.
        var server: Int32 = 0
        try poll(20, "the tmux server with 3 shells") {
            guard let s = ProcFS.scan().first(where: { $0.realUid == run.user.uid && commandLine($0.hostPid).first == tmux && $0.nspid.count == ProcFS.ownDepth }) else { return false }
            server = s.hostPid
            return treeBelow(s.hostPid).count == 4
        }
        defer { killOutside(treeBelow(server)) }
        let shells = Array(treeBelow(server).dropFirst())
        // A background job in window 1's bash: job replay works in a pane too.
        _ = try client(["send-keys", "-t", "rr:1", "sleep 1000 &", "Enter"])
        var job: Int32 = 0
        try poll(20, "the background job in window 1") {
            guard let j = treeBelow(shells[1]).dropFirst().first, commandLine(j) == ["sleep", "1000"] else { return false }
            job = j
            return true
        }
        let before = Dictionary(uniqueKeysWithValues: shells.compactMap { p in status(p).map { (p, $0) } })
        for s in shells {
            #expect(before[s]?.nssid[0] == s && ProcFS.terminal(s).map { $0.ttyNr != 0 && $0.tpgid == s } ?? false, "window shell \(s)")
        }
        let treeFile = dir + "/tmux.json"
        let (t, err) = try record(run, [String(server), "-o", treeFile])
        try #require(t == .exited(0), "record: \(err)")
        #expect(!err.contains("hold the master side of a terminal"), "\(err)")
        let json = try treeJSON(treeFile)
        let entries = try #require(json["processes"] as? [[String: Any]])
        let spec = try #require(entries.first?["tmux"] as? [String: Any], "no tmux on the server's entry: \(entries.first ?? [:])")
        #expect(spec["socket"] as? String == socket)
        let windows = ((spec["sessions"] as? [[String: Any]])?.first?["windows"] as? [[String: Any]]) ?? []
        #expect(windows.map { $0["index"] as? Int } == [0, 1, 2] && windows.last?["name"] as? String == "third", "\(spec)")
        #expect(entries.count == 5 && entries.dropFirst().allSatisfy { $0["spawn"] as? String == "payload" && $0["terminal"] == nil }, "\(entries)")
        #expect(entries.contains { $0["pid"] as? Int == Int(shells[1]) && $0["shellJobs"] != nil }, "no job replay for the pane's bash: \(err)")
        #expect(json["terminals"] == nil, "the panes' ptys are tmux's to make: \(json["terminals"] ?? "")")
        killOutside(treeBelow(server))

        let pinLog = dir + "/pins.log"
        try run.startRun(treeFile: treeFile, extra: ["--pin-log", pinLog, "--pin-mismatch", "error"])
        try run.waitUntilReady()
        // tmux forks its panes once its first client connected: the shells appear after the report.
        let seen = try run.waitForNamespace(timeout: 30, "the three restored shells and the job") { now in
            shells.allSatisfy { s in now.contains { $0.pid == s && commandLine($0.host.hostPid).first == "bash" } }
                && now.contains { $0.pid == job && $0.ppid == shells[1] && commandLine($0.host.hostPid) == ["sleep", "1000"] }
        }
        #expect(seen.first { $0.pid == server }.map { ($0.ppid, $0.pgid, $0.sid) == (1, server, server) } ?? false, "\(seen)")
        var ttys = Set<UInt32>()
        for s in shells {
            let p = try #require(seen.first { $0.pid == s })
            #expect(p.ppid == server && p.pgid == s && p.sid == s, "shell \(s): \(p)")
            let ctty = try #require(ProcFS.terminal(p.host.hostPid))
            #expect(ctty.ttyNr >> 8 == 136 && ctty.tpgid == p.host.hostPid, "shell \(s): \(ctty)")
            ttys.insert(ctty.ttyNr)
        }
        #expect(ttys.count == 3, "the three windows share terminals: \(ttys)")
        // tmux itself, asked from outside the namespace by the test user.
        let (listed, windowsNow) = try client(["list-windows", "-t", "rr", "-F", "#{window_index} #{window_name} #{pane_pid}"])
        #expect(listed == .exited(0), "\(windowsNow)")
        let rows = windowsNow.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.count == 3 && rows.map { $0.last } == shells.map { String($0) } && rows.last?[1] == "third", "\(windowsNow)")
        _ = try client(["send-keys", "-t", "rr:1", "echo hi-$$", "Enter"])
        try poll(20, "the shell of window 1 answering") {
            (try? client(["capture-pane", "-p", "-t", "rr:1"]))?.1.contains("hi-\(shells[1])") ?? false
        }
        _ = try client(["send-keys", "-t", "rr:1", "jobs -l", "Enter"])
        try poll(20, "bash's job table in window 1") {
            (try? client(["capture-pane", "-p", "-t", "rr:1"]))?.1.split(separator: "\n").contains { $0.contains("\(job) Running") && $0.contains("sleep 1000") } ?? false
        }
        // The pin log says each pane's PID was pinned and the pane became what was recorded.
        let checks = readText(pinLog).split(separator: "\n").filter { $0.contains("\"kind\": \"check\"") && $0.contains("\"matched\": true") }
        for s in shells + [job] { #expect(checks.contains { $0.contains("\"pid\": \(s),") }, "pane \(s) not matched: \(readText(pinLog))") }
        _ = try client(["kill-server"])
        _ = try run.waitForExit(timeout: 20)
        #expect(!run.stderr.contains("pin mismatch"), "\(run.stderr)")
        run.tearDown()
    }

    @Test("a script session started on a terminal (script -qfc 'exec bash' FILE), recorded at script and restored with --shell-job: script forks its shell again on a new pty at its recorded PID, the shell works, and the typescript is appended to",
          .enabled(if: Prerequisites.userNamespacesWork && Paths.tool("script") != nil && Paths.tool("setsid") != nil))
    func scriptSessionShellJob() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let script = try #require(Paths.tool("script"))
        let setsid = try #require(Paths.tool("setsid"))
        let typescript = dir + "/typescript.log"
        // The user's terminal (a terminal emulator's pty) with script leading its session on it.
        let outer = try TestTerminal(rows: 30, columns: 90)
        let session = try spawn(try Identity.prefix(for: run.user) + [setsid, "--ctty", script, "-qfc", "exec bash --norc -i", typescript],
                                env: Identity.cleanEnvironment, cwd: dir, stdout: "/dev/null", stderr: "/dev/null", terminal: outer.slavePath)
        defer { killProcessTree(root: session) }
        var mark = outer.output.count
        outer.type("echo $$ > \(dir)/bash.pid; echo BASH-SAID\r")
        try outer.waitFor("\nBASH-SAID", from: mark)
        let bash = try #require(Int32(readText(dir + "/bash.pid").trimmingCharacters(in: .whitespacesAndNewlines)))
        let scriptPid = try #require(treeBelow(session).first { commandLine($0).first == script })
        #expect(treeBelow(scriptPid) == [scriptPid, bash], "\(treeBelow(scriptPid))")
        let typescriptBefore = readText(typescript)
        #expect(typescriptBefore.contains("BASH-SAID"))

        let treeFile = dir + "/script.json"
        let (t, err) = try record(run, [String(scriptPid), "-o", treeFile])
        try #require(t == .exited(0), "record: \(err)")
        #expect(!err.contains("hold the master side of a terminal"), "\(err)")
        #expect(err.contains("recorded with -a (append)"), "\(err)")
        let entries = try #require(try treeJSON(treeFile)["processes"] as? [[String: Any]])
        #expect(entries.count == 2 && entries.last?["spawn"] as? String == "payload" && entries.last?["pid"] as? Int == Int(bash), "\(entries)")
        #expect((entries.first?["process"] as? [String: Any])?["args"] as? [String] == [script, "-a", "-qfc", "exec bash --norc -i", typescript], "\(entries.first ?? [:])")
        killProcessTree(root: session)

        let term = try TestTerminal(rows: 33, columns: 111)
        try run.start(["run", "--shell-job", "--report", run.reportPath, "--pin-mismatch", "error", treeFile], launcher: [setsid, "--ctty"], terminal: term.slavePath)
        try run.waitUntilReady()
        let seen = try run.waitForNamespace(timeout: 20, "bash again under script") { now in
            now.contains { $0.pid == bash && commandLine($0.host.hostPid).first == "bash" }
        }
        let restoredBash = try #require(seen.first { $0.pid == bash })
        #expect(restoredBash.ppid == scriptPid && restoredBash.sid == bash && restoredBash.pgid == bash, "\(seen)")
        let ctty = try #require(ProcFS.terminal(restoredBash.host.hostPid))
        #expect(ctty.ttyNr >> 8 == 136 && ctty.tpgid == restoredBash.host.hostPid, "\(ctty)")
        mark = term.output.count
        term.type("echo again-$$-$((6*7))\r")
        try term.waitFor("again-\(bash)-42", from: mark)
        mark = term.output.count
        term.type("exit\r")
        _ = try run.waitForExit(timeout: 20)
        #expect(readText(typescript).hasPrefix(typescriptBefore), "the typescript was overwritten")
        #expect(readText(typescript).contains("again-\(bash)-42"))
        run.tearDown()
    }
}
