import CLibcap
import CRestoreShim
import Glibc
import RestoreModel

/// Options of one `run`.
public struct RunOptions: Sendable {
    public var quiet = false
    public var verbose = false
    /// Show progress on stderr (the CLI sets it when stderr is a terminal and not quiet).
    public var progress = false
    /// Called once the tree is built and released, with the report read back from /proc.
    public var onReady: (@Sendable (RestoreReport) throws -> Void)?
    /// Testing aid: an extra process takes this PID in the new namespace before the restore.
    public var occupyPid: Int32?
    /// Testing aid: this many processes fork continuously in the namespace during the restore.
    public var noiseForkers = 0
    /// Seconds a single step may take before the restore is declared stuck.
    public var stepTimeout: Double = 30
    /// How PIDs are chosen.
    public var pidMethod: PidMethod = .auto
    /// PIDs the payloads' own forks must get (processes marked "spawn": "payload").
    public var pinned = PinnedForks()
    public var pinMismatch: PinMismatchPolicy = .warn
    /// Where the fork supervisor logs every pinned PID it handed out (JSON lines).
    public var pinLogPath: String?
    /// --map-users / --map-groups: replace the tree's uidMappings / gidMappings when not empty.
    public var mapUsers: [IDMapRequest] = []
    public var mapGroups: [IDMapRequest] = []

    public init() {}
}

/// How a process gets its recorded PID.
public enum PidMethod: String, Sendable, CaseIterable {
    /// clone3 with set_tid when the kernel has it (5.5+), else the dance.
    case auto
    /// clone3 with a set_tid array: one PID per namespace level, race-free.
    case clone3
    /// Write PID-1 to the namespace's ns_last_pid, then fork (for kernels before 5.5).
    /// Works inside our own user namespace; serialised; every PID is verified.
    case dance

    /// Whether this kernel has clone3's set_tid (Linux 5.5+).
    public static func kernelHasSetTid() -> Bool {
        KernelRelease(SystemCalls.kernelRelease())?.atLeast(5, 5) ?? true
    }
}

/// The coordinator: creates the namespaces, drives the puppets through the plan, verifies the
/// result from /proc, releases the payloads, then stays as the shim that forwards signals and
/// returns the tree's exit status. Any failure tears the whole namespace down.
public final class RestoreSession {
    let tree: ProcessTree
    var plan: RestorePlan
    let options: RunOptions
    var world: PuppetWorld!
    var initHostPid: pid_t = 0
    var hostPid: [Int32]
    var signalFD: Int32 = -1
    var coordinatorFD: Int32 = -1
    var report = RestoreReport()
    var phaseStart = SystemCalls.monotonicNanoseconds()
    var lastProgress: UInt64 = 0
    var restoreStart: UInt64 = 0
    var created = 0
    var ownLevels = 1
    /// PIDs of the tree's entries, for parent lookups.
    let treePids: Set<Int32>
    /// Host PID -> top-level PID of every process the runtime made.
    var topPidOfHost: [Int32: Int32] = [:]
    /// Testing aid nodes that fork continuously once created.
    var noiseNodes = Set<Int>()
    /// Step index of the first fork of a batch -> its place in the prepared fork list.
    var forkBatches: [Int: (offset: Int, count: Int)] = [:]

    public init(tree: ProcessTree, plan: RestorePlan, options: RunOptions) {
        self.tree = tree
        self.plan = plan
        self.options = options
        hostPid = Array(repeating: 0, count: plan.nodes.count)
        treePids = Set(tree.processes.map(\.pid))
    }

    // MARK: entry point

    /// Restores the tree and waits for it; returns the exit status `run` should exit with.
    public func run(phases earlier: [(String, Double)] = []) throws -> Int32 {
        report.phases = earlier
        report.treeHasInit = plan.treeHasInit
        if let pid = options.occupyPid { addOccupier(pid) }
        if options.noiseForkers > 0 { addNoise(options.noiseForkers) }
        let maps = try IDMapWriter(tree: tree, users: options.mapUsers, groups: options.mapGroups)
        try prepare(maps: maps.plan)
        endPhase("prepare")
        guard SystemCalls.threadCount() == 1 else {
            throw RestoreError(.restoreFailed, operation: "fork safety", entry: nil,
                               message: "the runtime has \(SystemCalls.threadCount()) threads before cloning; it must be single-threaded")
        }
        restoreStart = SystemCalls.monotonicNanoseconds()
        do {
            try createNamespace(maps: maps)
            endPhase("namespace")
            try build()
            endPhase("build")
            try verify()
            endPhase("verify")
            try releaseAll()
            endPhase("release")
        } catch {
            tearDown()
            finishProgress()
            throw error
        }
        finishProgress()
        report.processes = readBack()
        report.helpers = plan.nodes.filter(\.isHelper).compactMap { n in
            if case .helper(let purpose) = n.role { return RestoreReport.Helper(nspid: n.nspid, purpose: purpose.description) }
            return nil
        }
        endPhase("report")
        do { try options.onReady?(report) } catch {
            tearDown()
            throw error
        }
        return waitAsShim()
    }

    func endPhase(_ name: String) {
        let now = SystemCalls.monotonicNanoseconds()
        report.phases.append((name, Double(now - phaseStart) / 1e6))
        phaseStart = now
    }

    func label(_ node: Int) -> String { plan.nodes[node].label(in: tree) }

    /// Processes that fork without chosen PIDs all through the restore, for benchmarks.
    func addNoise(_ count: Int) {
        var used = Set(plan.nodes.map(\.pid))
        for e in tree.processes { used.formUnion(e.threads) }
        var candidate: Int32 = 4_190_000
        for _ in 0..<count {
            while used.contains(candidate) { candidate += 1 }
            used.insert(candidate)
            plan.nodes.append(RestorePlan.Node(role: .helper(.testingAid(.noise)),
                                               nspid: [candidate], forker: 0, namespaces: [0]))
            hostPid.append(0)
            let idx = plan.nodes.count - 1
            noiseNodes.insert(idx)
            plan.steps.insert(.fork(parent: 0, child: idx), at: 0)
            plan.steps.append(.retireHelper(idx))
        }
    }

    func addOccupier(_ pid: Int32) {
        let n = RestorePlan.Node(role: .helper(.testingAid(.occupier)), nspid: [pid], forker: 0, namespaces: [0],
                                 newPidNamespace: false, childSubreaper: false)
        plan.nodes.append(n)
        hostPid.append(0)
        let idx = plan.nodes.count - 1
        plan.steps.insert(.fork(parent: 0, child: idx), at: 0)
        plan.steps.append(.retireHelper(idx))
    }

    // MARK: preparation (no process exists yet)

    func prepare(maps: IDMapPlan) throws {
        let identities = ProcessIdentity.Preparer(maps: maps)
        var cwd = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&cwd, cwd.count) != nil else {
            throw RestoreError(.restoreFailed, operation: "getcwd", errno: SystemCalls.currentErrno, message: "cannot read the current directory")
        }
        let runtimeCwd = String(decoding: cwd.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var runtimeEnv: [String] = []
        var e = environ
        while let p = e.pointee { runtimeEnv.append(String(cString: p)); e += 1 }

        let count = plan.nodes.count
        let nodes = UnsafeMutablePointer<PreparedNode>.allocate(capacity: count)
        var topLevel: [pid_t] = []
        for (i, n) in plan.nodes.enumerated() {
            let setTid = UnsafeMutablePointer<pid_t>.allocate(capacity: n.depth)
            for (k, pid) in n.nspid.reversed().enumerated() { setTid[k] = pid }
            var prepared = PreparedNode(
                kind: n.isHelper ? .helper : (n.role == .runtimeInit ? .runtimeInit : .process),
                setTid: setTid, setTidCount: n.depth,
                cloneFlags: n.newPidNamespace ? (RR_CLONE_NEWPID | RR_CLONE_NEWNS) : 0,
                localPid: n.localPid, dancePid: n.nspid[max(0, n.depth - (n.newPidNamespace ? 2 : 1))], path: nil, argv: nil, envp: nil, cwd: nil,
                stopped: false, mountsProc: n.newPidNamespace,
                isNamespaceInit: i == 0 || n.newPidNamespace)
            if let entryIndex = n.entryIndex {
                let entry = tree.processes[entryIndex]
                prepared.stopped = entry.state == .stopped
                if let args = entry.process?.args, !args.isEmpty {
                    let env = entry.process?.env ?? runtimeEnv
                    let dir = entry.process?.cwd ?? runtimeCwd
                    var st = stat()
                    guard stat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                        throw RestoreError(.notFound, operation: "stat", errno: ENOENT, entry: entry.label,
                                           message: "working directory \"\(dir)\" does not exist")
                    }
                    let path = try ExecutableResolver.resolve(args[0], env: env, cwd: dir, entry: entry.label)
                    prepared.path = makeCString(path)
                    prepared.argv = makeCStringArray(args)
                    prepared.envp = makeCStringArray(env)
                    prepared.cwd = makeCString(dir)
                }
                prepared.identity = try identities.prepare(entry)
                let extra = entry.threads.filter { $0 != entry.pid }
                if !extra.isEmpty && prepared.path == nil && entry.state != .zombie {
                    // Per thread, its set_tid array: innermost level first.
                    let perLevel: [[Int32]] = entry.threadLevels.isEmpty
                        ? extra.map { [$0] }
                        : entry.threadLevels.filter { $0.first != entry.pid }
                    guard perLevel.allSatisfy({ $0.count == n.depth }) else {
                        throw RestoreError(.invalidTree, operation: "validate", entry: entry.label,
                                           message: "lives \(n.depth) PID-namespace levels deep, so each thread needs its TIDs at every level")
                    }
                    prepared.threadCount = extra.count
                    let tids = UnsafeMutablePointer<pid_t>.allocate(capacity: extra.count * n.depth)
                    let stacks = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: extra.count)
                    for (t, levels) in perLevel.enumerated() {
                        for (k, tid) in levels.reversed().enumerated() { tids[t * n.depth + k] = tid }
                        let stack = mmap(nil, parkedThreadStackSize, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0)
                        guard let stack, stack != MAP_FAILED else {
                            throw RestoreError(.restoreFailed, operation: "mmap", errno: SystemCalls.currentErrno, entry: entry.label, message: "cannot allocate thread stacks")
                        }
                        stacks[t] = stack // clone3 takes the lowest address and adds stack_size itself
                    }
                    prepared.threadTids = tids
                    prepared.threadStacks = stacks
                }
                if !plan.treeHasInit, plan.nodes[i].forker != nil, parentIsInit(entryIndex) {
                    topLevel.append(n.nspid[0])
                }
            }
            nodes[i] = prepared
        }
        let top = UnsafeMutablePointer<pid_t>.allocate(capacity: max(topLevel.count, 1))
        for (i, p) in topLevel.enumerated() { top[i] = p }

        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw RestoreError(.restoreFailed, operation: "socketpair", errno: SystemCalls.currentErrno, message: "cannot create the control socket")
        }
        coordinatorFD = fds[0]
        let r = rr_enable_passcred(coordinatorFD)
        guard r == 0 else { throw RestoreError(.restoreFailed, operation: "setsockopt(SO_PASSCRED)", errno: -r, message: "cannot enable credentials passing") }
        guard let control = ControlBlock(nodes: count) else {
            throw RestoreError(.restoreFailed, operation: "mmap", errno: SystemCalls.currentErrno, message: "cannot map the control block")
        }
        let dance = options.pidMethod == .dance || (options.pidMethod == .auto && !PidMethod.kernelHasSetTid())
        if dance, let deep = plan.nodes.firstIndex(where: { $0.depth > 2 || ($0.depth == 2 && !$0.newPidNamespace) }) {
            throw RestoreError(.invalidTree, operation: "ns_last_pid", entry: label(deep),
                               message: "lives \(plan.nodes[deep].depth) PID-namespace levels deep; the PID dance can choose a PID in one namespace only (the forker's), so nested trees need clone3's set_tid (Linux 5.5+)")
        }
        var supervisor: ForkSupervisor?
        if !options.pinned.isEmpty {
            var logFD: Int32 = -1
            if let path = options.pinLogPath {
                logFD = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard logFD >= 0 else {
                    throw RestoreError(.input, operation: "open", errno: SystemCalls.currentErrno, entry: path, message: "cannot write the pin log")
                }
            }
            supervisor = try ForkSupervisor(pinned: options.pinned, tree: tree, policy: options.pinMismatch, logFD: logFD)
        }
        // Runs of consecutive forks by one parent become one batch: the parent clones them one
        // after another while the coordinator only collects their answers.
        var list: [Int32] = []
        var i = 0
        while i < plan.steps.count {
            guard case .fork(let parent, _) = plan.steps[i] else { i += 1; continue }
            var j = i
            var run: [Int32] = []
            while j < plan.steps.count, case .fork(let p, let c) = plan.steps[j], p == parent {
                run.append(Int32(c))
                j += 1
            }
            if run.count > 1 {
                forkBatches[i] = (offset: list.count, count: run.count)
                list += run
            }
            i = j
        }
        let forkList = UnsafeMutablePointer<Int32>.allocate(capacity: max(list.count, 1))
        for (k, v) in list.enumerated() { forkList[k] = v }
        world = PuppetWorld(control: control, answerFD: fds[1], coordinatorFD: fds[0], nodes: nodes, nodeCount: count,
                            topLevelPids: top, topLevelCount: topLevel.count, strings: FixedStrings(),
                            scratch: UnsafeMutablePointer<UInt8>.allocate(capacity: 64), useDance: dance,
                            supervisor: supervisor, forkList: forkList)
        ownLevels = ProcStatus.ownLevelCount()
        // The kernel allows 32 PID-namespace levels below the initial one (MAX_PID_NS_LEVEL);
        // the runtime's namespace is one more level below the caller's.
        let available = Self.maxPidNamespaceLevel - (ownLevels - 1)
        if let deepest = plan.nodes.max(by: { $0.depth < $1.depth }), deepest.depth > available {
            throw RestoreError(.environment, operation: "clone3(CLONE_NEWPID)", errno: ENOSPC, entry: label(plan.nodes.firstIndex(of: deepest)!),
                               message: "needs \(deepest.depth) PID-namespace levels, but only \(available) are left below the caller's level \(ownLevels - 1) (the kernel allows \(Self.maxPidNamespaceLevel))")
        }
    }

    static let maxPidNamespaceLevel = 32

    func parentIsInit(_ entryIndex: Int) -> Bool {
        let e = tree.processes[entryIndex]
        return e.ppid == e.pid || !treePids.contains(e.ppid)
    }

    // MARK: the namespace

    func createNamespace(maps: IDMapWriter) throws {
        var set = InitLoop.signalSet(withChild: true)
        var old = sigset_t()
        _ = rr_block_signals(&set, &old)
        let seen = world.control.sequence(0)
        let pid = rr_clone3(RR_CLONE_NEWUSER | RR_CLONE_NEWPID | RR_CLONE_NEWNS, SIGCHLD, nil, 0)
        if pid == 0 {
            // The namespace init. If the runtime dies, so does the namespace.
            _ = rr_prctl_set_pdeathsig(SIGKILL)
            close(world.coordinatorFD)
            Puppet.run(world, as: 0, seen: seen)
        }
        if pid < 0 {
            throw environmentError(errno: Int32(-pid))
        }
        initHostPid = pid_t(pid)
        hostPid[0] = initHostPid
        close(world.answerFD)
        signalFD = signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        _ = try awaitAnswer(from: 0, expecting: .ready)
        try maps.write(to: initHostPid)
        try checkCapabilities()
        let maxPid = plan.nodes.flatMap(\.nspid).max() ?? 1
        world.control.post(0, .setupNamespace, maxPid + 1)
        _ = try awaitAnswer(from: 0, expecting: .done)
    }

    func environmentError(errno e: Int32) -> RestoreError {
        var why = "cannot create a user and PID namespace"
        if e == EPERM {
            why += "; unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0, or a security module)"
        } else if e == ENOSPC {
            let limit = SystemCalls.readText("/proc/sys/user/max_user_namespaces")?.trimmingSuffixNewline ?? "?"
            why += "; the user namespace limit is reached (user.max_user_namespaces = \(limit))"
        } else if e == EINVAL || e == ENOSYS {
            why += "; this kernel lacks clone3 (Linux 5.3+) or set_tid (5.5+)"
        }
        return RestoreError(.environment, operation: "clone3(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS)", errno: e, entry: nil, message: why)
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

    // MARK: building

    func build() throws {
        let total = plan.nodes.count
        var index = 0
        while index < plan.steps.count {
            let step = plan.steps[index]
            index += 1
            if let batch = forkBatches[index - 1], case .fork(let parent, _) = step {
                try forkBatch(parent: parent, batch, total: total)
                index += batch.count - 1
                continue
            }
            switch step {
            case .fork(let parent, let child):
                world.control.post(parent, .fork, Int32(child))
                let (answer, sender) = try awaitAnswer(from: child, expecting: .ready, askedOf: parent)
                try accept(child: child, answer, sender: sender, total: total)
            case .setsid(let n):
                world.control.post(n, .setsid)
                _ = try awaitAnswer(from: n, expecting: .done)
            case .setpgid(let n, let leader):
                let level = plan.nodes[n].depth - 1
                world.control.post(n, .setpgid, plan.nodes[leader].nspid[level])
                _ = try awaitAnswer(from: n, expecting: .done)
            case .setChildSubreaper(let n):
                world.control.post(n, .setChildSubreaper)
                _ = try awaitAnswer(from: n, expecting: .done)
            case .retireHelper(let h):
                let forker = plan.nodes[h].forker ?? 0
                world.control.post(h, .exit, 0)
                world.control.post(forker, .reap, plan.nodes[h].nspid[plan.nodes[forker].depth - 1])
                _ = try awaitAnswer(from: forker, expecting: .done)
            case .becomeZombie(let n, let parent):
                let status: Int32
                switch tree.processes[plan.nodes[n].entryIndex!].exitStatus ?? .code(0) {
                case .code(let c): status = -c
                case .signal(let s): status = s
                }
                world.control.post(n, .die, status)
                world.control.post(parent, .awaitZombie, plan.nodes[n].nspid[plan.nodes[parent].depth - 1])
                _ = try awaitAnswer(from: parent, expecting: .done)
            }
        }
    }

    /// A new process said it is up: its PID must be the planned one (the dance can miss it).
    func accept(child: Int, _ answer: PuppetAnswer, sender: Int32, total: Int) throws {
        if answer.value != plan.nodes[child].localPid {
            throw RestoreError(.restoreFailed, operation: "clone3", entry: label(child),
                               message: "was created with PID \(answer.value) instead of \(plan.nodes[child].localPid)")
        }
        hostPid[child] = sender
        if noiseNodes.contains(child) { world.control.post(child, .noise) }
        created += 1
        showProgress(total: total)
    }

    /// Posts one batch of sibling forks and collects every child's answer, in any order.
    func forkBatch(parent: Int, _ batch: (offset: Int, count: Int), total: Int) throws {
        world.control.post(parent, .forkBatch, Int32(batch.offset), Int32(batch.count))
        var pending = batch.count
        while pending > 0 {
            let waitingFor = Int(world.forkList[batch.offset + batch.count - pending])
            let (answer, sender) = try awaitAnswer(from: nil, expecting: .ready, askedOf: parent, fallback: waitingFor)
            try accept(child: Int(answer.node), answer, sender: sender, total: total)
            pending -= 1
        }
    }

    /// Waits for one answer. `askedOf` is the node that must stay alive meanwhile.
    @discardableResult
    func awaitAnswer(from node: Int?, expecting kind: PuppetAnswer.Kind, askedOf: Int? = nil, fallback: Int = 0) throws -> (PuppetAnswer, Int32) {
        let node = node ?? -1
        let blame = askedOf ?? (node >= 0 ? node : fallback)
        let deadline = SystemCalls.monotonicNanoseconds() + UInt64(options.stepTimeout * 1e9)
        while true {
            var answer = PuppetAnswer(node: -1, kind: 0, stage: 0, value: 0)
            var sender: pid_t = 0
            let r = withUnsafeMutableBytes(of: &answer) {
                rr_recv_record(coordinatorFD, signalFD, $0.baseAddress, $0.count, &sender, 250)
            }
            if r == -Int(ECANCELED) {
                try handleSignalsDuringRestore()
                continue
            }
            if r == -Int(ETIMEDOUT) {
                try checkAlive(node: blame)
                if SystemCalls.monotonicNanoseconds() > deadline {
                    throw RestoreError(.restoreFailed, operation: "wait", errno: ETIMEDOUT, entry: label(blame),
                                       message: "did not answer within \(Int(options.stepTimeout)) s")
                }
                continue
            }
            if r == 0 {
                throw RestoreError(.restoreFailed, operation: "wait", entry: label(blame),
                                   message: "every restored process is gone: the namespace died")
            }
            if r < 0 {
                throw RestoreError(.restoreFailed, operation: "recvmsg", errno: Int32(-r), entry: nil, message: "lost the control socket")
            }
            try check(answer)
            if (node < 0 || Int(answer.node) == node) && answer.kind == kind.rawValue { return (answer, sender) }
        }
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

    func handleSignalsDuringRestore() throws {
        var info = signalfd_siginfo()
        while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let sig = Int32(info.ssi_signo)
            if sig == SIGCHLD {
                var status: Int32 = 0
                if waitpid(initHostPid, &status, WNOHANG) == initHostPid {
                    initHostPid = 0
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
        var status: Int32 = 0
        if initHostPid > 0, waitpid(initHostPid, &status, WNOHANG) == initHostPid {
            initHostPid = 0
            throw RestoreError(.restoreFailed, operation: "waitpid", entry: label(0), message: "the namespace init died during the restore")
        }
        let pid = hostPid[node]
        if pid > 0, let s = ProcStatus.read(pid), s.state == "Z" || s.state == "X" {
            throw RestoreError(.restoreFailed, operation: "wait", entry: label(node), message: "died during setup")
        } else if pid > 0, ProcStatus.read(pid) == nil {
            throw RestoreError(.restoreFailed, operation: "wait", entry: label(node), message: "died during setup")
        }
    }

    func showProgress(total: Int) {
        guard options.progress else { return }
        let now = SystemCalls.monotonicNanoseconds()
        guard now - restoreStart > 1_000_000_000, now - lastProgress > 100_000_000 else { return }
        lastProgress = now
        SystemCalls.printError("\rrootless-restore: created \(created) of \(total - 1) processes\u{1B}[K")
    }

    func finishProgress() {
        if options.progress && lastProgress != 0 { SystemCalls.printError("\r\u{1B}[K") }
    }

    // MARK: verification and release

    /// Every process, read back from /proc, must be where the tree says before any payload runs.
    func verify() throws {
        for (node, host) in hostPid.enumerated() where host > 0 { topPidOfHost[host] = plan.nodes[node].pid }
        for (i, entry) in tree.processes.enumerated() {
            let node = plan.nodeOfEntry[i]
            guard let s = ProcStatus.read(hostPid[node]) else {
                throw RestoreError(.restoreFailed, operation: "verify", entry: entry.label, message: "vanished before its payload started")
            }
            let seen = view(s)
            let expectedPpid = expectedParent(entry)
            var problems: [String] = []
            if seen.nspid != entry.nspid { problems.append("PIDs \(seen.nspid) instead of \(entry.nspid)") }
            if seen.ppid != expectedPpid { problems.append("ppid \(seen.ppid) instead of \(expectedPpid)") }
            if seen.pgid != entry.pgid { problems.append("pgid \(seen.pgid) instead of \(entry.pgid)") }
            if seen.sid != entry.sid { problems.append("sid \(seen.sid) instead of \(entry.sid)") }
            if entry.state == .zombie && s.state != "Z" { problems.append("state \(s.state) instead of zombie") }
            if !problems.isEmpty {
                throw RestoreError(.restoreFailed, operation: "verify", entry: entry.label,
                                   message: "was restored with " + problems.joined(separator: ", "))
            }
        }
    }

    func expectedParent(_ entry: ProcessEntry) -> Int32 {
        if plan.treeHasInit && entry.pid == 1 { return 0 }
        if entry.ppid != entry.pid && treePids.contains(entry.ppid) { return entry.ppid }
        return 1
    }

    /// A process as seen from the tree's top namespace.
    func view(_ s: ProcStatus) -> (nspid: [Int32], ppid: Int32, pgid: Int32, sid: Int32) {
        let k = ownLevels
        let nspid = Array(s.nspid.dropFirst(k))
        let pgid = s.nspgid.count > k ? s.nspgid[k] : 0
        let sid = s.nssid.count > k ? s.nssid[k] : 0
        var ppid: Int32 = 0
        if s.hostPPid != Int32(getpid()) {
            if let known = topPidOfHost[s.hostPPid] { ppid = known }
            else if let p = ProcStatus.read(s.hostPPid), p.nspid.count > k { ppid = p.nspid[k] }
        }
        return (nspid, ppid, pgid, sid)
    }

    func releaseAll() throws {
        // Children before parents so no payload sees a parent run ahead; the init last.
        for node in (1..<plan.nodes.count).reversed() {
            let n = plan.nodes[node]
            if n.isHelper { continue }
            if let i = n.entryIndex, tree.processes[i].state == .zombie { continue }
            world.control.post(node, .release)
        }
        world.control.post(0, .release)
        // Wait until every puppet has exec'd (CLOEXEC), holds, or stopped: end of file.
        while true {
            var answer = PuppetAnswer(node: -1, kind: 0, stage: 0, value: 0)
            var sender: pid_t = 0
            let r = withUnsafeMutableBytes(of: &answer) {
                rr_recv_record(coordinatorFD, signalFD, $0.baseAddress, $0.count, &sender, 1000)
            }
            if r == 0 { break }
            if r == -Int(ECANCELED) { try handleSignalsDuringRestore(); continue }
            if r == -Int(ETIMEDOUT) { try checkAlive(node: 0); continue }
            if r < 0 { throw RestoreError(.restoreFailed, operation: "recvmsg", errno: Int32(-r), message: "lost the control socket") }
            try check(answer)
        }
        close(coordinatorFD)
        // Stopped processes close their end just before stopping; wait until they are stopped.
        let deadline = SystemCalls.monotonicNanoseconds() + 5_000_000_000
        for (i, entry) in tree.processes.enumerated() where entry.state == .stopped {
            let pid = hostPid[plan.nodeOfEntry[i]]
            while let s = ProcStatus.read(pid), s.state != "T", SystemCalls.monotonicNanoseconds() < deadline {
                var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                nanosleep(&ts, nil)
            }
        }
    }

    func readBack() -> [RestoreReport.Process] {
        var out: [RestoreReport.Process] = []
        for (i, _) in tree.processes.enumerated() {
            let pid = hostPid[plan.nodeOfEntry[i]]
            guard let s = ProcStatus.read(pid) else { continue }
            let v = view(s)
            out.append(RestoreReport.Process(index: i, hostPid: pid, nspid: v.nspid, ppid: v.ppid, pgid: v.pgid, sid: v.sid,
                                             nspgid: Array(s.nspgid.dropFirst(ownLevels)), nssid: Array(s.nssid.dropFirst(ownLevels)),
                                             state: s.stateName, threads: s.threads))
        }
        return out
    }

    // MARK: after the restore

    /// Forward signals to the namespace init until it exits; return its status.
    func waitAsShim() -> Int32 {
        while true {
            var status: Int32 = 0
            let r = waitpid(initHostPid, &status, WNOHANG)
            if r == initHostPid { return InitLoop.exitCode(status) }
            var fds = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&fds, 1, 1000)
            var info = signalfd_siginfo()
            while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                let sig = Int32(info.ssi_signo)
                if sig != SIGCHLD { _ = rr_kill(initHostPid, sig) }
            }
        }
    }

    /// Kill the namespace's init: the kernel kills everything else in the namespace.
    func tearDown() {
        guard initHostPid > 0 else { return }
        _ = rr_kill(initHostPid, SIGKILL)
        var status: Int32 = 0
        while waitpid(initHostPid, &status, 0) < 0 && SystemCalls.currentErrno == EINTR {}
        initHostPid = 0
    }
}
