import CRestoreShim
import Glibc

/// The child side: the code every restored process runs between its clone and its exec. It
/// waits for the coordinator's commands in its control slot and answers on the shared socket.
///
/// The rule: no allocation, no locks, no Swift runtime services between clone and exec. The
/// coordinator is single-threaded when it clones (asserted), every buffer used here was
/// prepared beforehand (PreparedWorld), and a puppet only makes system calls on them. Every
/// puppet but the init shares the init's address space (and its thread-local storage), each on
/// its own stack: that is what makes the rule necessary, not just tidy. A
/// failing puppet reports stage + errno and ends with `_exit`. The integration test
/// ChildSideTests runs restores under an LD_PRELOAD guard that kills any puppet that
/// allocates. Only a forked runtime init, once released, leaves the child side (InitLoop); one
/// that shares the coordinator's memory (PuppetWorld.sharedInit) stays on it until it exits.
enum Puppet {
    static func run(_ world: PuppetWorld, as start: Int, seen initialSeen: UInt32) -> Never {
        let me = start
        var seen = initialSeen
        // The init's host PID is the clone's result and its setup's answer says it is up: its
        // "ready" would only wake the coordinator once more.
        if me != 0 { answer(world, me, .ready, value: Int32(truncatingIfNeeded: rr_getpid())) }
        commands: while true {
            let (command, a, b) = world.control.wait(me, seen: &seen)
            if me == world.faultNode { commitTestingFault(world, me) }
            switch command {
            case .none:
                continue
            case .forkBatch:
                for i in 0..<Int(b) {
                    let child = Int(world.forkList[Int(a) + i])
                    let pid = clone(world, child)
                    if pid < 0 {
                        if pid != -Int(ECANCELED) { answer(world, child, .failed, stage: .clone3, value: Int32(-pid)) }
                        break
                    }
                }
            case .setupNamespace:
                // With the first fork: the child's answers say the setup went well.
                if setUpNamespace(world, me, neededPidMax: a, answers: b == 0) && b > 0 { fork(world, Int(b) - 1) }
            case .fork:
                fork(world, Int(a))
            case .setsid:
                let sid = rr_setsid()
                if sid < 0 { fail(world, me, .setsid, Int32(-sid)); break }
                let e = TerminalAttachment.takeControlling(world, me)
                if e != 0 { answer(world, me, .failed, stage: .controllingTerminal, value: e) } else { answer(world, me, .done) }
            case .setForeground:
                let e = TerminalAttachment.setForeground(world, terminal: a, pgrp: b)
                if e != 0 { answer(world, me, .failed, stage: .foreground, value: e) } else { answer(world, me, .done) }
            case .setpgid:
                let r = rr_setpgid(0, a)
                if r < 0 { fail(world, me, .setpgid, -r) } else { answer(world, me, .done) }
            case .setChildSubreaper:
                let r = rr_prctl_set_child_subreaper(1)
                if r < 0 { answer(world, me, .failed, stage: .subreaper, value: -r) } else { answer(world, me, .done) }
            case .exit:
                _exit(a)
            case .die:
                die(a)
            case .reap:
                var status: Int32 = 0
                let r = rr_wait4(a, &status, 0)
                let e = r < 0 ? Int32(-r) : 0
                if e != 0 { answer(world, me, .failed, stage: .reap, value: e) } else { answer(world, me, .done) }
            case .awaitZombie:
                let r = rr_wait_exited_nowait(a)
                if r < 0 { answer(world, me, .failed, stage: .awaitZombie, value: -r) } else { answer(world, me, .done) }
            case .noise:
                // Competes for PIDs with the restore (benchmarks of the dance's race); stops
                // as soon as a new command is posted, which the next wait then returns.
                while world.control.sequence(me) == seen {
                    let pid = rr_fork_flags(0, SIGCHLD)
                    if pid == 0 { rr_child_side_enter(); _exit(0) }
                    if pid > 0 {
                        var status: Int32 = 0
                        _ = rr_wait4(pid_t(pid), &status, 0)
                    }
                }
            case .release:
                release(world, me)
            case .startThreads:
                if startThreads(world, me, report: true) { answer(world, me, .done) }
            }
        }
    }

    /// `fork`: creates node `child`; a failure is its answer.
    static func fork(_ world: PuppetWorld, _ child: Int) {
        let pid = clone(world, child)
        if pid < 0 && pid != -Int(ECANCELED) {
            answer(world, child, .failed, stage: .clone3, value: Int32(-pid))
        }
    }

    /// Creates node `child` with its PIDs: clone3 with set_tid, or the ns_last_pid dance. The
    /// child shares this address space (CLONE_VM) and starts in `start` on its own stack, so
    /// a fork copies no page tables and links no anonymous memory to its ancestors' (which
    /// made chains quadratic: every level of a chain of forks links to every level above it).
    /// Returns the PID, -errno on failure, -ECANCELED when the failure was already reported.
    static func clone(_ world: PuppetWorld, _ child: Int) -> Int {
        let node = world.nodes[child]
        let stack = world.stacks + child * puppetStackSize
        let arg = UnsafeMutableRawPointer(world.starts + child)
        if world.useDance {
            // The next PID the kernel hands out in this namespace is ns_last_pid + 1. Safe only
            // because the coordinator serialises every fork in the namespace.
            let e = writeNumber(world, world.strings.nsLastPid, node.dancePid - 1)
            if e != 0 {
                fail(world, child, .nsLastPid, e)
                return -Int(ECANCELED)
            }
            return rr_clone_shared(node.cloneFlags, SIGCHLD, stack, puppetStackSize, { Puppet.start($0) }, arg)
        }
        return rr_clone3_shared(node.cloneFlags, SIGCHLD, node.setTid, node.setTidCount,
                                stack, puppetStackSize, { Puppet.start($0) }, arg)
    }

    /// Where every puppet but the init begins, right after its clone.
    static func start(_ raw: UnsafeMutableRawPointer?) {
        rr_child_side_enter()
        let start = raw!.assumingMemoryBound(to: PuppetStart.self).pointee
        let world = start.world.pointee
        let me = start.node
        // A node's slot starts at sequence 0; a command posted before the node existed (its
        // own next step, TreeBuilder) is run as soon as it has said it is ready.
        let seen: UInt32 = 0
        if world.nodes[me].mountsProc { mountFreshProc(world, me) }
        run(world, as: me, seen: seen)
    }

    /// Where the namespace's init begins when it shares the coordinator's address space
    /// (PuppetWorld.sharedInit), on node 0's stack: as the forked init does (LiveNamespace.start),
    /// with raw calls only. It stays on the child side until it exits.
    static func startSharedInit(_ raw: UnsafeMutableRawPointer?) {
        rr_child_side_enter()
        let start = raw!.assumingMemoryBound(to: PuppetStart.self).pointee
        let world = start.world.pointee
        _ = rr_close(world.coordinatorFD)
        if world.fault == .slowInitStart {
            var word: UInt32 = 0
            _ = rr_futex_wait(&word, 0, 1000)
        }
        // If the runtime dies, so does the namespace: armed, then the runtime's end checked.
        _ = rr_prctl_set_pdeathsig(SIGKILL)
        if rr_peer_closed(world.answerFD) != 0 { _exit(1) }
        // Slot 0 is at sequence 0 here: the setup command the coordinator posts right after
        // the clone is seen whenever it comes.
        run(world, as: start.node, seen: 0)
    }

    /// Testing aid (`--testing-fault`): break the child side's rules on purpose.
    static func commitTestingFault(_ world: PuppetWorld, _ me: Int) {
        switch world.fault {
        case .puppetAllocates:
            // Longer than a small string, so it lives on the heap.
            let text = "rootless-restore testing aid: puppet \(me) allocates between clone and exec\n"
            _ = text.withCString { write(2, $0, strlen($0)) }
        case .initAllocates:
            break
        case .puppetCrashes:
            UnsafeMutablePointer<Int>(bitPattern: 8)!.pointee = me
        case .none, .slowInitStart, .pauseMidRestore, .initFileLimit, .slowReceive:
            break
        }
    }

    static func answer(_ world: PuppetWorld, _ node: Int, _ kind: PuppetAnswer.Kind,
                       stage: PuppetStage? = nil, value: Int32 = 0) {
        var record = PuppetAnswer(node: Int32(node), kind: kind.rawValue, stage: stage?.rawValue ?? 0, value: value)
        _ = withUnsafeBytes(of: &record) { rr_send_record(world.answerFD, $0.baseAddress, $0.count) }
    }

    /// `e`: the errno the failing call returned (raw: puppets share one errno variable).
    static func fail(_ world: PuppetWorld, _ node: Int, _ stage: PuppetStage, _ e: Int32) {
        answer(world, node, .failed, stage: stage, value: e)
    }

    /// Init only, after the coordinator wrote the id maps: private mounts, a /proc for the new
    /// PID namespace, and a pid_max large enough for the tree. False: failed (answered so).
    static func setUpNamespace(_ world: PuppetWorld, _ me: Int, neededPidMax: Int32, answers: Bool) -> Bool {
        if !mountFreshProc(world, me) { return false }
        if world.terminalCount > 0 && !mountOwnDevpts(world, me) { return false }
        if neededPidMax > 0 { let e = ensurePidMax(world, neededPidMax); if e != 0 { fail(world, me, .pidMax, e); return false } }
        if answers { answer(world, me, .done) }
        return true
    }

    @discardableResult
    static func mountFreshProc(_ world: PuppetWorld, _ me: Int) -> Bool {
        let s = world.strings
        var r = rr_mount(nil, s.root, nil, UInt(MS_REC | MS_PRIVATE), nil)
        if r < 0 { fail(world, me, .mountPrivate, -r); return false }
        r = rr_mount(s.proc, s.procDir, s.proc, UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil)
        if r < 0 {
            fail(world, me, .mountProc, -r)
            return false
        }
        return true
    }

    /// For trees with terminals: a devpts instance of the namespace's own on /dev/pts, and
    /// /dev/ptmx leading to it, so the restore's ptys (and any a payload opens) live there.
    static func mountOwnDevpts(_ world: PuppetWorld, _ me: Int) -> Bool {
        let s = world.strings
        var r = rr_mount(s.devpts, s.devptsDir, s.devpts, UInt(MS_NOSUID | MS_NOEXEC), s.devptsOptions)
        if r < 0 {
            fail(world, me, .mountDevpts, -r)
            return false
        }
        r = rr_mount(s.ptsPtmx, s.ptmx, nil, UInt(MS_BIND), nil)
        if r < 0 { fail(world, me, .bindPtmx, -r); return false }
        return true
    }

    /// Reads this namespace's pid_max and raises it when the tree needs more. 0 or errno.
    static func ensurePidMax(_ world: PuppetWorld, _ needed: Int32) -> Int32 {
        let fd = rr_open(world.strings.pidMax, O_RDWR | O_CLOEXEC)
        if fd < 0 { return -fd }
        defer { _ = rr_close(fd) }
        let buf = world.scratch
        let n = rr_read(fd, buf, 31)
        if n <= 0 { return n < 0 ? Int32(-n) : EIO }
        var current: Int32 = 0
        for i in 0..<n where buf[i] >= 48 && buf[i] <= 57 { current = current * 10 + Int32(buf[i] - 48) }
        if current >= needed { return 0 }
        let (start, length) = formatDecimal(world, needed)
        let w = rr_pwrite(fd, start, length, 0)
        return w == length ? 0 : (w < 0 ? Int32(-w) : EIO)
    }

    /// Formats a non-negative number, newline-terminated, at the end of the scratch buffer.
    static func formatDecimal(_ world: PuppetWorld, _ value: Int32) -> (UnsafeMutablePointer<UInt8>, Int) {
        let buf = world.scratch + 32
        var v = max(value, 0)
        var pos = 31
        buf[pos] = 10
        repeat { pos -= 1; buf[pos] = UInt8(48 + v % 10); v /= 10 } while v > 0
        return (buf + pos, 32 - pos)
    }

    /// Writes a number to a /proc/sys file with one write(2). 0 or errno.
    static func writeNumber(_ world: PuppetWorld, _ path: UnsafeMutablePointer<CChar>, _ value: Int32) -> Int32 {
        let fd = rr_open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { return -fd }
        defer { _ = rr_close(fd) }
        let (start, length) = formatDecimal(world, value)
        let w = rr_write(fd, start, length)
        return w == length ? 0 : (w < 0 ? Int32(-w) : EIO)
    }

    /// Recreates a holding process's recorded threads with their TIDs; they sleep until the
    /// process ends. Reports (always when `report`, else unless it is to stop) and returns false
    /// on failure. clone3 with set_tid; under the dance (no clone3), the legacy clone after
    /// writing ns_last_pid, posted by the coordinator while nothing else forks, TIDs checked.
    static func startThreads(_ world: PuppetWorld, _ me: Int, report: Bool = false) -> Bool {
        let node = world.nodes[me]
        guard node.threadCount > 0, let tids = node.threadTids, let stacks = node.threadStacks else { return true }
        let flags = RR_CLONE_VM | RR_CLONE_FS | RR_CLONE_FILES | RR_CLONE_SIGHAND | RR_CLONE_THREAD | RR_CLONE_SYSVSEM
        for t in 0..<node.threadCount {
            let tid = tids[t * node.setTidCount]
            if world.useDance, case let e = writeNumber(world, world.strings.nsLastPid, tid - 1), e != 0 {
                if report || !node.stopped { fail(world, me, .nsLastPid, e) }
                return false
            }
            let r = world.useDance
                ? rr_clone_thread(flags, stacks[t], parkedThreadStackSize, rr_thread_park, nil)
                : rr_clone3_thread(flags, tids + t * node.setTidCount, node.setTidCount,
                                   stacks[t], parkedThreadStackSize, rr_thread_park, nil)
            if r < 0 || (world.useDance && r != Int(tid)) {
                if report || !node.stopped {
                    answer(world, me, .failed, stage: r < 0 ? .threads : .threadTid, value: Int32(truncatingIfNeeded: r < 0 ? -r : r))
                }
                return false
            }
        }
        return true
    }

    static func applyIdentity(_ world: PuppetWorld, _ me: Int) -> Bool {
        let node = world.nodes[me]
        guard let identity = node.identity, let (stage, e) = ProcessIdentity.apply(identity) else { return true }
        if node.stopped {
            rr_say_failed(node.failureLabel, world.strings.identityFailedStopped, e)
        } else {
            answer(world, me, .failed, stage: stage, value: e)
        }
        return false
    }

    /// Zombie-to-be: exit with code -a, or die of signal a with the default action.
    static func die(_ a: Int32) -> Never {
        if a > 0 {
            _ = rr_reset_signal_dispositions()
            var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
            _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
            var empty = sigset_t()
            sigemptyset(&empty)
            _ = rr_set_signal_mask(&empty)
            _ = rr_kill(pid_t(truncatingIfNeeded: rr_getpid()), a)
            _exit(128 + a)
        }
        _exit(-a)
    }

    /// Become what the tree recorded.
    static func release(_ world: PuppetWorld, _ me: Int) -> Never {
        let node = world.nodes[me]
        if node.kind == .runtimeInit {
            _ = rr_close(world.answerFD)
            // A forked init has its own memory and may allocate from here on (its stack, the
            // main one, is exempted from the guard); one sharing the coordinator's may not.
            if !world.sharedInit { rr_child_side_leave() }
            if world.fault == .initAllocates { InitLoop.allocateOnPurpose() }
            InitLoop.runtimeInit(world)
        }
        let terminalError = TerminalAttachment.attachStdio(world, me)
        if terminalError != 0 {
            answer(world, me, .failed, stage: .terminalStdio, value: terminalError)
            _exit(126)
        }
        _ = rr_reset_signals(world.changedSignals, world.changedSignalCount)
        var empty = sigset_t()
        sigemptyset(&empty)
        if node.stopped {
            // A stopped holder's threads exist before it stops (they stop with it), reported
            // while the socket is still open.
            if node.path == nil {
                if !world.useDance && !startThreads(world, me) { _exit(1) }
                rr_close_all_but(world.answerFD)
                if !applyIdentity(world, me) { _exit(126) }
            }
            // The exec result can no longer be reported once we sleep: give up the socket, and
            // every other descriptor but the supervisor's, which the exec path still needs.
            _ = rr_close(world.answerFD)
            rr_close_all_but(node.path != nil ? (world.supervisor?.sendFD ?? -1) : -1)
            _ = rr_set_signal_mask(&empty)
            _ = rr_kill(pid_t(truncatingIfNeeded: rr_getpid()), SIGSTOP)
        }
        guard let path = node.path else {
            if !node.stopped {
                if !world.useDance && !startThreads(world, me) { _exit(1) }
                // Nothing of the caller's or the runtime's stays open in a holder but 0, 1, 2
                // (and the answer socket until the identity is applied).
                rr_close_all_but(world.answerFD)
                if !applyIdentity(world, me) { _exit(126) }
            }
            if !node.stopped { _ = rr_close(world.answerFD) }
            if node.isNamespaceInit { InitLoop.holdingInit(world) }
            _ = rr_set_signal_mask(&empty)
            while true { pause() }
        }
        if let cwd = node.cwd, case let r = rr_chdir(cwd), r < 0 {
            let e = -r
            if node.stopped { rr_say_failed(node.failureLabel, world.strings.chdirFailedStopped, e) }
            else { answer(world, me, .failed, stage: .chdir, value: e) }
            _exit(127)
        }
        if let supervisor = world.supervisor, let (stage, e) = supervisor.installAndHandOver(node: me) {
            if !node.stopped { answer(world, me, .failed, stage: stage, value: e) }
            _exit(126)
        }
        // The payload inherits 0, 1, 2 only: before the identity (its seccomp filter may refuse
        // close_range); the answer socket still reports a failing exec.
        rr_cloexec_from(3)
        if !applyIdentity(world, me) { _exit(126) }
        if !node.stopped { _ = rr_set_signal_mask(&empty) }
        let waits = node.terminals.awaitForeground > 0 && !node.stopped
        if waits {
            // Released like the rest: the coordinator must not wait for this exec.
            _ = rr_close(world.answerFD)
            TerminalAttachment.awaitForegroundJob(world, me)
        }
        let e = -rr_execve(path, node.argv!, node.envp!)
        if waits { rr_say_failed(node.failureLabel, world.strings.execFailedAfterJob, e) }
        else if node.stopped { rr_say_failed(node.failureLabel, world.strings.execFailedStopped, e) }
        else { answer(world, me, .failed, stage: .exec, value: e) }
        _exit(e == ENOENT ? 127 : 126)
    }
}
