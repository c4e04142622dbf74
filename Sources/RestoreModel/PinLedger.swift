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
    }

    /// Forker's PID -> the PIDs (or TIDs) it still owes, in order.
    public private(set) var children: [Int32: [Int32]]
    public private(set) var threads: [Int32: [Int32]]
    let missingAfter: UInt64
    /// Forkers that exist (the tree's own ones from the start; pinned ones once created) ->
    /// when they last took or got back a PID, or started.
    var lastActivity: [Int32: UInt64] = [:]
    /// Pinned forkers not created yet: their own debts wait for them.
    var unborn: Set<Int32>
    /// Owed PIDs reported missing while their forker was idle (said once).
    public private(set) var reported: Set<Int32> = []

    public init(_ pinned: PinnedForks, now: UInt64, missingAfter: UInt64 = missingAfterNanoseconds) {
        children = pinned.children.filter { !$0.value.isEmpty }
        threads = pinned.threads.filter { !$0.value.isEmpty }
        self.missingAfter = missingAfter
        let pinnedPids = Set(pinned.children.values.flatMap { $0 })
        unborn = Set(children.keys).union(threads.keys).intersection(pinnedPids)
        for forker in Set(children.keys).union(threads.keys) where !unborn.contains(forker) { lastActivity[forker] = now }
    }

    public var owesAny: Bool { !children.isEmpty || !threads.isEmpty }

    /// The next PID `forker`'s fork (or thread) gets, taken out of what it owes.
    public mutating func take(forker: Int32, thread: Bool, now: UInt64) -> Int32? {
        guard let pid = (thread ? threads : children)[forker]?.first else { return nil }
        remove(pid, forker: forker, thread: thread)
        lastActivity[forker] = now
        return pid
    }

    /// A PID handed out that must be handed out again first (its child ended unrecognised, or
    /// the fork failed before allocating).
    public mutating func giveBack(_ pid: Int32, forker: Int32, thread: Bool, now: UInt64) {
        if thread { threads[forker, default: []].insert(pid, at: 0) } else { children[forker, default: []].insert(pid, at: 0) }
        lastActivity[forker] = now
    }

    /// A pinned child was created: what it owes its own forks is waited for from now on.
    public mutating func created(_ pid: Int32, now: UInt64) {
        reported.remove(pid)
        if unborn.remove(pid) != nil { lastActivity[pid] = now }
    }

    /// Whether `pid` was reported missing before it came after all.
    public func wasReported(_ pid: Int32) -> Bool { reported.contains(pid) }

    /// When `overdue` next has something to say if nothing happens (nil: nothing owed by a
    /// forker that exists).
    public func nextDue() -> UInt64? {
        var due: UInt64?
        for (forker, last) in lastActivity {
            let owed = (children[forker] ?? []) + (threads[forker] ?? [])
            guard owed.contains(where: { !reported.contains($0) }) else { continue }
            due = min(due ?? .max, last &+ missingAfter)
        }
        return due
    }

    /// Every owed PID that will not come, or has not come in time: those of forkers that are
    /// gone (taken out) and of forkers idle for `missingAfter` (kept, reported once); a missing
    /// process's own debts follow it.
    public mutating func overdue(now: UInt64, forkerGone: (Int32) -> Bool) -> [Missing] {
        var out: [Missing] = []
        for forker in lastActivity.keys.sorted() {
            guard let last = lastActivity[forker] else { continue }
            if forkerGone(forker) {
                lastActivity[forker] = nil
                out += drop(forker, why: "its forker ended before forking it")
                continue
            }
            guard now >= last &+ missingAfter else { continue }
            let idle = (now - last) / 1_000_000_000
            for (list, thread) in [(children[forker] ?? [], false), (threads[forker] ?? [], true)] {
                for pid in list where !reported.contains(pid) {
                    reported.insert(pid)
                    out.append(Missing(pid: pid, forker: forker, thread: thread,
                                       why: "its forker has made no \(thread ? "thread" : "fork") for \(idle) s", final: false))
                }
            }
        }
        // A pinned forker reported missing owes its forks too.
        var changed = true
        while changed {
            changed = false
            for forker in unborn.sorted() where reported.contains(forker) {
                for (list, thread) in [(children[forker] ?? [], false), (threads[forker] ?? [], true)] {
                    for pid in list where !reported.contains(pid) {
                        reported.insert(pid)
                        changed = true
                        out.append(Missing(pid: pid, forker: forker, thread: thread,
                                           why: "its forker (pid \(forker)) has not been created", final: false))
                    }
                }
            }
        }
        return out
    }

    /// Takes out every PID still owed, for the end of the tree: none of them can come now.
    /// Those already reported missing are not repeated.
    public mutating func drain(why: String) -> [Missing] {
        var out: [Missing] = []
        for forker in Set(children.keys).union(threads.keys).sorted() {
            for (list, thread) in [(children[forker] ?? [], false), (threads[forker] ?? [], true)] {
                for pid in list where !reported.contains(pid) {
                    out.append(Missing(pid: pid, forker: forker, thread: thread, why: why, final: true))
                }
            }
        }
        children = [:]
        threads = [:]
        lastActivity = [:]
        unborn = []
        return out
    }

    /// Takes out everything `forker` owes, and what each of those owes in turn.
    mutating func drop(_ forker: Int32, why: String) -> [Missing] {
        var out: [Missing] = []
        for (list, thread) in [(children[forker] ?? [], false), (threads[forker] ?? [], true)] {
            for pid in list {
                out.append(Missing(pid: pid, forker: forker, thread: thread, why: why, final: true))
                if !thread, unborn.remove(pid) != nil {
                    out += drop(pid, why: "its forker (pid \(pid)) was never created")
                }
            }
        }
        children[forker] = nil
        threads[forker] = nil
        return out
    }

    mutating func remove(_ pid: Int32, forker: Int32, thread: Bool) {
        if thread {
            threads[forker]?.removeAll { $0 == pid }
            if threads[forker]?.isEmpty == true { threads[forker] = nil }
        } else {
            children[forker]?.removeAll { $0 == pid }
            if children[forker]?.isEmpty == true { children[forker] = nil }
        }
    }
}
