/// PID -> position in an array (of entries or plan nodes), for the validator and the planner.
/// Open addressing over two flat arrays with a multiplicative hash: a Dictionary<Int32, Int>
/// hashes every key through Hasher (SipHash), which was a tenth of `validate`'s time on a
/// 10^6-process tree. Any Int32 is a valid key (invalid PIDs are indexed too, and reported).
struct PIDIndex {
    private var keys: [Int32]
    /// position + 1; 0 marks an empty slot.
    private var slots: [Int32]
    private var shift: UInt32
    private(set) var count = 0

    init(capacity: Int = 0) {
        var size = 16
        var bits: UInt32 = 4
        while size < 2 * capacity { size <<= 1; bits += 1 }
        keys = [Int32](repeating: 0, count: size)
        slots = [Int32](repeating: 0, count: size)
        shift = 32 - bits
    }

    @inline(__always)
    private func home(_ pid: Int32) -> Int {
        Int((UInt32(bitPattern: pid) &* 0x9E37_79B1) >> shift)
    }

    /// The position stored for `pid`, if any.
    subscript(pid: Int32) -> Int? {
        let mask = keys.count - 1
        var i = home(pid)
        while true {
            let s = slots[i]
            if s == 0 { return nil }
            if keys[i] == pid { return Int(s) - 1 }
            i = (i + 1) & mask
        }
    }

    /// Stores `position` for `pid` unless it has one: returns the one it already had (which
    /// is kept), or nil after storing.
    @discardableResult
    mutating func insertIfAbsent(_ pid: Int32, _ position: Int) -> Int? {
        let mask = keys.count - 1
        var i = home(pid)
        while true {
            let s = slots[i]
            if s == 0 { break }
            if keys[i] == pid { return Int(s) - 1 }
            i = (i + 1) & mask
        }
        keys[i] = pid
        slots[i] = Int32(position + 1)
        count += 1
        if 2 * count > keys.count { grow() }
        return nil
    }

    /// Stores `position` for `pid`, replacing any earlier one (the last one wins).
    mutating func set(_ pid: Int32, _ position: Int) {
        let mask = keys.count - 1
        var i = home(pid)
        while slots[i] != 0 {
            if keys[i] == pid {
                slots[i] = Int32(position + 1)
                return
            }
            i = (i + 1) & mask
        }
        keys[i] = pid
        slots[i] = Int32(position + 1)
        count += 1
        if 2 * count > keys.count { grow() }
    }

    private mutating func grow() {
        var bigger = PIDIndex(capacity: keys.count)
        for i in keys.indices where slots[i] != 0 { bigger.insertIfAbsent(keys[i], Int(slots[i]) - 1) }
        self = bigger
    }
}
