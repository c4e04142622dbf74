import CLibcap
import CRestoreShim
import Glibc
import RestoreModel

/// Phase 2: the namespace's PID 1 exists. Owns it: `tearDown` (or dropping the value) kills
/// it, and with it everything in the namespace. Also owns the signalfd through which the
/// coordinator reads the signals it blocked before cloning.
final class LiveNamespace {
    /// The init's PID as the runtime sees it; 0 once reaped.
    private(set) var initHostPid: pid_t
    let signalFD: Int32
    /// The keeper of the fork supervisor when the tree has its own PID 1 (OutsideSupervisor).
    var supervisorKeeper: pid_t = 0
    /// The keeper exited with this code (125: a pin mismatch under --pin-mismatch error).
    private(set) var supervisorExit: Int32?
    /// The ptys of the tree's terminals, held until the namespace ends.
    var terminals: TerminalMasters?
    /// --shell-job: the host PID of the connected terminal's session leader.
    var shellJobLeader: pid_t = 0

    /// When the init shares the coordinator's memory (PuppetWorld.sharedInit): everything it
    /// and its puppets use (their stacks, the world, the control block, the filters) lives in
    /// this world's arena, so the world is freed only after the init is reaped (deinit:
    /// tearDown first), whichever way the restore ends. After the init, nothing of the
    /// namespace is left (the kernel ends every process of a PID namespace with its init).
    private let sharedWorld: PreparedWorld?

    private init(initHostPid: pid_t, signalFD: Int32, sharedWorld: PreparedWorld?) {
        self.initHostPid = initHostPid
        self.signalFD = signalFD
        self.sharedWorld = sharedWorld
    }

    /// Blocks the signals the runtime handles, then clones the namespace init, which starts
    /// as puppet 0. Nothing to undo when it throws.
    static func start(_ world: PreparedWorld) throws -> LiveNamespace {
        var set = world.puppets.initSignals
        var old = sigset_t()
        _ = rr_block_signals(&set, &old)
        let puppets = world.puppets
        let seen = puppets.control.sequence(0)
        let flags = RR_CLONE_NEWUSER | RR_CLONE_NEWPID | RR_CLONE_NEWNS
        var pid: Int
        if puppets.sharedInit {
            // The init runs on node 0's stack in this address space (Puppet.startSharedInit).
            // The allocation guard's flag, which the init sets, is shared too: this (the main)
            // stack is exempted first, so that only the coordinator may allocate.
            rr_child_side_leave()
            pid = rr_clone3_shared(flags, SIGCHLD, nil, 0, puppets.stacks, puppetStackSize,
                                   { Puppet.startSharedInit($0) }, UnsafeMutableRawPointer(puppets.starts))
        } else {
            // Without clone3 (older kernels, or a profile that hides it): the legacy clone.
            pid = puppets.useDance ? -Int(ENOSYS) : rr_clone3(flags, SIGCHLD, nil, 0)
            if pid == -Int(ENOSYS) { pid = rr_fork_flags(flags, SIGCHLD) }
        }
        if pid == 0 {
            // The namespace init. If the runtime dies, so does the namespace: the signal is
            // armed, then the runtime's end of the socket checked, so that a runtime killed
            // before the arming is noticed too (its end closed: only it held it).
            rr_child_side_enter()
            close(puppets.coordinatorFD)
            if puppets.fault == .slowInitStart {
                var second = timespec(tv_sec: 1, tv_nsec: 0)
                nanosleep(&second, nil)
            }
            _ = rr_prctl_set_pdeathsig(SIGKILL)
            if rr_peer_closed(puppets.answerFD) != 0 { _exit(1) }
            Puppet.run(puppets, as: 0, seen: seen)
        }
        if pid < 0 { throw environmentError(errno: Int32(-pid), legacyClone: puppets.useDance || pid == -Int(ENOSYS)) }
        world.arena.close(fd: puppets.answerFD)
        let sfd = signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        return LiveNamespace(initHostPid: pid_t(pid), signalFD: sfd, sharedWorld: puppets.sharedInit ? world : nil)
    }

    /// The id maps written from outside and the capabilities checked, both as soon as the
    /// clone returned (the process exists, its namespaces too); then the init's private mounts,
    /// /proc and pid_max, posted at once: the init finds the command when it starts waiting,
    /// without a round trip through the coordinator. When the plan starts
    /// with the init forking one child, and no terminal must be opened first (TerminalMasters,
    /// once the devpts exists), that fork goes with the setup; returns whether it did
    /// (TreeBuilder then only awaits the child).
    func setUp(_ world: PreparedWorld, _ channel: PuppetChannel, tree: ProcessTree) throws -> Bool {
        try world.maps.write(to: initHostPid)
        try checkCapabilities()
        let maxPid = world.plan.nodes.flatMap(\.nspid).max() ?? 1
        var firstFork: Int32 = 0
        if tree.terminals.isEmpty, world.forkBatches[0] == nil, world.noiseNodes.isEmpty,
           case .fork(0, let child)? = world.plan.steps.first {
            firstFork = Int32(child) + 1
        }
        world.puppets.control.post(0, .setupNamespace, maxPid + 1, firstFork)
        // The init says nothing when it is up (its PID is the clone's), and nothing after its
        // setup when it forks next: the coordinator sleeps until the first answer it needs,
        // the setup's or the child's (a failure is answered in either case).
        if firstFork == 0 { _ = try channel.awaitAnswer(from: 0, expecting: .done) }
        return firstFork > 0
    }

    /// The init's exit status if it has ended (reaped now), else nil.
    func reapIfExited() -> Int32? {
        guard initHostPid > 0 else { return nil }
        var status: Int32 = 0
        guard waitpid(initHostPid, &status, WNOHANG) == initHostPid else { return nil }
        initHostPid = 0
        return status
    }

    /// Whether the init has begun to exit (PF_EXITING in /proc/PID/stat): a killed init
    /// first takes every process of the namespace down, which can take a while.
    var initIsExiting: Bool {
        guard initHostPid > 0, let text = SystemCalls.readText("/proc/\(initHostPid)/stat"),
              let close = text.lastIndex(of: ")") else { return false }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 6, let flags = UInt64(fields[6]) else { return false }
        return flags & 0x4 != 0 || fields[0] == "Z" || fields[0] == "X"
    }

    /// Reaps the supervisor's keeper if it has ended; its code is kept.
    func reapKeeper(block: Bool = false) {
        guard supervisorKeeper > 0 else { return }
        var status: Int32 = 0
        if waitpid(supervisorKeeper, &status, block ? 0 : WNOHANG) == supervisorKeeper {
            supervisorExit = InitLoop.exitCode(status)
            supervisorKeeper = 0
        }
    }

    /// Kill the namespace's init: the kernel kills everything else in the namespace.
    func tearDown() {
        if supervisorKeeper > 0 {
            _ = rr_kill(supervisorKeeper, SIGKILL)
            reapKeeper(block: true)
        }
        guard initHostPid > 0 else { return }
        _ = rr_kill(initHostPid, SIGKILL)
        var status: Int32 = 0
        _ = SystemCalls.retrying { waitpid(initHostPid, &status, 0) }
        initHostPid = 0
    }

    deinit {
        tearDown()
        if signalFD >= 0 { close(signalFD) }
    }

    /// The namespace's clone takes no set_tid: whatever it answers is named as it is (whether
    /// clone3 has set_tid was probed before, WorldPreparation).
    static func environmentError(errno e: Int32, legacyClone: Bool) -> RestoreError {
        let call = legacyClone ? "clone" : "clone3"
        var why = "cannot create a user and PID namespace: \(call) fails with \(ErrnoName.describe(e))"
        if e == EPERM {
            why += "; unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0, or a security module)"
        } else if e == ENOSPC {
            let limit = SystemCalls.readText("/proc/sys/user/max_user_namespaces")?.trimmingSuffixNewline ?? "?"
            why += "; the user namespace limit is reached (user.max_user_namespaces = \(limit))"
        } else if e == EINVAL {
            why += "; the kernel refuses these namespace flags (built without CONFIG_USER_NS or CONFIG_PID_NS), or a seccomp profile answers \(call) with EINVAL"
        }
        return RestoreError(.environment, operation: "\(call)(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS)", errno: e, entry: nil, message: why)
    }

    /// Ubuntu's AppArmor restriction lets the namespace be created and then strips every
    /// capability; set_tid would fail with EPERM later. Say so now.
    func checkCapabilities() throws {
        guard let caps = cap_get_pid(initHostPid) else { return }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        var value = cap_flag_value_t(0)
        if cap_get_flag(caps, cap_value_t(CAP_SYS_ADMIN), CAP_EFFECTIVE, &value) == 0, value != CAP_SET {
            throw RestoreError(.environment, operation: "capget", errno: EPERM, entry: nil,
                               message: "the new user namespace holds no CAP_SYS_ADMIN, so PIDs cannot be chosen; a security module (e.g. kernel.apparmor_restrict_unprivileged_userns=1) strips capabilities from unprivileged namespaces")
        }
    }
}
