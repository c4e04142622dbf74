import Foundation
import RestoreModel
import Testing

// Terminals in the tree format: parsing, writing, and the validation rules (a terminal's
// session is led by a live process of the tree that has it as controlling terminal, its
// foreground group is a group of that session, processes name only their session's terminal).

private func parse(_ text: String) throws -> ProcessTree { try TreeParser.parse(Array(text.utf8)) }

/// A bash session under a pty: bash 100 leads session 100 with terminal "pts3", a job 105
/// (group 105) in the foreground, a background job 107 without the terminal on stdout.
private let shellTree = """
    {"version": 1,
     "terminals": [{"id": "pts3", "session": 100, "foreground": 105, "recordedAs": "/dev/pts/3", "rows": 40, "columns": 120}],
     "processes": [
      {"pid": 100, "ppid": 1, "pgid": 100, "sid": 100, "terminal": "pts3", "stdio": ["pts3", "pts3", "pts3"]},
      {"pid": 105, "ppid": 100, "pgid": 105, "sid": 100, "terminal": "pts3", "stdio": ["pts3", "pts3", "pts3"]},
      {"pid": 107, "ppid": 100, "pgid": 107, "sid": 100, "terminal": "pts3", "stdio": [null, null, "pts3"]}
     ]}
    """

private func problems(_ tree: ProcessTree) -> [String] { TreeValidator.problems(in: tree).map(\.description) }

@Suite("Terminals in the tree format")
struct TerminalTests {
    @Test func parsesAndRoundTrips() throws {
        let tree = try parse(shellTree)
        #expect(tree.terminals == [TerminalSpec(id: "pts3", session: 100, foreground: 105, recordedAs: "/dev/pts/3", rows: 40, columns: 120)])
        #expect(tree.processes[0].terminal == "pts3" && tree.processes[0].stdio == ["pts3", "pts3", "pts3"])
        #expect(tree.processes[2].stdio == [nil, nil, "pts3"])
        #expect(problems(tree).isEmpty, "\(problems(tree))")
        let again = try parse(TreeEncoder.encode(tree))
        #expect(again.terminals == tree.terminals)
        #expect(again.processes.map(\.terminal) == tree.processes.map(\.terminal))
        #expect(again.processes.map(\.stdio) == tree.processes.map(\.stdio))
    }

    @Test func shapeErrorsNameTheElement() throws {
        func refused(_ text: String, _ fragment: String) {
            do {
                _ = try parse(text)
                Issue.record("accepted: \(text)")
            } catch let e as RestoreError {
                #expect(e.description.contains(fragment), "\(e.description)")
            } catch { Issue.record("\(error)") }
        }
        refused(#"{"version": 1, "terminals": [{"session": 1}], "processes": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}]}"#,
                "terminals[0], line 1")
        refused(#"{"version": 1, "terminals": [{"id": "a", "sesion": 1}], "processes": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}]}"#,
                "did you mean \"session\"")
        refused(#"{"version": 1, "terminals": [{"id": "a", "rows": 70000}], "processes": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1}]}"#,
                "16-bit unsigned")
        refused(#"{"version": 1, "processes": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "stdio": ["a", "a", "a", "a"]}]}"#,
                "stdio has 4 elements")
        refused(#"{"version": 1, "processes": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "stdio": [3]}]}"#,
                "stdio[0] must be a terminal id")
    }

    @Test func sessionLeaderMustBeInTheTreeAndHoldIt() throws {
        var tree = try parse(shellTree)
        tree.terminals[0].session = 200
        tree.terminals[0].foreground = nil
        #expect(problems(tree).contains { $0.contains("terminals[0] (\"pts3\")") && $0.contains("session 200 has no leader in the tree") }, "\(problems(tree))")

        tree = try parse(shellTree)
        tree.terminals[0].session = 105
        #expect(problems(tree).contains { $0.contains("led by process #1 (pid 105), which is not a session leader") }, "\(problems(tree))")

        tree = try parse(shellTree)
        tree.processes[0].terminal = nil
        #expect(problems(tree).contains { $0.contains("does not have it as controlling terminal") }, "\(problems(tree))")

        tree = try parse(shellTree)
        tree.processes[0].state = .zombie
        tree.processes[0].stdio = []
        tree.processes[0].terminal = nil
        #expect(problems(tree).contains { $0.contains("is a zombie") }, "\(problems(tree))")
    }

    @Test func foregroundMustBeAGroupOfTheSession() throws {
        var tree = try parse(shellTree)
        tree.terminals[0].foreground = 106
        #expect(problems(tree) == [#"terminals[0] ("pts3"): its foreground group 106 is not a process group of session 100: no process of the tree has pgid 106 and sid 100"#], "\(problems(tree))")
        tree.terminals[0].session = nil
        for i in tree.processes.indices { tree.processes[i].terminal = nil }
        #expect(problems(tree).contains { $0.contains("has foreground group 106 but no session") }, "\(problems(tree))")
    }

    @Test func processesNameTheirSessionsTerminal() throws {
        var tree = try parse(shellTree)
        tree.processes.append(ProcessEntry(index: 3, pid: 300, ppid: 1, pgid: 300, sid: 300))
        tree.processes[3].terminal = "pts3"
        #expect(problems(tree).contains { $0.contains("process #3 (pid 300)") && $0.contains("is in session 300") }, "\(problems(tree))")
        tree.processes[3].terminal = "pts4"
        tree.processes[3].stdio = ["pts33"]
        let found = problems(tree)
        #expect(found.contains { $0.contains(#"terminal "pts4" is not in terminals"#) }, "\(found)")
        #expect(found.contains { $0.contains(#"stdio[0] "pts33" is not in terminals (did you mean "pts3"?)"#) }, "\(found)")
    }

    @Test func duplicateAndEmptyIds() throws {
        var tree = try parse(shellTree)
        tree.terminals.append(TerminalSpec(id: "pts3"))
        tree.terminals.append(TerminalSpec(id: ""))
        let found = problems(tree)
        #expect(found.contains { $0.contains("terminals[1] (\"pts3\"): the id is used by terminals[0] too") }, "\(found)")
        #expect(found.contains { $0.contains("terminals[2]: id is empty") }, "\(found)")
    }
}

@Suite("Terminals in tree diffs")
struct TerminalDiffTests {
    @Test func comparedByWhatTheyAreNotByName() throws {
        let a = try parse(shellTree)
        var b = a
        // A restore numbers its ptys from 0: another name, the same terminal.
        b.terminals[0].id = "pts0"
        b.terminals[0].recordedAs = "/dev/pts/0"
        for i in b.processes.indices {
            b.processes[i].terminal = b.processes[i].terminal.map { _ in "pts0" }
            b.processes[i].stdio = b.processes[i].stdio.map { $0.map { _ in "pts0" } }
        }
        #expect(TreeDiff.compare(a, b).isEmpty, "\(TreeDiff.compare(a, b))")
        b.terminals[0].foreground = 107
        let d = TreeDiff.compare(a, b)
        #expect(d.count == 3 && d.allSatisfy { $0.field == .terminal }, "\(d)")
        #expect(d.first?.description.contains("controlled by the terminal of session 100 (foreground 105)") ?? false, "\(d)")
        b.processes[2].stdio = []
        b.processes[2].terminal = nil
        #expect(TreeDiff.compare(a, b, options: TreeDiff.Options(ignored: [.terminal])).isEmpty)
        #expect(TreeDiff.compare(a, b).contains { $0.pid == 107 && $0.b == "none" })
    }

    @Test func modesAreCompared() throws {
        var a = try parse(shellTree)
        a.terminals[0].modes = TerminalModes(iflag: 0x500, oflag: 0x5, cflag: 0xbf, lflag: 0x8a3b, cc: [3, 0x1c, 0x7f])
        var b = a
        #expect(TreeDiff.compare(a, b).isEmpty)
        b.terminals[0].modes?.lflag = 0x8a33  // stty -echo
        let d = TreeDiff.compare(a, b)
        #expect(!d.isEmpty && d.allSatisfy { $0.field == .terminal }, "\(d)")
        #expect(d.first.map { $0.a.contains("lflag 0x8a3b cc 03 1c 7f") && $0.b.contains("lflag 0x8a33") } ?? false, "\(d)")
        // A recording without modes: a restore's modes are not a difference, other diffs are.
        a.terminals[0].modes = nil
        #expect(TreeDiff.compare(a, b, options: TreeDiff.Options(restored: true)).isEmpty)
        #expect(!TreeDiff.compare(a, b).isEmpty)
    }

    @Test func shellJobsAndTmuxAreCompared() throws {
        var a = try parse(shellTree)
        a.processes[0].shellJobs = [ShellJobSpec(pgid: 105, state: .foreground, members: [105, 106]),
                                    ShellJobSpec(pgid: 107, state: .stopped, stopSignal: 20, members: [107])]
        var b = a
        #expect(TreeDiff.compare(a, b).isEmpty)
        b.processes[0].shellJobs.removeLast()
        var d = TreeDiff.compare(a, b)
        #expect(d.map(\.description) == ["pid 100 shellJobs: A pgid 105 foreground [105, 106]; pgid 107 stopped (signal 20) [107] | B pgid 105 foreground [105, 106]"], "\(d)")
        #expect(TreeDiff.compare(a, b, options: TreeDiff.Options(ignored: [.shellJobs])).isEmpty)

        b = a
        let pane = TmuxPaneSpec(pid: 105, active: true)
        a.processes[0].tmux = TmuxServerSpec(socket: "/tmp/tmux-1000/default", configFiles: ["/home/u/.tmux.conf"], defaultShell: "/bin/bash",
                                             sessions: [TmuxSessionSpec(name: "0", windows: [TmuxWindowSpec(index: 0, name: "bash", columns: 80, rows: 24, active: true, panes: [pane])])])
        b.processes[0].tmux = a.processes[0].tmux
        #expect(TreeDiff.compare(a, b).isEmpty)
        b.processes[0].tmux?.configFiles = ["/tmp/rr-tmux/replay.conf", "/home/u/.tmux.conf"]
        #expect(TreeDiff.compare(a, b, options: TreeDiff.Options(restored: true)).isEmpty, "a restored server's own configuration is by design")
        #expect(TreeDiff.compare(a, b).count == 1)
        b.processes[0].tmux?.sessions[0].windows[0].columns = 100
        d = TreeDiff.compare(a, b, options: TreeDiff.Options(restored: true))
        #expect(d.count == 1 && d[0].field == .tmux && d[0].a.contains("window 0 \"bash\" 80x24 active, panes [105 active]") && d[0].b.contains("100x24"), "\(d)")
    }
}

@Suite("Terminals in the verification of a built tree")
struct TerminalVerificationTests {
    /// The shell tree as built, host PID 5000 + node; tty_nr/tpgid per node as given.
    func observe(_ tree: ProcessTree, _ plan: RestorePlan, tty: (Int) -> UInt32, tpgidHost: Int32) -> RestoreVerification.Observation {
        let host = plan.nodes.indices.map { Int32(5000 + $0) }
        var statuses = [ProcStatus?](repeating: nil, count: plan.nodes.count)
        var terminals = [(ttyNr: UInt32, tpgid: Int32)?](repeating: nil, count: plan.nodes.count)
        for (i, e) in tree.processes.enumerated() {
            let node = plan.nodeOfEntry[i]
            let ppid = RestoreVerification.expectedParent(e, treeHasInit: plan.treeHasInit, treePids: Set(tree.processes.map(\.pid)))
            let parentHost = host[plan.nodes.firstIndex { $0.pid == ppid }!]
            // Host numbers of the group and session leaders: 5000 + their node.
            let pgidHost = host[plan.nodes.firstIndex { $0.pid == e.pgid }!], sidHost = host[plan.nodes.firstIndex { $0.pid == e.sid }!]
            statuses[node] = ProcStatus(hostPid: host[node], nspid: [host[node]] + e.nspid, nspgid: [pgidHost, e.pgid],
                                        nssid: [sidHost, e.sid], hostPPid: parentHost, state: "S", threads: 1)
            terminals[node] = (tty(i), tpgidHost)
        }
        return RestoreVerification.Observation(hostPids: host, statuses: statuses, runtimePid: 4000, ownLevels: 1, terminals: terminals)
    }

    @Test func controllingTerminalAndForegroundAreChecked() throws {
        var tree = try parse(shellTree)
        tree.processes[0].ppid = 0
        let plan = try RestorePlanner.plan(tree)
        let pty0 = RestoreVerification.ptyDevice(0)
        #expect(pty0 == 136 << 8 && RestoreVerification.ptyDevice(257) == (137 << 8 | 1))
        let fgHost = Int32(5000 + plan.nodeOfEntry[1])
        var result = RestoreVerification.verify(tree: tree, plan: plan, observed: observe(tree, plan, tty: { _ in pty0 }, tpgidHost: fgHost))
        #expect(result.problems.isEmpty, "\(result.problems)")

        result = RestoreVerification.verify(tree: tree, plan: plan, observed: observe(tree, plan, tty: { $0 == 2 ? 0 : pty0 }, tpgidHost: fgHost))
        #expect(result.problems.map(\.description) == ["process #2 (pid 107): was restored with controlling terminal tty_nr 0 instead of 34816 (pty 0 of its devpts, for terminals[0] (\"pts3\"))"], "\(result.problems)")

        let bashHost = Int32(5000 + plan.nodeOfEntry[0])
        result = RestoreVerification.verify(tree: tree, plan: plan, observed: observe(tree, plan, tty: { _ in pty0 }, tpgidHost: bashHost))
        #expect(result.problems.map(\.description) == ["process #0 (pid 100): was restored with foreground group 100 instead of 105"], "\(result.problems)")
    }
}
