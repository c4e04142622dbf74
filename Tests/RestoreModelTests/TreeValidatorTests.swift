import Foundation
import RestoreModel
import Testing

// MARK: - Helpers

private func pe(_ index: Int, _ pid: Int32, ppid: Int32 = 0, nspid: [Int32]? = nil,
                   state: ProcessState = .running, exit: RestoreModel.ExitStatus? = nil, threads: [Int32] = [],
                   newNS: Bool = false, process: ProcessSpec? = nil, line: Int? = nil) -> ProcessEntry {
    ProcessEntry(index: index, line: line, pid: pid, ppid: ppid, pgid: 0, sid: 0, nspid: nspid,
                 state: state, exitStatus: exit, threads: threads, newPidNamespace: newNS,
                 process: process)
}

/// A tree whose entries' indexes are their positions.
private func tree(_ entries: ProcessEntry..., uid: [IDMapping]? = nil, gid: [IDMapping]? = nil) -> ProcessTree {
    ProcessTree(processes: entries, uidMappings: uid, gidMappings: gid)
}

/// Validates and expects exactly one problem containing every fragment; returns its text.
@discardableResult
private func invalid(_ t: ProcessTree, pidMax: Int32 = 4_194_304, _ fragments: String...,
                     sourceLocation: SourceLocation = #_sourceLocation) -> String {
    let found = TreeValidator.problems(in: t, pidMax: pidMax)
    #expect(found.count == 1, "\(found.map(\.description))", sourceLocation: sourceLocation)
    do {
        try TreeValidator.validate(t, pidMax: pidMax)
        Issue.record("accepted, expected \(fragments)", sourceLocation: sourceLocation)
        return ""
    } catch let error as RestoreError {
        #expect(error.kind == .invalidTree, sourceLocation: sourceLocation)
        #expect(error.operation == "validate", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.description.contains(fragment), "\(error.description)", sourceLocation: sourceLocation)
        }
        return error.description
    } catch {
        Issue.record("not a RestoreError: \(error)", sourceLocation: sourceLocation)
        return ""
    }
}

private func valid(_ t: ProcessTree, sourceLocation: SourceLocation = #_sourceLocation) {
    let found = TreeValidator.problems(in: t)
    #expect(found.isEmpty, "\(found.map(\.description))", sourceLocation: sourceLocation)
}

private func map(_ c: UInt32, _ h: UInt32, _ s: UInt32) -> IDMapping { IDMapping(containerID: c, hostID: h, size: s) }

// MARK: - Acceptance

@Suite struct TreeValidatorAcceptanceTests {
    @Test func singleProcess() { valid(tree(pe(0, 1))) }

    @Test func processesUnderAnOutsideParent() {
        // ppid 0 or a PID not in the tree: the process hangs under the namespace init.
        valid(tree(pe(0, 10, ppid: 0), pe(1, 11, ppid: 999), pe(2, 12, ppid: 11)))
    }

    @Test func zombiesThreadsAndSpecs() {
        valid(tree(pe(0, 1, threads: [1, 2, 3], process: ProcessSpec(args: ["/bin/sh"], env: ["A=", "B=c=d"], cwd: "/tmp")),
                   pe(1, 5, ppid: 1, state: .zombie, exit: .code(0)),
                   pe(2, 6, ppid: 1, state: .zombie, exit: .code(255)),
                   pe(3, 7, ppid: 1, state: .zombie, exit: .signal(9)),
                   pe(4, 8, ppid: 1, state: .zombie, exit: .signal(64)),
                   pe(5, 9, ppid: 1, state: .stopped, threads: [9])))
    }

    @Test func nestedNamespacesReuseLocalPids() {
        valid(tree(pe(0, 1),
                   pe(1, 100, ppid: 1, nspid: [100, 1], newNS: true),
                   pe(2, 101, ppid: 100, nspid: [101, 2]),
                   pe(3, 200, ppid: 1, nspid: [200, 1], newNS: true),
                   pe(4, 201, ppid: 200, nspid: [201, 2]),
                   pe(5, 202, ppid: 201, nspid: [202, 3, 1], newNS: true),
                   pe(6, 203, ppid: 202, nspid: [203, 4, 2])))
    }

    @Test func nestedInitWithoutParentInTree() {
        valid(tree(pe(0, 50, nspid: [50, 1], newNS: true), pe(1, 51, ppid: 50, nspid: [51, 2])))
    }

    @Test func thirtyTwoLevels() {
        var entries = [pe(0, 1)]
        for level in 2...32 {
            let pid = Int32(level)
            var nspid = Array(repeating: Int32(0), count: level)
            nspid[0] = pid
            for k in 1..<level { nspid[k] = Int32(level - k) }  // local PID in each nested namespace
            entries.append(pe(level - 1, pid, ppid: pid - 1, nspid: nspid, newNS: true))
        }
        // Local PIDs: the init of level k is 1 in its own namespace, 2 in its parent's, ...
        valid(ProcessTree(processes: entries))
    }

    @Test func mappings() {
        valid(tree(pe(0, 1), uid: [map(0, 1000, 1), map(1, 100000, 65536)],
                   gid: [map(0, 1000, 1), map(1, 100000, 65536), map(4294967294, 5, 1)]))
        valid(tree(pe(0, 1), uid: (0..<340).map { map(UInt32($0), 10000 + UInt32($0), 1) }))
    }

    @Test func helloExample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let url = root.appendingPathComponent("examples/hello/tree.json")
        #expect(FileManager.default.fileExists(atPath: url.path), "examples/hello/tree.json is missing")
        let t = try TreeParser.parse(Array(try Data(contentsOf: url)))
        try TreeValidator.validate(t)
    }
}

// MARK: - Rejections, one per rule

@Suite struct TreeValidatorRejectionTests {
    @Test func unsupportedVersion() {
        invalid(ProcessTree(version: 2, processes: [pe(0, 1)]), "unsupported version 2: this runtime reads tree.json version 1")
    }
    @Test func emptyTree() {
        invalid(ProcessTree(processes: []), "the tree has no processes")
    }
    @Test func pidZero() {
        invalid(tree(pe(0, 1), pe(1, 0, line: 3)), "process #1 (pid 0), line 3: pid 0 is out of range: PIDs are 1...4194303 (pid_max 4194304)")
    }
    @Test func pidAtPidMax() {
        invalid(tree(pe(0, 32768)), pidMax: 32768, "process #0 (pid 32768): pid 32768 is out of range: PIDs are 1...32767 (pid_max 32768)")
    }
    @Test func duplicatePid() {
        invalid(tree(pe(0, 1), pe(1, 17), pe(2, 17)), "process #2 (pid 17): duplicate pid 17: process #1 (pid 17) has it too")
    }
    @Test func twoInits() {
        invalid(tree(pe(0, 1), pe(1, 2), pe(2, 3), pe(3, 4), pe(4, 5), pe(5, 1)),
                "process #5 (pid 1): two processes claim PID 1 (the namespace init): process #0 and process #5")
    }
    @Test func threadSharedByTwoProcesses() {
        invalid(tree(pe(0, 10, threads: [10, 12]), pe(1, 11, threads: [11, 12])),
                "process #1 (pid 11): thread 12 is also listed as a thread of process #0 (pid 10)")
    }
    @Test func threadIsAnotherProcess() {
        invalid(tree(pe(0, 10, threads: [10, 11]), pe(1, 11)),
                "process #0 (pid 10): thread 11 has the same ID as process #1 (pid 11)")
    }
    @Test func threadListedTwice() {
        invalid(tree(pe(0, 10, threads: [10, 12, 12])), "process #0 (pid 10): thread 12 is listed twice")
    }
    @Test func threadsWithoutMainThread() {
        invalid(tree(pe(0, 10, threads: [11, 12])),
                "process #0 (pid 10): threads does not list the main thread (TID 10, the pid)")
    }
    @Test func threadOutOfRange() {
        invalid(tree(pe(0, 10, threads: [10, 5_000_000])),
                "process #0 (pid 10): thread 5000000 is out of range: TIDs share the PID space, PIDs are 1...4194303")
    }
    @Test func negativePpid() {
        invalid(tree(pe(0, 10, ppid: -1)), "process #0 (pid 10): ppid -1 is negative (use 0 for a process that hangs under the namespace init)")
    }
    @Test func ownParent() {
        invalid(tree(pe(0, 10, ppid: 10)), "process #0 (pid 10): the process is its own parent")
    }
    @Test func parentCycle() {
        invalid(tree(pe(0, 1), pe(1, 12, ppid: 11), pe(2, 10, ppid: 12), pe(3, 11, ppid: 10), pe(4, 13, ppid: 11)),
                "process #1 (pid 12): parent cycle: process #1 (pid 12) -> process #3 (pid 11) -> process #2 (pid 10) -> process #1 (pid 12)")
    }
    @Test func negativePgid() {
        invalid(ProcessTree(processes: [ProcessEntry(index: 0, pid: 1, ppid: 0, pgid: -3, sid: 0)]), "process #0 (pid 1): pgid -3 is negative")
    }
    @Test func negativeSid() {
        invalid(ProcessTree(processes: [ProcessEntry(index: 0, pid: 1, ppid: 0, pgid: 0, sid: -1)]), "process #0 (pid 1): sid -1 is negative")
    }
    @Test func exitStatusOnRunningProcess() {
        invalid(tree(pe(0, 1, exit: .code(0))),
                "process #0 (pid 1): exitStatus (exit code 0) is given but the state is running; only a zombie has one")
    }
    @Test func zombieWithoutExitStatus() {
        invalid(tree(pe(0, 1), pe(1, 2, ppid: 1, state: .zombie)), "process #1 (pid 2): the process is a zombie but has no exitStatus")
    }
    @Test func exitCodeTooLarge() {
        invalid(tree(pe(0, 2, state: .zombie, exit: .code(256))), "process #0 (pid 2): exit code 256 is outside 0...255")
    }
    @Test func exitCodeNegative() {
        invalid(tree(pe(0, 2, state: .zombie, exit: .code(-1))), "exit code -1 is outside 0...255")
    }
    @Test func signalZero() {
        invalid(tree(pe(0, 2, state: .zombie, exit: .signal(0))), "process #0 (pid 2): signal 0 is outside 1...64")
    }
    @Test func signalTooLarge() {
        invalid(tree(pe(0, 2, state: .zombie, exit: .signal(65))), "signal 65 is outside 1...64")
    }
    @Test func signalThatStops() {
        invalid(tree(pe(0, 2, state: .zombie, exit: .signal(19))),
                "process #0 (pid 2): signal 19 (SIGSTOP) cannot have killed the process: its default action is to stop the process")
    }
    @Test func signalsThatCannotKill() {
        for (sig, name) in [(17, "SIGCHLD"), (18, "SIGCONT"), (20, "SIGTSTP"), (21, "SIGTTIN"), (22, "SIGTTOU"), (23, "SIGURG"), (28, "SIGWINCH")] {
            invalid(tree(pe(0, 2, state: .zombie, exit: .signal(Int32(sig)))), "signal \(sig) (\(name)) cannot have killed the process")
        }
    }
    @Test func zombieWithChildren() {
        invalid(tree(pe(0, 1), pe(1, 5, ppid: 1, state: .zombie, exit: .code(1)), pe(2, 6, ppid: 5), pe(3, 7, ppid: 5)),
                "process #1 (pid 5): the process is a zombie but has children in the tree: process #2 (pid 6), process #3 (pid 7) (a dead process's children are reparented")
    }
    @Test func emptyNspid() {
        var e = pe(0, 5)
        e.nspid = []
        invalid(tree(e), "process #0: nspid is empty")
    }
    @Test func nspidLevelOutOfRange() {
        invalid(tree(pe(0, 100, nspid: [100, 1], newNS: true), pe(1, 101, ppid: 100, nspid: [101, 0])),
                "process #1 (pid 101): nspid[1] = 0 is out of range: PIDs are 1...4194303")
    }
    @Test func newNamespaceNotEndingInOne() {
        invalid(tree(pe(0, 5, nspid: [5, 3], newNS: true)),
                "process #0 (pid 5): newPidNamespace is true, so the process is the init of its own PID namespace and the last element of nspid must be 1, not 3")
    }
    @Test func nestedPidOneWithoutNewNamespace() {
        // Always comes with a second problem (wrong depth or a clash with the init's PID 1).
        let found = TreeValidator.problems(in: tree(pe(0, 1), pe(1, 5, ppid: 1, nspid: [5, 1], newNS: false))).map(\.description)
        #expect(found.contains("process #1 (pid 5): nspid ends in 1, so the process is the init of a nested PID namespace: set newPidNamespace to true"), "\(found)")
    }
    @Test func initCannotStartNestedNamespace() {
        invalid(tree(pe(0, 1, nspid: [1, 1], newNS: true)),
                "process #0 (pid 1): pid 1 is the init of the tree's own PID namespace; it cannot also be the init of a nested one")
    }
    @Test func initWithParentInTree() {
        invalid(tree(pe(0, 5), pe(1, 1, ppid: 5)),
                "process #1 (pid 1): pid 1 is the init of the tree's PID namespace, so its parent is outside the tree, but its ppid 5 is process #0 (pid 5)")
    }
    @Test func childShallowerThanParent() {
        invalid(tree(pe(0, 100, nspid: [100, 1], newNS: true), pe(1, 101, ppid: 100)),
                "process #1 (pid 101): nspid has 1 level but its parent process #0 (pid 100) has 2; a child is in its parent's PID namespace")
    }
    @Test func childTwoLevelsDeeper() {
        invalid(tree(pe(0, 100), pe(1, 101, ppid: 100, nspid: [101, 7, 1], newNS: true)),
                "process #1 (pid 101): nspid has 3 levels but its parent process #0 (pid 100) has 1", "(2 here)")
    }
    @Test func orphanInNestedNamespace() {
        invalid(tree(pe(0, 1), pe(1, 7, ppid: 0, nspid: [7, 2])),
                "process #1 (pid 7): nspid has 2 levels but the process has no parent in the tree, so it hangs under the namespace init and must have 1")
    }
    @Test func duplicateLocalPidInNestedNamespace() {
        invalid(tree(pe(0, 1),
                     pe(1, 100, ppid: 1, nspid: [100, 1], newNS: true),
                     pe(2, 101, ppid: 100, nspid: [101, 2]),
                     pe(3, 102, ppid: 100, nspid: [102, 2])),
                "process #3 (pid 102): nspid[1] = 2 is also the PID of process #2 (pid 101) in the same nested PID namespace (the one whose init is process #1 (pid 100))")
    }
    @Test func duplicateLocalPidAtAnInnerLevel() {
        // 103 sits two namespaces deep; its PID in the middle namespace collides with 101's.
        invalid(tree(pe(0, 100, nspid: [100, 1], newNS: true),
                     pe(1, 101, ppid: 100, nspid: [101, 2]),
                     pe(2, 102, ppid: 100, nspid: [102, 3, 1], newNS: true),
                     pe(3, 103, ppid: 102, nspid: [103, 2, 2])),
                "process #3 (pid 103): nspid[1] = 2 is also the PID of process #1 (pid 101) in the same nested PID namespace (the one whose init is process #0 (pid 100))")
    }
    @Test func tooDeep() {
        var nspid: [Int32] = [40]
        for k in 1...32 { nspid.append(Int32(33 - k)) }
        let t = tree(pe(0, 40, nspid: nspid, newNS: true))
        let found = TreeValidator.problems(in: t).map(\.description)
        #expect(found.contains("process #0 (pid 40): nspid has 33 levels; Linux nests PID namespaces at most 32 levels deep"), "\(found)")
    }
    @Test func emptyArgs() {
        invalid(tree(pe(0, 1, process: ProcessSpec(args: []))), "process #0 (pid 1): process.args is empty: omit args to make the process hold")
    }
    @Test func emptyProgram() {
        invalid(tree(pe(0, 1, process: ProcessSpec(args: ["", "x"]))), "process #0 (pid 1): process.args[0] is an empty string")
    }
    @Test func nulInArgument() {
        invalid(tree(pe(0, 1, process: ProcessSpec(args: ["/bin/echo", "a\u{0}b"]))),
                "process #0 (pid 1): process.args[1] contains a NUL character, which exec cannot pass")
    }
    @Test func envWithoutEquals() {
        invalid(tree(pe(0, 1, process: ProcessSpec(env: ["PATH=/bin", "HOME"]))),
                "process #0 (pid 1): process.env[1] \"HOME\" has no '=' (entries are KEY=VALUE)")
    }
    @Test func relativeCwd() {
        invalid(tree(pe(0, 1, process: ProcessSpec(cwd: "tmp"))), "process #0 (pid 1): process.cwd \"tmp\" is not an absolute path")
    }
    @Test func emptyMappings() {
        invalid(tree(pe(0, 1), uid: []), "uidMappings is empty (omit it for the default map of your own id to 0)")
    }
    @Test func mappingSizeZero() {
        invalid(tree(pe(0, 1), uid: [map(0, 1000, 0)]), "uidMappings[0]: size is 0")
    }
    @Test func mappingContainerOverlap() {
        invalid(tree(pe(0, 1), gid: [map(0, 1000, 10), map(5, 2000, 10)]),
                "gidMappings[1]: container ids 5...14 overlap gidMappings[0] (0...9)")
    }
    @Test func mappingHostOverlap() {
        invalid(tree(pe(0, 1), uid: [map(0, 1000, 1), map(1, 1000, 1)]),
                "uidMappings[1]: host ids 1000...1000 overlap uidMappings[0] (1000...1000)")
    }
    @Test func mappingPastLastId() {
        invalid(tree(pe(0, 1), uid: [map(4294967290, 1000, 6)]),
                "uidMappings[0]: containerID 4294967290 + size 6 runs past 4294967294, the largest id")
    }
    @Test func tooManyMappingLines() {
        invalid(tree(pe(0, 1), uid: (0..<341).map { map(UInt32($0), 10000 + UInt32($0), 1) }),
                "uidMappings has 341 lines; the kernel accepts at most 340")
    }
}

// MARK: - How several problems are reported

@Suite struct TreeValidatorReportTests {
    @Test func severalProblemsOnePerLine() {
        let t = tree(pe(0, 1, line: 3), pe(1, 0, ppid: -1, line: 4))
        do {
            try TreeValidator.validate(t)
            Issue.record("accepted")
        } catch let error as RestoreError {
            #expect(error.entry == nil)
            #expect(error.description == """
                2 problems in the tree:
                  process #1 (pid 0), line 4: pid 0 is out of range: PIDs are 1...4194303 (pid_max 4194304)
                  process #1 (pid 0), line 4: ppid -1 is negative (use 0 for a process that hangs under the namespace init)
                """)
        } catch {
            Issue.record("not a RestoreError: \(error)")
        }
    }

    @Test func atMostTwentyListed() {
        let entries = (0..<25).map { pe($0, Int32(100 + $0), ppid: -1) }
        let t = ProcessTree(processes: entries)
        #expect(TreeValidator.problems(in: t).count == 25)
        do {
            try TreeValidator.validate(t)
            Issue.record("accepted")
        } catch let error as RestoreError {
            let lines = error.message.split(separator: "\n")
            #expect(lines.first == "25 problems in the tree:")
            #expect(lines.count == 22)
            #expect(lines.last == "  ... and 5 more")
        } catch {
            Issue.record("not a RestoreError: \(error)")
        }
    }

    @Test func singleProblemKeepsItsEntry() {
        let t = tree(pe(0, 1, ppid: -2, line: 7))
        do {
            try TreeValidator.validate(t)
            Issue.record("accepted")
        } catch let error as RestoreError {
            #expect(error.entry == "process #0 (pid 1), line 7")
            #expect(error.exitCode == RestoreError.ExitCode.invalidTree)
        } catch {
            Issue.record("not a RestoreError: \(error)")
        }
    }
}
