// An independent model of the kernel rules a restore depends on, and a simulator that runs a
// RestorePlan step by step against it. Nothing here looks at how the planner decided; it only
// checks that every step is legal and that the end state is the tree.
//
// The rules (kernel/sys.c, kernel/fork.c, kernel/exit.c, kernel/pid.c):
// - fork: the child inherits its parent's process group and session; each PID it asks for must
//   be free at its level. A number stays taken while any task uses it as PID, pgid or sid
//   (the struct pid lives as long as something is attached to it), zombies included.
// - setsid: EPERM for a session leader, and for any caller whose PID is some task's pgid (a
//   group leader, even one whose group lives on without it). It makes sid = pgid = pid.
// - setpgid(0, g): EPERM for a session leader; g == own pid creates (or keeps) the caller's
//   group; any other g must be an existing group of the caller's session, visible in its PID
//   namespace.
// - exit: the children go to the nearest living ancestor flagged PR_SET_CHILD_SUBREAPER in the
//   same PID namespace, else to that namespace's init. The dead task stays a zombie, keeping its
//   pid, pgid and sid, until its parent reaps it.

import RestoreModel

/// Why the model refused an operation: the errno the kernel would return and what was wrong.
public struct KernelRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var errno: String
    public var message: String

    public init(_ errno: String, _ message: String) {
        self.errno = errno
        self.message = message
    }

    public var description: String { "\(errno): \(message)" }
}

/// Tasks and the PID numbers they hold. Task ids are positions in `tasks` and never reused.
/// Group and session ids are the PID numbers of the tree's top namespace; 0 is a group or
/// session outside the model (the runtime's own), which no task inside can join or create.
public struct KernelModel: Sendable {
    public struct Task: Sendable, Equatable {
        public var pid: Int32
        /// PIDs outermost first; `nspid[0] == pid`.
        public var nspid: [Int32]
        /// PID namespaces outermost first; 0 is the model's top namespace.
        public var namespaces: [Int]
        /// The real parent; nil for the top namespace's init.
        public var parent: Int?
        public var pgid: Int32
        public var sid: Int32
        public var sessionLeader = false
        public var childSubreaper = false
        /// Exited and not reaped: a zombie.
        public var exited = false
        public var exitStatus: ExitStatus?
        public var reaped = false

        public var isLive: Bool { !exited && !reaped }
        public var exists: Bool { !reaped }
    }

    private struct LocalKey: Hashable {
        var namespace: Int
        var pid: Int32
    }

    public private(set) var tasks: [Task] = []
    /// For each top-level number in use: how many attachments (pid, pgid, sid) hold it.
    private var references: [Int32: Int] = [:]
    /// For each top-level number in use: its number in each namespace it was allocated in.
    private var levels: [Int32: [LocalKey]] = [:]
    private var localInUse: Set<LocalKey> = []
    /// Members (tasks not yet reaped) of each group, and the group's session.
    private var groupSize: [Int32: Int] = [:]
    private var groupSession: [Int32: Int32] = [:]
    /// The init task of each namespace.
    public private(set) var namespaceInit: [Int: Int] = [:]
    private var nextNamespace = 1

    /// The model starts with the top namespace's init (PID 1) in an outside group and session.
    public init(initPgid: Int32 = 0, initSid: Int32 = 0) {
        let t = Task(pid: 1, nspid: [1], namespaces: [0], parent: nil, pgid: initPgid, sid: initSid)
        tasks.append(t)
        namespaceInit[0] = 0
        allocate(1, [LocalKey(namespace: 0, pid: 1)])
        attach(group: initPgid, session: initSid)
    }

    // MARK: bookkeeping

    private mutating func allocate(_ top: Int32, _ keys: [LocalKey]) {
        levels[top] = keys
        for k in keys { localInUse.insert(k) }
        references[top] = 1
    }

    private mutating func retain(_ top: Int32) {
        guard top != 0 else { return }
        precondition(references[top] != nil, "KernelModel: \(top) is referenced after it was freed")
        references[top]! += 1
    }

    private mutating func release(_ top: Int32) {
        guard top != 0, let n = references[top] else { return }
        if n > 1 { references[top] = n - 1; return }
        references[top] = nil
        for k in levels[top] ?? [] { localInUse.remove(k) }
        levels[top] = nil
    }

    private mutating func attach(group: Int32, session: Int32) {
        retain(group)
        retain(session)
        guard group != 0 else { return }
        groupSize[group, default: 0] += 1
        groupSession[group] = session
    }

    private mutating func detach(group: Int32, session: Int32) {
        release(group)
        release(session)
        guard group != 0, let n = groupSize[group] else { return }
        if n > 1 { groupSize[group] = n - 1 } else { groupSize[group] = nil; groupSession[group] = nil }
    }

    /// Whether a top-level number is held by a task, a group or a session.
    public func inUse(_ top: Int32) -> Bool { references[top] != nil }

    /// Whether `pid` is free in namespace `namespace` (0: the top one).
    public func isFree(_ pid: Int32, inNamespace namespace: Int) -> Bool {
        !localInUse.contains(LocalKey(namespace: namespace, pid: pid))
    }

    /// Whether some task (zombies included) has pgid `g`.
    public func groupExists(_ g: Int32) -> Bool { groupSize[g] != nil }

    /// The session of group `g`, if it exists.
    public func session(ofGroup g: Int32) -> Int32? { groupSession[g] }

    private func requireLive(_ t: Int, _ what: String) throws {
        guard t >= 0, t < tasks.count else { throw KernelRefusal("ESRCH", "\(what): no task \(t)") }
        guard tasks[t].isLive else {
            throw KernelRefusal("ESRCH", "\(what): pid \(tasks[t].pid) has already exited")
        }
    }

    // MARK: the operations

    /// clone3 with set_tid = reversed(nspid); `newNamespace` adds CLONE_NEWPID. Returns the task id.
    @discardableResult
    public mutating func fork(parent p: Int, nspid: [Int32], newNamespace: Bool = false) throws -> Int {
        try requireLive(p, "fork")
        let parent = tasks[p]
        var namespaces = parent.namespaces
        if newNamespace {
            namespaces.append(nextNamespace)
        }
        guard nspid.count == namespaces.count else {
            throw KernelRefusal("EINVAL", "fork by pid \(parent.pid): \(nspid.count) PID level(s) \(nspid) for a child that lives in \(namespaces.count) namespace(s)")
        }
        if newNamespace, nspid.last != 1 {
            throw KernelRefusal("EINVAL", "fork by pid \(parent.pid): a new PID namespace starts at PID 1, not \(nspid.last!)")
        }
        var keys: [LocalKey] = []
        for (level, ns) in namespaces.enumerated() {
            let local = nspid[level]
            guard local >= 1 else { throw KernelRefusal("EINVAL", "fork by pid \(parent.pid): PID \(local) at level \(level)") }
            if level > 0, !(newNamespace && level == namespaces.count - 1) {
                guard let i = namespaceInit[ns], tasks[i].isLive else {
                    throw KernelRefusal("ENOMEM", "fork by pid \(parent.pid): the init of the PID namespace at level \(level) is gone")
                }
            }
            let key = LocalKey(namespace: ns, pid: local)
            if localInUse.contains(key) {
                let whom = level == 0 ? "PID \(local)" : "PID \(local) at namespace level \(level)"
                throw KernelRefusal("EEXIST", "fork by pid \(parent.pid): \(whom) is in use (by a process, a process group or a session)")
            }
            keys.append(key)
        }
        if newNamespace { nextNamespace += 1 }
        let child = Task(pid: nspid[0], nspid: nspid, namespaces: namespaces, parent: p,
                         pgid: parent.pgid, sid: parent.sid)
        tasks.append(child)
        let id = tasks.count - 1
        if newNamespace { namespaceInit[namespaces.last!] = id }
        allocate(nspid[0], keys)
        attach(group: child.pgid, session: child.sid)
        return id
    }

    public mutating func setsid(_ t: Int) throws {
        try requireLive(t, "setsid")
        let task = tasks[t]
        if task.sessionLeader {
            throw KernelRefusal("EPERM", "setsid by pid \(task.pid): it is already a session leader")
        }
        if groupExists(task.pid) {
            throw KernelRefusal("EPERM", "setsid by pid \(task.pid): process group \(task.pid) exists (the caller's PID names a group)")
        }
        // Attach before detaching: a number whose last reference moves must not be freed.
        attach(group: task.pid, session: task.pid)
        detach(group: task.pgid, session: task.sid)
        tasks[t].pgid = task.pid
        tasks[t].sid = task.pid
        tasks[t].sessionLeader = true
    }

    /// setpgid(0, g) with `g` a top-level group id (the caller passes its own-namespace number
    /// of the same PID); `g == pid` creates the caller's own group.
    public mutating func setpgid(_ t: Int, to g: Int32) throws {
        try requireLive(t, "setpgid")
        let task = tasks[t]
        if task.sessionLeader {
            throw KernelRefusal("EPERM", "setpgid by pid \(task.pid) to \(g): a session leader cannot change its group")
        }
        if g != task.pid {
            guard g != 0, groupExists(g) else {
                throw KernelRefusal("EPERM", "setpgid by pid \(task.pid) to \(g): no process group \(g) exists")
            }
            let s = groupSession[g]!
            guard s == task.sid else {
                throw KernelRefusal("EPERM", "setpgid by pid \(task.pid) to \(g): group \(g) is in session \(s), the caller in session \(task.sid)")
            }
            let innermost = task.namespaces.last!
            if innermost != 0, !(levels[g] ?? []).contains(where: { $0.namespace == innermost }) {
                throw KernelRefusal("ESRCH", "setpgid by pid \(task.pid) to \(g): group \(g) is not visible in the caller's PID namespace")
            }
        }
        guard task.pgid != g else { return }
        attach(group: g, session: task.sid)
        detach(group: task.pgid, session: task.sid)
        tasks[t].pgid = g
    }

    public mutating func setChildSubreaper(_ t: Int, _ on: Bool = true) throws {
        try requireLive(t, "prctl(PR_SET_CHILD_SUBREAPER)")
        tasks[t].childSubreaper = on
    }

    /// Where the children of `t` go when it exits.
    public func newReaper(for t: Int) -> Int {
        let level = tasks[t].namespaces.count
        let ns = tasks[t].namespaces.last!
        var a = tasks[t].parent
        while let x = a, tasks[x].namespaces.count == level {
            if tasks[x].childSubreaper && tasks[x].isLive { return x }
            a = tasks[x].parent
        }
        return namespaceInit[ns]!
    }

    /// The task exits (or is killed): it becomes a zombie, its children are reparented.
    /// Returns the children that moved, with their new parent.
    @discardableResult
    public mutating func exit(_ t: Int, status: ExitStatus = .code(0)) throws -> [(child: Int, to: Int)] {
        try requireLive(t, "exit")
        if namespaceInit.values.contains(t) {
            throw KernelRefusal("EINVAL", "exit of pid \(tasks[t].pid): it is the init of a PID namespace (its exit would kill the namespace)")
        }
        let reaper = newReaper(for: t)
        var moved: [(Int, Int)] = []
        for c in tasks.indices where tasks[c].exists && tasks[c].parent == t {
            tasks[c].parent = reaper
            moved.append((c, reaper))
        }
        tasks[t].exited = true
        tasks[t].exitStatus = status
        return moved
    }

    /// waitpid(child) by `p`: the child must be a zombie child of `p`; it disappears.
    public mutating func reap(_ child: Int, by p: Int) throws {
        try requireLive(p, "waitpid")
        guard child >= 0, child < tasks.count, tasks[child].exists else {
            throw KernelRefusal("ECHILD", "waitpid by pid \(tasks[p].pid): no such child")
        }
        guard tasks[child].parent == p else {
            let actual = tasks[child].parent.map { "pid \(tasks[$0].pid)" } ?? "nobody"
            throw KernelRefusal("ECHILD", "waitpid by pid \(tasks[p].pid): pid \(tasks[child].pid) is not its child (its parent is \(actual))")
        }
        guard tasks[child].exited else {
            throw KernelRefusal("EAGAIN", "waitpid by pid \(tasks[p].pid): pid \(tasks[child].pid) has not exited")
        }
        tasks[child].reaped = true
        detach(group: tasks[child].pgid, session: tasks[child].sid)
        release(tasks[child].pid)
    }

    /// waitid(child, WEXITED|WNOWAIT) by `p`: the child must be an exited child of `p`.
    public func awaitZombie(_ child: Int, by p: Int) throws {
        try requireLive(p, "waitid")
        guard tasks[child].exists, tasks[child].parent == p else {
            let actual = tasks[child].parent.map { "pid \(tasks[$0].pid)" } ?? "nobody"
            throw KernelRefusal("ECHILD", "waitid by pid \(tasks[p].pid): pid \(tasks[child].pid) is not its child (its parent is \(actual))")
        }
        guard tasks[child].exited else {
            throw KernelRefusal("EAGAIN", "waitid by pid \(tasks[p].pid): pid \(tasks[child].pid) has not exited")
        }
    }
}

// MARK: - The plan simulator

/// One process of the tree as the simulated restore leaves it, as the tree's top namespace
/// sees it (ppid 0 only for the tree's own PID 1; a process under the runtime's init has ppid 1).
public struct SimulatedProcess: Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var nspid: [Int32]
    public var ppid: Int32
    public var pgid: Int32
    public var sid: Int32
    public var state: ProcessState
    public var exitStatus: ExitStatus?
    public var childSubreaper: Bool

    public var pid: Int32 { nspid[0] }

    public var description: String {
        var s = "pid=\(pid) ppid=\(ppid) pgid=\(pgid) sid=\(sid) state=\(state.rawValue)"
        if nspid.count > 1 { s += " nspid=\(nspid)" }
        if let e = exitStatus { s += " (\(e))" }
        if childSubreaper { s += " subreaper" }
        return s
    }
}

/// A plan step the kernel would refuse, or an end state that is not the tree.
public struct SimulationFailure: Error, Sendable, CustomStringConvertible {
    /// 1-based step number, as `validate` prints it; nil for problems of the end state.
    public var step: Int?
    public var message: String

    public var description: String {
        if let step { return "step \(step): \(message)" }
        return message
    }
}

public enum PlanSimulator {
    /// Runs every step of `plan` against the kernel model and returns each tree entry's final
    /// state (in entry order), with stopped processes stopped as the release would leave them.
    public static func run(_ plan: RestorePlan, tree: ProcessTree) throws -> [SimulatedProcess] {
        var sim = Run(plan: plan, tree: tree)
        try sim.execute()
        return try sim.finalTable()
    }

    /// What the tree says /proc must show for each entry (in entry order).
    public static func expected(_ tree: ProcessTree) -> [SimulatedProcess] {
        let pids = Set(tree.processes.map(\.pid))
        return tree.processes.enumerated().map { i, e in
            let ppid: Int32 = e.pid == 1 ? 0 : (e.ppid != e.pid && pids.contains(e.ppid) ? e.ppid : 1)
            return SimulatedProcess(index: i, nspid: e.nspid, ppid: ppid, pgid: e.pgid, sid: e.sid, state: e.state,
                                    exitStatus: e.state == .zombie ? e.exitStatus : nil,
                                    childSubreaper: e.childSubreaper)
        }
    }

    /// Runs the plan and compares its end state with the tree; throws listing every difference.
    public static func verify(_ plan: RestorePlan, against tree: ProcessTree) throws {
        let got = try run(plan, tree: tree)
        let want = expected(tree)
        var problems: [String] = []
        for (g, w) in zip(got, want) where g != w {
            problems.append("\(tree.processes[w.index].label): expected \(w), simulated \(g)")
        }
        if !problems.isEmpty {
            throw SimulationFailure(step: nil, message: "the plan does not rebuild the tree (\(problems.count) difference(s)):\n"
                                    + problems.prefix(20).map { "  " + $0 }.joined(separator: "\n"))
        }
    }

    private struct Run {
        let plan: RestorePlan
        let tree: ProcessTree
        var kernel: KernelModel
        /// Task of each node; nil before its fork.
        var taskOf: [Int?]
        var stepNumber = 0

        init(plan: RestorePlan, tree: ProcessTree) {
            self.plan = plan
            self.tree = tree
            kernel = KernelModel()
            taskOf = Array(repeating: nil, count: plan.nodes.count)
            if !plan.nodes.isEmpty { taskOf[0] = 0 }
        }

        func name(_ n: Int) -> String {
            guard n >= 0, n < plan.nodes.count else { return "node \(n) (no such node)" }
            return plan.nodes[n].label(in: tree)
        }

        func fail(_ message: String) -> SimulationFailure { SimulationFailure(step: stepNumber, message: message) }

        func task(_ n: Int, _ role: String) throws -> Int {
            guard n >= 0, n < plan.nodes.count else { throw fail("\(role) is node \(n), which the plan does not have") }
            guard let t = taskOf[n] else { throw fail("\(role) \(name(n)) does not exist yet") }
            return t
        }

        mutating func kernelCall<T>(_ what: String, _ body: (inout KernelModel) throws -> T) throws -> T {
            do { return try body(&kernel) } catch let refusal as KernelRefusal {
                throw fail("\(what) fails with \(refusal.errno): \(refusal.message)")
            }
        }

        mutating func execute() throws {
            guard !plan.nodes.isEmpty else { throw SimulationFailure(step: nil, message: "the plan has no nodes") }
            guard plan.nodes[0].nspid == [1], plan.nodes[0].forker == nil else {
                throw SimulationFailure(step: nil, message: "node 0 must be the namespace init with PID 1 and no forker")
            }
            if plan.treeHasInit {
                guard case .process = plan.nodes[0].role else {
                    throw SimulationFailure(step: nil, message: "treeHasInit, but node 0 is not a tree entry")
                }
            } else if plan.nodes[0].role != .runtimeInit {
                throw SimulationFailure(step: nil, message: "the tree has no PID 1, so node 0 must be the runtime's init")
            }
            for (i, n) in plan.nodeOfEntry.enumerated() {
                guard n >= 0, n < plan.nodes.count, plan.nodes[n].entryIndex == i else {
                    throw SimulationFailure(step: nil, message: "nodeOfEntry[\(i)] = \(n) does not name the node of \(tree.processes[i].label)")
                }
            }
            for step in plan.steps {
                stepNumber += 1
                try execute(step)
            }
        }

        mutating func execute(_ step: RestorePlan.Step) throws {
            switch step {
            case .fork(let p, let c):
                let parent = try task(p, "the forking process")
                guard c >= 0, c < plan.nodes.count else { throw fail("fork of node \(c), which the plan does not have") }
                guard taskOf[c] == nil else { throw fail("\(name(c)) is forked a second time") }
                let node = plan.nodes[c]
                guard node.forker == p else {
                    throw fail("\(name(p)) forks \(name(c)), but the plan says \(node.forker.map(name) ?? "nobody") forks it (and reaps it)")
                }
                let expectedNamespaces = kernel.tasks[parent].namespaces.count + (node.newPidNamespace ? 1 : 0)
                guard node.nspid.count == expectedNamespaces else {
                    throw fail("\(name(c)) has \(node.nspid.count) PID level(s) but is forked by \(name(p)) into \(expectedNamespaces)")
                }
                taskOf[c] = try kernelCall("\(name(p)) forking \(name(c))") {
                    try $0.fork(parent: parent, nspid: node.nspid, newNamespace: node.newPidNamespace)
                }
            case .setsid(let n):
                let t = try task(n, "the setsid() caller")
                try kernelCall("setsid() by \(name(n))") { try $0.setsid(t) }
            case .setpgid(let n, let l):
                let t = try task(n, "the setpgid() caller")
                guard l >= 0, l < plan.nodes.count else { throw fail("setpgid to the group of node \(l), which the plan does not have") }
                let member = plan.nodes[n], leader = plan.nodes[l]
                guard leader.depth >= member.depth,
                      Array(leader.namespaces.prefix(member.depth)) == member.namespaces else {
                    throw fail("\(name(n)) joins the group of \(name(l)), whose PID has no number in \(name(n))'s PID namespace")
                }
                try kernelCall("setpgid(0, \(leader.nspid[member.depth - 1])) by \(name(n))") { try $0.setpgid(t, to: leader.pid) }
            case .setChildSubreaper(let n):
                let t = try task(n, "the subreaper")
                try kernelCall("prctl(PR_SET_CHILD_SUBREAPER) by \(name(n))") { try $0.setChildSubreaper(t) }
            case .retireHelper(let h):
                let t = try task(h, "the retiring helper")
                guard plan.nodes[h].isHelper else { throw fail("\(name(h)) is retired as a helper but is a process of the tree") }
                let forker = plan.nodes[h].forker ?? 0
                let reaper = try task(forker, "the helper's forker")
                try kernelCall("exit of \(name(h))") { _ = try $0.exit(t, status: .code(0)) }
                try kernelCall("\(name(forker)) reaping \(name(h))") { try $0.reap(t, by: reaper) }
            case .becomeZombie(let n, let p):
                let t = try task(n, "the zombie-to-be")
                let parent = try task(p, "the zombie's parent")
                guard let i = plan.nodes[n].entryIndex, tree.processes[i].state == .zombie else {
                    throw fail("\(name(n)) becomes a zombie but the tree does not record it as one")
                }
                let status = tree.processes[i].exitStatus ?? .code(0)
                try kernelCall("exit of \(name(n))") { _ = try $0.exit(t, status: status) }
                try kernelCall("\(name(p)) waiting (WNOWAIT) for \(name(n))") { try $0.awaitZombie(t, by: parent) }
            }
        }

        func finalTable() throws -> [SimulatedProcess] {
            var problems: [String] = []
            for (n, node) in plan.nodes.enumerated() {
                guard let t = taskOf[n] else {
                    problems.append("\(name(n)) is never created")
                    continue
                }
                let task = kernel.tasks[t]
                if node.isHelper, task.exists {
                    problems.append("\(name(n)) is still \(task.exited ? "an unreaped zombie" : "alive") when the payloads are released")
                }
                if node.entryIndex != nil, !task.exists {
                    problems.append("\(name(n)) was reaped")
                }
            }
            if !problems.isEmpty {
                throw SimulationFailure(step: nil, message: problems.joined(separator: "; "))
            }
            return tree.processes.indices.map { i in
                let t = taskOf[plan.nodeOfEntry[i]]!
                let task = kernel.tasks[t]
                let ppid: Int32 = task.parent.map { kernel.tasks[$0].pid } ?? 0
                var state: ProcessState = task.exited ? .zombie : .running
                if state == .running && tree.processes[i].state == .stopped { state = .stopped }
                return SimulatedProcess(index: i, nspid: task.nspid, ppid: ppid, pgid: task.pgid, sid: task.sid,
                                        state: state, exitStatus: task.exited ? task.exitStatus : nil,
                                        childSubreaper: task.childSubreaper)
            }
        }
    }
}
