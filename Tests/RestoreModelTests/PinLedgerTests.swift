import RestoreModel
import RestoreTestSupport
import Testing

/// PinLedger against a plain model of the same rules (lists scanned on every call, as the
/// ledger did before it kept its lists reversed, a count per forker and a heap of due times).
@Suite("PinLedger: constant work per fork, same answers as the plain rules")
struct PinLedgerModelTests {
    /// The rules, written the plain way.
    struct Plain {
        var children: [Int32: [Int32]]
        var threads: [Int32: [Int32]]
        var lastActivity: [Int32: UInt64] = [:]
        var unborn: Set<Int32>
        var reported: Set<Int32> = []
        let missingAfter: UInt64

        init(_ p: PinnedForks, now: UInt64, missingAfter: UInt64) {
            children = p.children.filter { !$0.value.isEmpty }
            threads = p.threads.filter { !$0.value.isEmpty }
            self.missingAfter = missingAfter
            let pinned = Set(p.children.values.flatMap { $0 })
            unborn = Set(children.keys).union(threads.keys).intersection(pinned)
            for f in Set(children.keys).union(threads.keys) where !unborn.contains(f) { lastActivity[f] = now }
        }

        mutating func take(_ forker: Int32, _ thread: Bool, _ now: UInt64) -> Int32? {
            guard let pid = (thread ? threads : children)[forker]?.first else { return nil }
            if thread { threads[forker]!.removeFirst(); if threads[forker]!.isEmpty { threads[forker] = nil } }
            else { children[forker]!.removeFirst(); if children[forker]!.isEmpty { children[forker] = nil } }
            lastActivity[forker] = now
            return pid
        }

        mutating func giveBack(_ pid: Int32, _ forker: Int32, _ thread: Bool, _ now: UInt64) {
            if thread { threads[forker, default: []].insert(pid, at: 0) } else { children[forker, default: []].insert(pid, at: 0) }
            lastActivity[forker] = now
        }

        mutating func created(_ pid: Int32, _ now: UInt64) {
            reported.remove(pid)
            if unborn.remove(pid) != nil { lastActivity[pid] = now }
        }

        func nextDue() -> UInt64? {
            var due: UInt64?
            for (f, last) in lastActivity where ((children[f] ?? []) + (threads[f] ?? [])).contains(where: { !reported.contains($0) }) {
                due = min(due ?? .max, last + missingAfter)
            }
            return due
        }

        mutating func overdue(_ now: UInt64, gone: (Int32) -> Bool) -> [Int32] {
            var out: [Int32] = []
            for f in lastActivity.keys.sorted() {
                guard let last = lastActivity[f] else { continue }
                if gone(f) { lastActivity[f] = nil; out += drop(f); continue }
                guard now >= last + missingAfter else { continue }
                for pid in (children[f] ?? []) + (threads[f] ?? []) where !reported.contains(pid) { reported.insert(pid); out.append(pid) }
            }
            var changed = true
            while changed {
                changed = false
                for f in unborn.sorted() where reported.contains(f) {
                    for pid in (children[f] ?? []) + (threads[f] ?? []) where !reported.contains(pid) { reported.insert(pid); out.append(pid); changed = true }
                }
            }
            return out
        }

        mutating func drop(_ f: Int32) -> [Int32] {
            var out: [Int32] = []
            for pid in children[f] ?? [] { out.append(pid); if unborn.remove(pid) != nil { out += drop(pid) } }
            out += threads[f] ?? []
            children[f] = nil
            threads[f] = nil
            return out
        }
    }

    @Test("random takes, give-backs, creations, reports and ends: the same PIDs, due times and reports", arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func sameAsPlainRules(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        // Forkers 10..<20, each owing up to 6 PIDs from 100 on; some owed PIDs are forkers too.
        var pinned = PinnedForks()
        var next: Int32 = 100
        for f in Int32(10)..<20 {
            let n = Int(rng.next() % 7)
            pinned.children[f] = (0..<n).map { _ in defer { next += 1 }; return next }
            if rng.next() % 3 == 0 { pinned.threads[f] = [next, next + 1]; next += 2 }
        }
        if let owed = pinned.children[10], let first = owed.first { pinned.children[first] = [next, next + 1]; next += 2 }
        var ledger = PinLedger(pinned, now: 0, missingAfter: 50)
        var plain = Plain(pinned, now: 0, missingAfter: 50)
        var now: UInt64 = 0
        var taken: [(pid: Int32, forker: Int32, thread: Bool)] = []
        var gone: Set<Int32> = []
        for step in 0..<400 {
            now += rng.next() % 20
            let forker = Int32(10 + rng.next() % 10)
            switch rng.next() % 6 {
            case 0, 1:
                let thread = rng.next() % 4 == 0
                let a = ledger.take(forker: forker, thread: thread, now: now)
                #expect(a == plain.take(forker, thread, now), "step \(step): take")
                if let a { taken.append((a, forker, thread)) }
            case 2:
                if !taken.isEmpty {
                    let t = taken.remove(at: Int(rng.next() % UInt64(taken.count)))
                    ledger.giveBack(t.pid, forker: t.forker, thread: t.thread, now: now, ended: rng.next() % 2 == 0)
                    plain.giveBack(t.pid, t.forker, t.thread, now)
                }
            case 3:
                if let t = taken.last { ledger.created(t.pid, now: now); plain.created(t.pid, now) }
            case 4:
                if rng.next() % 8 == 0 { gone.insert(forker) }
                let a = ledger.overdue(now: now, forkerGone: { gone.contains($0) }).map(\.pid)
                #expect(a == plain.overdue(now, gone: { gone.contains($0) }), "step \(step): overdue")
            default:
                break
            }
            #expect(ledger.nextDue() == plain.nextDue(), "step \(step): nextDue")
            #expect(ledger.children == plain.children && ledger.threads == plain.threads, "step \(step): what is owed")
        }
    }

    @Test("a PID whose forks all ended before they showed what they became is reported with that count, not as never created")
    func endedForksCounted() {
        var p = PinnedForks()
        p.children = [10: [11, 12], 20: [21]]
        var ledger = PinLedger(p, now: 0, missingAfter: 100)
        for k in 1...3 {
            #expect(ledger.take(forker: 10, thread: false, now: UInt64(k)) == 11)
            ledger.created(11, now: UInt64(k))
            ledger.giveBack(11, forker: 10, thread: false, now: UInt64(k), ended: true)
        }
        // A fork that failed before it had a PID gives it back too, without a creation.
        #expect(ledger.take(forker: 20, thread: false, now: 4) == 21)
        ledger.giveBack(21, forker: 20, thread: false, now: 4)
        let gone = ledger.overdue(now: 5, forkerGone: { $0 == 20 })
        #expect(gone.map(\.pid) == [21] && gone[0].endedForks == 0 && gone[0].why == "its forker ended before forking it", "\(gone)")
        let end = ledger.drain(why: "the tree ended")
        #expect(end.map(\.pid) == [11, 12], "\(end)")
        #expect(end.map(\.endedForks) == [3, 0], "\(end)")
    }

    @Test("a forker that ends after forks at a PID that all ended: said so, not 'before forking it'")
    func forkerEndsAfterEndedForks() {
        var p = PinnedForks()
        p.children = [10: [11]]
        var ledger = PinLedger(p, now: 0, missingAfter: 100)
        #expect(ledger.take(forker: 10, thread: false, now: 1) == 11)
        ledger.giveBack(11, forker: 10, thread: false, now: 2, ended: true)
        let gone = ledger.overdue(now: 3, forkerGone: { _ in true })
        #expect(gone.count == 1 && gone[0].endedForks == 1 && gone[0].why == "its forker ended without forking it again", "\(gone)")
    }
}
