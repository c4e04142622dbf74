/// When the fork supervisor next looks at each pinned fork it has not decided yet (PinCheck).
///
/// Looking means reading /proc (exe, cmdline, auxv) of that child. Looking at every undecided
/// child on every fork made a payload that forks n children cost n² reads; instead each child
/// is looked at soon after its fork, then at intervals four times longer each time (at most
/// `longestIntervalNanoseconds` apart, and at its deadline), so it costs a bounded number of
/// looks whatever else forks. A child whose state changed (it exited: its pidfd said so) is
/// looked at at once with `now`. Pure bookkeeping: the supervisor supplies the clock.
public struct PinCheckSchedule: Sendable {
    public static let firstLookNanoseconds: UInt64 = 1_000_000
    public static let longestIntervalNanoseconds: UInt64 = 1_000_000_000

    struct Scheduled: Sendable {
        var pid: Int32
        var generation: UInt32
    }

    struct Watched: Sendable {
        var generation: UInt32
        var interval: UInt64
        var deadline: UInt64
    }

    /// Entries of an older generation than `watched` are stale.
    var heap = DeadlineHeap<Scheduled>()
    var watched: [Int32: Watched] = [:]
    var generations: UInt32 = 0

    public init() {}

    public var isEmpty: Bool { watched.isEmpty }
    public var count: Int { watched.count }
    public func contains(_ pid: Int32) -> Bool { watched[pid] != nil }

    /// Starts watching `pid`, first looked at shortly after `now`.
    public mutating func add(_ pid: Int32, now: UInt64, deadline: UInt64) {
        watched[pid] = Watched(generation: 0, interval: Self.firstLookNanoseconds, deadline: deadline)
        push(pid, at: min(now &+ Self.firstLookNanoseconds, deadline))
    }

    /// Stops watching `pid` (decided).
    public mutating func remove(_ pid: Int32) {
        watched[pid] = nil
    }

    /// `pid` was looked at and is still undecided: next look after four times the last interval
    /// (1, 4, 16, 64, 256 ms, 1 s, ...: seven looks in PinCheck's two seconds).
    public mutating func again(_ pid: Int32, now: UInt64) {
        guard var w = watched[pid] else { return }
        w.interval = min(w.interval * 4, Self.longestIntervalNanoseconds)
        watched[pid] = w
        push(pid, at: now >= w.deadline ? now : min(now &+ w.interval, w.deadline))
    }

    /// Something changed for `pid`: look at it at once.
    public mutating func now(_ pid: Int32, now: UInt64) {
        guard watched[pid] != nil else { return }
        push(pid, at: now)
    }

    /// The watched PIDs due by `now`, each once, earliest first; each must be `again`ed or removed.
    public mutating func due(now: UInt64) -> [Int32] {
        var out: [Int32] = []
        while let top = heap.first, top.at <= now {
            heap.popFirst()
            let s = top.value
            guard let w = watched[s.pid], w.generation == s.generation else { continue }
            // Taken out of the heap: stale until it is scheduled again.
            watched[s.pid]?.generation = 0
            out.append(s.pid)
        }
        return out
    }

    /// When the next look is due (nil: nothing watched).
    public mutating func nextLook() -> UInt64? {
        while let top = heap.first {
            if let w = watched[top.value.pid], w.generation == top.value.generation { return top.at }
            heap.popFirst()
        }
        return nil
    }

    /// One pending entry per PID: a newer one makes the older stale.
    mutating func push(_ pid: Int32, at: UInt64) {
        generations &+= 1
        watched[pid]?.generation = generations
        heap.push(Scheduled(pid: pid, generation: generations), at: at)
    }
}
