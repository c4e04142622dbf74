// Every value on the command line is checked before anything is created: a bad one is a usage
// error (64) naming the option, with no namespace and no process made.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("command-line values are refused before anything is created", .serialized)
struct CLIValueTests {
    @Test("run: --step-timeout, --report, --pin-log, --criu-cores", .enabled(if: Prerequisites.userNamespacesWork))
    func runValues() throws {
        let cases: [([String], String)] = [
            (["--step-timeout", "nan"], "--step-timeout"),
            (["--step-timeout", "inf"], "--step-timeout"),
            (["--step-timeout", "1e20"], "--step-timeout"),
            (["--step-timeout", "-1"], "--step-timeout"),
            (["--step-timeout", "0"], "--step-timeout"),
            (["--report", "/nonexistent-rr/report.json"], "--report"),
            (["--report", "/"], "--report"),
            (["--pin-log", "/nonexistent-rr/pins.log"], "--pin-log"),
            (["--pin-log", "-"], "--pin-log"),
            (["--criu-cores", "/nonexistent-rr"], "--criu-cores"),
        ]
        for (extra, option) in cases {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let tree = TestTree.flat(top: 100, children: [101, 102], comment: "holders")
            try run.start(["run"] + extra + [try run.write("tree.json", tree.json())])
            let end = try run.waitForExit(timeout: 30)
            #expect(end == .exited(64), "\(extra): stderr: \(run.stderr)")
            #expect(run.stderr.contains(option), "\(extra): the message should name \(option): \(run.stderr)")
            #expect(run.mostNamespaceProcessesSeen == 0, "\(extra): processes were created")
            run.tearDown()
        }
    }
}

@Suite("a seccomp profile that blocks capset", .serialized)
struct CapsetProfileTests {
    static func tree(_ action: String, noNewPrivileges: Bool) -> Data {
        Data("""
            {"version": 1, "processes": [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {
              "args": ["/bin/true"], "env": ["PATH=/usr/bin:/bin"], "noNewPrivileges": \(noNewPrivileges),
              "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
              "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["capset"], "action": "\(action)"}]}}}]}
            """.utf8)
    }

    @Test("is refused with a message naming the rule, before anything is created; with noNewPrivileges it runs",
          .enabled(if: Prerequisites.userNamespacesWork))
    func capsetBlocked() throws {
        for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO"] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.startRun(treeFile: try run.write("tree.json", Self.tree(action, noNewPrivileges: false)))
            let end = try run.waitForExit(timeout: 60)
            #expect(end == .exited(65), "\(action): \(end), stderr: \(run.stderr)")
            #expect(run.stderr.contains("process.seccomp.syscalls[0] (\(action)) refuses capset") && run.stderr.contains("noNewPrivileges"),
                    "\(action): stderr: \(run.stderr)")
            #expect(run.mostNamespaceProcessesSeen == 0, "\(action): processes were created")
            run.tearDown()
        }
        // With no_new_privs the filter is loaded last: the same profile works.
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Self.tree("SCMP_ACT_KILL_PROCESS", noNewPrivileges: true)))
        #expect(try run.waitForExit(timeout: 60) == .exited(0), "stderr: \(run.stderr)")
        run.tearDown()
    }
}
