// A tree whose own PID 1 runs a payload that forks pinned children (a container whose PID 1 is
// a launcher such as mpirun): the fork supervisor runs beside PID 1 (OutsideSupervisor), so
// PID 1's forks get their recorded PIDs. Checked from /proc.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("PID 1's payload forks pinned children", .serialized)
struct PidOnePayloadTests {
    static func tree(_ script: String) -> Data {
        let json = """
            {"version": 1, "comment": "PID 1 is a launcher", "processes": [
              {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1,
               "process": {"args": ["/bin/sh", "-c", \(String(reflecting: script))], "env": ["PATH=/usr/bin:/bin"]}},
              {"pid": 40, "ppid": 1, "pgid": 1, "sid": 1, "spawn": "payload",
               "recorded": {"exe": "/usr/bin/sleep", "cmdline": ["sleep", "1001"]}},
              {"pid": 41, "ppid": 1, "pgid": 1, "sid": 1, "spawn": "payload",
               "recorded": {"exe": "/usr/bin/sleep", "cmdline": ["sleep", "1002"]}}
            ]}
            """
        return Data(json.utf8)
    }

    @Test("sh as PID 1 starts two jobs: they get PIDs 40 and 41, matched; the supervisor is nobody's child",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pidOneForksPinned() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let file = try run.write("tree.json", Self.tree("sleep 1001 & sleep 1002 & wait"))
        try run.startRun(treeFile: file, extra: ["--pin-mismatch", "error", "--pin-log", run.directory + "/pins.log"])
        try run.waitUntilReady()
        let seen = try run.waitForNamespace(timeout: 20, "both jobs") { now in
            now.contains { $0.pid == 40 && $0.host.commandLine == "sleep 1001" }
                && now.contains { $0.pid == 41 && $0.host.commandLine == "sleep 1002" }
        }
        #expect(seen.first { $0.pid == 40 }?.ppid == 1 && seen.first { $0.pid == 41 }?.ppid == 1, "\(seen)")
        #expect(seen.first { $0.pid == 1 }?.host.commandLine.hasPrefix("/bin/sh") == true, "\(seen)")
        let others = seen.filter { ![1, 40, 41].contains($0.pid) && !$0.isForkReceiver }
        #expect(others.count == 1 && others[0].ppid == 0 && others[0].pid > 41, "the supervisor: \(others)")
        try run.waitForNamespace(timeout: 20, "2 checks") { _ in readText(run.directory + "/pins.log").components(separatedBy: "\"matched\": true").count == 3 }
    }

    @Test("a mismatch under --pin-mismatch error ends the restore with 125, PID 1 included",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pidOneMismatch() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let file = try run.write("tree.json", Self.tree("sleep 1002 & sleep 1001 & wait"))
        try run.startRun(treeFile: file, extra: ["--pin-mismatch", "error"])
        let end = try run.waitForExit(timeout: 30)
        #expect(end == .exited(125), "run: \(end)\n\(run.stderr)")
        #expect(run.stderr.contains("process #1 (pid 40): pin mismatch"), "\(run.stderr)")
    }
}
