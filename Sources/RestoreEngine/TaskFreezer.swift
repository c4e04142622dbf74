import CRestoreShim
import Glibc
import RestoreModel

/// Stops the tasks of live processes with PTRACE_SEIZE + PTRACE_INTERRUPT, which, unlike
/// SIGSTOP, is no job-control stop: the parent gets no SIGCHLD/WUNTRACED report, a shell marks
/// no job "Stopped", and a task that was already stopped stays stopped after the detach.
/// No signal is ever sent. The thread that freezes is the tracer: every call must come from it.
///
/// If `record` is killed (even by SIGKILL) the kernel detaches every tracee, which resumes
/// as it was (exit_ptrace/__ptrace_unlink); the only unsafe moment is in the middle of a
/// syscall injection (`childSubreaper`), which is why terminating signals are blocked for the
/// whole recording (`SignalGuard`). SIGKILL cannot be blocked: landing mid-injection, it leaves
/// that one task to resume at the injected `syscall; int3` with the injected registers, and
/// the int3 kills it with SIGTRAP (seen in the kernel log as "trap int3"). The window is the
/// few ptrace calls of one injection per process, longer only if `record` is preempted there.
final class TaskFreezer {
    struct Frozen {
        var pidfd: Int32
        var startTime: UInt64
        var tids: [Int32]
        /// Threads caught in a signal-delivery stop (a signal on its way as they were seized):
        /// the signal, handed back when they are detached, so none is lost.
        var signals: [Int32: Int32] = [:]
        /// Threads that ran an injected system call: they end in an interrupt stop, where a
        /// detach cannot deliver a signal, so theirs is sent again through the pidfd.
        var injected: Set<Int32> = []
        /// Stopped with SIGSTOP to be taken from a restore's fork supervisor (stopTracedByRestore):
        /// continued after the detach.
        var stoppedForTracer = false
    }

    enum Outcome: Equatable {
        case frozen
        /// The process ended or its PID now belongs to another process.
        case gone
        /// ptrace refused (errno): Yama, a non-dumpable process, another user's, a tracer already.
        case refused(Int32)
        /// Some thread did not reach the stop in time.
        case timedOut(Int32)
    }

    private(set) var frozen: [Int32: Frozen] = [:]
    /// How long one process may take to reach its stop (a task in uninterruptible sleep).
    var stopTimeoutNanoseconds: UInt64 = 2_000_000_000

    deinit { thawAll() }

    /// Seizes and interrupts every thread of `pid`, if it is still the process that started at
    /// `startTime`, and waits until all of them are in their ptrace stop.
    func freeze(_ pid: Int32, startTime: UInt64) -> Outcome {
        if frozen[pid] != nil { return .frozen }
        let fd = rr_pidfd_open(pid)
        guard fd >= 0 else { return fd == -EPERM ? .refused(EPERM) : .gone }
        // The pidfd now names one process for good; the start time says it is the one recorded.
        guard StatLine.read(pid)?.startTime == startTime else { close(fd); return .gone }
        var entry = Frozen(pidfd: fd, startTime: startTime, tids: [])
        var pendingStop: Set<Int32> = []
        // Threads may be created while the first ones are seized: list until nothing is new.
        for _ in 0..<8 {
            let fresh = Self.threads(of: pid).filter { !entry.tids.contains($0) }
            if fresh.isEmpty { break }
            for tid in fresh {
                var r = rr_ptrace(RR_PTRACE_SEIZE, tid, 0, 0, nil)
                if r == -Int(EPERM) && tid == pid && !entry.stoppedForTracer && Self.stopTracedByRestore(pid, pidfd: fd) {
                    entry.stoppedForTracer = true
                    r = rr_ptrace(RR_PTRACE_SEIZE, tid, 0, 0, nil)
                }
                if r == -Int(ESRCH) { continue }
                // A thread that has just ended (a zombie, or being reaped) is refused with EPERM,
                // not ESRCH: it changes nothing any more, as a gone one.
                if r == -Int(EPERM) && Self.hasEnded(tid) { continue }
                if r < 0 {
                    frozen[pid] = entry
                    thaw(pid)
                    return .refused(Int32(-r))
                }
                entry.tids.append(tid)
                _ = rr_ptrace(RR_PTRACE_INTERRUPT, tid, 0, 0, nil)
                pendingStop.insert(tid)
            }
        }
        frozen[pid] = entry
        let deadline = MonotonicClock.nanoseconds() + stopTimeoutNanoseconds
        while !pendingStop.isEmpty {
            for tid in pendingStop {
                var status: Int32 = 0
                let r = rr_wait_traced(tid, &status, 1)
                if r == Int(tid) {
                    if rr_wifstopped(status) != 0 {
                        pendingStop.remove(tid)
                        let sig = (status >> 8) & 0xff
                        if rr_ptrace_event(status) == 0 && sig != SIGTRAP { frozen[pid]?.signals[tid] = sig }
                    }
                    else { pendingStop.remove(tid); frozen[pid]?.tids.removeAll { $0 == tid } } // the thread ended
                } else if r < 0 {
                    pendingStop.remove(tid)
                    frozen[pid]?.tids.removeAll { $0 == tid }
                }
            }
            if pendingStop.isEmpty { break }
            if MonotonicClock.nanoseconds() > deadline {
                let late = pendingStop.sorted()[0]
                thaw(pid)
                return .timedOut(late)
            }
            var ts = timespec(tv_sec: 0, tv_nsec: 200_000)
            nanosleep(&ts, nil)
        }
        // Still the same process (a seized task's PID cannot be reused while we trace it)?
        guard rr_pidfd_send_signal(fd, 0) == 0, StatLine.read(pid)?.startTime == startTime,
              !(frozen[pid]?.tids.isEmpty ?? true) else {
            thaw(pid)
            return .gone
        }
        return .frozen
    }

    /// Whether task `tid` has ended: reaped, or exited (ptrace_attach refuses a task whose
    /// exit_state is set with EPERM).
    static func hasEnded(_ tid: Int32) -> Bool {
        guard let s = StatLine.read(tid) else { return true }
        return s.state == "Z" || s.state == "X"
    }

    /// Detaches every thread of `pid`: each resumes exactly as it was (a stopped one stays stopped).
    func thaw(_ pid: Int32) {
        guard let entry = frozen.removeValue(forKey: pid) else { return }
        var resend: [Int32] = []
        for tid in entry.tids {
            let sig = entry.signals[tid] ?? 0
            if sig != 0 && entry.injected.contains(tid) { resend.append(sig) }
            _ = rr_ptrace(RR_PTRACE_DETACH, tid, 0, UInt64(entry.injected.contains(tid) ? 0 : sig), nil)
        }
        // To the same process only: a pidfd never names a reused PID.
        for sig in resend { _ = rr_pidfd_send_signal(entry.pidfd, sig) }
        if entry.stoppedForTracer { _ = rr_pidfd_send_signal(entry.pidfd, SIGCONT) }
        close(entry.pidfd)
    }

    /// A forker of a restored tree is traced by that restore's fork supervisor (the runtime's
    /// own binary), which detaches it when it stops (InterruptedForkRestart): SIGSTOP, then
    /// wait (at most the stop timeout) until it is stopped and untraced. Anything else that
    /// traces it (a debugger) is left alone: false.
    static func stopTracedByRestore(_ pid: Int32, pidfd: Int32) -> Bool {
        func tracer() -> Int32 {
            guard let bytes = SystemCalls.readFile("/proc/\(pid)/status"),
                  let word = ProcStatus.field("TracerPid", in: String(decoding: bytes, as: UTF8.self))?.first else { return 0 }
            return Int32(word) ?? 0
        }
        let by = tracer()
        guard by > 0, let ours = ForkSupervisor.exe(of: getpid()), ForkSupervisor.exe(of: by) == ours else { return false }
        guard rr_pidfd_send_signal(pidfd, SIGSTOP) == 0 else { return false }
        let deadline = MonotonicClock.nanoseconds() + 2_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            if tracer() == 0, StatLine.read(pid)?.state == "T" { return true }
            var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&ts, nil)
        }
        _ = rr_pidfd_send_signal(pidfd, SIGCONT)
        return false
    }

    func thawAll() {
        for pid in Array(frozen.keys) { thaw(pid) }
    }

    /// The PR_SET_CHILD_SUBREAPER flag of a frozen process, read by running
    /// `prctl(PR_GET_CHILD_SUBREAPER, &flag)` inside one of its threads. nil and the reason
    /// when it cannot be read.
    func childSubreaper(of pid: Int32) -> (flag: Bool?, reason: String?) {
        guard let entry = frozen[pid] else { return (nil, "not frozen") }
        #if arch(x86_64)
        guard let code = Self.executableArea(of: pid) else { return (nil, "no executable mapping to run a system call from") }
        // The main thread if it is alive, else any thread (the flag belongs to the process).
        let tid = entry.tids.contains(pid) ? pid : entry.tids[0]
        frozen[pid]?.injected.insert(tid)
        var result = 0
        var scratch: UInt64 = 0
        let args: [UInt64] = [UInt64(RR_PR_GET_CHILD_SUBREAPER), 0, 0, 0, 0, 0]
        let r = args.withUnsafeBufferPointer { rr_inject_syscall(tid, code, rr_sys_prctl, $0.baseAddress, 1, &result, &scratch) }
        switch r {
        case 0 where result == 0: return (UInt32(truncatingIfNeeded: scratch) != 0, nil)
        case 0: return (nil, "prctl(PR_GET_CHILD_SUBREAPER) failed inside it: \(ErrnoName.describe(Int32(-result)))")
        case -Int32(EXDEV): return (nil, "a 32-bit task: system call injection is x86_64 only")
        case -Int32(ESRCH): frozen[pid]?.tids.removeAll { $0 == tid }; return (nil, "it ended")
        default: return (nil, "system call injection failed: \(ErrnoName.describe(-r))")
        }
        #else
        return (nil, "system call injection is implemented for x86_64 only")
        #endif
    }

    static func threads(of pid: Int32) -> [Int32] {
        guard let dir = opendir("/proc/\(pid)/task") else { return [] }
        defer { closedir(dir) }
        var tids: [Int32] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let t = Int32(name) { tids.append(t) }
        }
        return tids.sorted()
    }

    /// The start of the first executable file mapping (not [vdso]/[vsyscall]): where CRIU's
    /// compel also puts its syscall instruction, away from the interrupted IP.
    static func executableArea(of pid: Int32) -> UInt64? {
        guard let maps = SystemCalls.readText("/proc/\(pid)/maps") else { return nil }
        for line in maps.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 6, f[1].hasPrefix("r-x"), f[5].hasPrefix("/") else { continue }
            if let dash = f[0].firstIndex(of: "-"), let start = UInt64(f[0][..<dash], radix: 16) { return start }
        }
        return nil
    }
}

/// Blocks the terminating and job-control signals while `record` holds processes frozen, so
/// none of them can end or stop `record` before it has thawed the tree. `pending()` lets the
/// work stop early; `release()` thaws nothing itself: call it after thawing, and a pending
/// SIGINT/SIGTERM/SIGHUP/SIGQUIT then takes effect with its default action.
final class SignalGuard {
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU]
    private var old = sigset_t()
    private var active = false

    init() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in Self.signals { sigaddset(&set, s) }
        active = rr_block_signals(&set, &old) == 0
    }

    /// A terminating signal that arrived meanwhile (not the job-control ones).
    func pending() -> Int32? {
        var set = sigset_t()
        sigemptyset(&set)
        guard sigpending(&set) == 0 else { return nil }
        return [SIGINT, SIGTERM, SIGHUP, SIGQUIT].first { sigismember(&set, $0) == 1 }
    }

    func release() {
        guard active else { return }
        active = false
        _ = rr_set_signal_mask(&old)
    }
}
