import RestoreModel
import Testing

// The parser reads plain process entries ({"pid", "ppid", "pgid", "sid"} and the other keys
// with integer, boolean, state or integer-array values) straight from the bytes, and gives up
// on anything else, which the general path then reads (ProcessEntryScanner.swift). These tests
// check that both ways agree, tree for tree and error for error, on the inputs where the fast
// path decides: limits of numbers, escapes and Unicode in keys and strings, duplicates,
// whitespace, positions after a fast entry.

/// A tree whose processes are `entries`, one per line (process #k on line k + 2).
private func tree(_ entries: [String]) -> [UInt8] {
    Array(("{\"version\": 1, \"processes\": [\n" + entries.joined(separator: ",\n") + "\n]}").utf8)
}

private enum Outcome: Equatable {
    case tree(ProcessTree)
    case error(String)
}

private func outcome(_ bytes: [UInt8], fast: Bool) -> Outcome {
    do { return .tree(try TreeParser.parse(bytes, plainEntryFastPath: fast)) } catch { return .error("\(error)") }
}

/// Parses both ways, expects the same outcome, and returns it.
@discardableResult
private func agree(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
    let fast = outcome(bytes, fast: true)
    let general = outcome(bytes, fast: false)
    #expect(fast == general, "input: \(String(decoding: bytes, as: UTF8.self))", sourceLocation: sourceLocation)
    return fast
}

@discardableResult
private func agree(_ entries: String..., sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
    agree(tree(entries), sourceLocation: sourceLocation)
}

private func accepted(_ o: Outcome, sourceLocation: SourceLocation = #_sourceLocation) -> ProcessTree? {
    guard case .tree(let t) = o else {
        Issue.record("refused: \(o)", sourceLocation: sourceLocation)
        return nil
    }
    return t
}

private func refused(_ o: Outcome, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard case .error(let message) = o else {
        Issue.record("accepted, expected an error containing \(fragment)", sourceLocation: sourceLocation)
        return
    }
    #expect(message.contains(fragment), "\(message)", sourceLocation: sourceLocation)
}

@Suite("parser: the plain-entry fast path agrees with the general path")
struct PlainEntryFastPathTests {
    @Test func everyFastKey() throws {
        let o = agree(#"{"pid": 17, "ppid": 1, "pgid": 17, "sid": 17, "nspid": [17, 1], "state": "stopped", "threads": [17, 18], "newPidNamespace": true, "childSubreaper": false}"#,
                      #"{"sid": 5, "pgid": 5, "ppid": 0, "pid": 5, "state": "zombie", "childSubreaper": true, "threads": []}"#,
                      #"{"pid": 6, "ppid": 0, "pgid": 5, "sid": 5, "state": "running", "newPidNamespace": false}"#)
        let t = try #require(accepted(o))
        #expect(t.processes[0].nspid == [17, 1])
        #expect(t.processes[0].state == .stopped)
        #expect(t.processes[0].threads == [17, 18])
        #expect(t.processes[0].newPidNamespace)
        #expect(t.processes[1].state == .zombie)
        #expect(t.processes[1].childSubreaper)
        #expect(t.processes.map(\.line) == [2, 3, 4])
        #expect(t.processes.map(\.index) == [0, 1, 2])
    }

    @Test func whitespaceAndLineBreaksInsideAnEntry() throws {
        let o = agree("{ \"pid\"\t:\r\n 3 ,\n\"ppid\": 0,\n \"pgid\": 3, \"sid\": 3 , \"nspid\" : [ 3 ] ,\"threads\":[ 3 , 4 ]\n}",
                      #"{"pid": 4, "ppid": 3, "pgid": 3, "sid": 3} "#)
        let t = try #require(accepted(o))
        #expect(t.processes.map(\.line) == [2, 7])
        #expect(t.processes[0].threads == [3, 4])
    }

    @Test func positionsAfterFastEntriesStayExact() {
        // The error follows fast entries that span lines: its line and column must be right.
        refused(agree("{\"pid\": 1,\n \"ppid\": 0, \"pgid\": 1, \"sid\": 1}", "{\"pid\": 2, \"ppid\": 1, \"pgid\": 1, \"sid\": 1} x"),
                "line 4, column 44: expected ',' or ']' after array element, found 'x'")
        refused(agree(tree([#"{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}"#]) + Array(" 1".utf8)),
                "line 3, column 4: unexpected '1' after the end of the JSON document")
        refused(agree("{\"pid\": 1, \"ppid\": 0, \"pgid\": 1, \"sid\": 1}", "{\"pid\": 2, \"ppid\": 1, \"pgid\": 1, \"sid\": 1, \"sdi\": 1}"),
                "process #1 (pid 2), line 3, column 44: unknown key \"sdi\"")
    }

    @Test func integersAtTheLimits() throws {
        let t = try #require(accepted(agree(#"{"pid": 2147483647, "ppid": -2147483648, "pgid": 0, "sid": -0}"#)))
        #expect(t.processes[0].pid == Int32.max)
        #expect(t.processes[0].ppid == Int32.min)
        #expect(t.processes[0].sid == 0)
        refused(agree(#"{"pid": 2147483648, "ppid": 0, "pgid": 0, "sid": 0}"#), "pid is 2147483648, out of range for a 32-bit signed integer")
        refused(agree(#"{"pid": 1, "ppid": -2147483649, "pgid": 0, "sid": 0}"#), "ppid is -2147483649, out of range")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 99999999999, "sid": 0}"#), "pgid is 99999999999, out of range")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 123456789012345678901234567890}"#), "out of range")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "nspid": [1, 4294967296]}"#), "nspid[1] is 4294967296, out of range")
        refused(agree(#"{"pid": 01, "ppid": 0, "pgid": 0, "sid": 0}"#), "numbers cannot have leading zeros")
        refused(agree(#"{"pid": -01, "ppid": 0, "pgid": 0, "sid": 0}"#), "numbers cannot have leading zeros")
        refused(agree(#"{"pid": 1.0, "ppid": 0, "pgid": 0, "sid": 0}"#), "pid must be an integer, found 1.0")
        refused(agree(#"{"pid": 1e2, "ppid": 0, "pgid": 0, "sid": 0}"#), "pid must be an integer, found 1e2")
        refused(agree(#"{"pid": 1E2, "ppid": 0, "pgid": 0, "sid": 0}"#), "pid must be an integer, found 1E2")
        refused(agree(#"{"pid": -, "ppid": 0, "pgid": 0, "sid": 0}"#), "expected a digit after '-'")
        refused(agree(#"{"pid": 1x, "ppid": 0, "pgid": 0, "sid": 0}"#), "expected ',' or '}' after object member, found 'x'")
        refused(agree(#"{"pid": "1", "ppid": 0, "pgid": 0, "sid": 0}"#), "pid must be an integer, found \"1\"")
    }

    @Test func escapesAndUnicodeInKeysAndStrings() throws {
        // An escaped key is the same key: the general path reads it, and the entry is equal.
        let escaped = try #require(accepted(agree(#"{"p\u0069d": 1, "ppid": 0, "pgid": 0, "sid": 0, "st\u0061te": "z\u006fmbie", "exitStatus": 0}"#)))
        #expect(escaped.processes[0].pid == 1)
        #expect(escaped.processes[0].state == .zombie)
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "state": "Running"}"#), "state must be \"running\"")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "state": "runnïng"}"#), "state must be \"running\"")
        refused(agree(#"{"pid": 1, "ppïd": 0, "pgid": 0, "sid": 0}"#), "unknown key \"ppïd\"")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "PID": 1}"#), "unknown key \"PID\"")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid\u0000": 0}"#), "unknown key")
        refused(agree("{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0, \"state\": \"run\nning\"}"), "line break inside a string")
        refused(agree(tree([#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "state": ""#]) .dropLast(3) + [0xFF] + Array("\"}]}".utf8)),
                "invalid UTF-8")
    }

    @Test func duplicateAndMissingKeys() {
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "pid": 2}"#), "duplicate key \"pid\" in one object")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "p\u0069d": 1}"#), "duplicate key \"pid\"")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "threads": [1], "threads": [1]}"#), "duplicate key \"threads\"")
        refused(agree(#"{"ppid": 0, "pgid": 0, "sid": 0}"#), "missing required key \"pid\"")
        refused(agree(#"{"pid": 1, "pgid": 0, "sid": 0}"#), "missing required key \"ppid\"")
        refused(agree(#"{}"#), "missing required key \"pid\"")
    }

    @Test func arraysAndBooleans() {
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "nspid": []}"#), "nspid is empty")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "nspid": [2, 1]}"#), "nspid[0] is 2 but pid is 1")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "nspid": [1,]}"#), "trailing comma before ']'")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "threads": [1, "2"]}"#), "threads[1] must be an integer")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "threads": [1 2]}"#), "expected ',' or ']' after array element")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "childSubreaper": 1}"#), "childSubreaper must be true or false")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "newPidNamespace": tru}"#), "invalid literal")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0, "newPidNamespace": nulll}"#), "found 'l'")
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0,}"#), "trailing comma before '}'")
        // Per-level thread arrays are the general path's.
        agree(#"{"pid": 5, "ppid": 0, "pgid": 5, "sid": 5, "nspid": [5, 1], "newPidNamespace": true, "threads": [[5, 1], [6, 2]]}"#)
    }

    @Test func deepNestingStaysRefused() {
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        refused(agree("{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0, \"threads\": \(deep)}"), "nest deeper than 512 levels")
    }

    @Test func errorsAfterAnEarlierBadEntryAreTheFirstOnes() {
        // The first bad entry is reported, also when plain entries follow it.
        refused(agree(#"{"pid": 1, "ppid": 0, "pgid": 0, "sid": 0}"#, #"{"pid": 2, "ppid": 0, "pgid": 0}"#,
                      #"{"pid": 3, "ppid": 0, "pgid": 0, "sid": 0}"#, #"{"pid": 4, "ppid": 0}"#),
                "process #1 (pid 2), line 3, column 1: missing required key \"sid\"")
    }

    @Test func mixedFastAndGeneralEntriesKeepTheirOrder() throws {
        let t = try #require(accepted(agree(#"{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}"#,
                                            #"{"pid": 2, "ppid": 1, "pgid": 1, "sid": 1, "process": {"args": ["/bin/true"]}}"#,
                                            #"{"pid": 3, "ppid": 1, "pgid": 1, "sid": 1}"#)))
        #expect(t.processes.map(\.pid) == [1, 2, 3])
        #expect(t.processes.map(\.index) == [0, 1, 2])
        #expect(t.processes[1].process?.args == ["/bin/true"])
    }
}

@Suite("validator and planner: PID lookups, dense and sparse")
struct PIDLookupTests {
    private func entries(_ pids: [(Int32, Int32)]) -> ProcessTree {
        ProcessTree(processes: pids.enumerated().map { k, p in
            ProcessEntry(index: k, pid: p.0, ppid: p.1, pgid: pids[0].0, sid: pids[0].0)
        })
    }

    @Test func highPidsOfASmallTreeAreFoundLikeLowOnes() throws {
        // A few PIDs near pid_max go to the sparse side; many low ones to the flat array.
        for base: Int32 in [100, 4_000_000] {
            let tree = entries([(base, 0), (base + 1, base), (base + 2, base + 1)])
            try TreeValidator.validate(tree)
            let plan = try RestorePlanner.plan(tree)
            #expect(plan.nodes.count == 4)
            #expect(plan.nodes[plan.nodeOfEntry[2]].forker == plan.nodeOfEntry[1])
            let duplicate = entries([(base, 0), (base + 1, base), (base + 1, base)])
            #expect(TreeValidator.problems(in: duplicate).map(\.description).contains { $0.contains("duplicate pid \(base + 1)") })
        }
    }

    @Test func negativeAndHugePidsAreIndexedAndReported() {
        let tree = entries([(100, 0), (-5, 100), (-5, 100), (Int32.max, 100), (Int32.max, 100)])
        let problems = TreeValidator.problems(in: tree).map(\.description)
        #expect(problems.contains { $0.contains("duplicate pid -5") })
        #expect(problems.contains { $0.contains("duplicate pid \(Int32.max)") })
    }
}
