import RestoreModel
import Testing

/// `recorded`: what `record` saw each process be, parsed, encoded and refused when malformed.
@Suite struct RecordedIdentityTests {
    func parse(_ text: String) throws -> ProcessTree { try TreeParser.parse(Array(text.utf8)) }

    @Test func recordedIdentityRoundTrips() throws {
        let tree = try parse("""
            {"version": 1, "processes": [
              {"pid": 10, "ppid": 0, "pgid": 10, "sid": 10, "process": {"args": ["/usr/sbin/nginx"]},
               "recorded": {"exe": "/usr/sbin/nginx", "cmdline": ["nginx: master process /usr/sbin/nginx"], "titleRewritten": true, "startTime": 18446744073709551615}},
              {"pid": 11, "ppid": 10, "pgid": 10, "sid": 10, "spawn": "payload",
               "recorded": {"exe": "/usr/sbin/nginx", "cmdline": ["nginx: worker process", ""], "titleRewritten": true, "forkedNotExeced": true, "startTime": 5, "forkOrder": 0}}
            ]}
            """)
        let worker = try #require(tree.processes[1].recorded)
        #expect(worker == RecordedIdentity(exe: "/usr/sbin/nginx", cmdline: ["nginx: worker process", ""], titleRewritten: true,
                                           forkedNotExeced: true, startTime: 5, forkOrder: 0))
        #expect(tree.processes[0].recorded?.startTime == UInt64.max)
        let again = try parse(TreeEncoder.encode(tree))
        #expect(again.processes.map(\.recorded) == tree.processes.map(\.recorded))
        try TreeValidator.validate(tree)
    }

    @Test func malformedRecordedIsRefusedWithItsPlace() throws {
        for (text, want) in [
            (#""recorded": {"exe": 3}"#, "recorded.exe must be a string"),
            (#""recorded": {"forkOrder": -1}"#, "recorded.forkOrder must be 0 or more"),
            (#""recorded": {"exec": "/bin/true"}"#, "unknown key \"exec\""),
            (#""recorded": []"#, "recorded must be an object"),
        ] {
            #expect {
                _ = try parse("{\"version\": 1, \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 1, \"sid\": 1, \(text)}]}")
            } throws: { error in
                "\(error)".contains("process #0 (pid 1)") && "\(error)".contains(want)
            }
        }
    }
}

@Suite("PinCheck: what a pinned fork became against what was recorded")
struct PinCheckTests {
    let job = RecordedIdentity(exe: "/usr/bin/sleep", cmdline: ["sleep", "1001"])

    @Test("an exec'd job with the recorded exe and argv matches; another job does not, with both argvs")
    func execdJobs() {
        #expect(PinCheck.compare(job, .init(exe: "/usr/bin/sleep", cmdline: ["sleep", "1001"], execd: true)) == .matched)
        guard case .mismatch(let why) = PinCheck.compare(job, .init(exe: "/usr/bin/sleep", cmdline: ["sleep", "1002"], execd: true)) else {
            Issue.record("another job matched")
            return
        }
        #expect(why.contains("sleep 1002") && why.contains("sleep 1001"))
        guard case .mismatch(let exe) = PinCheck.compare(job, .init(exe: "/bin/dash", cmdline: ["sleep", "1001"], execd: true)) else {
            Issue.record("another program matched")
            return
        }
        #expect(exe.contains("/bin/dash"))
    }

    @Test("forks that never exec, rewritten titles, deleted executables, nothing recorded")
    func forksAndTitles() {
        let fork = RecordedIdentity(exe: "/usr/sbin/nginx", cmdline: ["nginx: worker process"], titleRewritten: true, forkedNotExeced: true)
        #expect(PinCheck.compare(fork, .init(exe: "/usr/sbin/nginx", cmdline: ["nginx: worker process"], execd: false)) == .matched)
        #expect(PinCheck.compare(fork, .init(exe: "/usr/sbin/nginx", cmdline: [], execd: true)).matched == false)
        #expect(PinCheck.compare(job, .init(exe: "/usr/bin/make", cmdline: ["make", "-j4"], execd: false)).matched == false)
        #expect(PinCheck.compare(job, .init(exe: "/usr/bin/sleep (deleted)", cmdline: ["sleep", "1001"], execd: true)) == .matched)
        #expect(PinCheck.compare(nil, .init(exe: "/x", cmdline: [], execd: true)).matched == nil)
        #expect(PinCheck.hasExeced(exe: "/usr/bin/make", auxv: [1, 2], forkerExe: "/usr/bin/make", forkerAuxv: [1, 2]) == false)
        #expect(PinCheck.hasExeced(exe: "/bin/sh", auxv: [1, 3], forkerExe: "/bin/sh", forkerAuxv: [1, 2]))
        // PostgreSQL's roles: forks with rewritten titles, compared by title after the settle time.
        let checkpointer = RecordedIdentity(exe: "/usr/lib/postgresql/15/bin/postgres", cmdline: ["postgres: checkpointer "],
                                            titleRewritten: true, forkedNotExeced: true)
        #expect(PinCheck.compare(checkpointer, .init(exe: "/usr/lib/postgresql/15/bin/postgres", cmdline: ["postgres: checkpointer "], execd: false)) == .matched)
        #expect(PinCheck.compare(checkpointer, .init(exe: "/usr/lib/postgresql/15/bin/postgres", cmdline: ["postgres: walwriter "], execd: false)).matched == false)
    }
}

@Suite("PinCheck.decide and PinLedger: every pinned PID ends matched or reported")
struct PinLedgerTests {
    let walwriter = RecordedIdentity(exe: "/usr/lib/postgresql/15/bin/postgres", cmdline: ["postgres: walwriter "],
                                     titleRewritten: true, forkedNotExeced: true)
    let postgres = "/usr/lib/postgresql/15/bin/postgres"

    @Test("a fork that shows its recorded title matches at once; one still titled as its forker waits; a reaped one gives its PID back")
    func decisions() {
        let asForker = PinCheck.Observation(exe: postgres, cmdline: [postgres, "-D", "data"], execd: false)
        #expect(PinCheck.decide(walwriter, asForker, liveness: .alive, pastDeadline: false) == .wait)
        #expect(PinCheck.decide(walwriter, asForker, liveness: .alive, pastDeadline: true) == .decided(PinCheck.compare(walwriter, asForker)))
        let titled = PinCheck.Observation(exe: postgres, cmdline: ["postgres: walwriter "], execd: false)
        #expect(PinCheck.decide(walwriter, titled, liveness: .alive, pastDeadline: false) == .decided(.matched))
        // PostgreSQL's startup process in the walwriter's PID: not decided before the deadline
        // while alive, and its PID is owed again once it is reaped.
        let startup = PinCheck.Observation(exe: postgres, cmdline: ["postgres: startup "], execd: false)
        #expect(PinCheck.decide(walwriter, startup, liveness: .alive, pastDeadline: false) == .wait)
        #expect(PinCheck.decide(walwriter, startup, liveness: .gone, pastDeadline: false) == .ended)
        #expect(PinCheck.decide(walwriter, startup, liveness: .zombie, pastDeadline: false) == .wait)
        #expect(PinCheck.decide(walwriter, startup, liveness: .zombie, pastDeadline: true) == .decided(.unchecked("it ended before it could be checked (a zombie its parent has not reaped)")))
        // An exec with its argument area not set yet is looked at again.
        let job = RecordedIdentity(exe: "/usr/bin/sleep", cmdline: ["sleep", "1001"])
        #expect(PinCheck.decide(job, .init(exe: "/usr/bin/sleep", cmdline: [], execd: true), liveness: .alive, pastDeadline: false) == .wait)
        #expect(PinCheck.decide(job, .init(exe: "/usr/bin/sleep", cmdline: ["sleep", "1001"], execd: true), liveness: .alive, pastDeadline: false) == .decided(.matched))
    }

    func pinned(_ children: [Int32: [Int32]], threads: [Int32: [Int32]] = [:]) -> PinnedForks {
        var p = PinnedForks()
        p.children = children
        p.threads = threads
        return p
    }

    @Test("PostgreSQL's order: an unrecorded short-lived fork gives its PID back, so every later role gets its own")
    func givenBackKeepsOrder() {
        var ledger = PinLedger(pinned([10: [11, 12, 14, 15, 16]]), now: 0, missingAfter: 100)
        #expect(ledger.take(forker: 10, thread: false, now: 1) == 11) // checkpointer
        #expect(ledger.take(forker: 10, thread: false, now: 2) == 12) // background writer
        #expect(ledger.take(forker: 10, thread: false, now: 3) == 14) // startup, in the walwriter's PID
        ledger.giveBack(14, forker: 10, thread: false, now: 4)         // reaped before it was matched
        #expect(ledger.take(forker: 10, thread: false, now: 5) == 14) // walwriter
        #expect(ledger.take(forker: 10, thread: false, now: 6) == 15)
        #expect(ledger.take(forker: 10, thread: false, now: 7) == 16)
        #expect(ledger.take(forker: 10, thread: false, now: 8) == nil) // a backend: unpinned
        #expect(!ledger.owesAny && ledger.nextDue() == nil)
        #expect(ledger.overdue(now: 1000, forkerGone: { _ in false }).isEmpty)
    }

    @Test("owed PIDs are reported: once when the forker is idle (and still pinned later), for good when it is gone, with a missing forker's own")
    func missing() {
        var ledger = PinLedger(pinned([10: [11, 12], 11: [20]], threads: [10: [13]]), now: 0, missingAfter: 100)
        #expect(ledger.take(forker: 10, thread: false, now: 50) == 11)
        ledger.created(11, now: 50)
        #expect(ledger.nextDue() == 150)
        #expect(ledger.overdue(now: 149, forkerGone: { _ in false }).isEmpty)
        let idle = ledger.overdue(now: 150, forkerGone: { _ in false })
        #expect(idle.map(\.pid).sorted() == [12, 13, 20] && idle.allSatisfy { !$0.final }, "\(idle)")
        #expect(idle.first { $0.pid == 13 }?.thread == true)
        #expect(ledger.overdue(now: 400, forkerGone: { _ in false }).isEmpty, "said once")
        #expect(ledger.take(forker: 10, thread: false, now: 500) == 12, "late, but still pinned")
        #expect(ledger.wasReported(12))
        // 11 ends without forking 20: final.
        let gone = ledger.overdue(now: 501, forkerGone: { $0 == 11 })
        #expect(gone.map(\.pid) == [20] && gone.allSatisfy { $0.final && !$0.thread && $0.forker == 11 && $0.why == "its forker ended before forking it" }, "\(gone)")
        #expect(ledger.children[11] == nil)
    }

    @Test("a pinned forker never created takes its own debts with it")
    func unbornForker() {
        var ledger = PinLedger(pinned([10: [11], 11: [20, 21]]), now: 0, missingAfter: 100)
        #expect(ledger.nextDue() == 100, "only the existing forker's clock runs")
        let gone = ledger.overdue(now: 10, forkerGone: { $0 == 10 })
        #expect(gone.map(\.pid) == [11, 20, 21] && gone.allSatisfy(\.final), "\(gone)")
        #expect(gone.last?.why.contains("pid 11") == true && !ledger.owesAny)
    }
}

extension PinLedgerTests {
    @Test("a title is compared without the NUL padding /proc shows after it")
    func paddedTitle() {
        let padded = PinCheck.Observation(exe: postgres, cmdline: ["postgres: walwriter "] + Array(repeating: "", count: 40), execd: false)
        #expect(PinCheck.compare(walwriter, padded) == .matched)
        #expect(PinCheck.decide(walwriter, padded, liveness: .alive, pastDeadline: false) == .decided(.matched))
        let other = PinCheck.Observation(exe: postgres, cmdline: ["postgres: startup ", "", ""], execd: false)
        guard case .mismatch(let why) = PinCheck.compare(walwriter, other) else { Issue.record("matched"); return }
        #expect(!why.contains("''"), "\(why)")
    }
}

extension PinLedgerTests {
    @Test("an exec'd wrapper (setsid, sh -c 'exec ...') is not a mismatch before the settle time: it may exec the recorded program next")
    func wrapperExecs() {
        let job = RecordedIdentity(exe: "/usr/bin/sleep", cmdline: ["sleep", "1000"])
        let wrapper = PinCheck.Observation(exe: "/usr/bin/setsid", cmdline: ["setsid", "sleep", "1000"], execd: true)
        #expect(PinCheck.decide(job, wrapper, liveness: .alive, pastDeadline: false) == .wait)
        #expect(PinCheck.decide(job, wrapper, liveness: .alive, pastDeadline: true) == .decided(PinCheck.compare(job, wrapper)))
        #expect(PinCheck.decide(job, .init(exe: "/usr/bin/sleep", cmdline: ["sleep", "1000"], execd: true), liveness: .alive, pastDeadline: false) == .decided(.matched))
    }
}

extension PinLedgerTests {
    @Test("at the end of the tree everything still owed is reported once, the already reported left out")
    func drainedAtEnd() {
        var ledger = PinLedger(pinned([10: [11, 12], 11: [20]]), now: 0, missingAfter: 100)
        #expect(ledger.overdue(now: 100, forkerGone: { _ in false }).map(\.pid).sorted() == [11, 12, 20])
        ledger.giveBack(30, forker: 10, thread: false, now: 150)
        let end = ledger.drain(why: "the tree ended")
        #expect(end.map(\.pid) == [30] && end.allSatisfy(\.final) && !ledger.owesAny, "\(end)")
    }
}
