// `record`, `run` and `diff` end to end, as the unprivileged test user (see Harness.swift):
// (a) a real bash job is recorded, killed, restored rootless, recorded again and compared with
//     the first recording, and the restored namespace is also checked from /proc directly;
// (b) the trees a real CRIU dumped (Fixtures/criu, crit JSON) are restored rootless and /proc
//     is compared with their pstree entries and core states;
// (c) what `record` refuses: a tree that keeps changing, another user's processes (unless
//     --partial); and what it keeps: states under --freeze, file modes 0600 / 0644.
// Expectations are read from the JSON files with JSONSerialization and from /proc with the
// harness's own reader, not with the runtime's code.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

// MARK: - Helpers of this file

/// One entry of a tree.json or pstree.json, read with JSONSerialization.
private struct Listed {
    var pid: Int32
    var ppid: Int32
    var pgid: Int32
    var sid: Int32
    var state: String
    var args: [String]?

    static func load(_ path: String, key: String = "processes") throws -> [Listed] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let top = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path) is not an object")
        let list = try #require(top[key] as? [[String: Any]], "\(path) has no \(key)")
        return list.map { e in
            let process = e["process"] as? [String: Any]
            return Listed(pid: Int32(e["pid"] as? Int ?? -1), ppid: Int32(e["ppid"] as? Int ?? -1),
                          pgid: Int32(e["pgid"] as? Int ?? -1), sid: Int32(e["sid"] as? Int ?? -1),
                          state: e["state"] as? String ?? "running", args: process?["args"] as? [String])
        }
    }
}

/// Field 52 of /proc/PID/stat: the exit status of a zombie, the stop signal of a stopped task.
private func statExitCode(_ hostPid: Int32) -> Int? {
    let text = readText("/proc/\(hostPid)/stat")
    guard let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return fields.count > 49 ? Int(fields[49].trimmingCharacters(in: .whitespacesAndNewlines)) : nil
}

/// The thread IDs of a process as its namespace sees them (NSpid of each task at `level`).
private func namespaceTids(_ p: NamespaceProcess) -> [Int32] {
    let taskDir = "/proc/\(p.host.hostPid)/task"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: taskDir)) ?? []
    return names.compactMap { name -> Int32? in
        guard let tid = Int32(name), let bytes = readFile("\(taskDir)/\(name)/status"),
              let s = ProcFS.parseStatus(bytes, hostPid: tid), s.nspid.count > ProcFS.ownDepth else { return nil }
        return s.nspid[ProcFS.ownDepth]
    }.sorted()
}

/// The host PIDs of `root` and every process below it (by PPid), children after parents.
private func hostDescendants(of root: Int32) -> [Int32] {
    let all = ProcFS.scan()
    var out = [root]
    var i = 0
    while i < out.count {
        out += all.filter { $0.hostPPid == out[i] }.map(\.hostPid).sorted()
        i += 1
    }
    return out.filter { readFile("/proc/\($0)/stat") != nil }
}

/// A tree of processes started by the test: its root is a child of the tests, so its PID
/// cannot be reused before `kill()` reaps it.
private final class LiveTree {
    let root: Int32
    private var killed = false

    init(_ root: Int32) { self.root = root }

    /// Stops the root (so it starts nothing new), SIGKILLs it and everything below it, reaps
    /// it and waits until all of them have left /proc. Does nothing the second time.
    func kill() {
        guard !killed else { return }
        killed = true
        Glibc.kill(root, SIGSTOP)
        usleep(50_000)
        let pids = hostDescendants(of: root)
        for p in pids { Glibc.kill(p, SIGKILL) }
        _ = try? waitForExit(root, timeout: 10)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, pids.contains(where: { readFile("/proc/\($0)/stat") != nil }) { usleep(20_000) }
    }
}

/// Runs `rootless-restore ARGS` as the test user in `run`'s directory (umask 022) and waits.
private func rr(_ run: RestoreRun, _ arguments: [String], name: String, timeout: Double = 60) throws -> (Termination, String, String) {
    let out = "\(run.directory)/\(name).out", err = "\(run.directory)/\(name).err"
    unlink(out)
    unlink(err)
    let argv = try Identity.prefix(for: run.user) + ["/bin/sh", "-c", "umask 022 && exec \"$0\" \"$@\"", run.binary] + arguments
    let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: run.directory, stdout: out, stderr: err)
    let t = try waitForExit(pid, timeout: timeout)
    return (t, readText(out), readText(err))
}

/// Starts `script` with bash as the test user, in its own session (setsid), in `run`'s directory.
private func startJob(_ run: RestoreRun, script: String, name: String = "job.sh") throws -> LiveTree {
    try run.write(name, Data(script.utf8), mode: 0o755)
    let setsid = try #require(Paths.tool("setsid"), "setsid (util-linux) is missing")
    let argv = try Identity.prefix(for: run.user) + [setsid, "/bin/bash", "\(run.directory)/\(name)", run.directory]
    return LiveTree(try spawn(argv, env: Identity.cleanEnvironment, cwd: run.directory,
                              stdout: "\(run.directory)/\(name).log", stderr: "\(run.directory)/\(name).log"))
}

private func waitForFile(_ path: String, timeout: Double, what: String) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while access(path, F_OK) != 0 {
        if Date() > deadline { throw HarnessError("\(what): \(path) did not appear within \(timeout) s") }
        usleep(20_000)
    }
}

private func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
}

/// The job of test (a), the one examples/record/walkthrough.sh records. Restored, it finds
/// the marker file `recorded` and only waits: its children are rebuilt by rootless-restore,
/// not started again.
private var shellJob: String {
    get throws { try String(contentsOfFile: Paths.packageRoot + "/examples/record/job.sh", encoding: .utf8) }
}

// MARK: - (a) the round trip

@Suite("record, kill, restore, record again, diff", .serialized)
struct RecordRoundTripTests {
    @Test("a bash job (pipeline group, background job, setsid child, zombie, stopped job) comes back identical",
          .enabled(if: Prerequisites.userNamespacesWork))
    func bashJobRoundTrip() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let live = try startJob(run, script: try shellJob)
        defer { live.kill() }
        let job = live.root
        try waitForFile(dir + "/ready", timeout: 30, what: "the job (\(readText(dir + "/job.sh.log")))")

        // Record the live job.
        let (recorded, _, recordErr) = try rr(run, ["record", String(job), "-o", dir + "/job.json"], name: "record")
        try #require(recorded == .exited(0), "record: \(recordErr)")
        #expect(fileMode(dir + "/job.json") == 0o600)
        let original = try Listed.load(dir + "/job.json")
        try #require(original.count == 9, "job.json: \(readText(dir + "/job.json"))")
        let byPid = Dictionary(original.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        let root = original[0]
        #expect(root.pid == job && root.sid == job && root.pgid == job)
        let pipeline = original.filter { $0.args?.first == "sleep" && ["1001", "1002", "1003"].contains($0.args?.last ?? "") }
        #expect(pipeline.count == 3 && Set(pipeline.map(\.pgid)).count == 1 && pipeline[0].pgid == pipeline[0].pid
                && pipeline[0].pgid != job, "the pipeline is not one group of its own: \(pipeline)")
        let zombie = try #require(original.first { $0.state == "zombie" })
        #expect(readText(dir + "/job.json").contains("\"exitStatus\": 200"))
        let stopped = try #require(original.first { $0.state == "stopped" })
        #expect(stopped.args == ["sleep", "1007"] && stopped.pgid == stopped.pid)
        let sessionLeader = try #require(original.first { $0.args == ["sleep", "1005"] })
        #expect(sessionLeader.sid == sessionLeader.pid && sessionLeader.ppid == job)

        // Kill it; the restore will find the marker and not start the children again.
        live.kill()
        try run.write("recorded", Data())

        try run.startRun(treeFile: dir + "/job.json")
        try run.waitUntilReady()
        let seen = run.namespace()

        // From /proc, independently: every recorded process with its ids, state, status, argv.
        var problems: [String] = []
        for p in original {
            guard let s = seen.first(where: { $0.pid == p.pid }) else { problems.append("pid \(p.pid) missing"); continue }
            let wantPPid = byPid[p.ppid] == nil ? 1 : p.ppid
            if (s.ppid, s.pgid, s.sid) != (wantPPid, p.pgid, p.sid) {
                problems.append("pid \(p.pid): ppid/pgid/sid \(s.ppid)/\(s.pgid)/\(s.sid), recorded \(wantPPid)/\(p.pgid)/\(p.sid)")
            }
            let letters = p.state == "zombie" ? ["Z"] : p.state == "stopped" ? ["T"] : ["S", "R"]
            if !letters.contains(s.host.state) { problems.append("pid \(p.pid): state \(s.host.state), recorded \(p.state)") }
            if p.state == "running", let args = p.args, s.host.commandLine != args.joined(separator: " ") {
                problems.append("pid \(p.pid): runs \(s.host.commandLine), recorded \(args)")
            }
            if s.host.realUid != run.user.uid { problems.append("pid \(p.pid): uid \(s.host.realUid)") }
        }
        if let z = seen.first(where: { $0.pid == zombie.pid }) {
            #expect(statExitCode(z.host.hostPid) == 200 << 8, "the zombie's exit status in /proc/PID/stat")
        }
        let extra = seen.filter { p in p.pid != 1 && !p.isForkReceiver && !original.contains { $0.pid == p.pid } }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        #expect(extra.isEmpty, "processes not in the recording: \(extra)")

        // Record the restored tree from outside and compare with the recording.
        let restoredRoot = try #require(seen.first { $0.pid == root.pid })
        let (again, _, againErr) = try rr(run, ["record", "-q", String(restoredRoot.host.hostPid), "-o", dir + "/restored.json"],
                                          name: "record-restored")
        try #require(again == .exited(0), "record of the restored tree: \(againErr)")

        let (same, sameOut, sameErr) = try rr(run, ["diff", "--restored", "--env", dir + "/job.json", dir + "/restored.json"], name: "diff")
        #expect(same == .exited(0), "diff --restored --env: \(sameOut)\(sameErr)")
        #expect(sameOut.contains("no differences"), "\(sameOut)")

        // Without --restored, the only difference is the stopped process: it stopped just
        // before its exec, so /proc shows the runtime's command line.
        let (plain, plainOut, plainErr) = try rr(run, ["diff", dir + "/job.json", dir + "/restored.json"], name: "diff-plain")
        #expect(plain == .exited(1), "\(plainOut)\(plainErr)")
        let lines = plainOut.split(separator: "\n").filter { $0.hasPrefix("pid ") }
        #expect(lines.count == 1 && lines[0].hasPrefix("pid \(stopped.pid) args: A [\"sleep\", \"1007\"] | B ["), "\(plainOut)")
        #expect(plainOut.contains("1 difference in 1 process"), "\(plainOut)")

        // --exact-top-ppid shows the one number a restore changes on purpose.
        let (exact, exactOut, _) = try rr(run, ["diff", "--restored", "--exact-top-ppid", dir + "/job.json", dir + "/restored.json"], name: "diff-exact")
        #expect(exact == .exited(1))
        #expect(exactOut.contains("pid \(root.pid) ppid: A \(root.ppid) | B 1"), "\(exactOut)")
        run.tearDown()
    }

    @Test("diff: bad input exits 65 or 66, usage errors 64")
    func diffInputErrors() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let good = try run.write("a.json", Data("{\"version\": 1, \"processes\": [{\"pid\": 5, \"ppid\": 0, \"pgid\": 5, \"sid\": 5}]}".utf8))
        let bad = try run.write("bad.json", Data("{\"version\": 1, \"processes\": [{\"pid\": 5, \"ppid\": 0, \"pgid\": 5}]}".utf8))
        let dup = try run.write("dup.json", Data("{\"version\": 1, \"processes\": [{\"pid\": 5, \"ppid\": 0, \"pgid\": 5, \"sid\": 5}, {\"pid\": 5, \"ppid\": 0, \"pgid\": 5, \"sid\": 5}]}".utf8))
        var (t, out, err) = try rr(run, ["diff", good, good], name: "same")
        #expect(t == .exited(0) && out.contains("no differences"), "\(out)\(err)")
        (t, _, err) = try rr(run, ["diff", good, bad], name: "bad")
        #expect(t == .exited(65) && err.contains("missing required key \"sid\""), "\(err)")
        (t, _, err) = try rr(run, ["diff", good, dup], name: "dup")
        #expect(t == .exited(65) && err.contains("both have pid 5"), "\(err)")
        (t, _, err) = try rr(run, ["diff", good, run.directory + "/nonexistent.json"], name: "missing")
        #expect(t == .exited(66) && err.contains("ENOENT"), "\(err)")
        let report = try run.write("report.json", Data("""
            {
              "version": 1,
              "treeHasInit": false,
              "processes": [
                {"index": 0, "pid": 5, "nspid": [5], "hostPid": 900, "ppid": 1, "pgid": 5, "sid": 5, "nspgid": [5], "nssid": [5], "state": "running", "threads": 1}
              ],
              "helpers": [
              ],
              "phases": {}
            }
            """.utf8))
        (t, _, err) = try rr(run, ["diff", good, report], name: "report")
        #expect(t == .exited(65) && err.contains("is a `run --report` file, not a tree"), "\(err)")
        (t, _, err) = try rr(run, ["diff", "--ignore", "pgid,colour", good, good], name: "usage")
        #expect(t == .exited(64) && err.contains("unknown field \"colour\""), "\(err)")
        run.tearDown()
    }
}

// MARK: - (b) trees a real CRIU dumped

private enum CRIUFixtures {
    static let dir = Paths.packageRoot + "/Tests/RestoreModelTests/Fixtures/criu"

    /// What /proc showed before each dump (the README.txt tables): exit status (stat field 52)
    /// of zombies, stopped tasks, and thread IDs.
    static let zombieStatus: [String: [Int32: Int]] = ["zombies": [7694: 0, 7695: 768, 7696: 51200, 7697: 9]]
    static let stopped: [String: Set<Int32>] = ["stopped": [7774]]
    static let threads: [String: [Int32: [Int32]]] = ["threads": [7929: [7929, 7930, 7931, 7932, 7933]]]
}

@Suite("CRIU dumps restored rootless", .serialized)
struct CRIUFixtureRestoreTests {
    @Test("restored and compared with the pstree entries from /proc",
          .enabled(if: Prerequisites.userNamespacesWork),
          arguments: ["pstree-1", "pstree-6", "pstree-10", "pstree-1000", "shelljob", "birth-session", "zombies", "stopped", "threads"])
    func restoreFixture(_ name: String) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let flat = name.hasPrefix("pstree-")
        let source = flat ? "\(CRIUFixtures.dir)/\(name).json" : "\(CRIUFixtures.dir)/\(name)/pstree.json"
        let pstree = try run.write("pstree.json", try Data(contentsOf: URL(fileURLWithPath: source)))
        var extra: [String] = []
        if !flat {
            let cores = run.directory + "/cores"
            mkdir(cores, 0o755)
            for file in try FileManager.default.contentsOfDirectory(atPath: "\(CRIUFixtures.dir)/\(name)") where file.hasPrefix("core-") {
                try run.write("cores/" + file, try Data(contentsOf: URL(fileURLWithPath: "\(CRIUFixtures.dir)/\(name)/\(file)")))
            }
            extra = ["--criu-cores", cores]
        }
        let entries = try Listed.load(pstree, key: "entries")
        try run.startRun(treeFile: pstree, extra: extra)
        try run.waitUntilReady(timeout: 180)
        let seen = run.namespace()

        var problems: [String] = []
        var byPid: [Int32: [NamespaceProcess]] = [:]
        for p in seen { byPid[p.pid, default: []].append(p) }
        let zombies = CRIUFixtures.zombieStatus[name] ?? [:]
        let stopped = CRIUFixtures.stopped[name] ?? []
        for e in entries {
            guard let list = byPid[e.pid], list.count == 1, let s = list.first else {
                problems.append("pid \(e.pid): \(byPid[e.pid]?.count ?? 0) processes in /proc")
                continue
            }
            let wantPPid: Int32 = e.ppid == 0 ? 1 : e.ppid
            if (s.ppid, s.pgid, s.sid) != (wantPPid, e.pgid, e.sid) {
                problems.append("pid \(e.pid): ppid/pgid/sid \(s.ppid)/\(s.pgid)/\(s.sid), pstree \(wantPPid)/\(e.pgid)/\(e.sid)")
            }
            let want = zombies[e.pid] != nil ? ["Z"] : stopped.contains(e.pid) ? ["T"] : ["S", "R"]
            if !want.contains(s.host.state) { problems.append("pid \(e.pid): state \(s.host.state), expected \(want)") }
            if let status = zombies[e.pid], statExitCode(s.host.hostPid) != status {
                problems.append("pid \(e.pid): exit status \(statExitCode(s.host.hostPid).map(String.init) ?? "?"), dumped \(status)")
            }
            if zombies[e.pid] == nil {
                let tids = namespaceTids(s)
                let wantTids = CRIUFixtures.threads[name]?[e.pid] ?? [e.pid]
                if tids != wantTids { problems.append("pid \(e.pid): threads \(tids), dumped \(wantTids)") }
            }
        }
        let others = seen.filter { p in p.pid != 1 && !p.isForkReceiver && !entries.contains { $0.pid == p.pid } }
        if !others.isEmpty { problems.append("\(others.count) processes not in the pstree: \(others.prefix(5))") }
        if byPid[1]?.count != 1 { problems.append("no runtime init at PID 1") }
        let report = "\(name): \(problems.count) problems:\n" + problems.prefix(30).joined(separator: "\n")
        #expect(problems.isEmpty, "\(report)")
        #expect(entries.count == seen.count - 1, "\(name): \(entries.count) entries, \(seen.count) namespace processes")
        run.tearDown()
    }
}

// MARK: - (c) what record refuses, and what it keeps

@Suite("record: refusals, --freeze, file modes", .serialized)
struct RecordRefusalTests {
    @Test("a tree that keeps changing is refused (new PIDs, new start times); --freeze records it")
    func changingTreeIsRefused() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // A new `sleep 0.2` every 2 ms or more: every pass of record sees new PIDs (new start
        // times), so no two passes ever agree, while the tree stays small (about 60 processes,
        // fewer under load), so each pass is quick whatever the machine's load. Bounded: at
        // most 30 000 forks (a minute or more); the job is killed when the test ends.
        let live = try startJob(run, script: """
            #!/bin/bash
            dir=$1
            mkfifo "$dir/tick"
            echo ready > "$dir/ready"
            for i in $(seq 30000); do
                sleep 0.2 &
                read -r -t 0.002 _ <> "$dir/tick"
            done
            """)
        defer { live.kill() }
        let job = live.root
        try waitForFile(run.directory + "/ready", timeout: 30, what: "the changing job")
        usleep(100_000)
        let (t, _, err) = try rr(run, ["record", String(job), "-o", run.directory + "/churn.json"], name: "record")
        #expect(t == .exited(66), "record of a changing tree: \(err)")
        #expect(err.contains("process \(job)") && err.contains("kept changing") && err.contains("--freeze"), "\(err)")
        #expect(access(run.directory + "/churn.json", F_OK) != 0, "nothing may be written")
        // Stopped while it is read, the same tree records fine, every process as running.
        let (frozen, _, frozenErr) = try rr(run, ["record", "-q", "--freeze", String(job), "-o", run.directory + "/churn.json"], name: "freeze")
        #expect(frozen == .exited(0), "record --freeze: \(frozenErr)")
        if frozen == .exited(0) {
            let listed = try Listed.load(run.directory + "/churn.json")
            // Running, or exited and not reaped yet when the shell was frozen: nothing stopped.
            let running = listed.filter { $0.state == "running" }.count
            #expect(running > 10 && listed.allSatisfy { $0.state == "running" || $0.state == "zombie" }, "\(listed.map(\.state))")
        }
        live.kill()
        run.tearDown()
    }

    @Test("--freeze records states as they were and leaves them so")
    func freezeKeepsStates() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let live = try startJob(run, script: """
            #!/bin/bash
            dir=$1
            mkfifo "$dir/hold"
            ( while :; do :; done ) &               # running (R)
            sleep 1000 &                            # sleeping (S)
            sleep 1001 &                            # stopped (T)
            until read -r comm < /proc/$!/comm && [ "$comm" = sleep ]; do :; done
            kill -STOP $!
            echo "$!" > "$dir/ready"
            read -r _ <> "$dir/hold"
            """)
        defer { live.kill() }
        let job = live.root
        try waitForFile(run.directory + "/ready", timeout: 30, what: "the job")
        usleep(100_000)
        let stoppedPid = Int32(readText(run.directory + "/ready").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        let (t, _, err) = try rr(run, ["record", "--freeze", String(job), "-o", run.directory + "/frozen.json"], name: "record")
        try #require(t == .exited(0), "record --freeze: \(err)")
        let listed = try Listed.load(run.directory + "/frozen.json")
        #expect(listed.count == 4)
        for p in listed {
            #expect(p.state == (p.pid == stoppedPid ? "stopped" : "running"), "pid \(p.pid) recorded \(p.state)")
        }
        // Afterwards: the stopped one is still stopped, the others run again.
        usleep(200_000)
        for p in listed {
            let state = ProcFS.parseStatus(readFile("/proc/\(p.pid)/status") ?? [], hostPid: p.pid)?.state ?? "?"
            if p.pid == stoppedPid { #expect(state == "T", "pid \(p.pid) should still be stopped") }
            else { #expect(state == "S" || state == "R", "pid \(p.pid) is \(state) after record --freeze") }
        }
        live.kill()
        run.tearDown()
    }

    @Test("the file is mode 0600 (environments hold secrets), 0644 with --no-env")
    func fileModes() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let live = try startJob(run, script: """
            #!/bin/bash
            mkfifo "$1/hold"; sleep 1000 & echo ready > "$1/ready"; read -r _ <> "$1/hold"
            """)
        defer { live.kill() }
        let job = live.root
        try waitForFile(run.directory + "/ready", timeout: 30, what: "the job")
        usleep(100_000)
        var (t, _, err) = try rr(run, ["record", "-q", String(job), "-o", run.directory + "/with-env.json"], name: "env")
        #expect(t == .exited(0), "\(err)")
        #expect(fileMode(run.directory + "/with-env.json") == 0o600)
        #expect(readText(run.directory + "/with-env.json").contains("\"env\": ["))
        (t, _, err) = try rr(run, ["record", "-q", "--no-env", String(job), "-o", run.directory + "/no-env.json"], name: "noenv")
        #expect(t == .exited(0), "\(err)")
        #expect(fileMode(run.directory + "/no-env.json") == 0o644)
        #expect(!readText(run.directory + "/no-env.json").contains("\"env\""))
        live.kill()
        run.tearDown()
    }

    @Test("another user's process (root's sleep) is refused with its PID and the reason, unless --partial",
          .enabled(if: (try? Identity.user.get())?.dropsPrivileges == true))
    func otherUsersProcessIsRefused() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let user = run.user
        let setpriv = try #require(Paths.tool("setpriv"))
        // Root's sleep, with a child of the test user's below it.
        let live = LiveTree(try spawn(["/bin/sh", "-c",
                                   "\(setpriv) --reuid=\(user.uid) --regid=\(user.gid) --clear-groups --inh-caps=-all sleep 1000 & exec sleep 1001"],
                                      env: Identity.cleanEnvironment, cwd: "/", stdout: "/dev/null", stderr: "/dev/null"))
        defer { live.kill() }
        let rootSleep = live.root
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !(readText("/proc/\(rootSleep)/cmdline").hasPrefix("sleep") && hostDescendants(of: rootSleep).count == 2) {
            usleep(20_000)
        }
        try #require(hostDescendants(of: rootSleep).count == 2, "root's sleep and its child did not start")
        let child = hostDescendants(of: rootSleep)[1]
        // The child must have become the test user's sleep before it is recorded.
        while Date() < deadline, !readText("/proc/\(child)/cmdline").hasPrefix("sleep") { usleep(20_000) }

        let out = run.directory + "/other.json"
        var (t, _, err) = try rr(run, ["record", String(rootSleep), "-o", out], name: "refused")
        #expect(t == .exited(66), "\(err)")
        #expect(err.contains("process \(rootSleep)") && err.contains("/proc/\(rootSleep)/environ") && err.contains("EACCES"), "\(err)")
        #expect(err.contains("--partial") && err.contains("nothing was written"), "\(err)")
        #expect(!err.contains("process \(child) "), "the test user's own child is readable: \(err)")
        #expect(access(out, F_OK) != 0)

        (t, _, err) = try rr(run, ["record", "--partial", String(rootSleep), "-o", out], name: "partial")
        #expect(t == .exited(0), "\(err)")
        #expect(err.contains("warning: process \(rootSleep)") && err.contains("EACCES"), "\(err)")
        let listed = try Listed.load(out)
        #expect(listed.map(\.pid) == [rootSleep, child])
        #expect(listed.first?.args == ["sleep", "1001"], "the command line is world-readable")
        live.kill()
        run.tearDown()
    }

    @Test("a payload named rr-fork-recv running rootless-restore's binary is recorded: only the fork supervisor's own receiver is left out")
    func receiverLookAlikeIsRecorded() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // Exec'd through a link called rr-fork-recv, so its comm is that and its exe is
        // rootless-restore's binary, as the receiver's are; but it was forked (exit signal
        // SIGCHLD), the receiver is cloned without one. validate blocks reading the FIFO.
        let live = try startJob(run, script: """
            #!/bin/bash
            dir=$1
            ln -s "$dir/rootless-restore" "$dir/rr-fork-recv"
            mkfifo "$dir/hold"
            "$dir/rr-fork-recv" validate "$dir/hold" &
            until read -r comm < /proc/$!/comm && [ "$comm" = rr-fork-recv ]; do :; done
            echo "$!" > "$dir/ready"
            read -r _ <> "$dir/hold"
            """)
        defer { live.kill() }
        try waitForFile(run.directory + "/ready", timeout: 30, what: "the job")
        let lookAlike = Int32(readText(run.directory + "/ready").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(lookAlike)/exe")) ?? "").hasSuffix("/rootless-restore"), "the look-alike runs the binary")
        let (t, _, err) = try rr(run, ["record", "-q", String(live.root), "-o", run.directory + "/job.json"], name: "record")
        try #require(t == .exited(0), "record: \(err)")
        let listed = try Listed.load(run.directory + "/job.json")
        let entry = listed.first { $0.pid == lookAlike }
        #expect(entry?.args?.suffix(2) == ["validate", run.directory + "/hold"], "the look-alike is missing from the recording: \(listed.map(\.pid))")
        live.kill()
        run.tearDown()
    }
}
