// End-to-end tests: rootless-restore runs as an ordinary user (see Harness.swift), and what it
// built is checked from /proc. The suite is serialized: every test ends by asserting that the
// test user has no process left, which only means something if nothing else runs meanwhile.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("rootless end-to-end", .serialized)
struct RootlessRestoreTests {

    // MARK: Trees that restore

    @Test("flat tree: 200 holders with scattered PIDs up to 4,000,000",
          .enabled(if: Prerequisites.userNamespacesWork))
    func flatTreeWithScatteredPids() throws {
        let children = TestTree.scatteredPids(
            count: 199, maxPid: 4_000_000,
            including: [2, 3, 99, 101, 32767, 32768, 32769, 65536, 1_000_000, 4_000_000],
            excluding: [1, 100])
        let tree = TestTree.flat(top: 100, children: children,
                                 comment: "200 holders under one session leader")
        #expect(tree.processes.count == 200)
        #expect(tree.processes.contains { $0.pid > 32768 })

        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.restoreAndVerify(tree, timeout: 120)
    }

    @Test("a chain 100 deep, PIDs decreasing, group leaders every 10 levels",
          .enabled(if: Prerequisites.userNamespacesWork))
    func deepChain() throws {
        var procs: [TreeProcess] = []
        var group: Int32 = 0
        for level in 0..<100 {
            let pid = Int32(30_000 - level * 271)
            if level % 10 == 0 { group = pid }
            procs.append(TreeProcess(pid: pid, ppid: level == 0 ? 0 : procs[level - 1].pid,
                                     pgid: group, sid: 30_000))
        }
        let tree = TestTree(comment: "chain of 100", processes: procs)

        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.restoreAndVerify(tree, timeout: 120)
    }

    @Test("a top process whose parent is outside the tree hangs under PID 1",
          .enabled(if: Prerequisites.userNamespacesWork))
    func parentOutsideTree() throws {
        let tree = TestTree(comment: "ppid 4242 is not recorded", processes: [
            TreeProcess(pid: 300, ppid: 4242, pgid: 300, sid: 300),
            TreeProcess(pid: 301, ppid: 300, pgid: 300, sid: 300),
            TreeProcess(pid: 302, ppid: 300, pgid: 302, sid: 300),
        ])

        let run = try RestoreRun()
        defer { run.tearDown() }
        let seen = try run.restoreAndVerify(tree)
        #expect(seen.first { $0.pid == 300 }?.ppid == 1)
    }

    @Test("a tree with its own PID 1: that process is the init",
          .enabled(if: Prerequisites.userNamespacesWork))
    func treeWithPid1() throws {
        let tree = TestTree(comment: "PID 1 holds, children under it", processes: [
            TreeProcess(pid: 1, ppid: 0, pgid: 1, sid: 1),
            TreeProcess(pid: 2, ppid: 1, pgid: 1, sid: 1),
            TreeProcess(pid: 50, ppid: 1, pgid: 50, sid: 1),
            TreeProcess(pid: 51, ppid: 50, pgid: 50, sid: 1),
            TreeProcess(pid: 700, ppid: 1, pgid: 700, sid: 700),
            TreeProcess(pid: 40000, ppid: 700, pgid: 700, sid: 700),
        ])

        let run = try RestoreRun()
        defer { run.tearDown() }
        let seen = try run.restoreAndVerify(tree)
        #expect(seen.filter { $0.pid == 1 }.count == 1)
        #expect(seen.first { $0.pid == 1 }?.ppid == 0)
    }

    // MARK: Restores that fail, and leave nothing

    @Test("PID collision (--occupy-pid 57): exit 125 naming pid 57 and EEXIST",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pidCollision() throws {
        let tree = TestTree(comment: "57 will be taken", processes: [
            TreeProcess(pid: 10, ppid: 0, pgid: 10, sid: 10),
            TreeProcess(pid: 56, ppid: 10, pgid: 10, sid: 10),
            TreeProcess(pid: 57, ppid: 10, pgid: 10, sid: 10),
            TreeProcess(pid: 58, ppid: 57, pgid: 10, sid: 10),
        ])

        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", tree.json()),
                         extra: ["--occupy-pid", "57"])
        let end = try run.waitForExit(timeout: 60)
        let stderr = run.stderr
        #expect(end == .exited(125), "stderr: \(stderr)")
        #expect(stderr.contains("pid 57"), "stderr should name pid 57: \(stderr)")
        if ProcessInfo.processInfo.environment["RR_PID_METHOD"] == "dance" {
            // The dance cannot be refused a PID: the kernel silently hands out the next free
            // one, which the runtime's check of every new PID catches.
            #expect(stderr.contains("instead of 57"), "stderr should name the wrong PID: \(stderr)")
        } else {
            #expect(stderr.contains("EEXIST"), "stderr should say EEXIST: \(stderr)")
        }
        run.tearDown()
    }

    @Test("a payload executable that does not exist: exit 127 before any process is created",
          .enabled(if: Prerequisites.userNamespacesWork))
    func missingExecutable() throws {
        let tree = TestTree(comment: "no such program", processes: [
            TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100),
            TreeProcess(pid: 101, ppid: 100, pgid: 100, sid: 100),
            TreeProcess(pid: 102, ppid: 100, pgid: 100, sid: 100, args: ["/nonexistent/prog"]),
        ])

        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", tree.json()))
        let end = try run.waitForExit(timeout: 60)
        let stderr = run.stderr
        #expect(end == .exited(127), "stderr: \(stderr)")
        #expect(stderr.contains(tree.label(ofPid: 102)),
                "stderr should name \(tree.label(ofPid: 102)): \(stderr)")
        #expect(access(run.reportPath, F_OK) != 0, "no report may be written for a failed restore")
        // Sampled every 20 ms: this can miss a short-lived process, but never sees one wrongly.
        #expect(run.mostNamespaceProcessesSeen <= 1,
                "tree processes were created (\(run.mostNamespaceProcessesSeen) seen at once)")
        run.tearDown()
    }

    @Test("a payload that is not a valid program: exit 126 naming it and ENOEXEC, nothing left",
          .enabled(if: Prerequisites.userNamespacesWork))
    func payloadNotExecutable() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // Random bytes, no "#!", no ELF magic: execve says ENOEXEC.
        var bytes: [UInt8] = [0x00, 0x13, 0x37, 0x00]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<4096 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            bytes.append(UInt8(truncatingIfNeeded: state >> 56))
        }
        let garbage = try run.write("garbage", Data(bytes), mode: 0o755)

        var procs = [TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100)]
        for i in 1..<20 {
            procs.append(TreeProcess(pid: Int32(100 + i * 13), ppid: i < 10 ? 100 : Int32(100 + (i - 9) * 13),
                                     pgid: 100, sid: 100))
        }
        procs[13].args = [garbage]
        let tree = TestTree(comment: "20 processes, one payload is garbage", processes: procs)
        let bad = tree.label(ofPid: procs[13].pid)

        try run.startRun(treeFile: try run.write("tree.json", tree.json()))
        let end = try run.waitForExit(timeout: 120)
        let stderr = run.stderr
        #expect(end == .exited(126), "stderr: \(stderr)")
        #expect(stderr.contains(bad), "stderr should name \(bad): \(stderr)")
        #expect(stderr.contains("ENOEXEC"), "stderr should say ENOEXEC: \(stderr)")
        run.tearDown()
    }

    // MARK: Signals and exit status

    @Test("SIGTERM to the runtime reaches the payload: its trap exits 42, so does run",
          .enabled(if: Prerequisites.userNamespacesWork))
    func sigtermIsForwarded() throws {
        let script = "trap 'exit 42' TERM; sleep 1000 & wait"
        let tree = TestTree(comment: "traps SIGTERM", processes: [
            TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100, args: ["/bin/sh", "-c", script]),
        ])

        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", tree.json()))
        try run.waitUntilReady()
        // The shell must have installed its trap before the signal is sent.
        try run.waitForNamespace("pid 100 to run the shell and catch SIGTERM") { procs in
            guard let top = procs.first(where: { $0.pid == 100 }) else { return false }
            return top.host.commandLine.contains("trap") && top.host.catches(SIGTERM)
        }
        run.signal(SIGTERM)
        let end = try run.waitForExit(timeout: 30)
        #expect(end == .exited(42), "stderr: \(run.stderr)")
        run.tearDown()
    }

    @Test("run exits with the tree's status", .enabled(if: Prerequisites.userNamespacesWork))
    func exitStatusPropagation() throws {
        func sh(_ script: String) -> [String] { ["/bin/sh", "-c", script] }
        // Each case gets the scratch directory; `markers` are files the tree's last processes
        // create just before they exit: run must not end before they exist (an init that
        // stopped at the first top-level exit would kill them first).
        let cases: [(String, (String) -> TestTree, Termination, [String])] = [
            ("top exits 7", { _ in TestTree(comment: "exit 7", processes: [
                TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100, args: sh("exit 7")),
            ]) }, .exited(7), []),
            ("top killed by SIGKILL", { _ in TestTree(comment: "kill -9", processes: [
                TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100, args: sh("kill -9 $$")),
            ]) }, .exited(137), []),
            ("first top-level process in file order, after all have exited", { dir in TestTree(
                comment: "two sessions", processes: [
                    TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100, args: sh("sleep 0.3; exit 5")),
                    TreeProcess(pid: 101, ppid: 100, pgid: 100, sid: 100, args: sh("sleep 0.8; : > \(dir)/done-101")),
                    TreeProcess(pid: 200, ppid: 0, pgid: 200, sid: 200, args: sh("sleep 1.2; : > \(dir)/done-200; exit 9")),
                ]) }, .exited(5), ["done-101", "done-200"]),
            ("the tree's PID 1", { _ in TestTree(comment: "pid 1 exits 3", processes: [
                TreeProcess(pid: 1, ppid: 0, pgid: 1, sid: 1, args: sh("exit 3")),
                TreeProcess(pid: 2, ppid: 1, pgid: 1, sid: 1),
            ]) }, .exited(3), []),
        ]
        for (name, tree, expected, markers) in cases {
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.startRun(treeFile: try run.write("tree.json", tree(run.directory).json()))
            let end = try run.waitForExit(timeout: 60)
            #expect(end == expected, "\(name): stderr: \(run.stderr)")
            for marker in markers {
                #expect(access(run.directory + "/" + marker, F_OK) == 0,
                        "\(name): run ended before the process that creates \(marker) had finished")
            }
            run.tearDown()
        }
    }

    @Test("SIGINT during the restore of 3000 processes: exit 130, nothing left",
          .enabled(if: Prerequisites.userNamespacesWork))
    func interruptDuringRestore() throws {
        let children = TestTree.scatteredPids(count: 2999, maxPid: 32_000, excluding: [1, 100])
        let tree = TestTree.flat(top: 100, children: children, comment: "3000 holders")

        let run = try RestoreRun()
        defer { run.tearDown() }
        // The runtime pauses once half the processes exist (a hidden testing aid), so the
        // signal certainly arrives mid-restore, however fast the restore is.
        try run.startRun(treeFile: try run.write("tree.json", tree.json()), extra: ["--testing-fault", "pause-mid-restore"])
        try run.waitForRuntimePaused()
        let seen = run.namespace()
        #expect(seen.count > 0 && seen.count < 3000, "SIGINT is meant to arrive mid-restore; \(seen.count) processes exist")
        #expect(access(run.reportPath, F_OK) != 0, "the report exists although the restore paused halfway")
        run.signal(SIGINT)
        let end = try run.waitForExit(timeout: 120)
        print("interruptDuringRestore: SIGINT sent with \(seen.count) processes in the namespace")
        #expect(end == .exited(130), "stderr: \(run.stderr)")
        // The report is written once every process is restored: its absence proves the signal
        // arrived during the restore, not after it (when the init would merely forward it).
        #expect(access(run.reportPath, F_OK) != 0,
                "the restore had finished when SIGINT arrived: this test did not interrupt a restore")
        run.tearDown()
    }

    // MARK: validate

    @Test("validate: a bad tree exits 65 naming the entry; a good one exits 0")
    func validate() throws {
        let bad = TestTree(comment: "sid of 205 is neither its pid nor its parent's sid", processes: [
            TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100),
            TreeProcess(pid: 205, ppid: 100, pgid: 100, sid: 999),
        ])
        do {
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.start(["validate", try run.write("bad.json", bad.json())])
            let end = try run.waitForExit(timeout: 60)
            let stderr = run.stderr
            #expect(end == .exited(65), "stderr: \(stderr)")
            #expect(stderr.contains(bad.label(ofPid: 205)),
                    "stderr should name \(bad.label(ofPid: 205)): \(stderr)")
        }
        do {
            let good = TestTree.flat(top: 100, children: [205, 4000, 40001], comment: "valid")
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.start(["validate", try run.write("good.json", good.json())])
            let end = try run.waitForExit(timeout: 60)
            #expect(end == .exited(0), "stderr: \(run.stderr)")
        }
    }

    // MARK: The example of the README

    @Test("examples/hello: every process prints the ids of the tree",
          .enabled(if: Prerequisites.userNamespacesWork))
    func helloExample() throws {
        let source = Paths.packageRoot + "/examples/hello/tree.json"
        let data = try Data(contentsOf: URL(fileURLWithPath: source))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let entries = try #require(object["processes"] as? [[String: Any]])
        var expected: [Int: String] = [:]
        let pids = Set(entries.compactMap { $0["pid"] as? Int })
        for e in entries {
            let pid = try #require(e["pid"] as? Int), ppid = try #require(e["ppid"] as? Int)
            let pgid = try #require(e["pgid"] as? Int), sid = try #require(e["sid"] as? Int)
            let nsPPid = pid == 1 ? 0 : (ppid != 0 && pids.contains(ppid) ? ppid : 1)
            expected[pid] = "pid=\(pid) ppid=\(nsPPid) pgid=\(pgid) sid=\(sid)"
        }
        #expect(expected.count == entries.count && entries.count >= 6)

        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", data))
        let end = try run.waitForExit(timeout: 60)
        #expect(end == .exited(0), "stderr: \(run.stderr)")
        let printed = run.stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix("pid=") }
        var byPid: [Int: [String]] = [:]
        for line in printed {
            let pid = line.split(separator: " ").first.flatMap { Int($0.dropFirst(4)) } ?? -1
            byPid[pid, default: []].append(line)
        }
        for (pid, want) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(byPid[pid] == [want], "pid \(pid): expected exactly [\(want)], printed \(byPid[pid] ?? [])")
        }
        #expect(Set(byPid.keys) == Set(expected.keys), "printed: \(printed)")
        run.tearDown()
    }

    @Test("examples/hello/show-ids.sh is the script tree.json carries inline")
    func helloScriptMatchesInline() throws {
        let root = Paths.packageRoot + "/examples/hello/"
        let script = try String(contentsOfFile: root + "show-ids.sh", encoding: .utf8)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }.joined(separator: "; ")
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "tree.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let entries = try #require(object["processes"] as? [[String: Any]])
        for e in entries {
            let args = (e["process"] as? [String: Any])?["args"] as? [String]
            #expect(args == ["/bin/sh", "-c", script], "entry pid \(e["pid"] ?? "?")")
        }
    }
}
