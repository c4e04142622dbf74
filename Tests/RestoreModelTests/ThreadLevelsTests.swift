import RestoreModel
import Testing

/// Threads of processes in nested PID namespaces carry their TIDs at every level.
@Suite struct ThreadLevelsTests {
    func parse(_ text: String) throws -> ProcessTree { try TreeParser.parse(Array(text.utf8)) }

    @Test func perLevelThreadsParseValidateAndEncode() throws {
        let tree = try parse("""
            {"version": 1, "processes": [
              {"pid": 10, "ppid": 0, "pgid": 10, "sid": 10},
              {"pid": 11, "nspid": [11, 1], "newPidNamespace": true, "ppid": 10, "pgid": 10, "sid": 10,
               "threads": [[11, 1], [40, 7], [41, 900]]}
            ]}
            """)
        let e = tree.processes[1]
        #expect(e.threads == [11, 40, 41])
        #expect(e.threadLevels == [[11, 1], [40, 7], [41, 900]])
        try TreeValidator.validate(tree)
        let again = try parse(TreeEncoder.encode(tree))
        #expect(again.processes[1].threadLevels == e.threadLevels)
        let plan = try RestorePlanner.plan(tree)
        #expect(plan.nodes.count == 3)
    }

    @Test func nestedThreadsAsPlainTidsAreRefusedWithAHint() throws {
        let tree = try parse("""
            {"version": 1, "processes": [
              {"pid": 10, "ppid": 0, "pgid": 10, "sid": 10},
              {"pid": 11, "nspid": [11, 1], "newPidNamespace": true, "ppid": 10, "pgid": 10, "sid": 10, "threads": [11, 40]}
            ]}
            """)
        #expect {
            try TreeValidator.validate(tree)
        } throws: { error in
            "\(error)".contains("process #1 (pid 11)") && "\(error)".contains("at every level")
        }
    }

    @Test func wrongDepthAndMixedFormsAreRefused() throws {
        let wrongDepth = try parse("""
            {"version": 1, "processes": [
              {"pid": 11, "nspid": [11, 1], "newPidNamespace": true, "ppid": 0, "pgid": 11, "sid": 11, "threads": [[11, 1], [40, 7, 3]]}
            ]}
            """)
        #expect {
            try TreeValidator.validate(wrongDepth)
        } throws: { error in
            "\(error)".contains("[40, 7, 3]") && "\(error)".contains("3 level(s)")
        }
        #expect {
            _ = try parse("""
                {"version": 1, "processes": [{"pid": 11, "ppid": 0, "pgid": 11, "sid": 11, "threads": [[11], 40]}]}
                """)
        } throws: { error in
            "\(error)".contains("same way")
        }
    }
}
