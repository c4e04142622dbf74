/// Why the planner refused a tree, told about the process that cannot be placed.
///
/// The planner stops at whatever it was placing when it ran out of options, which is often a
/// far ancestor (it tries to make the ancestor be born into the session) rather than the
/// process whose presence makes the tree impossible. The diagnosis replays the tree's history
/// in PID order (the order processes were created, as long as PIDs did not wrap): it finds the
/// first process whose addition, together with its ancestors, makes the tree unplaceable, and
/// blames it. It then states the kernel rule that process breaks and checks fixes by planning
/// again: a `"childSubreaper": true` on one of its ancestors (the usual cause: a subreaper
/// adopted it after its forker died, and the recording did not know the flag), and says what
/// else would make it possible (a setsid, a dead forker kept in the recording).
/// Cost: O(log n) plans for the blame, plus one plan per ancestor tried for the fix; only on
/// refusal.
enum PlacementDiagnosis {
    /// Trees larger than this get the blame but no fix search (each try is a full plan).
    static let maxFixSearch = 5000

    static func explain(_ tree: ProcessTree, _ error: RestoreError,
                        plan: (ProcessTree) throws -> RestorePlan) -> RestoreError {
        guard tree.processes.count > 1 else { return error }
        var byPid: [Int32: Int] = [:]
        for (i, e) in tree.processes.enumerated() { byPid[e.pid] = i }
        let order = tree.processes.indices.sorted { tree.processes[$0].pid < tree.processes[$1].pid }

        /// The first `k` processes in PID order, with their ancestors (so nobody changes parent).
        func prefix(_ k: Int) -> ProcessTree {
            var keep = Set<Int>()
            for i in order.prefix(k) {
                var x: Int? = i
                var guardSteps = 0
                while let cur = x, keep.insert(cur).inserted, guardSteps <= tree.processes.count {
                    let e = tree.processes[cur]
                    x = e.ppid == e.pid ? nil : byPid[e.ppid]
                    guardSteps += 1
                }
            }
            var t = tree
            t.processes = tree.processes.indices.filter { keep.contains($0) }.map { tree.processes[$0] }
            return t
        }
        func plans(_ t: ProcessTree) -> Bool { (try? plan(t)) != nil }

        // Binary search for a boundary: prefix(lo) plans, prefix(hi) does not.
        var lo = 0, hi = order.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if plans(prefix(mid)) { lo = mid } else { hi = mid }
        }
        let blamedIndex = order[hi - 1]
        let blamed = tree.processes[blamedIndex]

        var text: [String] = []
        if let rule = sessionRule(blamed, tree, byPid) {
            text.append(rule)
        }
        if let fix = subreaperFix(blamed, tree, byPid, plan: plan) {
            text.append(fix)
        } else if let other = otherFixes(blamed, tree, byPid) {
            text.append(other)
        }
        if text.isEmpty && error.entry == blamed.label { return error }
        let planner = (error.entry.map { "\($0): " } ?? "") + error.message
        let message: String
        if error.entry == blamed.label {
            message = ([error.message] + text).joined(separator: ". ")
        } else {
            message = (text.isEmpty ? ["cannot be placed by any rule"] : text).joined(separator: ". ")
                + " (the planner stopped at \(planner))"
        }
        return RestoreError(error.kind, operation: error.operation, errno: error.errno, entry: blamed.label,
                            message: message)
    }

    /// The kernel's session rule, when `e` breaks it: it is in a session it does not lead,
    /// other than its parent's.
    static func sessionRule(_ e: ProcessEntry, _ tree: ProcessTree, _ byPid: [Int32: Int]) -> String? {
        guard e.sid != e.pid else { return nil }
        let parent = byPid[e.ppid].map { tree.processes[$0] }
        let parentSid = parent?.sid ?? 0
        guard parentSid != e.sid else { return nil }
        let parentName = parent?.label ?? "the namespace init"
        var rule = "is in session \(e.sid) without leading it, while its parent \(parentName) is in session \(parentSid). A process is born into its forker's session and leaves it only by setsid(), which makes it the leader (sid == pid); so a process of session \(e.sid) forked it and then exited, and the kernel reparented it to \(parentName), which it does only to the init of a PID namespace or a process with PR_SET_CHILD_SUBREAPER"
        if let p = parent, p.sid == p.pid {
            rule += " (or \(p.label) forked it while still in session \(e.sid), before its own setsid())"
        }
        return rule
    }

    /// Tries `"childSubreaper": true` on each ancestor of `e`, nearest first.
    static func subreaperFix(_ e: ProcessEntry, _ tree: ProcessTree, _ byPid: [Int32: Int],
                             plan: (ProcessTree) throws -> RestorePlan) -> String? {
        guard tree.processes.count <= maxFixSearch else { return nil }
        var x = byPid[e.ppid]
        var seen = Set<Int>()
        while let a = x, seen.insert(a).inserted {
            let anc = tree.processes[a]
            if !anc.childSubreaper && anc.pid != 1 && !anc.newPidNamespace {
                var t = tree
                t.processes[a].childSubreaper = true
                if (try? plan(t)) != nil {
                    return "Fix: the tree restores with \"childSubreaper\": true on \(anc.label): it was most likely a child subreaper (PR_SET_CHILD_SUBREAPER, as systemd --user, tini -s and container inits are) that adopted \(e.label) after its forker exited; set the flag there in the tree (record reads it by ptrace where it may)"
                }
            }
            x = anc.ppid == anc.pid ? nil : byPid[anc.ppid]
        }
        return nil
    }

    /// What else would make `e` placeable, when no single subreaper flag does.
    static func otherFixes(_ e: ProcessEntry, _ tree: ProcessTree, _ byPid: [Int32: Int]) -> String? {
        let parent = byPid[e.ppid].map { tree.processes[$0] }
        if e.sid != e.pid, (parent?.sid ?? 0) != e.sid {
            return "Fix: no subreaper flag on an ancestor makes it placeable; the recording lacks the process that forked it: keep that process in the tree (alive, or as a zombie under \(parent?.label ?? "the init")) so a helper can stand in for it, or, if \(e.label) itself called setsid(), record it with sid \(e.pid)"
        }
        if e.pgid != e.pid, e.pgid != 0, let l = byPid[e.pgid], tree.processes[l].sid != e.sid {
            return "Fix: a process can only join a group of its own session; \(tree.processes[l].label) leads group \(e.pgid) in session \(tree.processes[l].sid)"
        }
        return nil
    }
}
