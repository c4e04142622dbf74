import CLibseccomp
import CRestoreShim
import Glibc
import RestoreModel

/// What to do when a payload's fork does not get the PID the recording says it should.
public enum PinMismatchPolicy: String, Sendable, CaseIterable {
    /// Print a warning and go on.
    case warn
    /// Kill the whole namespace; `run` exits with 125.
    case error
}

/// Gives payload-made forks and threads their recorded PIDs.
///
/// Every exec'ing process of the tree installs a seccomp filter that turns clone, clone3, fork
/// and vfork into user notifications, and hands the listener to the runtime's init. The init
/// (which holds CAP_SYS_ADMIN in the namespace) serves one notification at a time: it writes
/// the namespace's ns_last_pid so that the next PID is the pinned one, lets the syscall
/// continue, and waits until that PID is allocated before serving the next. Since every fork
/// in the namespace passes through this one loop, the ns_last_pid dance cannot race. Forks
/// the recording does not know get PIDs above every pinned one, so they never steal one.
///
/// Built in the coordinator before any clone; used by puppets (install + hand over) and by the
/// init after the tree is released. The init is a single-threaded copy of a single-threaded
/// process and never execs, so it may allocate.
public final class ForkSupervisor {
    /// Classic BPF of the notify filter, exported by libseccomp in the coordinator.
    let instructions: UnsafeMutableRawPointer
    let instructionCount: UInt16
    /// Extra flags of the filter: WAIT_KILLABLE_RECV where the kernel knows it (Linux 5.19+),
    /// probed once here (features are probed, not judged from the release), so no puppet retries.
    let listenerFlags: UInt32
    /// Puppets send their listener here (CLOEXEC); the init receives on `receiveFD`.
    let sendFD: Int32
    let receiveFD: Int32
    /// What each forker still owes (PinLedger); its clock starts when the init starts serving.
    let pinned: PinnedForks
    let missingAfter: UInt64
    lazy var ledger = PinLedger(pinned, now: MonotonicClock.nanoseconds(), missingAfter: missingAfter)
    let ceiling: Int32
    let policy: PinMismatchPolicy
    let logFD: Int32
    var logFailed = false
    let labels: [Int32: String]
    /// What the recording saw at each pinned PID, for the check after pinning (PinCheck).
    let identities: [Int32: RecordedIdentity]
    /// A pinned fork not checked yet: its forker's exe and auxv at the fork (to tell whether it
    /// has exec'd), its deadline, and its argv when last seen (for messages).
    struct Pending {
        var pid: Int32
        var forker: Int32
        var forkerExe: String?
        var forkerAuxv: [UInt8]
        var deadline: UInt64
        var lastSeen: [String] = []
        /// Readable once the child exits (registered in `exits`); -1 without one.
        var pidfd: Int32 = -1
    }
    /// Undecided pinned forks by PID, and when each is looked at next (PinCheckSchedule).
    var pending: [Int32: Pending] = [:]
    var schedule = PinCheckSchedule()
    /// An epoll set of the pending forks' pidfds: what exited since the last look, without
    /// looking at every pending fork (created by the init on first use; -1 if it cannot be).
    var exits: Int32 = -2
    /// Pending forks that exited (or have no pidfd), still to be seen reaped: their forker's
    /// next fork gets the PID back first (PinLedger.giveBack).
    var exited: Set<Int32> = []
    let request: UnsafeMutablePointer<seccomp_notif>
    let response: UnsafeMutablePointer<seccomp_notif_resp>
    var listeners: [Int32] = []
    /// Listener fd -> the node whose forks it carries; node -> its label (set by the world).
    var listenerNodes: [Int32: Int32] = [:]
    var nodeLabels: [Int32: String] = [:]
    /// Node -> its PID in the supervisor's namespace, for the exec'ing processes restored running.
    var nodePids: [Int32: Int32] = [:]
    /// Whether forkers are traced so that a fork a signal interrupts before it is received
    /// restarts (InterruptedForkRestart); `--interrupted-forks fail` turns it off.
    var restartsInterruptedForks = true
    /// Testing aid (`--testing-fault slow-receive`): the receiver waits this long before each
    /// receive, which widens the window in which a signal interrupts a fork.
    var receiveDelayMicroseconds: Int32 = 0
    /// The forkers this supervisor has seized (thread-group leaders; InterruptedForkRestart).
    var traced: Set<Int32> = []

    init(pinned: PinnedForks, tree: ProcessTree, policy: PinMismatchPolicy, logFD: Int32,
         missingAfter: UInt64 = PinLedger.missingAfterNanoseconds) throws {
        guard seccomp_api_get() >= 5 else {
            throw RestoreError(.environment, operation: "seccomp_api_get", errno: EOPNOTSUPP, entry: nil,
                               message: "pinned PIDs need seccomp user notification (libseccomp API level 5, Linux 5.0+); this system reports level \(seccomp_api_get())")
        }
        guard let ctx = seccomp_init(SCMP_ACT_ALLOW) else {
            throw RestoreError(.restoreFailed, operation: "seccomp_init", message: "cannot build the fork filter")
        }
        defer { seccomp_release(ctx) }
        // Payloads of another architecture (i386, x32, arm on aarch64) fork through their own
        // system call numbers: supervise those too, and never kill a process for its
        // architecture (libseccomp's default for one the filter does not list).
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, UInt32(SCMP_ACT_ALLOW))
        let compat = seccomp_arch_native() == seccomp_arch_resolve_name("x86_64") ? ["x86", "x32"]
            : seccomp_arch_native() == seccomp_arch_resolve_name("aarch64") ? ["arm"] : []
        for name in compat {
            let token = seccomp_arch_resolve_name(name)
            if token != 0 { _ = seccomp_arch_add(ctx, token) }
        }
        for name in ["clone", "clone3", "fork", "vfork"] {
            let nr = seccomp_syscall_resolve_name(name)
            if nr == __NR_SCMP_ERROR { continue }
            let r = seccomp_rule_add_array(ctx, UInt32(SCMP_ACT_NOTIFY), nr, 0, nil)
            if r < 0 { throw RestoreError(.restoreFailed, operation: "seccomp_rule_add", errno: -r, message: "cannot add \(name) to the fork filter") }
        }
        let memfd = rr_memfd("rootless-restore-bpf")
        guard memfd >= 0 else { throw RestoreError(.restoreFailed, operation: "memfd_create", errno: -memfd, message: "cannot export the fork filter") }
        defer { close(memfd) }
        let r = seccomp_export_bpf(ctx, memfd)
        guard r == 0 else { throw RestoreError(.restoreFailed, operation: "seccomp_export_bpf", errno: -r, message: "cannot export the fork filter") }
        let size = Int(lseek(memfd, 0, SEEK_END))
        guard size > 0, size % 8 == 0 else { throw RestoreError(.restoreFailed, operation: "seccomp_export_bpf", message: "unexpected filter size \(size)") }
        instructions = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        let got = pread(memfd, instructions, size, 0)
        guard got == size else {
            // A short read leaves errno as it was: EIO rather than a stale value.
            throw RestoreError(.restoreFailed, operation: "pread", errno: got < 0 ? Glibc.errno : EIO, message: "cannot read the exported fork filter")
        }
        instructionCount = UInt16(size / 8)
        let killable = RR_SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        listenerFlags = rr_seccomp_filter_flags_known(UInt32(SECCOMP_FILTER_FLAG_NEW_LISTENER) | killable) != 0 ? killable : 0

        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw RestoreError(.restoreFailed, operation: "socketpair", errno: Glibc.errno, message: "cannot create the supervisor socket")
        }
        receiveFD = fds[0]
        sendFD = fds[1]
        self.pinned = pinned
        self.missingAfter = missingAfter
        ceiling = pinned.allPinned.max() ?? 0
        self.policy = policy
        self.logFD = logFD
        var labels: [Int32: String] = [:]
        for e in tree.processes { labels[e.pid] = e.label }
        labels.merge(pinned.labels) { a, _ in a }
        self.labels = labels
        identities = pinned.identities
        var req: UnsafeMutablePointer<seccomp_notif>?
        var resp: UnsafeMutablePointer<seccomp_notif_resp>?
        guard seccomp_notify_alloc(&req, &resp) == 0, let req, let resp else {
            throw RestoreError(.restoreFailed, operation: "seccomp_notify_alloc", message: "cannot allocate notification buffers")
        }
        request = req
        response = resp
    }

    /// In the coordinator once the tree is released (the init keeps its own copy forever).
    deinit {
        close(sendFD)
        close(receiveFD)
        if logFD >= 0 { close(logFD) }
        instructions.deallocate()
        seccomp_notify_free(request, response)
    }

    // MARK: init side

    /// The init (or the server beside a tree's PID 1) closes every descriptor above 2 but the
    /// supervisor's: the receiving end (listeners arrive there), the pin log, and its own copy
    /// of the sending end. That copy matters: once every puppet has exec'd (CLOEXEC) or closed
    /// its copy and the coordinator has dropped its own, the receiving end would read as end of
    /// file forever, and the poll loop would spin at full CPU, starving the payloads whose
    /// pinned children it checks.
    func closeAllButOwn() {
        rr_close_all_but3(receiveFD, sendFD, logFD)
        // Opened by whoever serves, after this: a number from before would be stale now.
        lastPidFD = -1
    }

    /// Takes every listener the puppets have sent so far.
    func collectListeners() {
        while true {
            var tag: Int32 = 0
            let fd = rr_recv_fd(receiveFD, &tag)
            if fd == -EAGAIN || fd == -EPIPE { return }
            if fd < 0 {
                lose(node: tag, why: "the runtime's init cannot receive its fork listener (\(ErrnoName.describe(-fd)))"
                     + (fd == -EMFILE ? "; raise the open-file limit (ulimit -n)" : ""))
                continue
            }
            // Linux 6.6+: the notifying task hands its CPU to the waiting supervisor, which then
            // receives sooner (the interruptible window shrinks); older kernels refuse it, harmless.
            _ = rr_seccomp_notify_sync_wake_up(fd)
            listeners.append(fd)
            listenerNodes[fd] = tag
            if let pid = nodePids[tag] { trace(pid) }
            if receiver == nil || rr_receiver_add(receiver, fd) != 0 { polled.append(fd) }
        }
    }

    // MARK: the receiver

    /// The notification receiver (rr_receiver_start): nil until started, or when it could not
    /// be; then the supervisor receives itself (`polled`), and a fork waits interruptibly
    /// until the supervisor gets to it.
    var receiver: UnsafeMutablePointer<rr_receiver>?
    var receiverPid: Int32 = 0
    /// Readable once the receiver has ended (-1: none).
    var receiverExit: Int32 = -1
    /// The listeners the supervisor receives from itself: those the receiver does not watch.
    var polled: [Int32] = []
    static let receiverStackSize = 64 * 1024

    /// Starts the receiver, before any notification is served. Its PID is one no recorded fork
    /// needs: above every pinned PID, as for a fork the recording does not know (nothing else
    /// forks in the namespace now: every payload fork waits for this supervisor). Failing, it
    /// is said, and the supervisor receives on its own (as before: forks interruptible longer).
    func startReceiver() {
        guard receiver == nil else { return }
        let ring = UnsafeMutablePointer<rr_receiver>.allocate(capacity: 1)
        let stack = UnsafeMutableRawPointer.allocate(byteCount: Self.receiverStackSize, alignment: 4096)
        let before = readLastPid()
        if before < ceiling { writeLastPid(ceiling) }
        let pid = rr_receiver_start(ring, stack, Self.receiverStackSize, receiveDelayMicroseconds)
        guard pid > 0 else {
            SystemCalls.printError("rootless-restore: warning: the fork supervisor's receiver cannot start (\(ErrnoName.describe(Int32(-pid)))): a payload's fork may fail with EINTR when a signal comes before it is received")
            ring.deallocate()
            stack.deallocate()
            return
        }
        receiver = ring
        receiverPid = Int32(pid)
        let exitFD = rr_pidfd_open(receiverPid)
        receiverExit = exitFD >= 0 ? exitFD : -1
        polled.removeAll { rr_receiver_add(ring, $0) == 0 }
    }

    /// The receiver ended (killed from outside, or its epoll set failed): the supervisor
    /// receives on its own from now on. Said, since forks are interruptible longer again.
    func receiverEnded(_ why: String) {
        guard receiver != nil else { return }
        SystemCalls.printError("rootless-restore: warning: the fork supervisor's receiver (pid \(receiverPid)) \(why): the supervisor receives on its own from now on")
        drainReceiver()
        receiver = nil
        if receiverExit >= 0 { close(receiverExit); receiverExit = -1 }
        var status: Int32 = 0
        _ = rr_reap_clone_child(receiverPid, &status)
        polled = listeners
    }

    /// Takes everything the receiver has received, in order, into the backlog; hung-up or
    /// failed listeners are closed (the receiver has removed them from its set first).
    func drainReceiver() {
        guard let ring = receiver else { return }
        var got = rr_received()
        while rr_receiver_take(ring, &got) == 1 {
            let fd = got.fd
            if got.status == 0 {
                let n = withUnsafeBytes(of: &got.notification) { $0.load(as: seccomp_notif.self) }
                backlog.append((fd, n))
            } else if fd < 0 {
                receiverEnded("cannot wait on the listeners (\(ErrnoName.describe(got.status)))")
                return
            } else {
                if got.status != RR_RECEIVED_FINISHED {
                    lose(node: listenerNodes[fd] ?? -1, why: "SECCOMP_IOCTL_NOTIF_RECV failed (\(ErrnoName.describe(got.status)))")
                }
                finish(fd)
            }
        }
    }

    /// A listener is done: closed and forgotten.
    func finish(_ fd: Int32) {
        close(fd)
        listenerNodes[fd] = nil
        listeners.removeAll { $0 == fd }
        polled.removeAll { $0 == fd }
    }

    /// One turn of a supervisor's loop (the init's, or the server's beside a tree's PID 1):
    /// waits for a notification, a new listener, the next check, or one of `extra`; serves
    /// every notification received, then checks pinned forks. Returns `extra` with revents.
    func turn(extra: [pollfd]) -> [pollfd] {
        collectListeners()
        var fds = extra
        fds.append(pollfd(fd: receiveFD, events: Int16(POLLIN), revents: 0))
        if let ring = receiver { fds.append(pollfd(fd: ring.pointee.wakefd, events: Int16(POLLIN), revents: 0)) }
        if receiverExit >= 0 { fds.append(pollfd(fd: receiverExit, events: Int16(POLLIN), revents: 0)) }
        let fixed = fds.count
        fds += polled.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        // While pinned forks wait to be checked (PinCheck), wake up to look at them; while a
        // fork's PID is not seen yet, every millisecond.
        settleInFlight(wait: false)
        var timeout = nextCheckIn.map { Int32($0 / 1_000_000) } ?? -1
        if inFlight != nil && (timeout < 0 || timeout > 1) { timeout = 1 }
        let ready = poll(&fds, nfds_t(fds.count), timeout)
        // Notifications first: until received, a fork waits interruptibly (a child's SIGCHLD
        // fails it with EINTR); everything else waits until none is left.
        if let ring = receiver {
            rr_receiver_drain_wake(ring)
            drainReceiver()
        }
        var finished: [Int32] = []
        if ready > 0 {
            for p in fds[fixed...] where p.revents != 0 {
                if p.revents & Int16(POLLIN) != 0 {
                    if !receive(p.fd) { finished.append(p.fd) }
                } else {
                    finished.append(p.fd)
                }
            }
        }
        serveBacklog()
        settleInFlight(wait: false)
        checkPending()
        if receiverExit >= 0, let p = fds.first(where: { $0.fd == receiverExit }), p.revents != 0 {
            receiverEnded("has ended")
            serveBacklog()
        }
        for fd in finished { finish(fd) }
        return Array(fds.prefix(extra.count))
    }

    /// Pinning is lost for a process's forks: always said, naming it; fatal with --pin-mismatch error.
    func lose(node: Int32, why: String) {
        let who = nodeLabels[node] ?? "node \(node)"
        SystemCalls.printError("rootless-restore: error: \(who): its forks no longer get pinned PIDs: \(why)")
        if policy == .error {
            _ = rr_kill(-1, SIGKILL)
            _exit(RestoreError.ExitCode.restoreFailed)
        }
    }

    /// Notifications received while serving another (waitForAllocation), in order: a received
    /// notification's fork waits killably (WAIT_KILLABLE_RECV), so receiving at once closes the
    /// window in which a child's SIGCHLD fails it with EINTR.
    var backlog: [(fd: Int32, notification: seccomp_notif)] = []

    /// Receives one notification from `fd` into the backlog. Returns false when the listener is finished.
    func receive(_ fd: Int32) -> Bool {
        // The receive blocks when nothing is queued, and a poll's answer may be stale by now
        // (received meanwhile by receiveReady): ask again, without waiting.
        var one = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&one, 1, 0) > 0, one.revents & Int16(POLLIN) != 0 else { return one.revents & Int16(POLLHUP | POLLERR | POLLNVAL) == 0 }
        let received = rr_seccomp_notify_recv(fd, request, MemoryLayout<seccomp_notif>.size)
        // ENOENT: the notifying task died or was interrupted (a signal, before we received it)
        // after the poll said ready; EINTR: a signal of ours. Neither ends the listener. (Through
        // libseccomp both came back as ECANCELED, and an ENOENT there ended pinning for good.)
        if received == -ENOENT || received == -EINTR || received == -EAGAIN { return true }
        if received != 0 {
            lose(node: listenerNodes[fd] ?? -1, why: "SECCOMP_IOCTL_NOTIF_RECV failed (\(ErrnoName.describe(-received)))")
            listenerNodes[fd] = nil
            return false
        }
        backlog.append((fd, request.pointee))
        return true
    }

    /// Serves every received notification, oldest first (serving one may receive more).
    func serveBacklog() {
        while !backlog.isEmpty {
            let (fd, notification) = backlog.removeFirst()
            handle(fd, notification)
        }
    }

    /// Everything received so far: the receiver's, and each polled listener that has a
    /// notification now (poll without waiting).
    func receiveReady() {
        drainReceiver()
        guard !polled.isEmpty else { return }
        var fds = polled.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        guard poll(&fds, nfds_t(fds.count), 0) > 0 else { return }
        for p in fds where p.revents & Int16(POLLIN) != 0 { _ = receive(p.fd) }
    }

    /// Serves one received notification: pins the PID and lets the fork continue. Its PID is
    /// looked for later (InFlight), at the latest before the next fork is served.
    func handle(_ fd: Int32, _ notification: seccomp_notif) {
        request.pointee = notification
        let tid = Int32(bitPattern: request.pointee.pid)
        // The fork before this one has its PID first (ns_last_pid is about to be written).
        settleInFlight(wait: true, next: tid)
        let nr = Int(request.pointee.data.nr)
        let arg0 = request.pointee.data.args.0
        var flags: UInt64 = 0
        if nr == rr_sys_clone {
            flags = arg0
        } else if nr == rr_sys_clone3 {
            _ = rr_read_remote_u64(tid, arg0, &flags)
        }
        let isThread = flags & UInt64(RR_CLONE_THREAD) != 0
        let forker = threadGroup(of: tid)
        // Received, so this fork now waits killably: seizing its forker here protects its next
        // forks from the window before their receive (InterruptedForkRestart).
        if tid == forker { trace(forker) }
        // A pinned child of this forker reaped since the last look gives its PID back first.
        if !isThread { checkPending() }
        var expected = ledger.take(forker: forker, thread: isThread, now: MonotonicClock.nanoseconds())
        if let e = expected {
            if rr_kill(e, 0) != -ESRCH {
                report(forker: forker, thread: isThread, expected: e, got: nil, note: "the pinned PID is already taken")
                expected = nil
            }
        }
        let before = readLastPid()
        if let e = expected {
            writeLastPid(e - 1)
        } else if before < ceiling {
            writeLastPid(ceiling)
        }
        let written = expected.map { $0 - 1 } ?? max(before, ceiling)
        // What the forker runs, read while it waits in this fork (it cannot exec meanwhile): a
        // pinned child that still has the same has not exec'd (PinCheck).
        var forkerExe: String?
        var forkerAuxv: [UInt8] = []
        if expected != nil && !isThread {
            forkerExe = Self.exe(of: forker)
            forkerAuxv = SystemCalls.readFile("/proc/\(forker)/auxv") ?? []
        }
        response.pointee.id = request.pointee.id
        response.pointee.val = 0
        response.pointee.error = 0
        response.pointee.flags = UInt32(SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        if rr_seccomp_notify_send(fd, response) != 0 {
            // The caller died or was interrupted: the pinned PID is still owed.
            if let e = expected { requeue(forker: forker, thread: isThread, e) }
            return
        }
        inFlight = InFlight(tid: tid, forker: forker, isThread: isThread, expected: expected, written: written,
                            deadline: MonotonicClock.nanoseconds() + 1_000_000_000, forkerExe: forkerExe, forkerAuxv: forkerAuxv)
        // Often allocated by now (the forker runs on the other CPU): settled at once, else later.
        settleInFlight(wait: false)
    }

    /// The fork let continue last, until its PID is seen allocated (ns_last_pid moved past
    /// `written`; nothing else allocates in the namespace meanwhile: every fork there waits
    /// for this supervisor). Settled before the next notification is served, on every turn,
    /// and when the tree ends; not waited for right after the continue, where the supervisor
    /// used to poll ns_last_pid every 10 µs (taking CPU time from the forks and the receiver)
    /// although the next fork was usually not even made yet.
    struct InFlight {
        var tid: Int32
        var forker: Int32
        var isThread: Bool
        var expected: Int32?
        var written: Int32
        /// Given up after 1 s: the clone failed before allocating, and its task forks no more.
        var deadline: UInt64
        var forkerExe: String?
        var forkerAuxv: [UInt8]
    }
    var inFlight: InFlight?

    /// Settles the fork in flight: its PID allocated, or none coming: its task notifies again
    /// (`next`, or in the backlog: its fork was restarted after a signal, ERESTARTNOINTR, or
    /// failed) or 1 s passed. With `wait`, polls until then (receiving meanwhile, so that no
    /// notification waits unreceived); without, only looks once.
    func settleInFlight(wait: Bool, next: Int32? = nil, final: Bool = false) {
        guard let f = inFlight else { return }
        var got: Int32?
        var pause = timespec(tv_sec: 0, tv_nsec: 10_000)
        while true {
            let now = readLastPid()
            if now != f.written { got = now; break }
            if next == f.tid || backlog.contains(where: { Int32(bitPattern: $0.notification.pid) == f.tid }) { break }
            if final || MonotonicClock.nanoseconds() >= f.deadline { break }
            if !wait { return }
            receiveReady()
            // A fork interrupted after its continue sits in a signal-delivery-stop until its
            // tracer (this process) lets it restart.
            serviceTraceStops()
            nanosleep(&pause, nil)
        }
        inFlight = nil
        if let e = f.expected {
            if got == nil {
                requeue(forker: f.forker, thread: f.isThread, e)
            } else {
                report(forker: f.forker, thread: f.isThread, expected: e, got: got, note: nil)
                if got == e {
                    if ledger.wasReported(e) {
                        SystemCalls.printError("rootless-restore: note: \(labels[e] ?? "process \(e)"): its \(f.isThread ? "thread" : "process") was created after all, after it was reported missing")
                    }
                    ledger.created(e, now: MonotonicClock.nanoseconds())
                }
                if got == e && !f.isThread { watch(e, forker: f.forker, forkerExe: f.forkerExe, forkerAuxv: f.forkerAuxv) }
            }
        } else if let got {
            log(forker: f.forker, thread: f.isThread, expected: nil, got: got, pinned: false)
        }
    }

    /// Serving beside a tree's own PID 1 (OutsideSupervisor), which kill(-1) cannot reach: the
    /// supervisor's keeper kills it from outside once the supervisor has exited.
    var besideTreeInit = false

    /// --pin-mismatch error: everything in the namespace dies (the caller then exits 125).
    func endNamespace() {
        if !besideTreeInit { _ = rr_kill(-1, SIGKILL) }
    }

    // MARK: what pinned forks became

    static func exe(of pid: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink("/proc/\(pid)/exe", &buf, 4096)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func cmdline(of pid: Int32) -> [String] {
        guard let bytes = SystemCalls.readFile("/proc/\(pid)/cmdline") else { return [] }
        var parts = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    /// Starts watching a pinned fork: looked at soon, then less often (PinCheckSchedule), and
    /// at once when its pidfd says it exited.
    func watch(_ pid: Int32, forker: Int32, forkerExe: String?, forkerAuxv: [UInt8]) {
        let now = MonotonicClock.nanoseconds()
        var p = Pending(pid: pid, forker: forker, forkerExe: forkerExe, forkerAuxv: forkerAuxv,
                        deadline: now + PinCheck.settleNanoseconds)
        if exits == -2 { exits = rr_epoll_create() }
        let fd = exits >= 0 ? rr_pidfd_open(pid) : -1
        if fd >= 0, rr_epoll_add(exits, fd, UInt64(UInt32(bitPattern: pid))) == 0 {
            p.pidfd = fd
        } else {
            // No pidfd (a limit, or a kernel before 5.3): whether it is gone is asked on every look.
            if fd >= 0 { close(fd) }
            exited.insert(pid)
        }
        pending[pid] = p
        schedule.add(pid, now: now, deadline: p.deadline)
    }

    func unwatch(_ pid: Int32) {
        if let fd = pending[pid]?.pidfd, fd >= 0 { close(fd) }
        pending[pid] = nil
        schedule.remove(pid)
        exited.remove(pid)
    }

    /// Nanoseconds until the next look (for poll), nil if nothing is watched: the next scheduled
    /// look at a pinned fork (exec is seen by looking), else at most every second while PIDs are
    /// owed (a forker that ends is seen by looking).
    var nextCheckIn: UInt64? {
        let now = MonotonicClock.nanoseconds()
        if let look = schedule.nextLook() { return (look > now ? look - now : 0) + 1_000_000 }
        guard let due = ledger.nextDue() else { return ledger.owesAny ? 1_000_000_000 : nil }
        return min(due > now ? due - now : 0, 1_000_000_000) + 1_000_000
    }

    /// Checks the pending pinned forks that are due (PinCheck.decide) or that exited since the
    /// last look: decided once one has exec'd or shows its recorded title, or at its deadline;
    /// its PID owed again when it was reaped before it showed what it became. Then reports every
    /// owed PID that is not coming (PinLedger). Only what changed or is due is read from /proc.
    func checkPending() {
        let now = MonotonicClock.nanoseconds()
        if exits >= 0, !pending.isEmpty {
            var ready = [UInt64](repeating: 0, count: 64)
            while true {
                let n = Int(rr_epoll_ready(exits, &ready, 64))
                if n <= 0 { break }
                for i in 0..<n {
                    let pid = Int32(bitPattern: UInt32(truncatingIfNeeded: ready[i]))
                    // Exited: its pidfd stays readable, so it leaves the set; kill(0) tells reaped.
                    if let fd = pending[pid]?.pidfd, fd >= 0 { close(fd); pending[pid]?.pidfd = -1 }
                    exited.insert(pid)
                    schedule.now(pid, now: now)
                }
                if n < 64 { break }
            }
        }
        var looks = schedule.due(now: now)
        for pid in exited where rr_kill(pid, 0) == -ESRCH {
            // Reaped: looked at now, whatever its schedule said.
            if schedule.contains(pid) && !looks.contains(pid) { looks.append(pid) }
        }
        for pid in looks {
            guard var p = pending[pid] else { continue }
            let exe = Self.exe(of: p.pid)
            let argv = Self.cmdline(of: p.pid)
            let liveness: PinCheck.Liveness = exe != nil ? .alive : rr_kill(p.pid, 0) == -ESRCH ? .gone : .zombie
            // Another exe says exec'd already; the same exe needs the auxiliary vector.
            let auxv = liveness == .alive && exe == p.forkerExe ? SystemCalls.readFile("/proc/\(p.pid)/auxv") ?? [] : []
            let execd = liveness == .alive && PinCheck.hasExeced(exe: exe, auxv: auxv, forkerExe: p.forkerExe, forkerAuxv: p.forkerAuxv)
            if liveness == .alive && !argv.isEmpty { p.lastSeen = PinCheck.unpadded(argv) }
            let seen = PinCheck.Observation(exe: exe, cmdline: argv, execd: execd)
            switch PinCheck.decide(identities[p.pid], seen, liveness: liveness, pastDeadline: now >= p.deadline) {
            case .wait:
                pending[pid] = p
                schedule.again(pid, now: now)
            case .ended:
                unwatch(pid)
                ledger.giveBack(p.pid, forker: p.forker, thread: false, now: now, ended: true)
                let last = p.lastSeen.isEmpty ? "" : " (last seen as \(PinCheck.quoted(p.lastSeen)))"
                logCheck(pid: p.pid, verdict: .unchecked("it ended before it showed what it became\(last): not the recorded process; its PID is pinned again for its forker's next fork"),
                         exe: nil, cmdline: p.lastSeen, execd: false, extra: [("repinned", .bool(true))])
            case .decided(let verdict):
                unwatch(pid)
                logCheck(pid: p.pid, verdict: verdict, exe: exe, cmdline: PinCheck.unpadded(argv), execd: execd)
                let who = labels[p.pid] ?? "process \(p.pid)"
                if case .mismatch(let why) = verdict {
                    SystemCalls.printError("rootless-restore: \(policy == .error ? "error" : "warning"): \(who): pin mismatch: its PID was pinned, but the process is not what was recorded there: \(why) (the payload forked in another order than recorded, or a recorded process was not forked again)")
                    if policy == .error {
                        endNamespace()
                        _exit(RestoreError.ExitCode.restoreFailed)
                    }
                } else if case .unchecked(let why) = verdict, identities[p.pid] != nil {
                    SystemCalls.printError("rootless-restore: warning: \(who): pinned but not checked: \(why)")
                }
            }
        }
        // Owed PIDs: looked at once a second (a forker that ended), or when one is due.
        guard ledger.owesAny, now >= nextOwedLook || (ledger.nextDue().map { now >= $0 } ?? false) else { return }
        nextOwedLook = now + 1_000_000_000
        reportMissing(ledger.overdue(now: now, forkerGone: { !Self.alive($0) }))
    }

    /// The namespace is empty (the init is about to exit): the last fork settled, what is
    /// still watched looked at, and what is still owed said.
    func treeEnded() {
        settleInFlight(wait: false, final: true)
        checkPending()
        reportMissingAtEnd()
    }

    /// The namespace is empty (the init is about to exit): every PID still owed was never
    /// created. Said, so that no recorded process goes missing without a word.
    func reportMissingAtEnd() {
        reportMissing(ledger.drain(why: "the tree ended before a fork took it for good"))
    }

    func reportMissing(_ missing: [PinLedger.Missing]) {
        for m in missing {
            let who = labels[m.pid] ?? "process \(m.pid)"
            let what = m.thread ? "thread \(m.pid) of \(labels[m.forker] ?? "process \(m.forker)")" : who
            // A PID given back each time its fork ended unrecognised was created, just never kept.
            let ended = m.endedForks == 0 ? "" : "; \(m.endedForks) fork\(m.endedForks == 1 ? "" : "s") got its PID, and \(m.endedForks == 1 ? "it" : "each") ended before it showed what it became (not the recorded process)"
            let text = m.final
                ? "\(what): pin missing: \(m.endedForks == 0 ? "never created" : "not kept"): \(m.why)\(ended), so nothing holds its recorded PID"
                : "\(what): pin missing: not created yet: \(m.why)\(ended) (it still gets its PID if forked later; --pin-wait sets how long to wait)"
            SystemCalls.printError("rootless-restore: \(policy == .error ? "error" : "warning"): \(text)")
            if !m.thread {
                logCheck(pid: m.pid, verdict: .mismatch("\(m.endedForks == 0 ? "never created" : "not kept"): \(m.why)"), exe: nil, cmdline: [], execd: false,
                         extra: [("created", .bool(m.endedForks > 0)), ("endedForks", .int(m.endedForks))])
            }
            if policy == .error {
                endNamespace()
                _exit(RestoreError.ExitCode.restoreFailed)
            }
        }
    }

    var nextOwedLook: UInt64 = 0

    /// Whether a forker can still fork: it exists and is not a zombie.
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = SystemCalls.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state != "Z" && state != "X"
    }

    /// One JSON line of the pin log per checked fork: matched true, false, or null (unchecked).
    func logCheck(pid: Int32, verdict: PinCheck.Verdict, exe: String?, cmdline: [String], execd: Bool,
                  extra: [(String, JSONOutput)] = []) {
        guard logFD >= 0, !logFailed else { return }
        var reason: String?
        switch verdict {
        case .matched: reason = nil
        case .mismatch(let r), .unchecked(let r): reason = r
        }
        let line = JSONOutput.object([("pid", .int(pid)), ("kind", .string("check")),
                                      ("matched", .optional(verdict.matched.map { .bool($0) })),
                                      ("execd", .bool(execd)), ("exe", .optional(exe.map { .string($0) })),
                                      ("cmdline", .array(cmdline.map { .string($0) })),
                                      ("reason", .optional(reason.map { .string($0) }))] + extra).document()
        let e = OutputFile.writeAll(logFD, Array(line.utf8))
        if e != 0 {
            logFailed = true
            SystemCalls.printError("rootless-restore: warning: cannot write the pin log: \(ErrnoName.describe(e)); it ends here")
        }
    }

    func requeue(forker: Int32, thread: Bool, _ pid: Int32) {
        ledger.giveBack(pid, forker: forker, thread: thread, now: MonotonicClock.nanoseconds())
    }

    func report(forker: Int32, thread: Bool, expected: Int32, got: Int32?, note: String?) {
        let ok = got == expected
        log(forker: forker, thread: thread, expected: expected, got: got, pinned: ok)
        guard !ok else { return }
        let who = labels[forker] ?? "process \(forker)"
        let what = thread ? "thread" : "child"
        let text = note.map { "\(who): cannot pin \(what) \(expected): \($0)" }
            ?? "\(who): its \(what) got PID \(got.map(String.init) ?? "?") but the recording expected \(expected) next (fork order differs from the recording)"
        SystemCalls.printError("rootless-restore: \(policy == .error ? "error" : "warning"): \(text)")
        if policy == .error {
            endNamespace()
            _exit(RestoreError.ExitCode.restoreFailed)
        }
    }

    /// One JSON line of the pin log. A failed write is said once, and logging stops.
    func log(forker: Int32, thread: Bool, expected: Int32?, got: Int32?, pinned: Bool) {
        guard logFD >= 0, !logFailed else { return }
        let line = JSONOutput.object([("forker", .int(forker)), ("kind", .string(thread ? "thread" : "fork")),
                                      ("expected", .optional(expected.map { .int($0) })), ("got", .optional(got.map { .int($0) })),
                                      ("pinned", .bool(pinned))]).document()
        let e = OutputFile.writeAll(logFD, Array(line.utf8))
        if e != 0 {
            logFailed = true
            SystemCalls.printError("rootless-restore: warning: cannot write the pin log: \(ErrnoName.describe(e)); it ends here")
        }
    }

    /// The process of a forking task. Most forks come from a thread-group leader, which
    /// pidfd_open accepts (it refuses other threads with EINVAL): two system calls, where
    /// reading and parsing /proc/TID/status took half the supervisor's time per fork.
    func threadGroup(of tid: Int32) -> Int32 {
        let fd = rr_pidfd_open(tid)
        if fd >= 0 {
            close(fd)
            return tid
        }
        guard let bytes = SystemCalls.readFile("/proc/\(tid)/status") else { return tid }
        let tgid = ProcStatus.parse(bytes, pid: tid).tgid
        return tgid > 0 ? tgid : tid
    }

    /// ns_last_pid, read and written on every fork: opened once by the process that serves
    /// (after closeAllButOwn), not once per access (-1: not yet, -2: cannot be; then by path).
    var lastPidFD: Int32 = -1

    func lastPidFile() -> Int32 {
        if lastPidFD == -1 {
            let fd = open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC)
            lastPidFD = fd >= 0 ? fd : -2
        }
        return lastPidFD
    }

    func readLastPid() -> Int32 {
        let fd = lastPidFile()
        if fd >= 0 {
            let v = rr_pread_decimal(fd)
            if v >= 0 { return Int32(truncatingIfNeeded: v) }
        }
        return Int32(SystemCalls.readText("/proc/sys/kernel/ns_last_pid")?.trimmingCharacters ?? "") ?? 0
    }

    func writeLastPid(_ value: Int32) {
        let fd = lastPidFile()
        if fd >= 0, rr_pwrite_decimal(fd, Int(value)) == 0 { return }
        _ = SystemCalls.writeFile("/proc/sys/kernel/ns_last_pid", "\(value)")
    }
}

extension Substring {
    var trimmingCharacters: String { String(self.drop(while: { $0 == " " || $0 == "\t" }).prefix(while: { $0 != " " && $0 != "\t" && $0 != "\n" })) }
}

extension String {
    var trimmingCharacters: String { Substring(self).trimmingCharacters }
}
