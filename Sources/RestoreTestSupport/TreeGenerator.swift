// Random process trees that a real system can produce: each is the end state of a random
// sequence of fork, setsid, setpgid, exit (some leaving zombies), reparenting and
// PR_SET_CHILD_SUBREAPER, played on the kernel model of PlanSimulator.swift (the idea of CRIU's
// zdtm session02/03). Deterministic for a seed, on every platform and Swift version: the
// random numbers come from our own SplitMix64 and our own range reduction.

import RestoreModel

/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, one output per step.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 0..<n (n > 0), by multiply-shift (no dependence on the standard library's algorithm).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        let high = next().multipliedFullWidth(by: UInt64(n)).high
        return Int(high)
    }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool {
        Double(next() >> 11) / Double(1 << 53) < p
    }

    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

public enum TreeGenerator {
    public struct Options: Sendable, Equatable {
        /// Operations attempted (refused ones count too).
        public var operations = 70
        /// No fork while this many tasks are alive.
        public var maxLive = 18
        /// PIDs are drawn from here (small, so numbers get reused once free).
        public var pids: ClosedRange<Int32> = 2...40
        /// The tree has its own PID 1 (else the runtime's init is PID 1, in session and group 0).
        public var treeInitChance = 0.35
        /// An exit leaves a zombie, unless the parent is an init (which reaps).
        public var zombieChance = 0.35
        /// Weight of "a process becomes a child subreaper" among the operations.
        public var subreaperWeight = 3
        /// A living process is recorded as stopped.
        public var stoppedChance = 0.1

        public init() {}
    }

    public struct Generated: Sendable {
        public var seed: UInt64
        public var tree: ProcessTree
        /// What happened, one line per successful operation, for failure messages.
        public var history: [String]
    }

    static let exitCodes: [Int32] = [0, 1, 3, 42, 72, 127, 128, 200, 255]
    static let fatalSignals: [Int32] = [1, 2, 9, 10, 12, 13, 14, 15]

    public static func generate(seed: UInt64, options: Options = Options()) -> Generated {
        var rng = SplitMix64(seed: seed)
        let treeInit = rng.chance(options.treeInitChance)
        var world = World(rng: rng, options: options, treeInit: treeInit)
        world.play()
        return Generated(seed: seed, tree: world.tree(), history: world.history)
    }

    private struct World {
        var rng: SplitMix64
        let options: Options
        let treeInit: Bool
        var kernel = KernelModel()
        var history: [String] = []

        init(rng: SplitMix64, options: Options, treeInit: Bool) {
            self.rng = rng
            self.options = options
            self.treeInit = treeInit
            if treeInit { history.append("the tree's own init (pid 1) starts in the runtime's session and group (0)") }
            else { history.append("the runtime's init (pid 1, session and group 0) starts") }
        }

        /// Tasks that have not exited, in creation order (kept up to date by fork and exit).
        var live: [Int] = [0]
        /// Live tasks the tree records and that may act (the runtime's init only forks).
        var actors: [Int] { treeInit ? live : Array(live.dropFirst()) }
        func pid(_ t: Int) -> Int32 { kernel.tasks[t].pid }

        mutating func play() {
            for _ in 0..<options.operations {
                let weights = [("fork", 30), ("setsid", 12), ("setpgid", 20), ("exit", 20),
                               ("subreaper", options.subreaperWeight)]
                var roll = rng.below(weights.reduce(0) { $0 + $1.1 })
                var op = "fork"
                for (name, w) in weights { if roll < w { op = name; break }; roll -= w }
                switch op {
                case "fork": fork()
                case "setsid": setsid()
                case "setpgid": setpgid()
                case "exit": exit()
                default: subreaper()
                }
            }
            // The tree must hold at least one process besides the runtime's init.
            if !treeInit && kernel.tasks.indices.allSatisfy({ $0 == 0 || !kernel.tasks[$0].exists }) {
                fork(from: 0)
            }
        }

        mutating func freePid() -> Int32? {
            let lo = options.pids.lowerBound, span = Int(options.pids.upperBound - lo) + 1
            for _ in 0..<8 {
                let p = lo + Int32(rng.below(span))
                if kernel.isFree(p, inNamespace: 0) { return p }
            }
            let start = rng.below(span)
            for k in 0..<span {
                let p = lo + Int32((start + k) % span)
                if kernel.isFree(p, inNamespace: 0) { return p }
            }
            return nil
        }

        mutating func fork() {
            guard live.count < options.maxLive else { return }
            fork(from: rng.pick(live))
        }

        mutating func fork(from parent: Int) {
            guard let p = freePid() else { return }
            if let child = try? kernel.fork(parent: parent, nspid: [p]) {
                live.append(child)
                let t = kernel.tasks[child]
                history.append("\(pid(parent)) forks \(p) (pgid \(t.pgid), sid \(t.sid))")
            }
        }

        mutating func setsid() {
            guard !actors.isEmpty else { return }
            let t = rng.pick(actors)
            if (try? kernel.setsid(t)) != nil { history.append("\(pid(t)) calls setsid()") }
        }

        mutating func setpgid() {
            guard !actors.isEmpty else { return }
            let t = rng.pick(actors)
            let me = kernel.tasks[t]
            var target = me.pid
            // The init never joins a descendant's group: its namespace could not end (see
            // RestorePlanner.checkInitGroups), so the planner refuses such trees.
            let ownGroup = rng.chance(0.35)
            if t != 0 && !ownGroup {
                var seen = Set<Int32>()
                var groups: [Int32] = []
                for task in kernel.tasks where task.exists && task.sid == me.sid && task.pgid != 0 {
                    if seen.insert(task.pgid).inserted { groups.append(task.pgid) }
                }
                groups.sort()
                if !groups.isEmpty { target = rng.pick(groups) }
            }
            if (try? kernel.setpgid(t, to: target)) != nil, target != me.pgid {
                history.append("\(me.pid) calls setpgid(0, \(target))")
            }
        }

        mutating func subreaper() {
            let candidates = live.filter { $0 != 0 && !kernel.tasks[$0].childSubreaper }
            guard !candidates.isEmpty else { return }
            let t = rng.pick(candidates)
            if (try? kernel.setChildSubreaper(t)) != nil { history.append("\(pid(t)) becomes a child subreaper") }
        }

        /// The generator never creates nested namespaces: task 0 is the only init.
        func isInit(_ t: Int) -> Bool { t == 0 }

        mutating func exit() {
            let candidates = live.filter { !isInit($0) }
            guard !candidates.isEmpty else { return }
            let t = rng.pick(candidates)
            let parent = kernel.tasks[t].parent!
            let zombie = !isInit(parent) && rng.chance(options.zombieChance)
            let status: ExitStatus = rng.chance(0.7) ? .code(rng.pick(TreeGenerator.exitCodes))
                                                     : .signal(rng.pick(TreeGenerator.fatalSignals))
            guard let moved = try? kernel.exit(t, status: status) else { return }
            live.removeAll { $0 == t }
            var line = "\(pid(t)) exits (\(status))"
            if !moved.isEmpty {
                line += "; " + moved.map { "\(pid($0.child)) goes to \(pid($0.to))" }.joined(separator: ", ")
            }
            if zombie {
                line += "; it stays a zombie of \(pid(parent))"
            } else {
                try? kernel.reap(t, by: parent)
                line += "; \(pid(parent)) reaps it"
            }
            // Zombies handed to an init are reaped by it at once.
            for m in moved where kernel.tasks[m.child].exited && isInit(m.to) {
                try? kernel.reap(m.child, by: m.to)
                line += "; \(pid(m.to)) reaps zombie \(pid(m.child))"
            }
            history.append(line)
        }

        mutating func tree() -> ProcessTree {
            var entries: [ProcessEntry] = []
            for (t, task) in kernel.tasks.enumerated() where task.exists && (t != 0 || treeInit) {
                var ppid: Int32 = 0
                if let p = task.parent, p != 0 || treeInit { ppid = kernel.tasks[p].pid }
                var state: ProcessState = .running
                if task.exited { state = .zombie }
                else if t != 0 && rng.chance(options.stoppedChance) { state = .stopped }
                entries.append(ProcessEntry(index: 0, pid: task.pid, ppid: ppid, pgid: task.pgid, sid: task.sid,
                                            state: state, exitStatus: task.exited ? task.exitStatus : nil,
                                            childSubreaper: task.childSubreaper))
            }
            // Any order: the runtime must not depend on it.
            for i in stride(from: entries.count - 1, to: 0, by: -1) {
                entries.swapAt(i, rng.below(i + 1))
            }
            for i in entries.indices { entries[i].index = i }
            return ProcessTree(processes: entries)
        }
    }
}
