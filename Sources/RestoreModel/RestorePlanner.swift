/// Turns a structurally valid tree into a `RestorePlan`: who forks whom, when each process
/// calls setsid() and setpgid(), which temporary helpers are needed, and in what order.
///
/// The rules are the kernel's: a session is inherited at fork or created by setsid() (which
/// makes the caller leader of a new session and group); setpgid() joins a group that exists in
/// the caller's session; orphans go to the nearest child subreaper or the namespace init.
/// CRIU's algorithm (birth sessions, helpers for orphans in foreign sessions and for dead
/// group leaders) is the base. Unlike CRIU:
/// - the birth-session walk stops at the nearest ancestor *in* the session, and also runs
///   through reapers: a subreaper (or PID 1) that called setsid() may have forked a child in
///   its birth session itself; only children that cannot have been forked that way get a helper;
/// - helpers exist under any reaper (PID 1, a child subreaper, a nested namespace's init), and
///   may be forked by any process of the session inside the reaper's subtree;
/// - each subreaper flag is set when the helpers need it: before the retirement of the helpers
///   whose orphans it must adopt, after those whose orphans must pass it by;
/// - leaders that moved out of their own group leave it after its members joined, in an order
///   that keeps every group they join alive.
/// Every plan can be checked step by step with `PlanSimulator`.
public enum RestorePlanner {
    /// How many alternative choices (see `Choice`) the planner tries before giving up.
    static let maxAttempts = 64

    /// Refusals name the process that cannot be placed, the rule, and a fix (`PlacementDiagnosis`).
    public static func plan(_ tree: ProcessTree) throws -> RestorePlan {
        do {
            return try planOrFail(tree)
        } catch let error as RestoreError where error.kind == .invalidTree {
            throw PlacementDiagnosis.explain(tree, error, plan: planOrFail)
        }
    }

    static func planOrFail(_ tree: ProcessTree) throws -> RestorePlan {
        // The first attempt follows the heuristics. If it fails, the choices it made at reapers
        // are flipped, fewest flips first (breadth-first over the decisions), within a budget;
        // the error reported is the first attempt's.
        var queue: [[PlanBuilder.Choice: Bool]] = [[:]]
        var seen: Set<[PlanBuilder.Choice: Bool]> = [[:]]
        var firstError: Error?
        var head = 0
        while head < queue.count && head < maxAttempts {
            let forced = queue[head]
            head += 1
            var made: [PlanBuilder.Choice: Bool] = [:]
            do {
                return try attempt(tree, forced: forced, made: &made)
            } catch let error as RestoreError where error.kind == .invalidTree {
                if firstError == nil { firstError = error }
            }
            for (choice, decision) in made.sorted(by: { $0.key < $1.key }) where forced[choice] == nil {
                var next = forced
                next[choice] = !decision
                if seen.insert(next).inserted { queue.append(next) }
            }
        }
        throw firstError!
    }

    private static func attempt(_ tree: ProcessTree, forced: [PlanBuilder.Choice: Bool],
                                made: inout [PlanBuilder.Choice: Bool]) throws -> RestorePlan {
        var builder = try PlanBuilder(tree: tree)
        builder.forced = forced
        defer { made = builder.made }
        try builder.resolveSessions()
        try builder.requireGroupHelpers()
        try builder.createSessionHelpers()
        try builder.checkForkGraph()
        builder.emitForks()
        try builder.emitGroups()
        try builder.emitRetirementsAndZombies()
        return builder.finish()
    }
}

private struct PlanBuilder {
    typealias Node = RestorePlan.Node
    let tree: ProcessTree
    var nodes: [Node] = []
    var nodeOfEntry: [Int]
    var entryOfPid: PIDIndex
    /// Final (recorded) parent of every node; -1 for node 0. Helpers: their forker.
    var parent: [Int] = []
    var finalSid: [Int32] = []
    var finalPgid: [Int32] = []
    var doesSetsid: [Bool] = []
    var isReaper: [Bool] = []
    /// Session a setsid() caller must be born into (before its setsid), if any.
    var born: [Int32?] = []
    /// Per node, the session a helper must fork it into (nil: no helper forks it; always nil
    /// for helpers). Arrays indexed by node here, not dictionaries: hashing was a quarter of
    /// planning trees with a helper per two processes.
    var helperSession: [Int32?] = []
    /// Undo log of `born` and `helperSession` for walks that fail (saving copies of both
    /// per walk was quadratic): node, which of the two, the value before.
    var trail: [(node: Int, isBorn: Bool, old: Int32?)] = []
    var subtrees: SubtreeIndex?
    /// For each session-orphans helper, the reaper its children must end up under; -1 for
    /// every other node.
    var helperTarget: [Int] = []

    /// A reaper that called setsid() has a child in a foreign session: either the reaper was
    /// born into that session and forked the child before its setsid() (true), or the child
    /// was reparented to it and a helper must fork it (false).
    struct Choice: Hashable, Comparable {
        var reaper: Int
        var session: Int32
        static func < (a: Choice, b: Choice) -> Bool { (a.reaper, a.session) < (b.reaper, b.session) }
    }
    /// Decisions imposed by the caller, and the ones this attempt made by heuristics.
    var forced: [Choice: Bool] = [:]
    var made: [Choice: Bool] = [:]
    var forker: [Int] = []
    var steps: [RestorePlan.Step] = []
    var treeHasInit = false
    /// The local PIDs already spoken for in each namespace (named by its init node), sorted
    /// in one flat array of `usedPidKey`s (a Set per namespace was a tenth of planning trees
    /// of many helpers); per namespace, where the next allocation resumes in it.
    var usedPids: [UInt64] = []
    var usedPidsGathered = false
    var nextFree: [Int: (position: Int, pid: Int32)] = [:]
    /// The nodes made in init (the tree's processes and the runtime's init), before any helper.
    var entryNodeCount = 0
    /// Current process group (top-level id) of every node as the steps so far leave it.
    var pgidNow: [Int32] = []

    init(tree: ProcessTree) throws {
        self.tree = tree
        nodeOfEntry = Array(repeating: -1, count: tree.processes.count)
        var top: Int32 = 0
        for i in tree.processes.indices { top = max(top, tree.processes[i].pid) }
        entryOfPid = PIDIndex(maxKey: top, count: tree.processes.count)
        for i in tree.processes.indices { entryOfPid.set(tree.processes[i].pid, i) }
        reserveNodes(tree.processes.count + 1)

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
        if !treeHasInit {
            // A container's shape: processes in PID 1's session or group without PID 1 in the
            // tree (a job of a container's init shell). The runtime's init stands for the
            // container's: it calls setsid() (or setpgid(0, 0)) after forking the processes
            // of the runtime's own session, so it leads session 1 and group 1.
            if tree.processes.contains(where: { $0.sid == 1 }) {
                finalSid[0] = 1
                finalPgid[0] = 1
                doesSetsid[0] = true
            } else if tree.processes.contains(where: { $0.pgid == 1 }) {
                finalPgid[0] = 1
            }
        }

        // Entries in parents-first order so that namespaces can be inherited. Children per
        // parent entry in flat arrays (slot 0 stands for the init, entry k for slot k + 1), in
        // file order: a dictionary of arrays was a large part of planning a 10^6-process tree.
        let count = tree.processes.count
        var parentSlot = [Int](repeating: 0, count: count)
        var firstChild = [Int](repeating: 0, count: count + 3)
        for i in 0..<count where nodeOfEntry[i] != 0 {
            let ppid = tree.processes[i].ppid
            let p = (ppid != tree.processes[i].pid) ? entryOfPid[ppid] : nil
            let slot = (p != nil && nodeOfEntry[p!] != 0) ? p! + 1 : 0
            parentSlot[i] = slot
            firstChild[slot + 2] += 1
        }
        for k in 1..<firstChild.count { firstChild[k] += firstChild[k - 1] }
        var childList = [Int](repeating: 0, count: firstChild[count + 2])
        for i in 0..<count where nodeOfEntry[i] != 0 {
            childList[firstChild[parentSlot[i] + 1]] = i
            firstChild[parentSlot[i] + 1] += 1
        }
        // Now the children of slot k are childList[firstChild[k]..<firstChild[k + 1]].
        var queue: [Int] = []
        queue.reserveCapacity(childList.count)
        queue.append(contentsOf: childList[firstChild[0]..<firstChild[1]])
        var head = 0
        while head < queue.count {
            let i = queue[head]; head += 1
            // Fields, not a copy of the entry (a copy retains each of its references).
            let ppid = tree.processes[i].ppid, newPidNamespace = tree.processes[i].newPidNamespace
            let childSubreaper = tree.processes[i].childSubreaper
            let sid = tree.processes[i].sid, pgid = tree.processes[i].pgid
            let nspid = tree.processes[i].nspid
            let parentNode: Int
            if let p = entryOfPid[ppid], p != i, nodeOfEntry[p] >= 0 { parentNode = nodeOfEntry[p] } else { parentNode = 0 }
            var namespaces = nodes[parentNode].namespaces
            if newPidNamespace { namespaces.append(nodes.count) }
            guard nspid.count == namespaces.count else {
                let where_ = parentNode == 0 ? "the namespace init" : nodes[parentNode].label(in: tree)
                throw RestoreError.invalid(tree.processes[i].label, "has \(nspid.count) PID level(s) in nspid \(nspid), but as a child of \(where_)\(newPidNamespace ? " starting a new PID namespace" : "") it must have \(namespaces.count)")
            }
            nodeOfEntry[i] = nodes.count
            appendNode(Node(role: .process(i), nspid: nspid, forker: nil, namespaces: namespaces,
                            newPidNamespace: newPidNamespace, childSubreaper: childSubreaper),
                       parent: parentNode, sid: sid, pgid: pgid)
            let me = nodes.count - 1
            doesSetsid[me] = sid == nspid[0]
            isReaper[me] = childSubreaper || newPidNamespace
            queue.append(contentsOf: childList[firstChild[i + 1]..<firstChild[i + 2]])
        }
        if let unreached = nodeOfEntry.firstIndex(of: -1) {
            throw RestoreError.invalid(tree.processes[unreached].label, "is not reachable from the namespace init (a parent cycle?)")
        }
        entryNodeCount = nodes.count
    }

    /// PIDs spoken for per namespace: every level of every process, thread, group and session.
    /// Gathered when the first helper needs a PID (most trees need none).
    mutating func gatherUsedPids() {
        usedPidsGathered = true
        for n in nodes.prefix(entryNodeCount) {
            for (level, ns) in n.namespaces.enumerated() { usedPids.append(Self.usedPidKey(ns, n.nspid[level])) }
        }
        for (i, e) in tree.processes.enumerated() {
            for tid in e.threads { usedPids.append(Self.usedPidKey(0, tid)) }
            // Threads' TIDs in nested namespaces are spoken for there too.
            let namespaces = nodes[nodeOfEntry[i]].namespaces
            for levels in e.threadLevels {
                for (level, tid) in levels.enumerated() where level < namespaces.count {
                    usedPids.append(Self.usedPidKey(namespaces[level], tid))
                }
            }
            usedPids.append(Self.usedPidKey(0, e.pgid))
            usedPids.append(Self.usedPidKey(0, e.sid))
        }
        usedPids.sort()
    }

    /// Orders by namespace, then by PID (negative PIDs, which no allocation reaches, last).
    static func usedPidKey(_ namespace: Int, _ pid: Int32) -> UInt64 {
        UInt64(namespace) << 32 | UInt64(UInt32(bitPattern: pid))
    }

    /// Room for `count` nodes in every per-node array (growing 11 arrays by doubling was a
    /// few percent of planning 10^6 processes).
    mutating func reserveNodes(_ count: Int) {
        nodes.reserveCapacity(count); parent.reserveCapacity(count); finalSid.reserveCapacity(count)
        finalPgid.reserveCapacity(count); doesSetsid.reserveCapacity(count); isReaper.reserveCapacity(count)
        born.reserveCapacity(count); helperSession.reserveCapacity(count); helperTarget.reserveCapacity(count)
        forker.reserveCapacity(count); pgidNow.reserveCapacity(count)
    }

    mutating func appendNode(_ n: Node, parent p: Int, sid: Int32, pgid: Int32) {
        nodes.append(n)
        parent.append(p)
        finalSid.append(sid)
        finalPgid.append(pgid)
        doesSetsid.append(false)
        isReaper.append(n.childSubreaper)
        born.append(nil)
        helperSession.append(nil)
        helperTarget.append(-1)
        forker.append(p)
        pgidNow.append(0)
    }

    func label(_ node: Int) -> String { nodes[node].label(in: tree) }

    // MARK: sessions

    /// Two passes: first every requirement that needs no choice at a reaper (or where a
    /// reaper can simply have been born into the session), then the rest, so that a reaper's
    /// own birth session is fixed by the children that leave no other way before children that
    /// could also get a helper.
    mutating func resolveSessions() throws {
        var pending: [Int] = []
        for node in 1..<nodes.count where !doesSetsid[node] {
            do {
                try requireSession(of: node, finalSid[node], deferChoices: true)
            } catch is Deferred {
                undo(to: 0)
                pending.append(node)
            }
            trail.removeAll(keepingCapacity: true)
        }
        for node in pending {
            try requireSession(of: node, finalSid[node])
            trail.removeAll(keepingCapacity: true)
        }
        // A reaper that turned out to be born into a session forks its children of that
        // session itself, before its setsid(): they need no helper after all.
        for c in helperSession.indices where helperSession[c] != nil && born[parent[c]] == helperSession[c] && doesSetsid[parent[c]] {
            helperSession[c] = nil
        }
    }

    /// Thrown by a strict walk that would need a helper.
    struct NeedsHelper: Error {}
    /// Thrown by a walk that reaches a reaper where it would have to choose.
    struct Deferred: Error {}

    /// `start` must be born into session `s`: find who can fork it there. Walking up, each
    /// setsid() caller passed on the way must itself have been born into `s` (its birth
    /// session) and fork the child before its setsid(). The walk ends at an ancestor in `s`,
    /// or at a reaper whose child must be forked by a helper in `s` and reparented to it.
    /// `strict`: fail (NeedsHelper) rather than ask for a helper.
    /// `deferChoices`: fail (Deferred) rather than choose between a birth and a helper.
    mutating func requireSession(of start: Int, _ s: Int32, strict: Bool = false, deferChoices: Bool = false) throws {
        var c = start
        while true {
            let p = parent[c]
            if finalSid[p] == s { return }
            if p == 0 {
                if born[0] == s && doesSetsid[0] { return } // forked before init's setsid
                if strict { throw NeedsHelper() }
                try needHelper(c, s)
                return
            }
            if isReaper[p] {
                // The child may have been forked by the reaper before the reaper's own
                // setsid(), or reparented to it, which needs a helper. Prefer the first when
                // it needs no helper further up; then a helper when some process of the
                // session in the reaper's subtree can fork it; then the first with a helper
                // further up; then a helper that recreates a dead leader's session.
                if doesSetsid[p] && born[p] == s { return }
                let canBeBorn = doesSetsid[p] && born[p] == nil
                if canBeBorn && (try? tryBirth(of: p, s, strict: true)) != nil { return }
                if strict { throw NeedsHelper() }
                if deferChoices && canBeBorn { throw Deferred() }
                if canBeBorn {
                    let choice = Choice(reaper: p, session: s)
                    let birth: Bool
                    // (The first attempt forces nothing: no hashing of `forced` then.)
                    let imposed = forced.isEmpty ? nil : forced[choice]
                    if let b = imposed ?? made[choice] { birth = b } else { birth = !helperLooksPossible(under: p, s, for: c) }
                    if imposed == nil { made[choice] = birth }
                    if birth, (try? tryBirth(of: p, s, strict: false)) != nil { return }
                }
                try needHelper(c, s)
                return
            }
            if doesSetsid[p] {
                if let b = born[p], b != s {
                    throw RestoreError.invalid(label(start), "is in session \(s), so its ancestor \(label(p)) must have been in session \(s) before its setsid(), but \(label(p)) must also have been born into session \(b)")
                }
                if born[p] == s { return } // already resolved further up
                setBorn(p, s)
                c = p
                continue
            }
            let via = c == start ? "" : " (through \(label(c)))"
            throw RestoreError.invalid(label(start), "is in session \(s) but neither it, its parent \(label(parent[start])), nor any ancestor can have created session \(s)\(via): \(label(p)) is in session \(finalSid[p]) and never called setsid()")
        }
    }

    /// Makes `p` be born into `s`; undoes everything if that is impossible.
    mutating func tryBirth(of p: Int, _ s: Int32, strict: Bool) throws {
        let mark = trail.count
        setBorn(p, s)
        do {
            try requireSession(of: p, s, strict: strict)
        } catch {
            undo(to: mark)
            throw error
        }
    }

    mutating func setBorn(_ node: Int, _ s: Int32) {
        trail.append((node, true, born[node]))
        born[node] = s
    }

    /// Takes back the changes to `born` and `helperSession` made since the trail had `mark` entries.
    mutating func undo(to mark: Int) {
        while trail.count > mark {
            let t = trail.removeLast()
            if t.isBorn { born[t.node] = t.old } else { helperSession[t.node] = t.old }
        }
    }

    /// Whether a helper in session `s` could be forked below reaper `r` for its child `c`: a
    /// process of the session lives in the reaper's subtree outside the subtrees of the
    /// reaper's children that are in `s` without being its leader (the helper would fork them).
    /// By the DFS order of the tree (`SubtreeIndex`): the session's processes in the reaper's
    /// subtree, skipping whole subtrees that cannot hold one (a scan of every process per
    /// reaper was quadratic in trees of many daemons).
    mutating func helperLooksPossible(under r: Int, _ s: Int32, for c: Int) -> Bool {
        let ix = subtreeIndex()
        guard let list = ix.tins(ofSession: s) else { return false }
        let end = ix.tout[r]
        var k = ix.lowerBound(list, ix.tin[r] + 1)
        while k < list.endIndex, list[k] < end {
            let a = ix.nodeAt[Int(list[k])]
            // The reaper's child above a: its whole subtree is out if it is c or a non-leader of s.
            let x = ix.childContaining(a, of: r)
            if x == c || (finalSid[x] == s && !doesSetsid[x]) {
                k = ix.lowerBound(list, ix.tout[x], from: k + 1)
                continue
            }
            // A namespace init between a and the reaper (a itself included) stops the orphans.
            let ns = ix.namespaceRoot[a]
            if ix.depth[ns] > ix.depth[r] {
                k = ix.lowerBound(list, ix.tout[ns], from: k + 1)
                continue
            }
            return true
        }
        return false
    }

    /// Built on first need (most trees never ask), for the tree's processes only: helpers come later.
    mutating func subtreeIndex() -> SubtreeIndex {
        if let ix = subtrees { return ix }
        let ix = SubtreeIndex(parent: Array(parent.prefix(entryNodeCount)), finalSid: finalSid,
                              newPidNamespace: nodes.prefix(entryNodeCount).map(\.newPidNamespace),
                              isReaper: isReaper)
        subtrees = ix
        return ix
    }

    mutating func needHelper(_ c: Int, _ s: Int32) throws {
        if let other = helperSession[c], other != s {
            throw RestoreError.invalid(label(c), "would have to be born into both session \(other) and session \(s)")
        }
        trail.append((c, false, helperSession[c]))
        helperSession[c] = s
    }

    func requiredBirth(_ node: Int) -> Int32? {
        if nodes[node].isHelper {
            if case .helper(.sessionOrphans(let s, false)) = nodes[node].role { return s }
            return nil
        }
        return doesSetsid[node] ? born[node] : finalSid[node]
    }

    /// Whether the orphans of a helper forked by `a` reach `reaper` with no other reaper in
    /// between: `a` is in the reaper's subtree and neither `a` nor any process between them is
    /// a subreaper or a namespace init.
    func reachesDirectly(from a: Int, _ reaper: Int) -> Bool {
        var x = a
        while x != reaper {
            if x <= 0 || isReaper[x] { return false }
            x = parent[x]
        }
        return true
    }

    /// Whether `a` is in the subtree of `reaper` in its PID namespace, with no namespace init in
    /// between: a helper forked by `a` sends its orphans to `reaper` if the subreapers in
    /// between are flagged only after it exits.
    func reachesLater(from a: Int, _ reaper: Int) -> Bool {
        var x = a
        while x != reaper {
            if x <= 0 || nodes[x].newPidNamespace { return false }
            x = parent[x]
        }
        return true
    }

    func isDescendant(_ x: Int, of y: Int) -> Bool {
        var cur = x
        while cur >= 0 {
            if cur == y { return true }
            cur = parent[cur]
        }
        return false
    }

    /// Whether the chain of forkers from `a` up to the init passes through a kid (making `a`
    /// fork a helper that forks the kids would be a cycle).
    func forkedThrough(_ a: Int, _ isKid: (Int) -> Bool) -> Bool {
        var x = a
        var steps = 0
        while x > 0 {
            if isKid(x) { return true }
            x = forker[x]
            steps += 1
            if steps > nodes.count { return true }
        }
        return false
    }

    func depth(_ n: Int) -> Int {
        var d = 0
        var x = n
        while x > 0 { x = parent[x]; d += 1 }
        return d
    }

    /// The lowest local PID from 2 up in namespace `ns` that nothing speaks for and no earlier
    /// allocation took. The candidates only grow, so each namespace's part of `usedPids` is
    /// walked once over all its allocations.
    mutating func allocatePid(in ns: Int) -> Int32 {
        if !usedPidsGathered { gatherUsedPids() }
        var position = 0, candidate: Int32 = 2
        if let resume = nextFree[ns] {
            (position, candidate) = resume
        } else {
            // The namespace's first key at or above the candidate, by binary search.
            var hi = usedPids.count
            while position < hi {
                let mid = (position + hi) / 2
                if usedPids[mid] < Self.usedPidKey(ns, candidate) { position = mid + 1 } else { hi = mid }
            }
        }
        // Past the keys up to the candidate, moving the candidate on when it is spoken for
        // (a PID can be listed more than once).
        while position < usedPids.count && usedPids[position] <= Self.usedPidKey(ns, candidate) {
            if usedPids[position] == Self.usedPidKey(ns, candidate) { candidate += 1 }
            position += 1
        }
        nextFree[ns] = (position, candidate + 1)
        return candidate
    }

    /// One helper per (reaper, session): it is forked inside the session and forks the
    /// reaper's children that must be born there, then exits so they are reparented.
    /// Its forker, in order of preference: a process of the session whose helper's orphans go
    /// straight to the reaper (its leader first); else, when the session's leader is dead, a
    /// helper that takes the leader's PID and creates the session, forked by the reaper itself;
    /// else a process of the session deeper in the reaper's subtree, below subreapers that are
    /// then flagged only after this helper is gone.
    mutating func createSessionHelpers() throws {
        guard helperSession.contains(where: { $0 != nil }) else { return }
        let ix = subtreeIndex()
        // The kids of each (reaper, session), in node order: per reaper, its children grouped
        // by session through the group last made for each session number.
        var groups: [(reaper: Int, session: Int32, kids: [Int])] = []
        var groupOfSession = [Int](repeating: -1, count: ix.sessionCount)
        for r in 0..<entryNodeCount {
            for c in ix.kids[ix.firstKid[r]..<ix.firstKid[r + 1]] {
                guard let s = helperSession[c] else { continue }
                let k = ix.sessionNumber[s]! // s is the session of a process of the tree
                if groupOfSession[k] >= 0 && groups[groupOfSession[k]].reaper == r {
                    groups[groupOfSession[k]].kids.append(c)
                } else {
                    groupOfSession[k] = groups.count
                    groups.append((r, s, [c]))
                }
            }
        }
        reserveNodes(nodes.count + groups.count) // one helper per group: no doubling of 11 arrays
        // Deepest reapers first: their helpers can only be forked inside their own subtree,
        // while a helper for a reaper higher up may be forked from deeper down. Among equals,
        // in the order of their first kids.
        let order = groups.indices.sorted {
            (ix.depth[groups[$0].reaper], groups[$1].kids[0]) > (ix.depth[groups[$1].reaper], groups[$0].kids[0])
        }
        // Per session number, whether a helper already took its dead leader's PID.
        var createdSessions = [Bool](repeating: false, count: ix.sessionCount)
        for gi in order {
            let g = groups[gi]
            let sessionNumber = ix.sessionNumber[g.session]!
            // The kids are exactly the reaper's children that a helper must fork into the session.
            func isKid(_ x: Int) -> Bool { parent[x] == g.reaper && helperSession[x] == g.session }
            let kidNamespaces = nodes[g.reaper].namespaces
            // The processes of the session in the reaper's PID namespace, in its subtree (it
            // included) outside its kids' subtrees, whose helper's orphans reach the reaper
            // straight away (direct) or once the subreapers between are flagged later (later),
            // in node order; by the DFS order, skipping the kids' subtrees whole.
            let r = g.reaper
            var direct: [Int] = [], later: [Int] = []
            if let list = ix.tins(ofSession: g.session) {
                var k = ix.lowerBound(list, ix.tin[r])
                while k < list.endIndex, list[k] < ix.tout[r] {
                    let a = ix.nodeAt[Int(list[k])]
                    if a != r, case let x = ix.childContaining(a, of: r), isKid(x) {
                        k = ix.lowerBound(list, ix.tout[x], from: k + 1)
                        continue
                    }
                    k += 1
                    guard nodes[a].namespaces == kidNamespaces, ix.depth[ix.namespaceRoot[a]] <= ix.depth[r] else { continue }
                    later.append(a)
                    if ix.depth[ix.reaperRoot[a]] <= ix.depth[r] { direct.append(a) }
                }
            }
            direct.sort()
            later.sort()
            // Members fork no kid through their forkers (that would be a cycle): asked of the
            // few that are picked, not of every process.
            let leader = entryOfPid[g.session].map { nodeOfEntry[$0] }
            let directLeader = leader.flatMap { l in direct.contains(l) && !forkedThrough(l, isKid) ? l : nil }
            let leaderDead = g.session != 0 && entryOfPid[g.session] == nil
            var helper: Node
            var helperForker: Int
            if let a = directLeader ?? direct.first(where: { !forkedThrough($0, isKid) }) {
                helperForker = a
                helper = Node(role: .helper(.sessionOrphans(session: g.session, createsSession: false)),
                              nspid: [], forker: a, namespaces: nodes[a].namespaces,
                              newPidNamespace: false, childSubreaper: false)
                helper.nspid = helper.namespaces.map { allocatePid(in: $0) }
            } else if leaderDead, !createdSessions[sessionNumber], kidNamespaces.count == 1,
                      !forkedThrough(g.reaper, isKid) {
                createdSessions[sessionNumber] = true
                helperForker = g.reaper
                helper = Node(role: .helper(.sessionOrphans(session: g.session, createsSession: true)),
                              nspid: [g.session], forker: g.reaper, namespaces: kidNamespaces,
                              newPidNamespace: false, childSubreaper: false)
            } else if let a = later.first(where: { !forkedThrough($0, isKid) }) {
                helperForker = a
                helper = Node(role: .helper(.sessionOrphans(session: g.session, createsSession: false)),
                              nspid: [], forker: a, namespaces: nodes[a].namespaces,
                              newPidNamespace: false, childSubreaper: false)
                helper.nspid = helper.namespaces.map { allocatePid(in: $0) }
            } else {
                let who = g.kids.map { label($0) }.joined(separator: ", ")
                let why: String
                if g.session == 0 {
                    why = "session 0 is the runtime's own session, and no process of it below \(label(g.reaper)) can fork a helper there"
                } else if let l = entryOfPid[g.session] {
                    why = "its leader \(tree.processes[l].label) is alive but no process of that session in the subtree of \(label(g.reaper)) can fork a helper whose children would be reparented to \(label(g.reaper))"
                } else if kidNamespaces.count > 1 {
                    why = "its leader is dead and a nested PID namespace cannot take the leader's PID to recreate it"
                } else if createdSessions[sessionNumber] {
                    why = "its leader is dead, its PID already recreates session \(g.session) elsewhere, and no process of the session in the subtree of \(label(g.reaper)) can fork a helper there"
                } else {
                    why = "its leader is dead and no process of the session can fork the helper without a cycle"
                }
                throw RestoreError.invalid(who, "must be born into session \(g.session) and then reparented to \(label(g.reaper)), but \(why)")
            }
            let h = nodes.count
            appendNode(helper, parent: helperForker, sid: g.session, pgid: g.session)
            doesSetsid[h] = { if case .helper(.sessionOrphans(_, true)) = helper.role { return true } else { return false } }()
            helperTarget[h] = g.reaper
            for k in g.kids { forker[k] = h }
        }
    }

    /// Every node must reach the root through its forkers. Linear: each node is walked once;
    /// a walk that meets its own path is a cycle (a walk per node was quadratic in depth).
    func checkForkGraph() throws {
        // 0: not seen, 1: on the current walk, 2: reaches the root.
        var state = [UInt8](repeating: 0, count: nodes.count)
        state[0] = 2
        var path: [Int] = []
        for start in 0..<nodes.count where state[start] == 0 {
            var x = start
            while state[x] == 0 {
                state[x] = 1
                path.append(x)
                x = forker[x]
            }
            if state[x] == 1 {
                throw RestoreError.invalid(label(start), "cannot be created: the helpers needed for its session form a cycle")
            }
            for n in path { state[n] = 2 }
            path.removeAll(keepingCapacity: true)
        }
    }

    // MARK: emitting steps

    mutating func emitForks() {
        // Each forker's children in node order, in flat arrays: kids of x are
        // kidList[firstKid[x]..<firstKid[x + 1]].
        let count = nodes.count
        var firstKid = [Int](repeating: 0, count: count + 2)
        for n in 1..<count { firstKid[forker[n] + 2] += 1 }
        for k in 1..<firstKid.count { firstKid[k] += firstKid[k - 1] }
        var kidList = [Int](repeating: 0, count: firstKid[count + 1])
        for n in 1..<count {
            kidList[firstKid[forker[n] + 1]] = n
            firstKid[forker[n] + 1] += 1
        }
        // Iterative DFS: each node's work is its pre-setsid forks, setsid, then its other forks.
        // Subreaper flags come later, with the helpers' retirements.
        enum Work { case enter(Int), fork(Int, Int), setsid(Int) }
        var stack: [Work] = [.enter(0)]
        var forked = [Bool](repeating: false, count: count)
        forked[0] = true
        var deferred: [Work] = []
        steps.reserveCapacity(steps.count + count)
        while true {
            guard let w = stack.popLast() else {
                // Forks that wait for a group leader forked elsewhere in the DFS.
                if deferred.isEmpty { break }
                stack = deferred.reversed()
                deferred = []
                continue
            }
            if case .fork(let p, let c) = w {
                switch inheritGroup(forker: p, child: c, forked: forked) {
                case .ready: break
                case .waitForLeader where !stack.isEmpty || !deferred.isEmpty:
                    deferred.append(w)
                    continue
                case .waitForLeader: break // cannot happen: the leader is outside c's subtree
                }
                forked[c] = true
            }
            switch w {
            case .enter(let x):
                // Pushed in reverse: the children born into x's birth session (forked before
                // its setsid), the setsid, then the other children.
                let birth: Int32? = doesSetsid[x] && born[x] != finalSid[x] ? born[x] : nil
                let kids = kidList[firstKid[x]..<firstKid[x + 1]]
                func before(_ k: Int) -> Bool { birth != nil && requiredBirth(k) == birth }
                for k in kids.reversed() where !before(k) { stack.append(.fork(x, k)) }
                if doesSetsid[x] { stack.append(.setsid(x)) }
                for k in kids.reversed() where before(k) { stack.append(.fork(x, k)) }
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

    enum Inheritance { case ready, waitForLeader }

    func sees(_ a: Int, _ l: Int) -> Bool {
        nodes[l].namespaces.starts(with: nodes[a].namespaces)
    }

    /// The leader of `c`'s group when it lives outside `c`'s PID namespace (so `c` must have
    /// inherited the group at fork), in `c`'s session.
    func outsideGroupLeader(of c: Int) -> Int? {
        let g = finalPgid[c]
        guard g != 0, g != nodes[c].pid, !nodes[c].isHelper,
              let e = entryOfPid[g], case let l = nodeOfEntry[e], l >= 0,
              !sees(c, l), finalSid[l] == finalSid[c] else { return nil }
        return l
    }

    /// A reaper's child that inherited a group its parent cannot be in at fork time (a session
    /// leader, or a parent that cannot see the leader) was forked by a process that has since
    /// died: a helper of its session stands in, joins the group, forks it and exits.
    mutating func requireGroupHelpers() throws {
        for c in 1..<nodes.count where helperSession[c] == nil {
            let p = parent[c]
            guard isReaper[p], let l = outsideGroupLeader(of: c) else { continue }
            let parentCanBeInGroup = nodes[p].pid == finalPgid[c]
                || (!doesSetsid[p] && (p != 0 || treeHasInit) && sees(p, l) && finalSid[p] == finalSid[c])
            if !parentCanBeInGroup { try needHelper(c, finalSid[c]) }
        }
    }

    /// A child whose group leader is outside its PID namespace cannot setpgid() into the group
    /// (the leader's PID is not visible there: its NSpgid reads 0): it must inherit the group
    /// at fork, as children of `unshare --pid --fork` started from a shell do. So the group is
    /// made and its forker joins it just before the fork (the forker goes back to its own group
    /// with the other joins). Waits when the leader is not forked yet.
    mutating func inheritGroup(forker p: Int, child c: Int, forked: [Bool]) -> Inheritance {
        let g = finalPgid[c]
        guard pgidNow[p] != g, let l = outsideGroupLeader(of: c), finalSid[p] == finalSid[c], p != 0 || treeHasInit
        else { return .ready }
        guard forked[l] else { return .waitForLeader }
        // The leader must have made its setsid() already (a session leader's group is its own).
        if pgidNow[l] != g {
            if doesSetsid[l] { return .ready }
            steps.append(.setpgid(node: l, leader: l))
            pgidNow[l] = g
        }
        if p != l {
            // A session leader never joins another group, and the forker must see the leader.
            if doesSetsid[p] || !sees(p, l) { return .ready }
            steps.append(.setpgid(node: p, leader: l))
            pgidNow[p] = g
        }
        return .ready
    }

    mutating func emitGroups() throws {
        var top: Int32 = 0
        for i in nodes.indices { top = max(top, nodes[i].pid) }
        var nodeOfPid = PIDIndex(maxKey: top, count: nodes.count)
        for i in nodes.indices where i != 0 || treeHasInit || finalPgid[0] == 1 { nodeOfPid.set(nodes[i].pid, i) }
        var creations: [RestorePlan.Step] = []
        var joins: [RestorePlan.Step] = []
        var leaderOf = PIDIndex(keysFrom: finalPgid)
        let entries = (0..<nodes.count).filter { !nodes[$0].isHelper && (nodes[$0].role != .runtimeInit) }
        // The groups in order of their first member, and each group's members in node order
        // (members of group k: memberList[firstMember[k]..<firstMember[k + 1]]), made in one
        // pass: filtering the entries per group was quadratic in the number of groups.
        var groupOfPgid = PIDIndex(keysFrom: finalPgid)
        var groupOfEntry = [Int](repeating: 0, count: entries.count)
        var groupPgids: [Int32] = []
        for (k, m) in entries.enumerated() {
            if let gi = groupOfPgid.insertIfAbsent(finalPgid[m], groupPgids.count) {
                groupOfEntry[k] = gi
            } else {
                groupOfEntry[k] = groupPgids.count
                groupPgids.append(finalPgid[m])
            }
        }
        var firstMember = [Int](repeating: 0, count: groupPgids.count + 2)
        for gi in groupOfEntry { firstMember[gi + 2] += 1 }
        for k in 1..<firstMember.count { firstMember[k] += firstMember[k - 1] }
        var memberList = [Int](repeating: 0, count: entries.count)
        for (k, m) in entries.enumerated() {
            memberList[firstMember[groupOfEntry[k] + 1]] = m
            firstMember[groupOfEntry[k] + 1] += 1
        }
        // Per session, the first process of the shallowest PID namespace (for dead leaders'
        // helpers), gathered on first need.
        var shallowestOfSession: [Int32: (depth: Int, node: Int)]?
        for gi in groupPgids.indices {
            let g = groupPgids[gi]
            let members = memberList[firstMember[gi]..<firstMember[gi + 1]]
            let m = members.first!
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
                leaderOf.set(g, l)
            } else {
                // Dead leader: a helper takes its PID, forked by a member or another process of
                // the session, from the shallowest PID namespace: a PID allocated in a nested
                // namespace would tie that namespace's init if it is in the group (see
                // checkInitGroups).
                // The mates: the session's processes (the members are among them), the
                // tree's init last.
                if shallowestOfSession == nil {
                    var found: [Int32: (depth: Int, node: Int)] = [:]
                    for a in Array(1..<entryNodeCount) + (treeHasInit ? [0] : []) where !nodes[a].isHelper {
                        let depth = nodes[a].namespaces.count
                        if let known = found[finalSid[a]], known.depth <= depth { continue }
                        found[finalSid[a]] = (depth, a)
                    }
                    shallowestOfSession = found
                }
                let mate = shallowestOfSession![s]!
                let shallowest = mate.depth
                let forkerNode = members.first { nodes[$0].namespaces.count == shallowest } ?? mate.node
                var helper = Node(role: .helper(.groupLeader(pgid: g)), nspid: [], forker: forkerNode,
                                  namespaces: nodes[forkerNode].namespaces, newPidNamespace: false, childSubreaper: false)
                helper.nspid = helper.namespaces.enumerated().map { level, ns in level == 0 ? g : allocatePid(in: ns) }
                let h = nodes.count
                appendNode(helper, parent: forkerNode, sid: s, pgid: g)
                pgidNow[h] = pgidNow[forkerNode]
                creations.append(.fork(parent: forkerNode, child: h))
                creations.append(.setpgid(node: h, leader: h))
                pgidNow[h] = g
                leaderOf.set(g, h)
            }
        }
        var moves: [(node: Int, leader: Int)] = []
        for m in entries {
            let g = finalPgid[m]
            guard g != 0, pgidNow[m] != g, let l = leaderOf[g] else { continue }
            if doesSetsid[m] {
                throw RestoreError.invalid(label(m), "is a session leader (sid == pid) but has pgid \(g): a session leader's group is always its own")
            }
            guard nodes[l].namespaces.starts(with: nodes[m].namespaces) else {
                throw RestoreError.invalid(label(m), "must join process group \(g), but the group's leader \(label(l)) is not visible inside its PID namespace")
            }
            // A leader that has moved on joins its final group after everyone joined its old one.
            if leaderOf[nodes[m].pid] == m {
                moves.append((m, l))
            } else {
                joins.append(.setpgid(node: m, leader: l))
                pgidNow[m] = g
            }
        }
        steps += creations + joins
        try emitMoves(moves)
        try checkInitGroups(leaderOf)
    }

    /// A namespace's init must not sit in a process group named by a PID of its own namespace
    /// (a group of one of its descendants): when the namespace ends, the init waits in the
    /// kernel until every other PID of the namespace is freed (zap_pid_ns_processes), and its
    /// own membership keeps that group's PID taken, so it waits forever and can never be
    /// killed. A restore must be able to end its namespace, and always does on failure.
    func checkInitGroups(_ leaderOf: PIDIndex) throws {
        var inits: [(node: Int, namespace: Int)] = treeHasInit ? [(0, 0)] : []
        for n in nodes.indices where nodes[n].newPidNamespace { inits.append((n, n)) }
        for (x, ns) in inits {
            let g = finalPgid[x]
            guard g != 0, g != nodes[x].pid, let l = leaderOf[g], nodes[l].namespaces.contains(ns) else { continue }
            let namespace = x == 0 ? "the tree's PID namespace" : "the PID namespace it starts"
            throw RestoreError.invalid(label(x), "is the init of \(namespace) but is in process group \(g), whose PID belongs to that namespace: when the namespace ends, the kernel keeps its init waiting until every other PID of the namespace is freed, and the init's own membership keeps PID \(g) taken, so the namespace could never be torn down (its init would hang, unkillable, in zap_pid_ns_processes). Such a tree cannot be restored safely; record it with the init in its own group (pgid \(nodes[x].pid)) or in its parent's")
        }
    }

    /// The leaders that left their own group join their final groups. A group whose only
    /// remaining member is its own (moving) leader must be joined before that leader leaves it.
    /// When such leaders form a cycle (each moved into the next one's group), another process
    /// of the session holds one of the groups open meanwhile: a helper, which never leaves, or
    /// a process that can go back to its own group afterwards.
    mutating func emitMoves(_ moves: [(node: Int, leader: Int)]) throws {
        if moves.isEmpty { return }
        // What is kept per node, group or session is in arrays, groups and sessions numbered
        // up front (dictionaries and sets here were most of planning trees of many moves).
        // Holders forked below come after `nodeCount` and are never asked about.
        let nodeCount = nodes.count
        var isMover = [Bool](repeating: false, count: nodeCount)
        var moveOfNode = [Int](repeating: -1, count: nodeCount)
        for (k, mv) in moves.enumerated() {
            isMover[mv.node] = true
            moveOfNode[mv.node] = k
        }
        var top: Int32 = 0
        for x in 0..<nodeCount { top = max(top, nodes[x].pid, pgidNow[x], finalPgid[x], finalSid[x]) }
        // Every group a node is in, was recorded in, or a move joins (by its leader's PID).
        var groups = PIDNumbering(maxKey: top, count: nodeCount)
        for x in 0..<nodeCount {
            groups.number(pgidNow[x])
            groups.number(finalPgid[x])
        }
        for mv in moves { groups.number(nodes[mv.leader].pid) }
        func group(_ pgid: Int32) -> Int { groups[pgid]! }
        var sessions = PIDNumbering(maxKey: top, count: nodeCount)
        for x in 0..<nodeCount { sessions.number(finalSid[x]) }
        // Per group, the processes that keep it open: neither moving nor holding another group
        // open (counted once here and kept up to date: a scan of every process per move was
        // quadratic). Only movers and holders change groups from here on.
        var keepers = [Int](repeating: 0, count: groups.count)
        for x in 0..<nodeCount where !isMover[x] { keepers[group(pgidNow[x])] += 1 }
        // after[k]: the move that must wait for move k (the leader of k's target group).
        var after = Array(repeating: [Int](), count: moves.count)
        var waitingFor = Array(repeating: 0, count: moves.count)
        for (k, mv) in moves.enumerated() {
            let held = keepers[group(nodes[mv.leader].pid)] > 0
            if !held, moveOfNode[mv.leader] >= 0, case let lk = moveOfNode[mv.leader], lk != k {
                after[k].append(lk)
                waitingFor[lk] += 1
            }
        }
        var done = Array(repeating: false, count: moves.count)
        // The moves that wait for nobody, lowest first; the first one not done.
        var ready = MinHeap()
        for k in moves.indices where waitingFor[k] == 0 { ready.push(k) }
        var firstUndone = 0
        // The target groups of the moves not done, counted.
        var pendingTargets = [Int](repeating: 0, count: groups.count)
        for mv in moves { pendingTargets[group(nodes[mv.leader].pid)] += 1 }
        var returns: [RestorePlan.Step] = []
        var isHolder = [Bool](repeating: false, count: nodeCount)
        // Who may hold a group open, per session number in node order, each list past its
        // leading holders: session-orphans helpers, and processes in their own final group.
        var helperCandidates = [[Int]](repeating: [], count: sessions.count)
        var hopperCandidates = [[Int]](repeating: [], count: sessions.count)
        var helperStart = [Int](repeating: 0, count: sessions.count)
        var hopperStart = [Int](repeating: 0, count: sessions.count)
        // Per group, the nodes recorded in it that are not session-orphans helpers.
        var finalMembers = [Int](repeating: 0, count: groups.count)
        // The first node with each PID (the runtime's init only when it stands for the tree's).
        var firstOfPid = PIDIndex(maxKey: top, count: nodeCount)
        for x in 0..<nodeCount {
            if x != 0 || treeHasInit { firstOfPid.insertIfAbsent(nodes[x].pid, x) }
            if case .helper(.sessionOrphans) = nodes[x].role {
                if x != 0, !doesSetsid[x] { helperCandidates[sessions[finalSid[x]]!].append(x) }
                continue
            }
            finalMembers[group(finalPgid[x])] += 1
            if x != 0, !nodes[x].isHelper, !isMover[x], !doesSetsid[x], pgidNow[x] == finalPgid[x], finalPgid[x] != 0 {
                hopperCandidates[sessions[finalSid[x]]!].append(x)
            }
        }
        while true {
            if let k = ready.pop() {
                done[k] = true
                pendingTargets[group(nodes[moves[k].leader].pid)] -= 1
                steps.append(.setpgid(node: moves[k].node, leader: moves[k].leader))
                pgidNow[moves[k].node] = nodes[moves[k].leader].pid
                for next in after[k] {
                    waitingFor[next] -= 1
                    if waitingFor[next] == 0 { ready.push(next) }
                }
                continue
            }
            while firstUndone < moves.count && done[firstUndone] { firstUndone += 1 }
            guard firstUndone < moves.count else { break }
            let k = firstUndone
            // A cycle: hold the group that move k joins open with another process.
            let mv = moves[k]
            let g = nodes[mv.leader].pid
            let s = finalSid[mv.node]
            let sessionNumber = sessions[s]!
            func canJoin(_ x: Int) -> Bool {
                guard x != 0, !isMover[x], !isHolder[x], !doesSetsid[x], finalSid[x] == s,
                      nodes[x].namespaces == nodes[mv.node].namespaces else { return false }
                // It must not leave a group that a pending move needs and nobody else keeps.
                let current = group(pgidNow[x])
                return pendingTargets[current] == 0 || keepers[current] > 1
            }
            func first(_ list: [Int], _ start: inout Int, _ ok: (Int) -> Bool) -> Int? {
                var i = start
                while i < list.count && isHolder[list[i]] { i += 1 }
                start = i
                while i < list.count {
                    if ok(list[i]) { return list[i] }
                    i += 1
                }
                return nil
            }
            let helper = first(helperCandidates[sessionNumber], &helperStart[sessionNumber], canJoin)
            // A process that can go back: to its own group, or to one that others keep.
            let hopper = helper != nil ? nil : first(hopperCandidates[sessionNumber], &hopperStart[sessionNumber]) { x in
                guard canJoin(x) else { return false }
                let own = finalPgid[x]
                return own == nodes[x].pid || finalMembers[group(own)] > 1
            }
            if let x = helper ?? hopper {
                isHolder[x] = true
                keepers[group(pgidNow[x])] -= 1
                steps.append(.setpgid(node: x, leader: mv.leader))
                if !nodes[x].isHelper {
                    // Any node with the group's PID names the group. (Holders made below never
                    // have one: their PIDs avoid every recorded group's.)
                    if let back = firstOfPid[finalPgid[x]] {
                        returns.append(.setpgid(node: x, leader: back))
                    }
                }
                pgidNow[x] = g
            } else {
                // Nobody can: the group's leader forks a temporary holder, born into the group.
                // (RestorePlan has no purpose for it yet: it is a group helper whose PID is
                // not the group's; `describe` tells them apart.)
                let l = mv.leader
                var holder = Node(role: .helper(.groupHolder(pgid: g)), nspid: [], forker: l,
                                  namespaces: nodes[l].namespaces, newPidNamespace: false, childSubreaper: false)
                holder.nspid = holder.namespaces.map { allocatePid(in: $0) }
                appendNode(holder, parent: l, sid: s, pgid: g)
                let h = nodes.count - 1
                steps.append(.fork(parent: l, child: h))
                pgidNow[h] = g
                finalMembers[group(g)] += 1
            }
            for next in after[k] {
                waitingFor[next] -= 1
                if waitingFor[next] == 0 { ready.push(next) }
            }
            after[k] = []
        }
        steps += returns
    }

    /// Helpers exit, subreapers are flagged, zombies die. A session-orphans helper's children
    /// go to the nearest flagged subreaper above it when it exits: at that moment its target
    /// reaper must be flagged and every subreaper between must not yet be. Helpers are retired
    /// one at a time, each as soon as that holds and flagging its target does not break it for
    /// a helper still waiting; the other subreapers are flagged at the end.
    /// The paths between helpers and targets are kept, with how many pass each process, and
    /// walked again only when a helper on them exits (all of them per exit was quadratic).
    mutating func emitRetirementsAndZombies() throws {
        var sessionHelpers: [Int] = []
        for h in (0..<nodes.count).reversed() where nodes[h].isHelper {
            if helperTarget[h] >= 0 { sessionHelpers.append(h) } else { steps.append(.retireHelper(h)) }
        }
        sessionHelpers.reverse()
        var realParent = forker
        var flagged = [Bool](repeating: false, count: nodes.count)
        func alwaysReaper(_ x: Int) -> Bool { x == 0 || nodes[x].newPidNamespace }
        /// The processes strictly between the helper and its target, by real parents now.
        func between(_ h: Int) -> [Int] {
            var out: [Int] = []
            var x = realParent[h]
            while x != helperTarget[h], x > 0 {
                out.append(x)
                x = realParent[x]
            }
            return out
        }
        // The helpers still waiting, in node order: a linked list of their positions.
        let count = sessionHelpers.count
        var next = Array(1...max(1, count)).map { $0 < count ? $0 : -1 }
        var prev = Array(-1..<max(0, count - 1))
        var head = count > 0 ? 0 : -1
        var paths = [[Int]](repeating: [], count: count)
        // How many waiting helpers' paths pass each node; per session helper, the positions of
        // the waiting helpers whose paths pass it (they change when it exits).
        var passing = [Int32](repeating: 0, count: nodes.count)
        var through = [[Int]](repeating: [], count: nodes.count)
        func record(_ i: Int) {
            paths[i] = between(sessionHelpers[i])
            for x in paths[i] {
                passing[x] += 1
                if helperTarget[x] >= 0 { through[x].append(i) }
            }
        }
        for i in 0..<count { record(i) }
        var waiting = [Bool](repeating: true, count: count)
        // Each helper's children by real parent (only session helpers' children move).
        var kidsOf = [[Int]](repeating: [], count: nodes.count)
        for k in 1..<nodes.count where forker[k] >= 0 && helperTarget[forker[k]] >= 0 { kidsOf[forker[k]].append(k) }
        while head >= 0 {
            var pick = -1
            var i = head
            while i >= 0 {
                let t = helperTarget[sessionHelpers[i]]
                if !paths[i].contains(where: { flagged[$0] || alwaysReaper($0) }) {
                    if alwaysReaper(t) || flagged[t] { pick = i; break }
                    var own: Int32 = 0
                    for x in paths[i] where x == t { own += 1 }
                    if passing[t] - own == 0 { pick = i; break }
                }
                i = next[i]
            }
            guard pick >= 0 else {
                let h = sessionHelpers[head]
                var sessions: [String] = []
                var j = head
                while j >= 0 {
                    if case .helper(.sessionOrphans(let s, _)) = nodes[sessionHelpers[j]].role { sessions.append(String(s)) }
                    j = next[j]
                }
                throw RestoreError.invalid(label(helperTarget[h]), "is a child subreaper whose flag would have to be set both before and after the helpers of sessions \(sessions.joined(separator: ", ")) exit: their orphans could not all reach the reapers they are recorded under")
            }
            // Out of the list, its path out of the counts.
            if prev[pick] >= 0 { next[prev[pick]] = next[pick] } else { head = next[pick] }
            if next[pick] >= 0 { prev[next[pick]] = prev[pick] }
            waiting[pick] = false
            for x in paths[pick] { passing[x] -= 1 }
            let h = sessionHelpers[pick]
            let t = helperTarget[h]
            if !alwaysReaper(t) && !flagged[t] {
                steps.append(.setChildSubreaper(t))
                flagged[t] = true
            }
            steps.append(.retireHelper(h))
            for k in kidsOf[h] {
                realParent[k] = t
                if helperTarget[t] >= 0 { kidsOf[t].append(k) }
            }
            kidsOf[h] = []
            // The waiting helpers whose paths passed h walk theirs again.
            let passedH = through[h]
            through[h] = []
            for j in Set(passedH).sorted() where waiting[j] {
                for x in paths[j] { passing[x] -= 1 }
                record(j)
            }
        }
        for n in 0..<nodes.count where nodes[n].childSubreaper && !flagged[n] {
            steps.append(.setChildSubreaper(n))
        }
        for n in 0..<nodes.count {
            guard let i = nodes[n].entryIndex, tree.processes[i].state == .zombie, n != 0 else { continue }
            steps.append(.becomeZombie(node: n, parent: parent[n]))
        }
    }

    /// In place: a copy of `nodes` would copy every node (the builder is dropped after this).
    mutating func finish() -> RestorePlan {
        for i in nodes.indices { nodes[i].forker = i == 0 ? nil : forker[i] }
        return RestorePlan(nodes: nodes, steps: steps, treeHasInit: treeHasInit, nodeOfEntry: nodeOfEntry)
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

/// The tree's processes in depth-first order, for questions about subtrees in O(log n):
/// `x` is in the subtree of `r` exactly when tin[r] <= tin[x] < tout[r].
struct SubtreeIndex {
    var tin: [Int32]
    var tout: [Int32]
    var nodeAt: [Int]
    var depth: [Int32]
    /// The nearest ancestor-or-self that starts a PID namespace (0: the init's).
    var namespaceRoot: [Int]
    /// The nearest ancestor-or-self that is a reaper (a child subreaper, a namespace init, 0).
    var reaperRoot: [Int]
    /// Children of node k: kids[firstKid[k]..<firstKid[k + 1]], in DFS order.
    var firstKid: [Int]
    var kids: [Int]
    /// Sessions numbered by first appearance in DFS order (session id -> number), and per
    /// session the tin of its processes (node 0 aside), ascending, in one flat array: those of
    /// session k are sessionTins[firstSessionTin[k]..<firstSessionTin[k + 1]] (an array per
    /// session in a dictionary was a tenth of planning trees of many sessions).
    var sessionNumber: PIDNumbering
    var firstSessionTin: [Int]
    var sessionTins: [Int32]
    var sessionCount: Int { firstSessionTin.count - 1 }

    /// `parent[n] < n` for every n > 0 (the planner numbers parents first).
    init(parent: [Int], finalSid: [Int32], newPidNamespace: [Bool], isReaper: [Bool]) {
        let count = parent.count
        firstKid = [Int](repeating: 0, count: count + 2)
        for n in 1..<count { firstKid[parent[n] + 2] += 1 }
        for k in 1..<firstKid.count { firstKid[k] += firstKid[k - 1] }
        kids = [Int](repeating: 0, count: max(0, count - 1))
        for n in 1..<count {
            kids[firstKid[parent[n] + 1]] = n
            firstKid[parent[n] + 1] += 1
        }
        depth = [Int32](repeating: 0, count: count)
        namespaceRoot = [Int](repeating: 0, count: count)
        reaperRoot = [Int](repeating: 0, count: count)
        for n in 1..<count {
            depth[n] = depth[parent[n]] + 1
            namespaceRoot[n] = newPidNamespace[n] ? n : namespaceRoot[parent[n]]
            reaperRoot[n] = isReaper[n] ? n : reaperRoot[parent[n]]
        }
        tin = [Int32](repeating: 0, count: count)
        tout = [Int32](repeating: 0, count: count)
        nodeAt = [Int](repeating: 0, count: count)
        // Iterative DFS: a node's entry, then its children; its exit after them.
        var stack: [(node: Int, next: Int)] = [(0, firstKid[0])]
        var clock: Int32 = 0
        tin[0] = 0; nodeAt[0] = 0; clock = 1
        while let top = stack.last {
            if top.next < firstKid[top.node + 1] {
                stack[stack.count - 1].next += 1
                let c = kids[top.next]
                tin[c] = clock; nodeAt[Int(clock)] = c; clock += 1
                stack.append((c, firstKid[c]))
            } else {
                tout[top.node] = clock
                stack.removeLast()
            }
        }
        let sids = finalSid.prefix(count)
        sessionNumber = PIDNumbering(maxKey: sids.max() ?? 0, count: count)
        var sessionAt = [Int32](repeating: 0, count: count)
        for t in 1..<count { sessionAt[t] = Int32(sessionNumber.number(finalSid[nodeAt[t]])) }
        firstSessionTin = [Int](repeating: 0, count: sessionNumber.count + 2)
        for t in 1..<count { firstSessionTin[Int(sessionAt[t]) + 2] += 1 }
        for k in 1..<firstSessionTin.count { firstSessionTin[k] += firstSessionTin[k - 1] }
        sessionTins = [Int32](repeating: 0, count: max(0, count - 1))
        for t in 1..<count {
            sessionTins[firstSessionTin[Int(sessionAt[t]) + 1]] = Int32(t)
            firstSessionTin[Int(sessionAt[t]) + 1] += 1
        }
        firstSessionTin.removeLast()
    }

    /// The tins of session `s`'s processes, ascending (indices are positions in sessionTins).
    func tins(ofSession s: Int32) -> ArraySlice<Int32>? {
        guard let k = sessionNumber[s] else { return nil }
        return sessionTins[firstSessionTin[k]..<firstSessionTin[k + 1]]
    }

    /// The first position in `list` (ascending) at or after `from` (default: its start) whose
    /// value is >= `value`.
    func lowerBound(_ list: ArraySlice<Int32>, _ value: Int32, from: Int? = nil) -> Int {
        var lo = from ?? list.startIndex, hi = list.endIndex
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The child of `r` whose subtree holds `a` (a strict descendant of `r`).
    func childContaining(_ a: Int, of r: Int) -> Int {
        var lo = firstKid[r], hi = firstKid[r + 1]
        // The last child whose tin is <= tin[a].
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if tin[kids[mid]] <= tin[a] { lo = mid } else { hi = mid }
        }
        return kids[lo]
    }

    func contains(_ r: Int, _ x: Int) -> Bool { tin[r] <= tin[x] && tin[x] < tout[r] }
}

/// A binary min-heap of positions (the planner's ready moves, lowest first).
struct MinHeap {
    private var items: [Int] = []

    mutating func push(_ x: Int) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let up = (i - 1) / 2
            if items[up] <= items[i] { break }
            items.swapAt(up, i)
            i = up
        }
    }

    mutating func pop() -> Int? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l] < items[m] { m = l }
                if r < items.count && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(m, i)
                i = m
            }
        }
        return top
    }
}
