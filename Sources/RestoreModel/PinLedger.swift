/// The recorded PIDs each payload still owes its forks, in fork order, and when an owed one
/// counts as never created.
///
/// The fork supervisor takes a forker's next PID for each of its forks. A PID whose child was
/// reaped before it showed what it became is given back (PinCheck: an unrecorded short-lived
/// fork, such as PostgreSQL's startup process, must not push every later sibling one PID
/// along). An owed PID is reported missing when its forker is gone, when its forker was
/// itself never created, or when its forker has taken no PID for `missingAfter` (it may still
/// come later: a payload that forks on a timer; then it is pinned as usual, and said so).
/// Pure bookkeeping: the supervisor supplies the clock and what /proc says.
public struct PinLedger: Sendable {
    /// How long a forker may take no PID while it owes some before they are reported missing.
    public static let missingAfterNanoseconds: UInt64 = 10_000_000_000

    public struct Missing: Sendable, Equatable {
        public var pid: Int32
        public var forker: Int32
        public var thread: Bool
        /// Why it will not come (or has not come yet), for the message.
        public var why: String
        /// False when the forker may still fork it (idle, not gone).
        public var final: Bool
        /// Forks that got this PID and ended before they showed what they became (given back
        /// each time): 0 when it was never created at all.
        public var endedForks: Int = 0

        public init(pid: Int32, forker: Int32, thread: Bool, why: String, final: Bool, endedForks: Int = 0) {
            self.pid = pid
            self.forker = forker
            self.thread = thread
            self.why = why
            self.final = final
            self.endedForks = endedForks
        }
    }

    /// Forker's PID -> the PIDs (or TIDs) it still owes, the next one last: a fork takes from
    /// the end and a PID given back goes on the end, so neither moves the rest of the list.
    var owedChildren: [Int32: [Int32]]
    var owedThreads: [Int32: [Int32]]
    /// Forker's PID -> the PIDs (or TIDs) it still owes, in order.
    public var children: [Int32: [Int32]] { owedChildren.mapValues { Array($0.reversed()) } }
    public var threads: [Int32: [Int32]] { owedThreads.mapValues { Array($0.reversed()) } }
    let missingAfter: UInt64
    /// Forkers that exist (the tree's own ones from the start; pinned ones once created) ->
    /// when they last took or got back a PID, or started.
    var lastActivity: [Int32: UInt64] = [:]
    /// Pinned forkers not created yet: their own debts wait for them.
    var unborn: Set<Int32>
    /// Owed PIDs reported missing while their forker was idle (said once).
    public private(set) var reported: Set<Int32> = []
    /// Forker -> how many PIDs it owes that are not reported yet (so `nextDue` reads no list).
    var unreported: [Int32: Int] = [:]
    /// Pinned PID -> forks that got it and ended before they showed what they became.
    public private(set) var endedForks: [Int32: Int] = [:]
    /// When each forker is next due (lastActivity + missingAfter), a min-heap; an entry is
    /// stale once its forker's activity moved or it owes nothing unreported. Stale entries
    /// are dropped from the top after every change, so the top is always the answer.
    var dueHeap = DeadlineHeap<Int32>()

    public init(_ pinned: PinnedForks, now: UInt64, missingAfter: UInt64 = missingAfterNanoseconds) {
        owedChildren = pinned.children.filter { !$0.value.isEmpty }.mapValues { Array($0.reversed()) }
        owedThreads = pinned.threads.filter { !$0.value.isEmpty }.mapValues { Array($0.reversed()) }
        self.missingAfter = missingAfter
        let pinnedPids = Set(pinned.children.values.flatMap { $0 })
        let forkers = Set(owedChildren.keys).union(owedThreads.keys)
        unborn = forkers.intersection(pinnedPids)
        for forker in forkers {
            unreported[forker] = (owedChildren[forker]?.count ?? 0) + (owedThreads[forker]?.count ?? 0)
            if !unborn.contains(forker) { lastActivity[forker] = now }
        }
        rebuildDue()
    }

    public var owesAny: Bool { !owedChildren.isEmpty || !owedThreads.isEmpty }

    /// The next PID `forker`'s fork (or thread) gets, taken out of what it owes.
    public mutating func take(forker: Int32, thread: Bool, now: UInt64) -> Int32? {
        let pid: Int32?
        if thread { pid = owedThreads[forker]?.popLast(); if owedThreads[forker]?.isEmpty == true { owedThreads[forker] = nil } }
        else { pid = owedChildren[forker]?.popLast(); if owedChildren[forker]?.isEmpty == true { owedChildren[forker] = nil } }
        guard let pid else { return nil }
        if !reported.contains(pid) { unreported[forker, default: 0] -= 1 }
        touch(forker, now: now)
        return pid
    }

    /// A PID handed out that must be handed out again first: its child ended before it showed
    /// what it became (`ended`: counted, for the report if it never comes), or the fork failed
    /// before allocating.
    public mutating func giveBack(_ pid: Int32, forker: Int32, thread: Bool, now: UInt64, ended: Bool = false) {
        if thread { owedThreads[forker, default: []].append(pid) } else { owedChildren[forker, default: []].append(pid) }
        if !reported.contains(pid) { unreported[forker, default: 0] += 1 }
        if ended { endedForks[pid, default: 0] += 1 }
        touch(forker, now: now)
    }

    /// A pinned child was created: what it owes its own forks is waited for from now on.
    public mutating func created(_ pid: Int32, now: UInt64) {
        // Not owed by anyone now (just taken), so no forker's count changes.
        reported.remove(pid)
        if unborn.remove(pid) != nil { touch(pid, now: now) }
    }

    /// Whether `pid` was reported missing before it came after all.
    public func wasReported(_ pid: Int32) -> Bool { reported.contains(pid) }

    /// When `overdue` next has something to say if nothing happens (nil: nothing owed by a
    /// forker that exists).
    public func nextDue() -> UInt64? { dueHeap.first?.at }

    /// Every owed PID that will not come, or has not come in time: those of forkers that are
    /// gone (taken out) and of forkers idle for `missingAfter` (kept, reported once); a missing
    /// process's own debts follow it.
    public mutating func overdue(now: UInt64, forkerGone: (Int32) -> Bool) -> [Missing] {
        var out: [Missing] = []
        for forker in lastActivity.keys.sorted() {
            guard let last = lastActivity[forker] else { continue }
            if forkerGone(forker) {
                lastActivity[forker] = nil
                out += drop(forker, why: "its forker ended before forking it", again: "its forker ended without forking it again")
                continue
            }
            guard now >= last &+ missingAfter else { continue }
            let idle = (now - last) / 1_000_000_000
            out += report(forker, final: false) { "its forker has made no \($0 ? "thread" : "fork") for \(idle) s" }
        }
        // A pinned forker reported missing owes its forks too.
        var changed = true
        while changed {
            changed = false
            for forker in unborn.sorted() where reported.contains(forker) {
                let more = report(forker, final: false) { _ in "its forker (pid \(forker)) has not been created" }
                if !more.isEmpty { changed = true }
                out += more
            }
        }
        settleDue()
        return out
    }

    /// Takes out every PID still owed, for the end of the tree: none of them can come now.
    /// Those already reported missing are not repeated.
    public mutating func drain(why: String) -> [Missing] {
        var out: [Missing] = []
        for forker in Set(owedChildren.keys).union(owedThreads.keys).sorted() {
            for (list, thread) in [(owedChildren[forker] ?? [], false), (owedThreads[forker] ?? [], true)] {
                for pid in list.reversed() where !reported.contains(pid) {
                    out.append(Missing(pid: pid, forker: forker, thread: thread, why: why, final: true, endedForks: endedForks[pid] ?? 0))
                }
            }
        }
        owedChildren = [:]
        owedThreads = [:]
        lastActivity = [:]
        unborn = []
        unreported = [:]
        dueHeap.removeAll()
        return out
    }

    /// Reports (once) every PID `forker` still owes that is not reported yet.
    mutating func report(_ forker: Int32, final: Bool, why: (Bool) -> String) -> [Missing] {
        var out: [Missing] = []
        for (list, thread) in [(owedChildren[forker] ?? [], false), (owedThreads[forker] ?? [], true)] {
            for pid in list.reversed() where !reported.contains(pid) {
                reported.insert(pid)
                unreported[forker, default: 0] -= 1
                out.append(Missing(pid: pid, forker: forker, thread: thread, why: why(thread), final: final, endedForks: endedForks[pid] ?? 0))
            }
        }
        return out
    }

    /// Takes out everything `forker` owes, and what each of those owes in turn.
    /// `again`: the reason for a PID that was forked (and ended) before.
    mutating func drop(_ forker: Int32, why: String, again: String? = nil) -> [Missing] {
        var out: [Missing] = []
        for (list, thread) in [(owedChildren[forker] ?? [], false), (owedThreads[forker] ?? [], true)] {
            for pid in list.reversed() {
                let ended = endedForks[pid] ?? 0
                out.append(Missing(pid: pid, forker: forker, thread: thread, why: ended > 0 ? again ?? why : why, final: true, endedForks: ended))
                if !thread, unborn.remove(pid) != nil {
                    out += drop(pid, why: "its forker (pid \(pid)) was never created")
                }
            }
        }
        owedChildren[forker] = nil
        owedThreads[forker] = nil
        unreported[forker] = nil
        return out
    }

    // MARK: when the next forker is due

    /// `forker` took, got back or started: its clock restarts.
    mutating func touch(_ forker: Int32, now: UInt64) {
        lastActivity[forker] = now
        if unreported[forker, default: 0] > 0 { dueHeap.push(forker, at: now &+ missingAfter) }
        settleDue()
    }

    func isCurrent(_ e: DeadlineHeap<Int32>.Entry) -> Bool {
        guard let last = lastActivity[e.value] else { return false }
        return last &+ missingAfter == e.at && unreported[e.value, default: 0] > 0
    }

    /// Drops stale entries from the top; rebuilds the heap when stale ones pile up below a
    /// forker that stays due first (another one forking all the while).
    mutating func settleDue() {
        while let top = dueHeap.first, !isCurrent(top) { dueHeap.popFirst() }
        if dueHeap.count > 2 * lastActivity.count + 64 { rebuildDue() }
    }

    mutating func rebuildDue() {
        dueHeap.removeAll()
        for (forker, last) in lastActivity where unreported[forker, default: 0] > 0 { dueHeap.push(forker, at: last &+ missingAfter) }
    }
}
