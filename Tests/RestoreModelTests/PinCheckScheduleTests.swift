import RestoreModel
import Testing

/// The fork supervisor's looks at undecided pinned forks: a bounded number per child, however
/// many others fork (it once read /proc of every undecided child on every fork: n² reads).
@Suite struct PinCheckScheduleTests {
    static let ms: UInt64 = 1_000_000
    static let settle: UInt64 = 2_000 * ms

    /// A payload forks `n` children 0.1 ms apart; the supervisor asks what is due at every fork
    /// and then every millisecond until all are decided at their deadlines (none decides early).
    func simulate(_ n: Int) -> (looks: Int, lastLook: [Int32: UInt64]) {
        var schedule = PinCheckSchedule()
        var looks = 0
        var last: [Int32: UInt64] = [:]
        var now: UInt64 = 1_000 * Self.ms
        func serve() {
            for pid in schedule.due(now: now) {
                looks += 1
                last[pid] = now
                if now >= 1_000 * Self.ms + UInt64(pid - 1000) * Self.ms / 10 + Self.settle { schedule.remove(pid) } else { schedule.again(pid, now: now) }
            }
        }
        for k in 0..<n {
            now = 1_000 * Self.ms + UInt64(k) * Self.ms / 10
            serve()
            schedule.add(Int32(1000 + k), now: now, deadline: now + Self.settle)
        }
        var steps = 0
        while !schedule.isEmpty && steps < 100_000 {
            now = schedule.nextLook() ?? now
            serve()
            steps += 1
        }
        return (looks, last)
    }

    @Test func looksPerChildAreBoundedWhateverTheNumberOfForks() {
        let small = simulate(100)
        let large = simulate(2_000)
        // 1, 4, 16, 64, 256 ms, 1 s, then the deadline: 7 or 8 looks each, at 100 or 2 000 forks.
        #expect(small.looks <= 8 * 100 && large.looks <= 8 * 2_000, "\(small.looks) looks for 100, \(large.looks) for 2 000")
        #expect(large.looks >= 2_000 * 5)
        // Every child is looked at last at its deadline (the final verdict is never skipped).
        for (pid, at) in large.lastLook {
            let deadline = 1_000 * Self.ms + UInt64(pid - 1000) * Self.ms / 10 + Self.settle
            #expect(at == deadline, "pid \(pid): last look at \(at), deadline \(deadline)")
        }
    }

    @Test func aChangedChildIsLookedAtAtOnceAndRemovedOnesNeverAgain() {
        var schedule = PinCheckSchedule()
        schedule.add(5, now: 0, deadline: Self.settle)
        schedule.add(6, now: 0, deadline: Self.settle)
        #expect(schedule.due(now: 0).isEmpty)
        // 5 exited: looked at now, not at its first scheduled look.
        schedule.now(5, now: Self.ms / 2)
        #expect(schedule.due(now: Self.ms / 2) == [5])
        schedule.remove(5)
        #expect(schedule.due(now: Self.ms) == [6])
        schedule.again(6, now: Self.ms)
        #expect(schedule.nextLook() == 5 * Self.ms)
        #expect(schedule.due(now: 10 * Self.settle) == [6])
        #expect(schedule.due(now: 10 * Self.settle).isEmpty)
        #expect(schedule.count == 1 && !schedule.contains(5))
    }
}
