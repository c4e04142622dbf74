/// PID -> position in an array (of entries or plan nodes), for the validator and the planner.
/// PIDs 0...maxKey (at most Linux's PID_MAX_LIMIT) index a flat array directly; any other
/// Int32 (invalid PIDs are indexed too, and reported) goes to a dictionary. A Dictionary for
/// all was a tenth of `validate`'s time on a 10^6-process tree (SipHash per key), and a hash
/// table over random slots about as much in cache misses: recorded PIDs are dense.
struct PIDIndex {
    /// The largest PID Linux allows plus one (PID_MAX_LIMIT on 64-bit): the flat part's bound.
    static let denseLimit = 4_194_304 + 1
    /// position + 1 for PIDs 0..<dense.count; 0: none.
    private var dense: [Int32]
    private var sparse: [Int32: Int] = [:]

    /// Room in the flat part for 0...maxKey (clamped to the kernel's PID range) when about
    /// `count` keys fill it well enough; else everything goes to the dictionary (a few
    /// processes with recorded PIDs near 4 194 304 must not cost 16 MB per index).
    init(maxKey: Int32 = 0, count: Int) {
        let size = min(Int(maxKey) + 1, PIDIndex.denseLimit)
        dense = [Int32](repeating: 0, count: size <= 16 * count + 4096 ? max(1, size) : 1)
    }

    /// An index sized for `keys`.
    init(keysFrom keys: [Int32]) {
        self.init(maxKey: keys.max() ?? 0, count: keys.count)
    }

    /// The position stored for `pid`, if any.
    subscript(pid: Int32) -> Int? {
        if pid >= 0 && Int(pid) < dense.count {
            let s = dense[Int(pid)]
            return s == 0 ? nil : Int(s) - 1
        }
        return sparse[pid]
    }

    /// Stores `position` for `pid` unless it has one: returns the one it already had (which
    /// is kept), or nil after storing.
    @discardableResult
    mutating func insertIfAbsent(_ pid: Int32, _ position: Int) -> Int? {
        if pid >= 0 && Int(pid) < dense.count {
            let s = dense[Int(pid)]
            if s != 0 { return Int(s) - 1 }
            dense[Int(pid)] = Int32(truncatingIfNeeded: position + 1)
            return nil
        }
        if let old = sparse[pid] { return old }
        sparse[pid] = position
        return nil
    }

    /// Stores `position` for `pid`, replacing any earlier one (the last one wins).
    mutating func set(_ pid: Int32, _ position: Int) {
        if pid >= 0 && Int(pid) < dense.count {
            dense[Int(pid)] = Int32(truncatingIfNeeded: position + 1)
        } else {
            sparse[pid] = position
        }
    }
}

/// Dense numbers 0, 1, ... for PIDs that name process groups or sessions, in order of first
/// sight, so that what the planner keeps per group or session lives in arrays.
struct PIDNumbering {
    private var numberOf: PIDIndex
    /// How many PIDs have a number.
    private(set) var count = 0

    init(maxKey: Int32, count keys: Int) {
        numberOf = PIDIndex(maxKey: maxKey, count: keys)
    }

    /// The number of `pid`, given on first sight.
    @discardableResult
    mutating func number(_ pid: Int32) -> Int {
        if let known = numberOf.insertIfAbsent(pid, count) { return known }
        count += 1
        return count - 1
    }

    /// The number of `pid`, if it has one.
    subscript(pid: Int32) -> Int? { numberOf[pid] }
}
