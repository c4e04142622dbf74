import CRestoreShim
import Glibc
import RestoreModel

/// The coordinator's end of the puppets' answer socket: waits for answers with a step
/// timeout, turns failure answers into the user's error, watches the init and the signals,
/// and learns each new process's host PID (SCM_CREDENTIALS).
final class PuppetChannel {
    let world: PreparedWorld
    let namespace: LiveNamespace
    let tree: ProcessTree
    let stepTimeout: Double
    /// Host PID of every node created so far (0: not yet, or a retired helper).
    var hostPid: [Int32]
    /// Processes created so far, for progress and the interruption message.
    var created = 0
    private var fd: Int32

    init(world: PreparedWorld, namespace: LiveNamespace, tree: ProcessTree, stepTimeout: Double) {
        self.world = world
        self.namespace = namespace
        self.tree = tree
        self.stepTimeout = stepTimeout
        fd = world.puppets.coordinatorFD
        hostPid = Array(repeating: 0, count: world.plan.nodes.count)
        hostPid[0] = namespace.initHostPid
    }

    var plan: RestorePlan { world.plan }
    func label(_ node: Int) -> String { world.label(node, tree) }

    enum Received {
        case answer(PuppetAnswer, sender: Int32)
        case timeout
        /// Every puppet has closed its end: each exec'd, holds, or stopped.
        case endOfFile
    }

    /// One record, or a timeout after `ms`; signals that arrived meanwhile are handled first.
    func receive(timeoutMs ms: Int32) throws -> Received {
        while true {
            var answer = PuppetAnswer(node: -1, kind: 0, stage: 0, value: 0)
            var sender: pid_t = 0
            let r = withUnsafeMutableBytes(of: &answer) {
                rr_recv_record(fd, namespace.signalFD, $0.baseAddress, $0.count, &sender, ms)
            }
            if r == -Int(ECANCELED) { try handleSignals(); continue }
            if r == -Int(ETIMEDOUT) { return .timeout }
            if r == 0 { return .endOfFile }
            if r < 0 { throw RestoreError(.restoreFailed, operation: "recvmsg", errno: Int32(-r), message: "lost the control socket") }
            try check(answer)
            return .answer(answer, sender: sender)
        }
    }

    /// Waits for one answer. `askedOf` is the node that must stay alive meanwhile.
    @discardableResult
    func awaitAnswer(from node: Int?, expecting kind: PuppetAnswer.Kind, askedOf: Int? = nil, fallback: Int = 0) throws -> (PuppetAnswer, Int32) {
        let node = node ?? -1
        let blame = askedOf ?? (node >= 0 ? node : fallback)
        let deadline = MonotonicClock.nanoseconds() + UInt64(stepTimeout * 1e9)
        while true {
            switch try receive(timeoutMs: 250) {
            case .timeout:
                try checkAlive(node: blame)
                if MonotonicClock.nanoseconds() > deadline {
                    throw RestoreError(.restoreFailed, operation: "wait", errno: ETIMEDOUT, entry: label(blame),
                                       message: "did not answer within \(Int(stepTimeout)) s")
                }
            case .endOfFile:
                // Every puppet is gone at once: the namespace's init died, which takes everything
                // with it. Blame the init, not the process that was asked last.
                if let why = initDeath(waitingMs: 1000) { throw why }
                throw RestoreError(.restoreFailed, operation: "wait", entry: label(blame),
                                   message: "every restored process is gone: the namespace died")
            case .answer(let answer, let sender):
                if (node < 0 || Int(answer.node) == node) && answer.kind == kind.rawValue { return (answer, sender) }
            }
        }
    }

    /// Closes the coordinator's end (after the release, or when giving up).
    func close() {
        guard fd >= 0 else { return }
        world.arena.close(fd: fd)
        fd = -1
    }

    /// Turns a failure answer into the error the user reads.
    func check(_ answer: PuppetAnswer) throws {
        guard answer.kind == PuppetAnswer.Kind.failed.rawValue else { return }
        let node = Int(answer.node)
        let stage = PuppetStage(rawValue: answer.stage) ?? .clone3
        let e = answer.value
        var message: String
        var kind = RestoreError.Kind.restoreFailed
        switch stage {
        case .clone3:
            let n = plan.nodes[node]
            message = "cannot be created with PID \(n.nspid.count == 1 ? "\(n.pid)" : "\(n.nspid)")"
            if e == EEXIST { message += ": the PID is already in use in the namespace" }
            if e == EPERM { message += ": no CAP_SYS_ADMIN over the PID namespace" }
            if e == EINVAL { message += ": the PID is out of range for the namespace (pid_max) or the namespace has no init" }
            if e == ENOMEM { message += ": the namespace's init is gone" }
            if e == EAGAIN { message += ": \(Self.processLimitText())" }
        case .exec:
            message = "cannot execute its payload \(tree.processes[plan.nodes[node].entryIndex ?? 0].process?.args?.first ?? "")"
            kind = e == ENOENT ? .notFound : .cannotExecute
        case .chdir:
            message = "cannot change to its working directory"
            kind = .notFound
        case .threadTid:
            throw RestoreError(.restoreFailed, operation: stage.operation, entry: label(node),
                               message: "a recorded thread was created with TID \(e) instead (ns_last_pid moved under the dance)")
        case .listenerHandOver:
            message = "cannot hand its fork listener to the runtime's init"
            if e == ETOOMANYREFS {
                message += ": for \(ForkSupervisor.handOverPatienceNs / 1_000_000_000) s, this user had more descriptors in flight (sent over Unix sockets, not yet received, by any of its processes) than the open-file limit; raise the open-file limit (ulimit -n), or end what holds them"
            }
        default:
            message = "failed during setup"
        }
        // Under the dance (no clone3) processes and threads are made with the legacy clone.
        var operation = stage.operation
        if world.puppets.useDance && (stage == .clone3 || stage == .threads) { operation = stage == .clone3 ? "clone" : "clone(CLONE_THREAD)" }
        throw RestoreError(kind, operation: operation, errno: e, entry: label(node), message: message)
    }

    func handleSignals() throws {
        var info = signalfd_siginfo()
        while read(namespace.signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let sig = Int32(info.ssi_signo)
            if sig == SIGCHLD {
                if let why = initDeath(waitingMs: 0) { throw why }
            } else if sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT {
                throw RestoreError(.interrupted(signal: sig), operation: "restore", entry: nil,
                                   message: "interrupted by signal \(sig) after \(created) of \(plan.nodes.count - 1) processes; the namespace was torn down")
            }
        }
    }

    /// The error naming the namespace init when it has died (waiting up to `ms` for it to be
    /// reapable: it may still be taking the namespace down).
    func initDeath(waitingMs ms: Int) -> RestoreError? {
        // An init that is exiting will be reapable once the namespace is empty: wait for it.
        let wait = namespace.initIsExiting ? max(ms, Int(stepTimeout * 1000)) : ms
        let deadline = MonotonicClock.nanoseconds() + UInt64(wait) * 1_000_000
        while true {
            if let status = namespace.reapIfExited() {
                return RestoreError(.restoreFailed, operation: "waitpid", entry: label(0) + ", the namespace init",
                                    message: "died during the restore (\(Self.describe(status))), and every process of the namespace with it")
            }
            if MonotonicClock.nanoseconds() >= deadline { return nil }
            var ts = timespec(tv_sec: 0, tv_nsec: 5_000_000)
            nanosleep(&ts, nil)
        }
    }

    static func describe(_ status: Int32) -> String {
        if rr_wifsignaled(status) != 0 { return "killed by signal \(rr_wtermsig(status))" }
        if rr_wifexited(status) != 0 { return "exit code \(rr_wexitstatus(status))" }
        return "status \(status)"
    }

    /// EAGAIN from a fork: which limit is the likely one, with its value.
    static func processLimitText() -> String {
        var nproc = rlimit()
        let limit = getrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &nproc) == 0 && nproc.rlim_cur != rlim_t.max
            ? String(nproc.rlim_cur) : "unlimited"
        let threads = SystemCalls.readText("/proc/sys/kernel/threads-max")?.trimmingSuffixNewline ?? "?"
        return "a process limit is reached: the user's (ulimit -u, RLIMIT_NPROC = \(limit), counted over all of the user's processes) or the system's (kernel.threads-max = \(threads)); raise `ulimit -u` or restore fewer processes"
    }

    func checkAlive(node: Int) throws {
        if let why = initDeath(waitingMs: 0) { throw why }
        let pid = hostPid[node]
        if pid > 0, ProcStatus.read(pid).map({ $0.isDead }) ?? true {
            // A dying init takes every process with it before it can be reaped: give it time.
            if let why = initDeath(waitingMs: 1000) { throw why }
            throw RestoreError(.restoreFailed, operation: "wait", entry: label(node), message: "died during setup")
        }
    }
}
