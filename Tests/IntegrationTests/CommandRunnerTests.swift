// CommandRunner, the one helper that runs other programs (newuidmap/newgidmap, tmux): what it
// captures, how it reports an end, and that its deadline leaves nothing behind.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RestoreEngine
import RestoreModel
import Testing

@Suite("CommandRunner: output, exit, signals, deadline")
struct CommandRunnerTests {
    static let env = ["PATH=/usr/bin:/bin"]

    @Test("both streams captured apart, or merged; the exit code kept")
    func capturesOutput() {
        let apart = CommandRunner.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], environment: Self.env, timeout: 10)
        #expect(apart.status == 3 && apart.signal == nil && !apart.timedOut, "\(apart)")
        #expect(apart.output == "out\n" && apart.error == "err\n", "\(apart)")
        #expect(apart.how == "exit code 3")
        let merged = CommandRunner.run(["/bin/sh", "-c", "echo out; echo err >&2"], environment: Self.env, timeout: 10, mergeOutput: true)
        #expect(merged.status == 0 && merged.output == "out\nerr\n" && merged.error.isEmpty, "\(merged)")
    }

    @Test("exactly the given environment, standard input /dev/null, an output limit")
    func environmentAndLimit() {
        let r = CommandRunner.run(["/bin/sh", "-c", "echo \"$MARK\"; cat; head -c 100000 /dev/zero"],
                                  environment: Self.env + ["MARK=m1"], timeout: 10, limit: 1000)
        #expect(r.status == 0 && r.output.hasPrefix("m1\n") && r.output.utf8.count == 1000, "\(r.output.utf8.count)")
    }

    @Test("a signal that ends it is named; a program that cannot start says why")
    func signalAndStartFailure() {
        let killed = CommandRunner.run(["/bin/sh", "-c", "kill -TERM $$"], environment: Self.env, timeout: 10)
        #expect(killed.status == nil && killed.signal == SIGTERM && killed.how == "signal \(SIGTERM)", "\(killed)")
        let missing = CommandRunner.run(["/nonexistent/helper"], environment: Self.env, timeout: 10)
        #expect(missing.startErrno == ENOENT && missing.status == nil && missing.how.contains("ENOENT"), "\(missing)")
    }

    @Test("a helper that exits while a process it left holds the output returns at once")
    func leftoverHoldingOutput() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rr-cmdrunner-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let started = Date()
        let r = CommandRunner.run(["/bin/sh", "-c", "echo before; sleep 30 & echo $! > \(dir)/left; echo after"],
                                  environment: Self.env, timeout: 20)
        let took = Date().timeIntervalSince(started)
        if let text = try? String(contentsOfFile: dir + "/left", encoding: .utf8), let left = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(left, SIGKILL)
        }
        #expect(r.status == 0 && r.output == "before\nafter\n" && !r.timedOut, "\(r)")
        #expect(took < 10, "waited \(took) s for the process it left")
    }

    @Test("at the deadline the helper and what it started are killed")
    func deadlineKillsGroup() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rr-cmdrunner-d\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = CommandRunner.run(["/bin/sh", "-c", "sleep 1000 & echo $! > \(dir)/child; wait"],
                                  environment: Self.env, timeout: 1)
        #expect(r.timedOut && r.status == nil && r.signal == SIGKILL && r.how == "killed at the deadline", "\(r)")
        let child = try #require(pid_t((try String(contentsOfFile: dir + "/child", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        // The group was sent SIGKILL before the helper was reaped: its child dies too (bounded wait
        // for the kernel to finish it; it is reparented and reaped by init or a subreaper).
        var gone = false
        for _ in 0..<200 {
            let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)
            if stat == nil || stat!.contains(") Z ") { gone = true; break }
            usleep(10_000)
        }
        #expect(gone, "the helper's child \(child) outlived the deadline")
    }
}
