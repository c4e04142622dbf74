// Pinned forks that become something else are caught: a real `make -j4` is recorded with its
// jobs as payload-spawned processes, killed, and restored; make forks its jobs again and the
// fork supervisor pins them. Untouched, every pinned job is what was recorded (the pin log says
// pinned and matched). When a job finished between the recording and the kill, make forks the
// others in its place: each pinned PID does another job, reported by entry; with
// --pin-mismatch error the namespace is torn down.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

private func pinJSONLines(_ path: String) -> [[String: Any]] {
    readText(path).split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}

@Suite("pinned forks checked against the recording", .serialized)
struct PinCheckEndToEndTests {
    static let makefile = """
        all: a b c d
        a:
        \tsleep 1001
        b:
        \tsleep 1002
        c:
        \tsleep 1003
        d:
        \tsleep 1004

        """

    /// Starts make -j4 as the test user in its own session, records it with
    /// --spawn-by-payload, kills it; returns the recorded tree's path and the jobs' PIDs.
    func recordMake(_ run: RestoreRun) throws -> (String, [Int32: String]) {
        let dir = run.directory
        let make = try #require(Paths.tool("make"), "make is missing (scripts/setup.sh installs it)")
        let setsid = try #require(Paths.tool("setsid"))
        try run.write("Makefile", Data(Self.makefile.utf8))
        let root = try spawn(try Identity.prefix(for: run.user) + [setsid, make, "-j4"], env: Identity.cleanEnvironment,
                             cwd: dir, stdout: dir + "/make.log", stderr: dir + "/make.log")
        var killed = false
        func killTree() {
            guard !killed else { return }
            killed = true
            killProcessTree(root: root)
        }
        defer { killTree() }
        let deadline = Date().addingTimeInterval(20)
        var jobs: [Int32: String] = [:]
        while Date() < deadline {
            jobs = [:]
            for p in ProcFS.scan() where p.hostPPid == root && p.commandLine.hasPrefix("sleep 100") { jobs[p.hostPid] = p.commandLine }
            if jobs.count == 4 { break }
            usleep(20_000)
        }
        try #require(jobs.count == 4, "make -j4 did not start 4 jobs: \(readText(dir + "/make.log"))")
        let out = dir + "/record.out"
        let rec = try spawn(try Identity.prefix(for: run.user) + [run.binary, "record", "--spawn-by-payload", "-o", dir + "/make.json", String(root)],
                            env: Identity.cleanEnvironment, cwd: dir, stdout: out, stderr: out)
        try #require(try waitForExit(rec, timeout: 60) == .exited(0), "record: \(readText(out))")
        killTree()
        return (dir + "/make.json", jobs)
    }

    @Test("make -j4 restored as recorded: every pinned job matched", .enabled(if: Prerequisites.userNamespacesWork))
    func allJobsMatch() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let (tree, jobs) = try recordMake(run)
        try run.startRun(treeFile: tree, extra: ["--pin-mismatch", "error", "--pin-log", run.directory + "/pins.log"])
        try run.waitUntilReady()
        try run.waitForNamespace(timeout: 20, "4 checked pins") { _ in
            pinJSONLines(run.directory + "/pins.log").filter { $0["kind"] as? String == "check" }.count == 4
        }
        let checks = pinJSONLines(run.directory + "/pins.log").filter { $0["kind"] as? String == "check" }
        #expect(checks.allSatisfy { $0["matched"] as? Bool == true }, "\(checks)")
        let seen = run.namespace()
        for (pid, job) in jobs {
            let now = seen.first { $0.pid == pid }?.host.commandLine
            #expect(now == job, "pid \(pid): recorded \(job), now \(now ?? "missing")")
        }
    }

    @Test("a job finished before the kill: make forks the others in its place; every mismatch is reported, --pin-mismatch error tears down",
          .enabled(if: Prerequisites.userNamespacesWork))
    func finishedJobIsCaught() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let (tree, jobs) = try recordMake(run)
        // Job a "finished": its target exists, so the restored make does not run it again.
        try run.write("a", Data())
        let pidOfA = try #require(jobs.first { $0.value == "sleep 1001" }?.key)
        try run.startRun(treeFile: tree, extra: ["--pin-mismatch", "error", "--pin-log", run.directory + "/pins.log"])
        let end = try run.waitForExit(timeout: 30)
        #expect(end == .exited(125), "run: \(end)\n\(run.stderr)")
        #expect(run.stderr.contains("(pid \(pidOfA)): pin mismatch"), "\(run.stderr)")
        #expect(run.stderr.contains("sleep 1002") && run.stderr.contains("sleep 1001"), "\(run.stderr)")
        let checks = pinJSONLines(run.directory + "/pins.log").filter { $0["kind"] as? String == "check" }
        #expect(checks.contains { $0["matched"] as? Bool == false && $0["pid"] as? Int == Int(pidOfA) }, "\(checks)")
    }

    @Test("the last job finished before the kill: the others match, its PID is reported never created; --pin-mismatch error tears down after --pin-wait",
          .enabled(if: Prerequisites.userNamespacesWork))
    func missingJobIsReported() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let (tree, jobs) = try recordMake(run)
        try run.write("d", Data())
        let pidOfD = try #require(jobs.first { $0.value == "sleep 1004" }?.key)
        try run.startRun(treeFile: tree, extra: ["--pin-mismatch", "error", "--pin-wait", "2", "--pin-log", run.directory + "/pins.log"])
        let end = try run.waitForExit(timeout: 30)
        #expect(end == .exited(125), "run: \(end)\n\(run.stderr)")
        #expect(run.stderr.contains("(pid \(pidOfD)): pin missing: not created yet: its forker has made no fork for 2 s"), "\(run.stderr)")
        #expect(!run.stderr.contains("pin mismatch"), "\(run.stderr)")
        let checks = pinJSONLines(run.directory + "/pins.log").filter { $0["kind"] as? String == "check" }
        #expect(checks.contains { $0["pid"] as? Int == Int(pidOfD) && $0["matched"] as? Bool == false && $0["created"] as? Bool == false }, "\(checks)")
        for (pid, job) in jobs where pid != pidOfD {
            #expect(checks.contains { $0["pid"] as? Int == Int(pid) && $0["matched"] as? Bool == true }, "\(job) at \(pid): \(checks)")
        }
    }

    @Test("a tree that ends before forking a recorded child: that child is reported never created; --pin-mismatch error turns the exit into 125",
          .enabled(if: Prerequisites.userNamespacesWork))
    func treeEndsOwingAPin() throws {
        let tree = """
            {"version": 1, "processes": [
              {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100,
               "process": {"args": ["/bin/sh", "-c", "sleep 0.3"], "env": ["PATH=/usr/bin:/bin"]}},
              {"pid": 150, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload",
               "recorded": {"exe": "/usr/bin/sleep", "cmdline": ["sleep", "0.3"]}},
              {"pid": 151, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload",
               "recorded": {"exe": "/usr/bin/sleep", "cmdline": ["sleep", "1001"]}}
            ]}
            """
        for policy in ["warn", "error"] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)), extra: ["--pin-mismatch", policy])
            let end = try run.waitForExit(timeout: 30)
            #expect(end == .exited(policy == "error" ? 125 : 0), "\(policy): \(end)\n\(run.stderr)")
            #expect(run.stderr.contains("process #2 (pid 151): pin missing: never created"), "\(policy): \(run.stderr)")
            #expect(!run.stderr.contains("(pid 150)"), "\(policy): \(run.stderr)")
        }
    }

    @Test("the same with --pin-mismatch warn: the restore goes on, each moved job is named",
          .enabled(if: Prerequisites.userNamespacesWork))
    func finishedJobWarns() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let (tree, jobs) = try recordMake(run)
        try run.write("a", Data())
        try run.startRun(treeFile: tree, extra: ["--pin-log", run.directory + "/pins.log"])
        try run.waitUntilReady()
        try run.waitForNamespace(timeout: 20, "3 checked pins") { _ in
            pinJSONLines(run.directory + "/pins.log").filter { $0["kind"] as? String == "check" }.count >= 3
        }
        let wrong = jobs.filter { $0.value != "sleep 1004" }.keys.sorted()
        for pid in wrong {
            #expect(run.stderr.contains("(pid \(pid)): pin mismatch"), "pid \(pid) not reported:\n\(run.stderr)")
        }
    }
}
