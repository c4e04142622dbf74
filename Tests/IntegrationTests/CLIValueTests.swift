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
