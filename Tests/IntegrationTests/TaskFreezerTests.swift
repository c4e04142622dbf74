// TaskFreezer (record --freeze): a process that ends between the listing and its seize is
// gone, not a refusal. The kernel refuses to attach to an exited task with EPERM, the errno of
// a real refusal, so `record --freeze` of a tree whose children keep exiting failed now and
// then ("cannot be frozen ... EPERM").

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import CRestoreShim
@testable import RestoreEngine
import Testing

@Suite("TaskFreezer: an ended process is gone, not refused")
struct TaskFreezerTests {
    @Test("a zombie, listed while it ran, is .gone (the kernel says EPERM for it)")
    func zombieIsGone() throws {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { argv.forEach { free($0) } }
        #expect(posix_spawn(&pid, "/bin/true", nil, nil, argv, environ) == 0)
        let start = try #require(StatLine.read(pid)?.startTime, "the child's stat line")
        // Exited, not reaped: a zombie from here on.
        var info = siginfo_t()
        #expect(waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == 0)
        #expect(StatLine.read(pid)?.state == "Z")
        // The refusal it would be taken for, had the freezer not looked: EPERM, as the kernel says.
        #expect(seizeErrno(pid) == EPERM)
        let freezer = TaskFreezer()
        #expect(freezer.freeze(pid, startTime: start) == .gone)
        #expect(freezer.frozen[pid]?.tids.isEmpty ?? true)
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
    }
}

/// What PTRACE_SEIZE answers for `pid` (0: attached, then detached at once; else the errno).
private func seizeErrno(_ pid: pid_t) -> Int32 {
    let r = rr_ptrace(RR_PTRACE_SEIZE, pid, 0, 0, nil)
    if r == 0 { _ = rr_ptrace(RR_PTRACE_DETACH, pid, 0, 0, nil); return 0 }
    return Int32(-r)
}
