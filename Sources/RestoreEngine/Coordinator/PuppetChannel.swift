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
        case .exec:
            message = "cannot execute its payload \(tree.processes[plan.nodes[node].entryIndex ?? 0].process?.args?.first ?? "")"
            kind = e == ENOENT ? .notFound : .cannotExecute
        case .chdir:
            message = "cannot change to its working directory"
            kind = .notFound
        default:
            message = "failed during setup"
        }
        throw RestoreError(kind, operation: stage.operation, errno: e, entry: label(node), message: message)
    }

    func handleSignals() throws {
        var info = signalfd_siginfo()
        while read(namespace.signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let sig = Int32(info.ssi_signo)
            if sig == SIGCHLD {
                if let status = namespace.reapIfExited() {
                    throw RestoreError(.restoreFailed, operation: "waitpid", entry: label(0),
                                       message: "the namespace init died during the restore (\(InitLoop.exitCode(status)))")
                }
            } else if sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT {
                throw RestoreError(.interrupted(signal: sig), operation: "restore", entry: nil,
                                   message: "interrupted by signal \(sig) after \(created) of \(plan.nodes.count - 1) processes; the namespace was torn down")
            }
        }
    }

    func checkAlive(node: Int) throws {
        if namespace.reapIfExited() != nil {
            throw RestoreError(.restoreFailed, operation: "waitpid", entry: label(0), message: "the namespace init died during the restore")
        }
        let pid = hostPid[node]
        if pid > 0, ProcStatus.read(pid).map({ $0.isDead }) ?? true {
            throw RestoreError(.restoreFailed, operation: "wait", entry: label(node), message: "died during setup")
        }
    }
}
