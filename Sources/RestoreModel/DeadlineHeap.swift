/// A binary min-heap of values by the time they are due (monotonic nanoseconds): the pin
/// checks' schedule (PinCheckSchedule) and the ledger's overdue forkers (PinLedger). Equal
/// times come out in no particular order; stale entries are the users' to recognise.
struct DeadlineHeap<Value: Sendable>: Sendable {
    struct Entry: Sendable {
        var at: UInt64
        var value: Value
    }

    private(set) var entries: [Entry] = []

    var first: Entry? { entries.first }
    var count: Int { entries.count }

    mutating func push(_ value: Value, at: UInt64) {
        entries.append(Entry(at: at, value: value))
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].at < entries[parent].at else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    /// Removes the earliest entry (none: nothing happens).
    mutating func popFirst() {
        guard let last = entries.popLast(), !entries.isEmpty else { return }
        entries[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var earliest = i
            if l < entries.count && entries[l].at < entries[earliest].at { earliest = l }
            if r < entries.count && entries[r].at < entries[earliest].at { earliest = r }
            if earliest == i { return }
            entries.swapAt(i, earliest)
            i = earliest
        }
    }

    mutating func removeAll() { entries.removeAll() }
}
