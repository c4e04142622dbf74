import Glibc
import RestoreModel

/// Phase 3: walks the plan step by step, posting each command to its puppet and collecting
/// the answers; returns with every process created where the plan says (helpers retired,
/// zombies dead), their host PIDs in `channel.hostPid`.
enum TreeBuilder {
    /// `firstForkPosted`: the plan's first step (the init forks one child) went with the
    /// namespace setup (LiveNamespace.setUp); only its answer is awaited here.
    static func build(_ world: PreparedWorld, _ channel: PuppetChannel, tree: ProcessTree, firstForkPosted: Bool = false,
                      progress: (@Sendable (RestoreProgress) -> Void)?) throws {
        let plan = world.plan
        let control = world.puppets.control
        let total = plan.nodes.count - 1
        func accept(child: Int, _ answer: PuppetAnswer, sender: Int32) throws {
            // A new process said it is up: its PID must be the planned one (the dance can miss it).
            if answer.value != plan.nodes[child].localPid {
                throw RestoreError(.restoreFailed, operation: world.puppets.useDance ? "clone" : "clone3", entry: channel.label(child),
                                   message: "was created with PID \(answer.value) instead of \(plan.nodes[child].localPid)")
            }
            channel.hostPid[child] = sender
            if world.noiseNodes.contains(child) { control.post(child, .noise) }
            channel.created += 1
            progress?(.building(created: channel.created, total: total))
            if world.puppets.fault == .pauseMidRestore && channel.created == total / 2 {
                let note = "rootless-restore testing aid: paused after \(channel.created) of \(total) processes\n"
                _ = note.withCString { write(2, $0, strlen($0)) }
                var signalReady = pollfd(fd: channel.namespace.signalFD, events: Int16(POLLIN), revents: 0)
                _ = poll(&signalReady, 1, 60_000)
            }
        }
        /// Posts `step` when node `n` itself carries it out with one command and one answer.
        func postOwnStep(_ step: RestorePlan.Step, of n: Int) -> Bool {
            switch step {
            case .setsid(n):
                control.post(n, .setsid)
            case .setpgid(n, let leader):
                control.post(n, .setpgid, plan.nodes[leader].nspid[plan.nodes[n].depth - 1])
            case .setChildSubreaper(n):
                control.post(n, .setChildSubreaper)
            default:
                return false
            }
            return true
        }
        var index = 0
        while index < plan.steps.count {
            let step = plan.steps[index]
            index += 1
            if let batch = world.forkBatches[index - 1], case .fork(let parent, _) = step {
                // The parent clones the run of siblings; answers come in any order.
                control.post(parent, .forkBatch, Int32(batch.offset), Int32(batch.count))
                var pending = batch.count
                while pending > 0 {
                    let waitingFor = Int(world.puppets.forkList[batch.offset + batch.count - pending])
                    let (answer, sender) = try channel.awaitAnswer(from: nil, expecting: .ready, askedOf: parent, fallback: waitingFor)
                    try accept(child: Int(answer.node), answer, sender: sender)
                    pending -= 1
                }
                index += batch.count - 1
                continue
            }
            switch step {
            case .fork(let parent, let child):
                // The child's own next step (setsid, setpgid, subreaper) is posted with the
                // fork: the child runs it right after saying it is ready, one round trip less.
                // Still one step at a time: its answer is awaited before the next step.
                let follow = index < plan.steps.count && postOwnStep(plan.steps[index], of: child)
                if !(firstForkPosted && index == 1) { control.post(parent, .fork, Int32(child)) }
                let (answer, sender) = try channel.awaitAnswer(from: child, expecting: .ready, askedOf: parent)
                try accept(child: child, answer, sender: sender)
                if follow {
                    try channel.awaitAnswer(from: child, expecting: .done)
                    index += 1
                }
            case .setsid(let n), .setpgid(let n, _), .setChildSubreaper(let n):
                _ = postOwnStep(step, of: n)
                try channel.awaitAnswer(from: n, expecting: .done)
            case .retireHelper(let h):
                let forker = plan.nodes[h].forker ?? 0
                control.post(h, .exit, 0)
                control.post(forker, .reap, plan.nodes[h].nspid[plan.nodes[forker].depth - 1])
                try channel.awaitAnswer(from: forker, expecting: .done)
                channel.hostPid[h] = 0
            case .becomeZombie(let n, let parent):
                let status: Int32
                switch tree.processes[plan.nodes[n].entryIndex!].exitStatus ?? .code(0) {
                case .code(let c): status = -c
                case .signal(let s): status = s
                }
                control.post(n, .die, status)
                control.post(parent, .awaitZombie, plan.nodes[n].nspid[plan.nodes[parent].depth - 1])
                try channel.awaitAnswer(from: parent, expecting: .done)
            }
        }
        if world.puppets.useDance {
            // The dance chooses TIDs through ns_last_pid too: threads one process at a time,
            // now that nothing else forks (under clone3 each holder starts its own at release).
            for i in 0..<world.puppets.nodeCount where world.puppets.nodes[i].threadCount > 0 {
                control.post(i, .startThreads)
                try channel.awaitAnswer(from: i, expecting: .done)
            }
        }
    }
}
