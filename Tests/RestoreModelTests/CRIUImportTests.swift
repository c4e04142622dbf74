import Foundation
import RestoreModel
import Testing

// CRIU pstree + core JSON (crit decode --pretty) -> ProcessTree. The fixtures in
// Fixtures/criu were dumped by a real CRIU 4.2 (see Fixtures/criu/README.md); the expected
// values below are the tables of their README.txt files, read from /proc before the dump.

private func criuFixture(_ relative: String) throws -> [UInt8] {
    let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    return Array(try Data(contentsOf: dir.appendingPathComponent("criu/" + relative)))
}

/// A fixture folder: its pstree.json and every core-<TID>.json, keyed by TID.
private func criuCase(_ name: String) throws -> (pstree: [UInt8], cores: [Int32: [UInt8]]) {
    let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        .appendingPathComponent("criu/" + name)
    var cores: [Int32: [UInt8]] = [:]
    for url in try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil) {
        let n = url.lastPathComponent
        guard n.hasPrefix("core-"), n.hasSuffix(".json"), let pid = Int32(n.dropFirst(5).dropLast(5)) else { continue }
        cores[pid] = Array(try Data(contentsOf: url))
    }
    return (Array(try Data(contentsOf: dir.appendingPathComponent("pstree.json"))), cores)
}

private func importCase(_ name: String) throws -> ProcessTree {
    let c = try criuCase(name)
    let tree = try CRIUImport.tree(pstree: c.pstree, cores: c.cores)
    try TreeValidator.validate(tree)
    _ = try RestorePlanner.plan(tree)
    return tree
}

/// pid ppid pgid sid, as a compact string per process.
private func ids(_ t: ProcessTree) -> [String] {
    t.processes.map { "\($0.pid) \($0.ppid) \($0.pgid) \($0.sid)" }
}

/// Runs `body`, expects a RestoreError of kind .invalidTree whose description contains every fragment.
private func expectImportError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                               _ body: () throws -> ProcessTree) {
    do {
        let t = try body()
        Issue.record("imported, expected an error containing \(fragments): \(t)", sourceLocation: sourceLocation)
    } catch let e as RestoreError {
        #expect(e.kind == .invalidTree, sourceLocation: sourceLocation)
        #expect(e.operation == "import CRIU pstree", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(e.description.contains(f), "\(e.description)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("not a RestoreError: \(error)", sourceLocation: sourceLocation)
    }
}

/// A minimal pstree with the given entries (JSON objects).
private func pstree(_ entries: String...) -> [UInt8] {
    Array(("{\n  \"magic\": \"PSTREE\",\n  \"entries\": [\n" + entries.joined(separator: ",\n") + "\n  ]\n}").utf8)
}

/// A minimal core: `tc` members, and thread_info when the task was alive or stopped.
private func core(_ tc: String, threadInfo: Bool) -> [UInt8] {
    let info = threadInfo ? ", \"thread_info\": {\"clear_tid_addr\": \"0x0\"}" : ""
    return Array("{\"magic\": \"CORE\", \"entries\": [{\"mtype\": \"X86_64\"\(info), \"tc\": {\(tc)}}]}".utf8)
}

/// A root (pid 10) with one child (pid 11) whose core is `child`.
private func withChild(_ child: [UInt8], threads: String = "[11]") throws -> ProcessEntry {
    let tree = try CRIUImport.tree(
        pstree: pstree("{\"pid\": 10, \"ppid\": 0, \"pgid\": 10, \"sid\": 10, \"threads\": [10]}",
                       "{\"pid\": 11, \"ppid\": 10, \"pgid\": 10, \"sid\": 10, \"threads\": \(threads)}"),
        cores: [10: core("\"task_state\": 1, \"exit_code\": 0", threadInfo: true), 11: child])
    return tree.processes[1]
}

@Suite struct CRIUFixtureTests {
    @Test func shelljob() throws {
        let t = try importCase("shelljob")
        #expect(ids(t) == ["7220 0 7220 7220", "7221 7220 7221 7220", "7222 7220 7221 7220", "7223 7220 7221 7220",
                           "7224 7220 7224 7220", "7225 7220 7224 7220", "7226 7220 7220 7220"])
        #expect(t.processes.allSatisfy { $0.state == .running && $0.exitStatus == nil && $0.threads.isEmpty })
        #expect(t.processes.allSatisfy { $0.process == nil && !$0.childSubreaper })
        #expect(t.uidMappings == nil && t.gidMappings == nil)
    }

    @Test func birthSession() throws {
        let t = try importCase("birth-session")
        #expect(ids(t) == ["7536 0 7536 7536", "7537 7536 7537 7537", "7538 7537 7536 7536", "7539 7537 7537 7537"])
    }

    @Test func zombiesKeepTheirFullExitCode() throws {
        let t = try importCase("zombies")
        #expect(ids(t) == ["7692 0 7692 7692", "7693 7692 7692 7692", "7694 7693 7692 7692",
                           "7695 7693 7692 7692", "7696 7693 7692 7692", "7697 7693 7692 7692"])
        let byPid = Dictionary(uniqueKeysWithValues: t.processes.map { ($0.pid, $0) })
        #expect(byPid[7692]?.state == .running)
        #expect(byPid[7693]?.state == .running)
        #expect(byPid[7694]?.state == .zombie)
        #expect(byPid[7694]?.exitStatus == .code(0))
        #expect(byPid[7695]?.exitStatus == .code(3))
        // core-7696.json has exit_code 51200 = 200 << 8. CRIU's own restore brings it back as 72.
        #expect(byPid[7696]?.exitStatus == .code(200))
        #expect(byPid[7696]?.exitStatus != .code(72))
        #expect(byPid[7697]?.exitStatus == .signal(9))
        // The pstree's threads of zombies are uninitialised memory ([2524422240], [0]): ignored.
        for pid: Int32 in [7694, 7695, 7696, 7697] {
            #expect(byPid[pid]?.state == .zombie)
            #expect(byPid[pid]?.threads == [])
        }
    }

    @Test func zombieExitStatusSurvivesTreeJSON() throws {
        let t = try importCase("zombies")
        let again = try TreeParser.parse(Array(TreeEncoder.encode(t).utf8))
        #expect(again.processes.map(\.exitStatus) == t.processes.map(\.exitStatus))
        #expect(TreeDiff.compare(t, again).isEmpty)
    }

    @Test func stoppedIsLabelledZombieByCrit() throws {
        // core-7774.json says "task_state": "Zombie" (crit's label for 3, TASK_STOPPED).
        let raw = String(decoding: try criuFixture("stopped/core-7774.json"), as: UTF8.self)
        #expect(raw.contains("\"task_state\": \"Zombie\""))
        let t = try importCase("stopped")
        #expect(t.processes.map(\.state) == [.running, .stopped, .running, .running])
        #expect(t.processes[1].exitStatus == nil)
        #expect(ids(t) == ["7773 0 7773 7773", "7774 7773 7773 7773", "7775 7773 7773 7773", "7776 7773 7773 7773"])
    }

    @Test func threadsKeepTheirTIDs() throws {
        let t = try importCase("threads")
        #expect(t.processes[0].threads == [])
        #expect(t.processes[1].pid == 7929)
        #expect(t.processes[1].threads == [7929, 7930, 7931, 7932, 7933])
    }

    @Test(arguments: [(1, "11506"), (6, "11012"), (10, "13016"), (1000, "16084")])
    func flatPstrees(count: Int, root: String) throws {
        let bytes = try criuFixture("pstree-\(count).json")
        #expect(CRIUImport.isPstree(bytes))
        let t = try CRIUImport.tree(pstree: bytes, cores: [:])
        #expect(t.processes.count == count)
        #expect(String(t.processes[0].pid) == root)
        #expect(t.processes[0].ppid == 0)
        #expect(t.processes[0].sid == t.processes[0].pid && t.processes[0].pgid == t.processes[0].pid)
        #expect(t.processes.allSatisfy { $0.state == .running && $0.sid == t.processes[0].pid })
        try TreeValidator.validate(t)
        let plan = try RestorePlanner.plan(t)
        #expect(plan.helperCount == 0)
    }

    @Test func everyFixtureIsRecognised() throws {
        for name in ["shelljob", "birth-session", "zombies", "stopped", "threads"] {
            #expect(CRIUImport.isPstree(try criuCase(name).pstree), "\(name)")
            #expect(!CRIUImport.isPstree(try criuCase(name).cores.values.first!), "a core is not a pstree")
        }
    }
}

@Suite struct CRIUImportRules {
    @Test func recognition() {
        #expect(CRIUImport.isPstree(Array(" \n{ \"magic\" : \"PSTREE\", \"entries\": [] }".utf8)))
        #expect(CRIUImport.isPstree(Array("{\"entries\": [], \"magic\": \"PSTREE\"}".utf8)), "magic not first")
        #expect(!CRIUImport.isPstree(Array("{\"magic\": \"CORE\", \"entries\": []}".utf8)))
        #expect(!CRIUImport.isPstree(Array("{\"version\": 1, \"processes\": []}".utf8)))
        #expect(!CRIUImport.isPstree(Array("{\"version\": 1, \"comment\": \"\\\"magic\\\": \\\"PSTREE\\\"\", \"processes\": []}".utf8)))
        #expect(!CRIUImport.isPstree(Array("{\"x\": {\"magic\": \"PSTREE\"}}".utf8)), "nested magic")
        // A cut-off pstree is still recognised, so its import reports the syntax error.
        #expect(CRIUImport.isPstree(Array("{\"magic\": \"PSTREE\", \"entr".utf8)))
        #expect(!CRIUImport.isPstree([]))
        #expect(!CRIUImport.isPstree([0xFF, 0x00]))
    }

    @Test func numericTaskStates() throws {
        #expect(try withChild(core("\"task_state\": 1", threadInfo: true)).state == .running)
        let dead = try withChild(core("\"task_state\": 2, \"exit_code\": 768", threadInfo: false), threads: "[0]")
        #expect(dead.state == .zombie && dead.exitStatus == .code(3))
        #expect(try withChild(core("\"task_state\": 3", threadInfo: true)).state == .stopped)
        let six = try withChild(core("\"task_state\": 6, \"exit_code\": 9", threadInfo: false))
        #expect(six.state == .zombie && six.exitStatus == .signal(9))
    }

    @Test func critLabelsOfEitherVersion() throws {
        #expect(try withChild(core("\"task_state\": \"Alive\"", threadInfo: true)).state == .running)
        #expect(try withChild(core("\"task_state\": \"Dead\", \"exit_code\": 0", threadInfo: false)).state == .zombie)
        // crit 3.17/4.2: 3 is printed "Zombie", 6 "Stopped"; later crit: 3 "Stopped", 6 "Zombie".
        // The core's shape decides: only a live or stopped task has thread_info.
        #expect(try withChild(core("\"task_state\": \"Zombie\"", threadInfo: true)).state == .stopped)
        #expect(try withChild(core("\"task_state\": \"Stopped\"", threadInfo: true)).state == .stopped)
        #expect(try withChild(core("\"task_state\": \"Zombie\", \"exit_code\": 51200", threadInfo: false)).exitStatus == .code(200))
        #expect(try withChild(core("\"task_state\": \"Stopped\", \"exit_code\": 15", threadInfo: false)).exitStatus == .signal(15))
        #expect(try withChild(core("\"task_state\": \"2\", \"exit_code\": 256", threadInfo: false)).exitStatus == .code(1))
    }

    @Test func exitStatusEncodings() throws {
        // SIGSEGV with a core dump: 0x80 | 11.
        #expect(try withChild(core("\"task_state\": 2, \"exit_code\": 139", threadInfo: false)).exitStatus == .signal(11))
        #expect(try withChild(core("\"task_state\": 2, \"exit_code\": 65280", threadInfo: false)).exitStatus == .code(255))
        #expect(try withChild(core("\"task_state\": 2", threadInfo: false)).exitStatus == .code(0))
        expectImportError(["pstree entry #1 (pid 11), core-11.json, line 1", "tc.exit_code 4991 is the wait status of a stopped process"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": 2, \"exit_code\": 4991", threadInfo: false))])
        }
        expectImportError(["tc.exit_code 128 is not the wait status of a zombie"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": 2, \"exit_code\": 128", threadInfo: false))])
        }
        expectImportError(["tc.exit_code 70000 is not a wait status"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": 2, \"exit_code\": 70000", threadInfo: false))])
        }
        expectImportError(["tc.exit_code 513 is not the wait status of a zombie"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": 2, \"exit_code\": 513", threadInfo: false))])
        }
    }

    @Test func childSubreaper() throws {
        #expect(try withChild(core("\"task_state\": 1, \"child_subreaper\": true", threadInfo: true)).childSubreaper)
        #expect(try !withChild(core("\"task_state\": 1, \"child_subreaper\": false", threadInfo: true)).childSubreaper)
        expectImportError(["pstree entry #1 (pid 11), core-11.json", "tc.child_subreaper must be true or false"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": 1, \"child_subreaper\": 1", threadInfo: true))])
        }
    }

    @Test func unknownTaskStates() {
        expectImportError(["pstree entry #1 (pid 11), core-11.json, line 1", "tc.task_state 5 is not a state a dump holds"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": 5", threadInfo: true))])
        }
        expectImportError(["tc.task_state \"Sleeping\" is not a task state"]) {
            try ProcessTree(processes: [withChild(core("\"task_state\": \"Sleeping\"", threadInfo: true))])
        }
        expectImportError(["missing required key \"task_state\""]) {
            try ProcessTree(processes: [withChild(core("\"exit_code\": 0", threadInfo: true))])
        }
    }

    @Test func zombieWithoutCoresIsRefusedWithAHint() throws {
        let c = try criuCase("zombies")
        expectImportError(["pstree entry #2 (pid 7694), line 28", "do not include the process's own pid 7694", "--criu-cores"]) {
            try CRIUImport.tree(pstree: c.pstree, cores: [:])
        }
    }

    @Test func missingCoreNamesTheEntry() throws {
        var c = try criuCase("zombies")
        c.cores[7695] = nil
        expectImportError(["pstree entry #3 (pid 7695)", "no core-7695.json"]) {
            try CRIUImport.tree(pstree: c.pstree, cores: c.cores)
        }
    }

    @Test func threadCoreInsteadOfProcessCore() throws {
        let c = try criuCase("threads")
        var cores = c.cores
        cores[7929] = c.cores[7930]
        expectImportError(["pstree entry #1 (pid 7929), core-7929.json", "no \"tc\" object"]) {
            try CRIUImport.tree(pstree: c.pstree, cores: cores)
        }
    }

    @Test func shapeErrorsNameTheEntry() {
        expectImportError(["pstree entry #1 (pid 11), line 5, column 1", "missing required key \"sid\""]) {
            try CRIUImport.tree(pstree: pstree("{\"pid\": 10, \"ppid\": 0, \"pgid\": 10, \"sid\": 10}",
                                               "{\"pid\": 11, \"ppid\": 10, \"pgid\": 10}"), cores: [:])
        }
        expectImportError(["pstree entry #0, line 4", "pid must be an integer, found \"10\""]) {
            try CRIUImport.tree(pstree: pstree("{\"pid\": \"10\", \"ppid\": 0, \"pgid\": 10, \"sid\": 10}"), cores: [:])
        }
        expectImportError(["pstree entry #0 (pid 10)", "ppid is 4294967295, out of range"]) {
            try CRIUImport.tree(pstree: pstree("{\"pid\": 10, \"ppid\": 4294967295, \"pgid\": 10, \"sid\": 10}"), cores: [:])
        }
        expectImportError(["pstree entry #0 (pid 10)", "threads[1] is 0, not a thread ID"]) {
            try CRIUImport.tree(pstree: pstree("{\"pid\": 10, \"ppid\": 0, \"pgid\": 10, \"sid\": 10, \"threads\": [10, 0]}"), cores: [:])
        }
        expectImportError(["entries is empty"]) {
            try CRIUImport.tree(pstree: pstree(), cores: [:])
        }
        expectImportError(["magic is \"CORE\", expected \"PSTREE\""]) {
            try CRIUImport.tree(pstree: Array("{\"magic\": \"CORE\", \"entries\": []}".utf8), cores: [:])
        }
        expectImportError(["line 1, column 2"]) {
            try CRIUImport.tree(pstree: Array("{,".utf8), cores: [:])
        }
        expectImportError(["pstree entry #1 (pid 11), core-11.json, line 1, column 2"]) {
            try ProcessTree(processes: [withChild(Array("{]".utf8))])
        }
    }

    @Test func threadListsAreKeptInOrder() throws {
        let e = try withChild(core("\"task_state\": 1", threadInfo: true), threads: "[11, 14, 12]")
        #expect(e.threads == [11, 14, 12])
        let single = try withChild(core("\"task_state\": 1", threadInfo: true), threads: "[11]")
        #expect(single.threads == [])
    }
}
