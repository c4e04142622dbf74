import Glibc
import RestoreModel

/// One restore, as phases that pass values: prepare the world (no process yet), start the
/// namespace, build the tree, observe /proc once, verify (pure, RestoreModel), release, and
/// wait as the shim. Each phase owns what it creates; a failure after the namespace exists
/// tears it down, and everything prepared is freed with the world.
public struct RestoreSession {
    let tree: ProcessTree
    let plan: RestorePlan
    let options: RunOptions

    public init(tree: ProcessTree, plan: RestorePlan, options: RunOptions) {
        self.tree = tree
        self.plan = plan
        self.options = options
    }

    /// Restores the tree and waits for it; returns the exit status `run` should exit with.
    /// `earlier`: phases already timed by the caller (parse, validate, plan).
    public func run(phases earlier: [(String, Double)] = []) throws -> Int32 {
        var clock = PhaseClock(earlier)
        // tmux servers start with a generated configuration, removed when run ends.
        let replay = try TmuxReplayFiles(tree: tree, configs: options.tmuxConfigs)
        defer { replay.remove() }
        let (namespace, report) = try restore(&clock, tree: replay.tree)
        replay.connectFirstClients()
        do { try options.onReady?(report) } catch {
            namespace.tearDown()
            throw error
        }
        var shellJob: ShellJob?
        if let k = options.shellJobTerminal, let masters = namespace.terminals?.masters, k < masters.count {
            shellJob = ShellJob(master: masters[k], leader: namespace.shellJobLeader)
        }
        return Shim.wait(for: namespace, shellJob: shellJob)
    }

    /// Everything up to the report: the namespace is built, verified and released.
    func restore(_ clock: inout PhaseClock, tree replayed: ProcessTree? = nil) throws -> (LiveNamespace, RestoreReport) {
        let tree = replayed ?? self.tree
        let world = try PreparedWorld.prepare(tree: tree, plan: plan, options: options)
        clock.end("prepare")
        let threads = SystemCalls.threadCount()
        guard threads == 1 else {
            throw RestoreError(.restoreFailed, operation: "fork safety", entry: nil,
                               message: "the runtime has \(threads) threads before cloning; it must be single-threaded")
        }
        defer { options.onProgress?(.finished) }
        var namespace: LiveNamespace?
        do {
            let ns = try LiveNamespace.start(world)
            namespace = ns
            let channel = PuppetChannel(world: world, namespace: ns, tree: tree, stepTimeout: options.stepTimeout)
            let firstForkPosted = try ns.setUp(world, channel, tree: tree)
            if !tree.terminals.isEmpty { ns.terminals = try TerminalMasters(tree: tree, initHostPid: ns.initHostPid) }
            clock.end("namespace")
            try TreeBuilder.build(world, channel, tree: tree, firstForkPosted: firstForkPosted, progress: options.onProgress)
            for f in world.terminals.foreground {
                world.puppets.control.post(f.leader, .setForeground, f.terminal, f.pgrp)
                try channel.awaitAnswer(from: f.leader, expecting: .done)
            }
            if let k = options.shellJobTerminal, let leader = world.terminals.leaders[k] { ns.shellJobLeader = channel.hostPid[leader] }
            clock.end("build")
            let observed = ProcObservation.observe(world, channel)
            let verified = RestoreVerification.verify(tree: tree, plan: world.plan, observed: observed)
            // A dead init explains every problem at once: name it rather than the first entry.
            if let first = verified.problems.first { throw channel.initDeath(waitingMs: 1000) ?? first }
            clock.end("verify")
            if world.plan.treeHasInit, let supervisor = world.puppets.supervisor {
                let above = max(world.plan.nodes.map(\.pid).max() ?? 1, supervisor.ceiling)
                ns.supervisorKeeper = try OutsideSupervisor.start(supervisor, initHostPid: ns.initHostPid, abovePid: above)
            }
            let released = try Release.run(world, channel, tree: tree)
            clock.end("release")
            var report = RestoreReport()
            report.treeHasInit = world.plan.treeHasInit
            report.processes = RestoreVerification.afterRelease(verified.processes, tree: tree,
                                                                stopped: released.stopped, threadsStarted: released.threads)
            report.helpers = RestoreReport.helpers(of: world.plan)
            clock.end("report")
            report.phases = clock.phases
            return (ns, report)
        } catch {
            namespace?.tearDown()
            throw error
        }
    }
}

/// Phase names and their milliseconds, in order.
struct PhaseClock {
    private(set) var phases: [(String, Double)]
    private var start = MonotonicClock.nanoseconds()

    init(_ earlier: [(String, Double)]) { phases = earlier }

    mutating func end(_ name: String) {
        let now = MonotonicClock.nanoseconds()
        phases.append((name, Double(now - start) / 1e6))
        start = now
    }
}
