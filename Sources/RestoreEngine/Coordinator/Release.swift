import Glibc
import RestoreModel

/// Phase 5, once verified: every puppet becomes what the tree says (exec, hold, stop; the init
/// last). Returns when every puppet has closed its answer socket, and each stopped process is
/// stopped.
enum Release {
    struct Outcome {
        /// Entries seen stopped.
        var stopped: Set<Int> = []
        /// Entries that hold with recorded threads -> their thread count now.
        var threads: [Int: Int] = [:]
    }

    static func run(_ world: PreparedWorld, _ channel: PuppetChannel, tree: ProcessTree) throws -> Outcome {
        let plan = world.plan
        var outcome = Outcome()
        // Stopped processes first, and stopped before anything else runs: a stop sends its
        // parent a SIGCHLD, which would otherwise reach an exec'd parent at any moment, such
        // as in the middle of a pinned fork (a shell that catches SIGCHLD without SA_RESTART
        // then sees its fork fail with EINTR while the supervisor has not received it yet).
        // Before its exec, the parent is a puppet for which SIGCHLD means nothing.
        var stopped: [Int] = []
        for node in (1..<plan.nodes.count).reversed() where !plan.nodes[node].isHelper {
            if let i = plan.nodes[node].entryIndex, tree.processes[i].state == .stopped {
                world.puppets.control.post(node, .release)
                stopped.append(i)
            }
        }
        // Stopped processes close their end just before stopping; wait until they are stopped.
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        for i in stopped {
            let pid = channel.hostPid[plan.nodeOfEntry[i]]
            while let s = ProcStatus.read(pid) {
                if s.state == "T" || s.state == "t" { outcome.stopped.insert(i); break }
                // Failed before its stop: the answer socket says why, below.
                if s.isDead || MonotonicClock.nanoseconds() >= deadline { break }
                var ts = timespec(tv_sec: 0, tv_nsec: 200_000)
                nanosleep(&ts, nil)
            }
        }
        // Then children before parents, so no payload sees a parent run ahead; the init last.
        for node in (1..<plan.nodes.count).reversed() {
            let n = plan.nodes[node]
            if n.isHelper { continue }
            if let i = n.entryIndex, tree.processes[i].state == .zombie || tree.processes[i].state == .stopped { continue }
            world.puppets.control.post(node, .release)
        }
        world.puppets.control.post(0, .release)
        // Wait until every puppet has exec'd (CLOEXEC), holds, or stopped: end of file.
        loop: while true {
            switch try channel.receive(timeoutMs: 1000) {
            case .endOfFile: break loop
            case .timeout: try channel.checkAlive(node: 0)
            case .answer: continue
            }
        }
        channel.close()
        for (i, entry) in tree.processes.enumerated() {
            let node = world.puppets.nodes[plan.nodeOfEntry[i]]
            if node.path == nil, node.threadCount > 0, entry.state != .zombie {
                // A holder closes its socket only after its threads exist.
                outcome.threads[i] = 1 + node.threadCount
            }
        }
        return outcome
    }
}
