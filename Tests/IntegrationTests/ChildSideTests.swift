// The child side's rule, enforced: between its clone and its exec a restored process (a
// puppet) must not allocate. Restores run under an LD_PRELOAD guard (Fixtures/alloc_guard)
// that the runtime's C shim switches on in every child right after its clone; any malloc,
// free & co. there ends the puppet with a message. A control run makes a puppet allocate on
// purpose (--testing-fault puppet-allocates) to show the guard sees puppets at all.

import CRestoreShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Builds the allocation guard into `directory`; nil (with the reason) when no C compiler.
func buildAllocGuard(in directory: String) throws -> String {
    guard let cc = Paths.tool("cc") ?? Paths.tool("gcc") ?? Paths.tool("clang") else {
        throw HarnessError("no C compiler (cc, gcc, clang) to build the allocation guard")
    }
    let source = Paths.packageRoot + "/Tests/IntegrationTests/Fixtures/alloc_guard/alloc_guard.c"
    let out = directory + "/alloc_guard.so"
    let pid = try spawn([cc, "-shared", "-fPIC", "-O1", "-o", out, source], env: Identity.cleanEnvironment,
                        cwd: nil, stdout: directory + "/cc.out", stderr: directory + "/cc.out")
    let t = try waitForExit(pid, timeout: 60)
    guard t == .exited(0) else { throw HarnessError("cc failed (\(t)): \(readText(directory + "/cc.out"))") }
    chmod(out, 0o755)
    return out
}

/// Every feature that runs child-side code: payloads, holders with threads, zombies with a
/// status and a signal, a stopped process, dead session and group leaders (helpers), a
/// nested PID namespace, and identities (user, umask, rlimits, capabilities, no_new_privs,
/// seccomp).
var childSideTree: String {
    // The ns_last_pid dance refuses nested trees by design.
    let nested = ProcessInfo.processInfo.environment["RR_PID_METHOD"] != "dance"
    let entries: [String] = [
        #"  {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "threads": [100, 150, 151]}"#,
        #"  {"pid": 101, "ppid": 100, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}}"#,
        #"  {"pid": 102, "ppid": 100, "pgid": 100, "sid": 100, "state": "zombie", "exitStatus": 3}"#,
        #"  {"pid": 103, "ppid": 100, "pgid": 100, "sid": 100, "state": "zombie", "exitStatus": {"signal": 9}}"#,
        #"  {"pid": 104, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped"}"#,
        #"  {"pid": 105, "ppid": 100, "pgid": 100, "sid": 100, "process": {"user": {"uid": 0, "gid": 0, "umask": 18}, "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512}], "capabilities": {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "effective": ["CAP_KILL"]}, "noNewPrivileges": true, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}}}"#,
        #"  {"pid": 301, "ppid": 100, "pgid": 300, "sid": 300}"#,
        #"  {"pid": 302, "ppid": 301, "pgid": 302, "sid": 300}"#,
        #"  {"pid": 400, "nspid": [400, 1], "newPidNamespace": true, "ppid": 100, "pgid": 100, "sid": 100}"#,
        #"  {"pid": 401, "nspid": [401, 7], "ppid": 400, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}}"#
    ]
    let kept = nested ? entries : entries.filter { !$0.contains("\"pid\": 40") }
    return "{\"version\": 1, \"comment\": \"child-side code paths\", \"processes\": [\n" + kept.joined(separator: ",\n") + "\n]}"
}

@Suite("child side: no allocation between clone and exec, no backtracer", .serialized)
struct ChildSideTests {
    /// Restores `tree` under the guard; returns the run once ready (or ended) and its stderr.
    func guardedRun(_ tree: String, fault: String? = nil, expectReady: Bool) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let guardLib = try buildAllocGuard(in: run.directory)
        let treeFile = try run.write("tree.json", Data(tree.utf8))
        let extra = fault.map { ["--testing-fault", $0] } ?? []
        try run.startRun(treeFile: treeFile, extra: extra, environment: ["LD_PRELOAD=\(guardLib)"])
        if expectReady {
            try run.waitUntilReady(timeout: 60)
            #expect(!run.stderr.contains("alloc_guard"), "a puppet allocated:\n\(run.stderr)")
        } else {
            let t = try run.waitForExit(timeout: 60)
            #expect(t != .exited(0), "the run succeeded: \(run.stderr)")
            #expect(run.stderr.contains("alloc_guard: a puppet called"), "the guard did not fire:\n\(run.stderr)")
            #expect(access(run.reportPath, F_OK) != 0, "a report was written")
        }
    }

    @Test("the guard catches a puppet that allocates (control)", .enabled(if: Prerequisites.userNamespacesWork))
    func guardCatchesAllocation() throws {
        try guardedRun(childSideTree, fault: "puppet-allocates", expectReady: false)
    }

    @Test("no puppet allocates: payloads, threads, zombies, stopped, helpers, nested, identity",
          .enabled(if: Prerequisites.userNamespacesWork))
    func noPuppetAllocates() throws {
        try guardedRun(childSideTree, expectReady: true)
    }

    @Test("no puppet allocates: the topology fixtures", .enabled(if: Prerequisites.userNamespacesWork))
    func fixturesDoNotAllocate() throws {
        let dir = Paths.packageRoot + "/Tests/IntegrationTests/Fixtures/topologies"
        for name in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() {
            let text = readText("\(dir)/\(name)/tree.json")
            #expect(!text.isEmpty, "\(name): no tree.json")
            try guardedRun(text, expectReady: true)
        }
    }

    @Test("no puppet allocates: pinned forks (the supervisor hand-over)", .enabled(if: Prerequisites.userNamespacesWork))
    func pinnedForksDoNotAllocate() throws {
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sh", "-c", "sleep 1000 & wait"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}
        ]}
        """
        try guardedRun(tree, expectReady: true)
    }

    @Test("no puppet allocates: terminals (controlling terminal after setsid, slaves on 0-2, foreground group, an inherited one dropped, a leader waiting for its foreground job)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func terminalsDoNotAllocate() throws {
        let tree = """
        {"version": 1, "terminals": [{"id": "t0", "session": 100, "foreground": 101, "rows": 30, "columns": 100}], "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "terminal": "t0", "stdio": ["t0", "t0", "t0"], "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 101, "ppid": 100, "pgid": 101, "sid": 100, "terminal": "t0", "stdio": ["t0", null, "t0"], "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 102, "ppid": 100, "pgid": 101, "sid": 100, "state": "stopped", "terminal": "t0", "stdio": ["t0", "t0", "t0"]},
          {"pid": 103, "ppid": 100, "pgid": 100, "sid": 100}
        ]}
        """
        try guardedRun(tree, expectReady: true)
    }

    /// A tree with no fork supervisor, of the caller's own ids, with clone3: its runtime init
    /// shares the runtime's address space (PuppetWorld.sharedInit) and must never allocate,
    /// from its clone until it exits. Under the dance the init is a fork, and its own.
    static let sharedInitTree = """
    {"version": 1, "processes": [
      {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}},
      {"pid": 101, "ppid": 0, "pgid": 101, "sid": 101}
    ]}
    """
    static var sharesMemory: Bool { ProcessInfo.processInfo.environment["RR_PID_METHOD"] != "dance" }

    @Test("the runtime's init shares the runtime's memory and allocates nothing from its clone to its exit (signals forwarded, children reaped)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func sharedInitDoesNotAllocate() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let guardLib = try buildAllocGuard(in: run.directory)
        let treeFile = try run.write("tree.json", Data(Self.sharedInitTree.utf8))
        try run.startRun(treeFile: treeFile, environment: ["LD_PRELOAD=\(guardLib)"])
        try run.waitUntilReady(timeout: 60)
        let runtime = try #require(run.runtimeHostPid)
        let initProcess = try #require(ProcFS.namespaceProcesses(under: runtime).first { $0.pid == 1 }, "no namespace init")
        let same = rr_same_address_space(runtime, initProcess.host.hostPid)
        #expect(same >= 0, "kcmp: \(same)")
        #expect((same == 0) == Self.sharesMemory, "kcmp(KCMP_VM) of the runtime and its init: \(same)")
        // The init's loop: SIGWINCH to the top-level processes (its terminal check included),
        // then SIGTERM to the namespace and the reaping of both, then its exit with the first
        // top-level process's status. An allocation ends it with 86 instead.
        run.signal(SIGWINCH)
        run.signal(SIGTERM)
        let t = try run.waitForExit(timeout: 60)
        #expect(t == .exited(128 + SIGTERM), "\(t): \(run.stderr)")
        #expect(!run.stderr.contains("alloc_guard"), "the init allocated:\n\(run.stderr)")
    }

    @Test("the guard catches a runtime init that allocates when it shares the runtime's memory (control)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func guardCatchesSharedInitAllocation() throws {
        guard Self.sharesMemory else {
            print("skipped: under --pid-method dance the runtime's init is a fork, which may allocate")
            return
        }
        let run = try RestoreRun()
        defer { run.tearDown() }
        let guardLib = try buildAllocGuard(in: run.directory)
        let treeFile = try run.write("tree.json", Data(Self.sharedInitTree.utf8))
        try run.startRun(treeFile: treeFile, extra: ["--testing-fault", "init-allocates"], environment: ["LD_PRELOAD=\(guardLib)"])
        let t = try run.waitForExit(timeout: 60)
        // The guard ends the init with 86 (the report may be written first: it allocates after
        // its release); run then exits with it.
        #expect(t != .exited(0), "the run succeeded: \(run.stderr)")
        #expect(run.stderr.contains("alloc_guard: a puppet called"), "the guard did not fire:\n\(run.stderr)")
    }

    @Test("a crashing puppet dies of its signal: no swift-backtrace in the namespace",
          .enabled(if: Prerequisites.userNamespacesWork))
    func crashingPuppetStartsNoBacktracer() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let treeFile = try run.write("tree.json", Data(childSideTree.utf8))
        // The backtracer is on by default on Linux; ask for it explicitly as well.
        try run.startRun(treeFile: treeFile, extra: ["--testing-fault", "puppet-crashes"],
                         environment: ["SWIFT_BACKTRACE=enable=yes,interactive=no"])
        let t = try run.waitForExit(timeout: 60)
        let err = run.stderr
        #expect(t == .exited(125), "\(t): \(err)")
        #expect(!err.contains("Program crashed") && !err.contains("Backtrace") && !err.contains("Thread 0"),
                "a backtracer ran for the puppet:\n\(err)")
        #expect(err.contains("process #0 (pid 100)"), "the crashed process is not named:\n\(err)")
    }
}
