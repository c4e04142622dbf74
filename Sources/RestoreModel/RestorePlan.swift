/// The order in which a tree is rebuilt: the processes (plus temporary helpers) and one
/// global sequence of steps. The engine executes it literally; `PlanSimulator` checks it
/// against the kernel's rules without a kernel.
public struct RestorePlan: Sendable, Equatable {
    /// Why a temporary helper process exists. Helpers exit before any payload runs.
    public enum HelperPurpose: Sendable, Equatable {
        /// Forks children of `reaper` that must be born into `session`, then exits so that
        /// they are reparented to the reaper. `createsSession` when the helper takes the dead
        /// session leader's PID and calls setsid() itself.
        case sessionOrphans(session: Int32, createsSession: Bool)
        /// Takes the PID of a dead process-group leader, creates the group for its members.
        case groupLeader(pgid: Int32)
        /// Joins process group `pgid` and keeps it alive while leaders that left their own
        /// groups join each other's; never takes the group's PID.
        case groupHolder(pgid: Int32)
        /// Added by the engine for tests and benchmarks (`--occupy-pid`, `--noise-forkers`).
        case testingAid(TestingAid)
    }

    /// Kept a trivial enum: a String payload here made Swift 6.3.1's optimizer crash
    /// (CopyPropagation, "Found ownership error") on code that matches HelperPurpose.
    public enum TestingAid: Sendable, Equatable {
        /// Takes a PID the tree needs, so that the restore must fail (EEXIST).
        case occupier
        /// Forks continuously during the restore, competing for PIDs.
        case noise
    }

    public enum Role: Sendable, Equatable {
        /// A recorded process: index into `ProcessTree.processes`.
        case process(Int)
        /// The runtime's own PID 1, used when the tree has no PID 1.
        case runtimeInit
        case helper(HelperPurpose)
    }

    public struct Node: Sendable, Equatable {
        public var role: Role
        /// PIDs from the tree's top namespace down, outermost first.
        public var nspid: [Int32]
        /// The node that forks this one; nil for the namespace init (node 0).
        public var forker: Int?
        /// The node index of the init of each namespace level this node lives in.
        public var namespaces: [Int]
        public var newPidNamespace: Bool
        public var childSubreaper: Bool

        public init(role: Role, nspid: [Int32], forker: Int?, namespaces: [Int],
                    newPidNamespace: Bool = false, childSubreaper: Bool = false) {
            self.role = role
            self.nspid = nspid
            self.forker = forker
            self.namespaces = namespaces
            self.newPidNamespace = newPidNamespace
            self.childSubreaper = childSubreaper
        }

        public var pid: Int32 { nspid[0] }
        public var localPid: Int32 { nspid[nspid.count - 1] }
        public var depth: Int { nspid.count }
        public var isHelper: Bool { if case .helper = role { return true } else { return false } }
        public var entryIndex: Int? { if case .process(let i) = role { return i } else { return nil } }
    }

    public enum Step: Sendable, Equatable {
        /// `parent` calls clone3 with `child`'s set_tid array.
        case fork(parent: Int, child: Int)
        case setsid(Int)
        /// The node joins (or, when `leader == node`, creates) the group led by `leader`'s PID.
        case setpgid(node: Int, leader: Int)
        /// PR_SET_CHILD_SUBREAPER, set before the node forks anything so that orphans of its
        /// helpers land on it.
        case setChildSubreaper(Int)
        /// The helper exits and its forker reaps it by PID; its children are reparented.
        case retireHelper(Int)
        /// The zombie exits with its recorded status; its parent waits (WNOWAIT) until it is
        /// dead without reaping it.
        case becomeZombie(node: Int, parent: Int)
    }

    public var nodes: [Node]
    public var steps: [Step]
    /// Node 0 is the tree's own PID 1 (true) or the runtime's init (false).
    public var treeHasInit: Bool

    /// For each tree entry, its node index.
    public var nodeOfEntry: [Int]

    public init(nodes: [Node], steps: [Step], treeHasInit: Bool, nodeOfEntry: [Int]) {
        self.nodes = nodes
        self.steps = steps
        self.treeHasInit = treeHasInit
        self.nodeOfEntry = nodeOfEntry
    }

    public var helperCount: Int { nodes.filter(\.isHelper).count }
}

extension RestorePlan.HelperPurpose: CustomStringConvertible {
    public var description: String {
        switch self {
        case .sessionOrphans(let s, true):
            return "takes the PID of dead session leader \(s), calls setsid() and forks the orphans of session \(s)"
        case .sessionOrphans(let s, false):
            return "is forked inside session \(s) and forks orphans that must be born into it"
        case .groupLeader(let g):
            return "takes the PID of dead group leader \(g) and creates process group \(g)"
        case .groupHolder(let g):
            return "keeps process group \(g) alive while leaders that left their groups join each other's"
        case .testingAid(.occupier):
            return "testing aid: occupies a PID of the tree so that the restore must fail"
        case .testingAid(.noise):
            return "testing aid: forks continuously during the restore"
        }
    }
}
