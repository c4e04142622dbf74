extension RestorePlan {
    /// The plan as `validate` prints it: the init, the helpers and why, every step in order.
    public func describe(tree: ProcessTree, source: String) -> String {
        func name(_ n: Int) -> String { nodes[n].label(in: tree) }
        let helpers = nodes.indices.filter { nodes[$0].isHelper }
        var out = "Restore plan for \(source): \(tree.processes.count) process\(tree.processes.count == 1 ? "" : "es"), "
        out += "\(helpers.count) helper\(helpers.count == 1 ? "" : "s"), \(steps.count) steps\n"
        out += "Namespace init (PID 1): \(treeHasInit ? "\(name(0)), created by the runtime with CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS" : "the runtime's own init; the tree's top processes hang under it")\n"
        if !helpers.isEmpty {
            out += "Helpers (exit before any payload runs):\n"
            // Each helper's kids, and the first node of each recorded PID, gathered once (a
            // search of every node per helper was quadratic in trees of many helpers).
            var kidsOf: [Int: [Int]] = [:]
            for n in nodes.indices { if let f = nodes[n].forker, nodes[f].isHelper { kidsOf[f, default: []].append(n) } }
            var nodeOfPid: [Int32: Int] = [:]
            for n in nodes.indices { if let i = nodes[n].entryIndex, nodeOfPid[tree.processes[i].pid] == nil { nodeOfPid[tree.processes[i].pid] = n } }
            for h in helpers { out += "  \(name(h)): \(explainHelper(h, tree: tree, kids: kidsOf[h] ?? [], nodeOfPid: nodeOfPid))\n" }
        }
        out += "Steps:\n"
        for (i, step) in steps.enumerated() {
            let text: String
            switch step {
            case .fork(let p, let c):
                let tid = nodes[c].nspid.reversed().map(String.init).joined(separator: ", ")
                text = "\(name(p)) forks \(name(c)) with set_tid [\(tid)]\(nodes[c].newPidNamespace ? " and CLONE_NEWPID" : "")"
            case .setsid(let n): text = "\(name(n)) calls setsid()"
            case .setpgid(let n, let l): text = n == l ? "\(name(n)) creates its process group" : "\(name(n)) joins process group \(nodes[l].pid)"
            case .setChildSubreaper(let n): text = "\(name(n)) becomes a child subreaper"
            case .retireHelper(let h): text = "\(name(h)) exits and is reaped by \(name(nodes[h].forker ?? 0))"
            case .becomeZombie(let n, let p):
                let status = nodeEntry(n).flatMap { tree.processes[$0].exitStatus }.map { "\($0)" } ?? "exit code 0"
                text = "\(name(n)) exits (\(status)) and stays a zombie for \(name(p))"
            }
            out += "  \(String(repeating: " ", count: max(0, 4 - String(i + 1).count)))\(i + 1). \(text)\n"
        }
        var exec = 0, hold = 0, stop = 0, zombie = 0
        for e in tree.processes {
            switch e.state {
            case .zombie: zombie += 1; continue
            case .stopped: stop += 1
            case .running: break
            }
            if let args = e.process?.args, !args.isEmpty { exec += 1 } else { hold += 1 }
        }
        out += "Then every process is checked against /proc and released: \(exec) exec their payload, \(hold) hold, \(stop) stop with SIGSTOP first, \(zombie) stay zombies.\n"
        return out
    }

    func nodeEntry(_ n: Int) -> Int? { nodes[n].entryIndex }

    /// Why a helper exists, what it forks and where its children end up.
    func explainHelper(_ h: Int, tree: ProcessTree, kids: [Int], nodeOfPid: [Int32: Int]) -> String {
        guard case .helper(let purpose) = nodes[h].role else { return "" }
        var shown: [String] = []
        for k in kids.prefix(6) { shown.append(nodes[k].label(in: tree)) }
        var list = shown.joined(separator: ", ")
        if kids.count > 6 { list += " and \(kids.count - 6) more" }
        // The node the kids are recorded under (the reaper that adopts them).
        var reaper = "the namespace init (pid 1)"
        if let k = kids.first, let i = nodes[k].entryIndex {
            let ppid = tree.processes[i].ppid
            if let p = nodeOfPid[ppid] {
                reaper = nodes[p].label(in: tree)
            } else if nodes[0].role == .runtimeInit {
                reaper = nodes[0].label(in: tree)
            }
        }
        let forker = nodes[h].forker.map { nodes[$0].label(in: tree) } ?? "the namespace init"
        let itThey = kids.count == 1 ? "it is" : "they are"
        return Self.helperSentence(purpose, forker: forker, kids: list, itThey: itThey, reaper: reaper)
    }

    static func helperSentence(_ purpose: HelperPurpose, forker: String, kids: String, itThey: String, reaper: String) -> String {
        switch purpose {
        case .sessionOrphans(let s, let createsSession):
            if createsSession {
                return "session \(s)'s leader is dead: forked by \(forker), it takes the leader's PID and calls setsid(), "
                    + "forks \(kids) inside session \(s), then exits so that \(itThey) reparented to \(reaper)"
            }
            return "forked by \(forker) inside session \(s), it forks \(kids), which must be born into session \(s), "
                + "then exits so that \(itThey) reparented to \(reaper)"
        case .groupHolder(let g):
            return "forked by \(forker) into process group \(g), it keeps that group alive while leaders that left "
                + "their own groups join each other's (a cycle no restored process can hold open), then exits"
        case .groupLeader(let g):
            return "process group \(g)'s leader is dead: forked by \(forker), it takes the leader's PID, creates the group "
                + "for its members to join, then exits"
        case .testingAid:
            return "forked by \(forker), \(purpose.description)"
        }
    }
}
