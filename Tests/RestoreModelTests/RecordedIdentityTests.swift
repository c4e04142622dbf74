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
