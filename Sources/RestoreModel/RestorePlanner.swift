/// Turns a structurally valid tree into a `RestorePlan`: who forks whom, when each process
/// calls setsid() and setpgid(), which temporary helpers are needed, and in what order.
///
/// The rules are the kernel's: a session is inherited at fork or created by setsid() (which
/// makes the caller leader of a new session and group); setpgid() joins a group that exists in
/// the caller's session; orphans go to the nearest child subreaper or the namespace init.
/// CRIU's algorithm (birth sessions, helpers for orphans in foreign sessions and for dead
/// group leaders) is the base; unlike CRIU the birth-session walk stops at the nearest
/// ancestor *in* the session, helpers exist under any reaper, and subreapers are flagged
/// before they fork so orphans of helpers land where they were recorded.
public enum RestorePlanner {
    public static func plan(_ tree: ProcessTree) throws -> RestorePlan {
        var builder = try PlanBuilder(tree: tree)
        try builder.resolveSessions()
        try builder.createSessionHelpers()
        try builder.checkForkGraph()
        builder.emitForks()
        try builder.emitGroups()
        builder.emitRetirementsAndZombies()
        return builder.finish()
    }
}

private struct PlanBuilder {
    typealias Node = RestorePlan.Node
    let tree: ProcessTree
    var nodes: [Node] = []
    var nodeOfEntry: [Int]
    var entryOfPid: [Int32: Int] = [:]
    /// Final (recorded) parent of every node; -1 for node 0. Helpers: their forker.
    var parent: [Int] = []
    var finalSid: [Int32] = []
    var finalPgid: [Int32] = []
    var doesSetsid: [Bool] = []
    var isReaper: [Bool] = []
    /// Session a setsid() caller must be born into (before its setsid), if any.
    var born: [Int32?] = []
    /// Entry nodes that a helper must fork, with the session they must be born into.
    var helperSession: [Int: Int32] = [:]
    var forker: [Int] = []
    var steps: [RestorePlan.Step] = []
    var treeHasInit = false
    /// Per namespace (keyed by its init node), the local PIDs already spoken for.
    var usedPids: [Int: Set<Int32>] = [:]
    var nextFree: [Int: Int32] = [:]
    /// Current process group (top-level id) of every node as the steps so far leave it.
    var pgidNow: [Int32] = []

    init(tree: ProcessTree) throws {
        self.tree = tree
        nodeOfEntry = Array(repeating: -1, count: tree.processes.count)
        for (i, e) in tree.processes.enumerated() { entryOfPid[e.pid] = i }

        // Node 0: the namespace init.
        if let initEntry = entryOfPid[1] {
            treeHasInit = true
            let e = tree.processes[initEntry]
            guard e.nspid.count == 1 else {
                throw RestoreError.invalid(e.label, "the namespace init (PID 1) cannot itself have nested PIDs (nspid \(e.nspid))")
            }
            appendNode(Node(role: .process(initEntry), nspid: [1], forker: nil, namespaces: [0],
                            newPidNamespace: false, childSubreaper: e.childSubreaper),
                       parent: -1, sid: e.sid, pgid: e.pgid)
            nodeOfEntry[initEntry] = 0
            doesSetsid[0] = e.sid == 1
        } else {
            appendNode(Node(role: .runtimeInit, nspid: [1], forker: nil, namespaces: [0],
                            newPidNamespace: false, childSubreaper: false),
                       parent: -1, sid: 0, pgid: 0)
        }
        isReaper[0] = true
        born[0] = 0 // the init inherits the runtime's own session (invisible: 0)

        // Entries in parents-first order so that namespaces can be inherited.
        var children: [Int: [Int]] = [:] // parent entry (or -1 for init) -> entries
        for (i, e) in tree.processes.enumerated() where nodeOfEntry[i] != 0 {
            let p = (e.ppid != e.pid) ? entryOfPid[e.ppid] : nil
            let key = (p != nil && nodeOfEntry[p!] != 0) ? p! : -1
            children[key, default: []].append(i)
        }
        var queue: [Int] = children[-1] ?? []
        var head = 0
        while head < queue.count {
            let i = queue[head]; head += 1
            let e = tree.processes[i]
            let parentNode: Int
            if let p = entryOfPid[e.ppid], p != i, nodeOfEntry[p] >= 0 { parentNode = nodeOfEntry[p] } else { parentNode = 0 }
            var namespaces = nodes[parentNode].namespaces
            if e.newPidNamespace { namespaces.append(nodes.count) }
            guard e.nspid.count == namespaces.count else {
                let where_ = parentNode == 0 ? "the namespace init" : nodes[parentNode].label(in: tree)
                throw RestoreError.invalid(e.label, "has \(e.nspid.count) PID level(s) in nspid \(e.nspid), but as a child of \(where_)\(e.newPidNamespace ? " starting a new PID namespace" : "") it must have \(namespaces.count)")
            }
            nodeOfEntry[i] = nodes.count
            appendNode(Node(role: .process(i), nspid: e.nspid, forker: nil, namespaces: namespaces,
                            newPidNamespace: e.newPidNamespace, childSubreaper: e.childSubreaper),
                       parent: parentNode, sid: e.sid, pgid: e.pgid)
            let me = nodes.count - 1
            doesSetsid[me] = e.sid == e.pid
            isReaper[me] = e.childSubreaper || e.newPidNamespace
            queue.append(contentsOf: children[i] ?? [])
        }
        if let unreached = nodeOfEntry.firstIndex(of: -1) {
            throw RestoreError.invalid(tree.processes[unreached].label, "is not reachable from the namespace init (a parent cycle?)")
        }
        // PIDs spoken for per namespace: every level of every process, thread, group and session.
        for n in nodes { for (level, ns) in n.namespaces.enumerated() { usedPids[ns, default: []].insert(n.nspid[level]) } }
        for e in tree.processes {
            usedPids[0, default: []].formUnion(e.threads)
            usedPids[0, default: []].insert(e.pgid)
            usedPids[0, default: []].insert(e.sid)
        }
    }

    mutating func appendNode(_ n: Node, parent p: Int, sid: Int32, pgid: Int32) {
        nodes.append(n)
        parent.append(p)
        finalSid.append(sid)
        finalPgid.append(pgid)
        doesSetsid.append(false)
        isReaper.append(n.childSubreaper)
        born.append(nil)
        forker.append(p)
        pgidNow.append(0)
    }

    func label(_ node: Int) -> String { nodes[node].label(in: tree) }

    // MARK: sessions

    mutating func resolveSessions() throws {
        for node in 1..<nodes.count where !doesSetsid[node] {
            try requireSession(of: node, finalSid[node])
        }
    }

    /// `child` must be born into session `s`: find who can fork it there.
    mutating func requireSession(of start: Int, _ s: Int32) throws {
        var c = start
        while true {
            let p = parent[c]
            if finalSid[p] == s { return }
            if p == 0 || isReaper[p] {
                if p == 0 && born[0] == s && doesSetsid[0] { return } // forked before init's setsid
                if let other = helperSession[c], other != s {
                    throw RestoreError.invalid(label(c), "would have to be born into both session \(other) and session \(s)")
                }
                helperSession[c] = s
                return
            }
            if doesSetsid[p] {
                if let b = born[p], b != s {
                    throw RestoreError.invalid(label(start), "is in session \(s), so its ancestor \(label(p)) must have been in session \(s) before its setsid(), but \(label(p)) must also have been born into session \(b)")
                }
                if born[p] == s { return } // already resolved further up
                born[p] = s
                c = p
                continue
            }
            let via = c == start ? "" : " (through \(label(c)))"
            throw RestoreError.invalid(label(start), "is in session \(s) but neither it, its parent \(label(parent[start])), nor any ancestor can have created session \(s)\(via): \(label(p)) is in session \(finalSid[p]) and never called setsid()")
        }
    }

    func requiredBirth(_ node: Int) -> Int32? {
        if nodes[node].isHelper {
            if case .helper(.sessionOrphans(let s, false)) = nodes[node].role { return s }
            return nil
        }
        return doesSetsid[node] ? born[node] : finalSid[node]
    }

    func nearestReaper(forkingFrom a: Int) -> Int {
        var x = a
        while !isReaper[x] { x = parent[x] }
        return x
    }

    func isDescendant(_ x: Int, of y: Int) -> Bool {
        var cur = x
        while cur >= 0 {
            if cur == y { return true }
            cur = parent[cur]
        }
        return false
    }

    mutating func allocatePid(in ns: Int) -> Int32 {
        var candidate = nextFree[ns] ?? 2
        while usedPids[ns, default: []].contains(candidate) { candidate += 1 }
        usedPids[ns, default: []].insert(candidate)
        nextFree[ns] = candidate + 1
        return candidate
    }

    mutating func createSessionHelpers() throws {
        // Group the entries needing a helper by (reaper, session), in entry order.
        var groups: [(reaper: Int, session: Int32, kids: [Int])] = []
        for node in 1..<nodes.count {
            guard let s = helperSession[node] else { continue }
            let r = parent[node]
            if let gi = groups.firstIndex(where: { $0.reaper == r && $0.session == s }) {
                groups[gi].kids.append(node)
            } else {
                groups.append((r, s, [node]))
            }
        }
        for g in groups {
            let kidNamespaces = nodes[g.reaper].namespaces
            // A live process of the session, placed so that the helper's orphans go to the reaper.
            let candidates = (0..<nodes.count).filter { a in
                !nodes[a].isHelper && finalSid[a] == g.session && nodes[a].namespaces == kidNamespaces &&
                    nearestReaper(forkingFrom: a) == g.reaper && !g.kids.contains { isDescendant(a, of: $0) }
            }
            let chosen = candidates.first { nodes[$0].pid == g.session } ?? candidates.first
            var helper: Node
            var helperForker: Int
            if let a = chosen {
                helperForker = a
                helper = Node(role: .helper(.sessionOrphans(session: g.session, createsSession: false)),
                              nspid: [], forker: a, namespaces: nodes[a].namespaces,
                              newPidNamespace: false, childSubreaper: false)
                helper.nspid = helper.namespaces.map { allocatePid(in: $0) }
            } else if g.session != 0, entryOfPid[g.session] == nil, kidNamespaces.count == 1 {
                helperForker = g.reaper
                helper = Node(role: .helper(.sessionOrphans(session: g.session, createsSession: true)),
                              nspid: [g.session], forker: g.reaper, namespaces: kidNamespaces,
                              newPidNamespace: false, childSubreaper: false)
            } else {
                let who = g.kids.map { label($0) }.joined(separator: ", ")
                let why = g.session == 0
                    ? "session 0 is the runtime's own session and only the namespace init's descendants that never called setsid() are in it"
                    : entryOfPid[g.session] != nil
                        ? "its leader \(tree.processes[entryOfPid[g.session]!].label) is alive but no process of that session can fork a helper whose orphans would go to \(label(g.reaper))"
                        : "its leader is dead and nested namespaces cannot recreate it"
                throw RestoreError.invalid(who, "must be born into session \(g.session) and then reparented to \(label(g.reaper)), but \(why)")
            }
            let h = nodes.count
            appendNode(helper, parent: helperForker, sid: g.session, pgid: g.session)
            doesSetsid[h] = { if case .helper(.sessionOrphans(_, true)) = helper.role { return true } else { return false } }()
            for k in g.kids { forker[k] = h }
        }
    }

    func checkForkGraph() throws {
        for start in 0..<nodes.count {
            var x = start
            var steps = 0
            while x != 0 {
                x = forker[x]
                steps += 1
                if steps > nodes.count {
                    throw RestoreError.invalid(label(start), "cannot be created: the helpers needed for its session form a cycle")
                }
            }
        }
    }

    // MARK: emitting steps

    mutating func emitForks() {
        var kids = Array(repeating: [Int](), count: nodes.count)
        for n in 1..<nodes.count { kids[forker[n]].append(n) }
        // Iterative DFS: each node's work is (subreaper flag), pre-setsid forks, setsid, forks.
        enum Work { case enter(Int), fork(Int, Int), setsid(Int) }
        var stack: [Work] = [.enter(0)]
        while let w = stack.popLast() {
            switch w {
            case .enter(let x):
                if nodes[x].childSubreaper { steps.append(.setChildSubreaper(x)) }
                let before = kids[x].filter { doesSetsid[x] && born[x] != nil && requiredBirth($0) == born[x] && born[x] != finalSid[x] }
                let after = kids[x].filter { k in !before.contains(k) }
                var work: [Work] = before.map { .fork(x, $0) }
                if doesSetsid[x] { work.append(.setsid(x)) }
                work += after.map { .fork(x, $0) }
                stack.append(contentsOf: work.reversed())
            case .fork(let p, let c):
                steps.append(.fork(parent: p, child: c))
                pgidNow[c] = pgidNow[p]
                stack.append(.enter(c))
            case .setsid(let x):
                steps.append(.setsid(x))
                pgidNow[x] = nodes[x].pid
            }
        }
    }

    mutating func emitGroups() throws {
        var nodeOfPid: [Int32: Int] = [:]
        for (i, n) in nodes.enumerated() where i != 0 || treeHasInit { nodeOfPid[n.pid] = i }
        var creations: [RestorePlan.Step] = []
        var joins: [RestorePlan.Step] = []
        var moves: [RestorePlan.Step] = []
        var leaderOf: [Int32: Int] = [:]
        var seen = Set<Int32>()
        let entries = (0..<nodes.count).filter { !nodes[$0].isHelper && (nodes[$0].role != .runtimeInit) }
        for m in entries where !seen.contains(finalPgid[m]) {
            let g = finalPgid[m]
            seen.insert(g)
            let members = entries.filter { finalPgid[$0] == g }
            let s = finalSid[m]
            if let odd = members.first(where: { finalSid[$0] != s }) {
                throw RestoreError.invalid(label(odd), "is in process group \(g) of session \(finalSid[odd]), but \(label(m)) in the same group is in session \(s): a process group never spans two sessions")
            }
            if g == 0 {
                if s != 0 { throw RestoreError.invalid(label(m), "has pgid 0 (the runtime's own group, outside the namespace) but session \(s): pgid 0 needs sid 0") }
                if let moved = members.first(where: { pgidNow[$0] != 0 }) {
                    throw RestoreError.invalid(label(moved), "has pgid 0 (the runtime's own group) but is created after an ancestor left that group")
                }
                continue
            }
            if let l = nodeOfPid[g] {
                if finalSid[l] != s {
                    throw RestoreError.invalid(label(l), "leads process group \(g) by its PID, but is in session \(finalSid[l]) while the group's members (\(label(m))) are in session \(s)")
                }
                if pgidNow[l] != g {
                    if doesSetsid[l] { throw RestoreError.invalid(label(l), "is a session leader and so cannot have created group \(g) other than by setsid()") }
                    creations.append(.setpgid(node: l, leader: l))
                    pgidNow[l] = g
                }
                leaderOf[g] = l
            } else {
                // Dead leader: a helper takes its PID, forked by the first member (same session).
                let forkerNode = members[0]
                var helper = Node(role: .helper(.groupLeader(pgid: g)), nspid: [], forker: forkerNode,
                                  namespaces: nodes[forkerNode].namespaces, newPidNamespace: false, childSubreaper: false)
                helper.nspid = helper.namespaces.enumerated().map { level, ns in level == 0 ? g : allocatePid(in: ns) }
                let h = nodes.count
                appendNode(helper, parent: forkerNode, sid: s, pgid: g)
                pgidNow[h] = pgidNow[forkerNode]
                creations.append(.fork(parent: forkerNode, child: h))
                creations.append(.setpgid(node: h, leader: h))
                pgidNow[h] = g
                leaderOf[g] = h
            }
        }
        for m in entries {
            let g = finalPgid[m]
            guard g != 0, pgidNow[m] != g, let l = leaderOf[g] else { continue }
            if doesSetsid[m] {
                throw RestoreError.invalid(label(m), "is a session leader (sid == pid) but has pgid \(g): a session leader's group is always its own")
            }
            guard nodes[l].namespaces.count >= nodes[m].namespaces.count,
                  Array(nodes[l].namespaces.prefix(nodes[m].namespaces.count)) == nodes[m].namespaces else {
                throw RestoreError.invalid(label(m), "must join process group \(g), but the group's leader \(label(l)) is not visible inside its PID namespace")
            }
            // A leader that has moved on joins its final group after everyone joined its old one.
            if leaderOf[nodes[m].pid] == m {
                moves.append(.setpgid(node: m, leader: l))
            } else {
                joins.append(.setpgid(node: m, leader: l))
            }
            pgidNow[m] = g
        }
        steps += creations + joins + moves
    }

    mutating func emitRetirementsAndZombies() {
        for h in (0..<nodes.count).reversed() where nodes[h].isHelper {
            steps.append(.retireHelper(h))
        }
        for n in 0..<nodes.count {
            guard let i = nodes[n].entryIndex, tree.processes[i].state == .zombie, n != 0 else { continue }
            steps.append(.becomeZombie(node: n, parent: parent[n]))
        }
    }

    func finish() -> RestorePlan {
        var out = nodes
        for i in 0..<out.count { out[i].forker = i == 0 ? nil : forker[i] }
        return RestorePlan(nodes: out, steps: steps, treeHasInit: treeHasInit, nodeOfEntry: nodeOfEntry)
    }
}

extension RestorePlan.Node {
    /// How messages and plans name the node.
    public func label(in tree: ProcessTree) -> String {
        switch role {
        case .process(let i): return tree.processes[i].label
        case .runtimeInit: return "the runtime's init (pid 1)"
        case .helper: return "helper (pid \(pid))"
        }
    }
}
