// Faults found by attacking the engine (issue 14): each test fails on the engine before its
// fix. What the runtime leaves behind is checked by RestoreRun.tearDown (no process of the
// test user may remain).

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("engine hardening: kills, stopped processes, signals", .serialized)
struct EngineHardeningTests {

    @Test("SIGKILL of run before its namespace init armed its parent-death signal leaves nothing",
          .enabled(if: Prerequisites.userNamespacesWork))
    func killBeforeParentDeathSignal() throws {
        let tree = TestTree.flat(top: 100, children: [101], comment: "two holders")
        let run = try RestoreRun()
        defer { run.tearDown() }
        // The init waits a second before it arms PR_SET_PDEATHSIG: the window made wide.
        try run.startRun(treeFile: try run.write("tree.json", tree.json()), extra: ["--testing-fault", "slow-init-start"])
        let seen = try run.waitForNamespace(timeout: 30, "the namespace init") { $0.contains { $0.pid == 1 } }
        let initHost = seen.first { $0.pid == 1 }!.host.hostPid
        run.signal(SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while kill(initHost, 0) == 0 && Date() < deadline { usleep(20_000) }
        let state = readText("/proc/\(initHost)/stat").split(separator: " ").dropFirst(2).first ?? "gone"
        #expect(kill(initHost, 0) != 0 || state == "Z", "the namespace init \(initHost) outlived the killed runtime (state \(state))")
    }

    @Test("SIGTERM ends a tree that holds a stopped process", .enabled(if: Prerequisites.userNamespacesWork))
    func sigtermWithStoppedProcess() throws {
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100},
          {"pid": 101, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped"},
          {"pid": 102, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped", "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}}
        ]}
        """
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady()
        #expect(run.namespace().filter { $0.host.state.hasPrefix("T") }.count == 2, "\(run.namespace().map(\.host.summary))")
        run.signal(SIGTERM)
        let t = try run.waitForExit(timeout: 20)
        #expect(t == .exited(143) || t == .signaled(SIGTERM), "\(t): \(run.stderr)")
    }

    @Test("the runtime's init forwards SIGWINCH, SIGCONT, SIGALRM and SIGUSR1 to the tree",
          .enabled(if: Prerequisites.userNamespacesWork))
    func everySignalIsForwarded() throws {
        // A top-level payload that reports each signal it gets, then exits on SIGUSR1.
        let script = """
        for s in WINCH CONT ALRM; do trap "echo got $s" $s; done
        trap 'echo got USR1; exit 7' USR1
        echo ready
        while :; do sleep 0.05; done
        """
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["bash", "-c", \(String(data: try JSONSerialization.data(withJSONObject: [script], options: .fragmentsAllowed), encoding: .utf8)!.dropFirst().dropLast())], "env": ["PATH=/usr/bin:/bin"]}}
        ]}
        """
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady()
        let deadline = Date().addingTimeInterval(20)
        while !run.stdout.contains("ready") && Date() < deadline { usleep(20_000) }
        for (sig, name) in [(SIGWINCH, "WINCH"), (SIGCONT, "CONT"), (SIGALRM, "ALRM")] {
            run.signal(sig)
            while !run.stdout.contains("got \(name)") && Date() < deadline { usleep(20_000) }
            #expect(run.stdout.contains("got \(name)"), "SIG\(name) did not reach the payload; stdout: \(run.stdout)")
        }
        run.signal(SIGUSR1)
        let t = try run.waitForExit(timeout: 20)
        #expect(t == .exited(7), "\(t): \(run.stdout) \(run.stderr)")
    }
}
