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
