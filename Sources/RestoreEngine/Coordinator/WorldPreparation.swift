import CLibcap
import CRestoreShim
import Glibc
import RestoreModel

/// Phase 1, before any process exists: every buffer, string, stack and socket the children
/// will use, the id maps checked, the fork supervisor built. Owns all of it (its arena) and
/// frees it when dropped, whether the restore got anywhere or not.
final class PreparedWorld {
    let arena: Arena
    /// What the puppets see (plain pointers into the arena).
    let puppets: PuppetWorld
    /// The plan as executed: the tree's plan plus testing aids.
    let plan: RestorePlan
    let maps: IDMapWriter
    /// Step index of the first fork of a batch -> its place in the prepared fork list.
    let forkBatches: [Int: (offset: Int, count: Int)]
    /// Testing-aid nodes that fork continuously once created.
    let noiseNodes: Set<Int>
    /// PID-namespace levels of the runtime as its /proc shows them.
    let ownLevels: Int
    /// Kept alive with the world: the puppets use the filters it compiled.
    let identities: ProcessIdentity.Preparer
    /// Who takes which terminal, and the foreground groups to set once groups exist.
    let terminals: TerminalPlan

    /// The kernel allows 32 PID-namespace levels below the initial one (MAX_PID_NS_LEVEL).
    static let maxPidNamespaceLevel = 32

    private init(arena: Arena, puppets: PuppetWorld, plan: RestorePlan, maps: IDMapWriter,
                 forkBatches: [Int: (offset: Int, count: Int)], noiseNodes: Set<Int>, ownLevels: Int,
                 identities: ProcessIdentity.Preparer, terminals: TerminalPlan) {
        self.arena = arena
        self.puppets = puppets
        self.plan = plan
        self.maps = maps
        self.forkBatches = forkBatches
        self.noiseNodes = noiseNodes
        self.ownLevels = ownLevels
        self.identities = identities
        self.terminals = terminals
    }

    func label(_ node: Int, _ tree: ProcessTree) -> String { plan.nodes[node].label(in: tree) }

    static func prepare(tree: ProcessTree, plan treePlan: RestorePlan, options: RunOptions) throws -> PreparedWorld {
        let (plan, noiseNodes) = TestingAids.add(to: treePlan, tree: tree, occupy: options.occupyPid, noise: options.noiseForkers)
        let maps = try IDMapWriter(tree: tree, users: options.mapUsers, groups: options.mapGroups)
        let arena = Arena()
        let identities = ProcessIdentity.Preparer(maps: maps.plan, arena: arena)
        let treePids = Set(tree.processes.map(\.pid))

        var cwd = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&cwd, cwd.count) != nil else {
            throw RestoreError(.restoreFailed, operation: "getcwd", errno: SystemCalls.currentErrno, message: "cannot read the current directory")
        }
        let runtimeCwd = String(decoding: cwd.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var runtimeEnv: [String] = []
        var e = environ
        while let p = e.pointee { runtimeEnv.append(String(cString: p)); e += 1 }

        let count = plan.nodes.count
        let nodes = arena.allocate(PreparedNode.self, count: count)
        let terminals = try TerminalPlan(tree: tree, plan: plan)
        var topLevel: [pid_t] = []
        for (i, n) in plan.nodes.enumerated() {
            let setTid = arena.allocate(pid_t.self, count: n.depth)
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
                    prepared.path = arena.cString(path)
                    prepared.argv = arena.cStringArray(args)
                    prepared.envp = arena.cStringArray(env)
                    prepared.cwd = arena.cString(dir)
                    prepared.failureLabel = arena.cString("rootless-restore: error: \(entry.label)")
                }
                prepared.identity = try identities.prepare(entry)
                prepared.terminals = terminals.prepared(for: entry, node: i)
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
                    let tids = arena.allocate(pid_t.self, count: extra.count * n.depth)
                    let stacks = arena.allocate(UnsafeMutableRawPointer?.self, count: extra.count)
                    for (t, levels) in perLevel.enumerated() {
                        for (k, tid) in levels.reversed().enumerated() { tids[t * n.depth + k] = tid }
                        guard let stack = arena.map(parkedThreadStackSize, stack: true) else {
                            throw RestoreError(.restoreFailed, operation: "mmap", errno: SystemCalls.currentErrno, entry: entry.label, message: "cannot allocate thread stacks")
                        }
                        stacks[t] = stack // clone3 takes the lowest address and adds stack_size itself
                    }
                    prepared.threadTids = tids
                    prepared.threadStacks = stacks
                }
                if !plan.treeHasInit, plan.nodes[i].forker != nil, entry.ppid == entry.pid || !treePids.contains(entry.ppid) {
                    topLevel.append(n.nspid[0])
                }
            }
            nodes[i] = prepared
        }
        let top = arena.allocate(pid_t.self, count: topLevel.count)
        for (i, p) in topLevel.enumerated() { top[i] = p }

        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw RestoreError(.restoreFailed, operation: "socketpair", errno: SystemCalls.currentErrno, message: "cannot create the control socket")
        }
        arena.adopt(fd: fds[0])
        arena.adopt(fd: fds[1])
        let r = rr_enable_passcred(fds[0])
        guard r == 0 else { throw RestoreError(.restoreFailed, operation: "setsockopt(SO_PASSCRED)", errno: -r, message: "cannot enable credentials passing") }
        guard let control = ControlBlock(nodes: count, in: arena) else {
            throw RestoreError(.restoreFailed, operation: "mmap", errno: SystemCalls.currentErrno, message: "cannot map the control block")
        }
        let probe = options.pidMethod == .dance ? 0 : rr_probe_clone3()
        // Only ENOSYS (no clone3) and E2BIG (clone3 without set_tid) mean a missing set_tid;
        // any other answer is named as it is (a profile or security module refusing clone3).
        let probeText = probe == 0 ? "clone3 is not available here (ENOSYS: Linux 5.3+, or a seccomp profile such as Docker's default hides it)"
            : probe == 1 ? "clone3 here has no set_tid (E2BIG: Linux 5.5+)"
            : "clone3 fails here with \(ErrnoName.describe(-probe)), which is not how a kernel says it lacks clone3 (ENOSYS) or set_tid (E2BIG): a seccomp profile or security module refuses it"
        if options.pidMethod == .clone3 && probe != 2 {
            throw RestoreError(.environment, operation: "clone3", errno: probe == 0 ? ENOSYS : (probe == 1 ? E2BIG : -probe),
                               message: probeText + (probe < 0 ? "; --pid-method dance, which does not use clone3, may work" : "; --pid-method dance works without it"))
        }
        let dance = options.pidMethod == .dance || (options.pidMethod == .auto && probe != 2)
        if dance && options.pidMethod == .auto && !options.quiet {
            // Said once: the dance is serialised and single-level, which a user may notice.
            SystemCalls.printError("rootless-restore: note: \(probeText); choosing PIDs with the ns_last_pid dance instead (--pid-method dance: one fork at a time, single-level trees)")
        }
        if dance, let deep = (0..<count).first(where: { nodes[$0].threadCount > 0 && plan.nodes[$0].depth > 1 }) {
            throw RestoreError(.invalidTree, operation: "ns_last_pid", entry: plan.nodes[deep].label(in: tree),
                               message: "has threads in a nested PID namespace; the PID dance can choose a TID in one namespace only, so they need clone3's set_tid (Linux 5.5+)")
        }
        if dance, let deep = plan.nodes.firstIndex(where: { $0.depth > 2 || ($0.depth == 2 && !$0.newPidNamespace) }) {
            throw RestoreError(.invalidTree, operation: "ns_last_pid", entry: plan.nodes[deep].label(in: tree),
                               message: "lives \(plan.nodes[deep].depth) PID-namespace levels deep; the PID dance can choose a PID in one namespace only (the forker's), so nested trees need clone3's set_tid (Linux 5.5+)")
        }
        let ownLevels = ProcStatus.ownLevelCount()
        // The runtime's namespace is one more level below the caller's.
        let available = maxPidNamespaceLevel - (ownLevels - 1)
        if let deepest = plan.nodes.indices.max(by: { plan.nodes[$0].depth < plan.nodes[$1].depth }),
           plan.nodes[deepest].depth > available {
            throw RestoreError(.environment, operation: "clone3(CLONE_NEWPID)", errno: ENOSPC, entry: plan.nodes[deepest].label(in: tree),
                               message: "needs \(plan.nodes[deepest].depth) PID-namespace levels, but only \(available) are left below the caller's level \(ownLevels - 1) (the kernel allows \(maxPidNamespaceLevel))")
        }

        var supervisor: ForkSupervisor?
        if !options.pinned.isEmpty {
            var logFD: Int32 = -1
            if let path = options.pinLogPath {
                // A new file renamed over the target at once: nothing planted there is followed.
                let log = try OutputFile.create(path, what: "the pin log")
                try log.commit(keepOpen: true)
                logFD = log.fd
            }
            do {
                supervisor = try ForkSupervisor(pinned: options.pinned, tree: tree, policy: options.pinMismatch, logFD: logFD,
                                            missingAfter: options.pinWaitNanoseconds)
                for (i, n) in plan.nodes.enumerated() where n.entryIndex != nil {
                    supervisor?.nodeLabels[Int32(i)] = n.label(in: tree)
                    // Seized as their listener arrives, so their first fork is covered too; a
                    // process restored stopped is left until its first fork (it reads T, not t).
                    if let e = n.entryIndex, tree.processes[e].state == .running { supervisor?.nodePids[Int32(i)] = n.nspid[0] }
                }
                supervisor?.restartsInterruptedForks = options.interruptedForks == .restart
                if options.testingFault == .slowReceive { supervisor?.receiveDelayMicroseconds = 300 }
            } catch {
                if logFD >= 0 { close(logFD) }
                throw error
            }
        }
        // Paused halfway, a batch's forker would run ahead of the coordinator and create the
        // rest: that testing aid forks in lockstep, so half the tree exists when it pauses.
        let (list, batches) = options.testingFault == .pauseMidRestore ? ([], [:]) : forkRuns(plan)
        let forkList = arena.allocate(Int32.self, count: list.count)
        for (k, v) in list.enumerated() { forkList[k] = v }
        guard let stacks = arena.map(count * puppetStackSize, stack: true, lazy: true) else {
            throw RestoreError(.restoreFailed, operation: "mmap", errno: SystemCalls.currentErrno, message: "cannot map the puppets' stacks")
        }
        // The world the puppets read lives in the arena too: each clone passes a pointer to its
        // node's start record, which points at it.
        let changedSignals = arena.allocate(Int32.self, count: 128)
        let changedSignalCount = rr_changed_signals(changedSignals, 128)
        let worldCell = arena.allocate(PuppetWorld.self, count: 1)
        let starts = arena.allocate(PuppetStart.self, count: count)
        for i in 0..<count { starts[i] = PuppetStart(world: worldCell, node: i) }
        var puppets = PuppetWorld(control: control, answerFD: fds[1], coordinatorFD: fds[0], nodes: nodes, nodeCount: count,
                                  topLevelPids: top, topLevelCount: topLevel.count, strings: FixedStrings(arena),
                                  scratch: arena.allocate(UInt8.self, count: 64), useDance: dance,
                                  supervisor: supervisor, forkList: forkList, stacks: stacks, starts: starts,
                                  changedSignals: changedSignals, changedSignalCount: changedSignalCount)
        if !tree.terminals.isEmpty {
            let paths = arena.allocate(UnsafeMutablePointer<CChar>?.self, count: tree.terminals.count)
            for k in tree.terminals.indices { paths[k] = arena.cString(TerminalPlan.slavePath(k)) }
            puppets.terminalPaths = paths
            puppets.terminalCount = tree.terminals.count
        }
        puppets.fault = options.testingFault
        puppets.faultNode = plan.nodeOfEntry.first ?? -1
        // Small trees only: what it saves is a constant (the fork of the coordinator), and a
        // flat tree of 10 000 holders built about twice as slowly with it (docs/performance.md).
        puppets.sharedInit = supervisor == nil && !dance && count <= sharedInitMaxNodes && maps.ownIDsOnly && ownsNoPrivilege()
        worldCell.initialize(to: puppets)
        arena.deinitializeOnFree(worldCell)
        return PreparedWorld(arena: arena, puppets: puppets, plan: plan, maps: maps, forkBatches: batches,
                             noiseNodes: noiseNodes, ownLevels: ownLevels, identities: identities, terminals: terminals)
    }

    /// The largest tree (nodes, the init included) whose init shares the coordinator's memory.
    static let sharedInitMaxNodes = 64

    /// The runtime is an ordinary user's process: not root, no effective capability. Then an
    /// init sharing its memory gives a namespace process of the caller's ids nothing those ids
    /// do not already reach (docs/performance.md).
    static func ownsNoPrivilege() -> Bool {
        guard geteuid() != 0, let caps = cap_get_proc() else { return false }
        defer { cap_free(UnsafeMutableRawPointer(caps)) }
        guard let none = cap_init() else { return false }
        defer { cap_free(UnsafeMutableRawPointer(none)) }
        return cap_compare(caps, none) == 0
    }

    /// Runs of consecutive forks by one parent become one batch: the parent clones them one
    /// after another while the coordinator only collects their answers.
    static func forkRuns(_ plan: RestorePlan) -> (list: [Int32], batches: [Int: (offset: Int, count: Int)]) {
        var list: [Int32] = []
        var batches: [Int: (offset: Int, count: Int)] = [:]
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
                batches[i] = (offset: list.count, count: run.count)
                list += run
            }
            i = j
        }
        return (list, batches)
    }
}

/// Processes the engine adds for tests and benchmarks (`--occupy-pid`, `--noise-forkers`).
enum TestingAids {
    static func add(to plan: RestorePlan, tree: ProcessTree, occupy: Int32?, noise: Int) -> (RestorePlan, Set<Int>) {
        var plan = plan
        var noiseNodes = Set<Int>()
        if let pid = occupy {
            plan.nodes.append(RestorePlan.Node(role: .helper(.testingAid(.occupier)), nspid: [pid], forker: 0, namespaces: [0],
                                               newPidNamespace: false, childSubreaper: false))
            let idx = plan.nodes.count - 1
            plan.steps.insert(.fork(parent: 0, child: idx), at: 0)
            plan.steps.append(.retireHelper(idx))
        }
        if noise > 0 {
            var used = Set(plan.nodes.map(\.pid))
            for e in tree.processes { used.formUnion(e.threads) }
            var candidate: Int32 = 4_190_000
            for _ in 0..<noise {
                while used.contains(candidate) { candidate += 1 }
                used.insert(candidate)
                plan.nodes.append(RestorePlan.Node(role: .helper(.testingAid(.noise)),
                                                   nspid: [candidate], forker: 0, namespaces: [0]))
                let idx = plan.nodes.count - 1
                noiseNodes.insert(idx)
                plan.steps.insert(.fork(parent: 0, child: idx), at: 0)
                plan.steps.append(.retireHelper(idx))
            }
        }
        return (plan, noiseNodes)
    }
}
