import Foundation
import RestoreModel
import Testing

// Programs that recreate their own pty children: the "tmux" field (parse, write, validate,
// the generated configuration) and util-linux script's command line.

private func parse(_ text: String) throws -> ProcessTree { try TreeParser.parse(Array(text.utf8)) }
private func problems(_ tree: ProcessTree) -> [String] { TreeValidator.problems(in: tree).map(\.description) }

/// A server 100 with session "rr": window 0 (pane 101), window 3 "logs" (panes 102, 103:
/// 103 a login shell, listed first in the window although created last).
private let serverTree = """
    {"version": 1, "processes": [
     {"pid": 100, "ppid": 1, "pgid": 100, "sid": 100, "process": {"args": ["/usr/bin/tmux", "-D", "-S", "/tmp/t/sock"]},
      "tmux": {"socket": "/tmp/t/sock", "configFiles": ["/home/u/.tmux.conf"], "defaultShell": "/bin/bash", "sessions": [
        {"name": "rr", "windows": [
          {"index": 0, "columns": 100, "rows": 30, "panes": [{"pid": 101}]},
          {"index": 3, "name": "lo#gs", "layout": "abcd,100x30,0,0{50x30,0,0,1,49x30,51,0,2}", "columns": 100, "rows": 30, "active": true,
           "panes": [{"pid": 103, "loginShell": true, "active": true}, {"pid": 102}]}]}]}},
     {"pid": 101, "ppid": 100, "pgid": 101, "sid": 101, "spawn": "payload", "process": {"args": ["bash", "--norc", "-i"], "cwd": "/home/u", "env": ["TERM=tmux-256color", "TMUX=/tmp/t/sock,9,0", "A=$x \\"q\\""]}},
     {"pid": 102, "ppid": 100, "pgid": 102, "sid": 102, "spawn": "payload", "process": {"args": ["htop"], "cwd": "/tmp"}},
     {"pid": 103, "ppid": 100, "pgid": 103, "sid": 103, "spawn": "payload", "process": {"args": ["/usr/bin/zsh"]}}
    ]}
    """

@Suite("tmux servers and script sessions in the tree format")
struct TmuxReplayTests {
    @Test func parsesValidatesAndRoundTrips() throws {
        let tree = try parse(serverTree)
        let spec = try #require(tree.processes[0].tmux)
        #expect(spec.socket == "/tmp/t/sock" && spec.sessions.first?.windows.map(\.index) == [0, 3])
        #expect(spec.sessions[0].windows[1].panes == [TmuxPaneSpec(pid: 103, loginShell: true, active: true), TmuxPaneSpec(pid: 102)])
        #expect(problems(tree).isEmpty, "\(problems(tree))")
        let again = try parse(TreeEncoder.encode(tree))
        #expect(again.processes.map(\.tmux) == tree.processes.map(\.tmux))
    }

    @Test func configCreatesPanesInTheRecordedOrder() throws {
        let tree = try parse(serverTree)
        let lines = TmuxReplay.config(for: tree.processes[0], in: tree).split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        #expect(lines == [
            "set-option -g default-shell \"/bin/bash\"",
            // 101 first: the session with its window 0; TMUX is tmux's own to set.
            "new-session -d -s \"rr\" -x 100 -y 30 -c \"/home/u\" -e \"TERM=tmux-256color\" -e \"A=\\$x \\\"q\\\"\" -- \"bash\" \"--norc\" \"-i\"",
            // 102 next: window 3's first pane; one argument is exec'd through default-shell -c.
            "new-window -d -t \"=rr:3\" -n \"lo##gs\" -c \"/tmp\" -- \"exec 'htop'\"",
            // 103 last, before 102 in the window: split before it, as the login shell zsh.
            "set-option -g default-shell \"/usr/bin/zsh\"",
            "split-window -d -b -t %1",
            "select-layout -t \"=rr:3\" tiled",
            "select-layout -t \"=rr:3\" \"abcd,100x30,0,0{50x30,0,0,1,49x30,51,0,2}\"",
            "select-pane -t %2",
            "select-window -t \"=rr:3\"",
            "set-option -g default-shell \"/bin/bash\"",
            "source-file -q \"/home/u/.tmux.conf\"",
        ], "\(lines.joined(separator: "\n"))")
        #expect(TmuxReplay.serverArguments(tree.processes[0], configPath: "/run/x.conf") == ["/usr/bin/tmux", "-D", "-S", "/tmp/t/sock", "-f", "/run/x.conf"])
        #expect(TmuxReplay.configs(in: tree).keys.sorted() == [100])
    }

    @Test func refusalsNameTheEntry() throws {
        func refused(_ edit: (inout ProcessTree) -> Void, _ fragment: String) throws {
            var tree = try parse(serverTree)
            edit(&tree)
            let found = problems(tree)
            #expect(found.contains { $0.contains(fragment) }, "expected \(fragment.debugDescription) in \(found)")
        }
        try refused({ $0.processes[0].tmux?.socket = "sock" }, "process #0 (pid 100): tmux.socket \"sock\" is not an absolute path")
        try refused({ $0.processes[2].spawnedByPayload = false }, "panes[1]: process #2 (pid 102) must be \"spawn\": \"payload\"")
        try refused({ $0.processes[0].tmux?.sessions[0].windows[1].index = 0 }, "windows[1].index 0 is used by another window")
        try refused({ $0.processes[0].tmux?.sessions[0].windows[0].panes.append(TmuxPaneSpec(pid: 102)) }, "pid 102 is also")
        try refused({ $0.processes[0].tmux?.sessions[0].windows[0].panes = [] }, "windows[0].panes is empty")
        try refused({ $0.processes[0].tmux?.sessions[0].name = "a:b" }, "is not a tmux session name")
        try refused({ $0.processes[0].tmux?.sessions[0].windows[0].panes = [TmuxPaneSpec(pid: 999)]; $0.processes[1].spawnedByPayload = true },
                    "process #1 (pid 101): is spawned by the tmux server process #0 (pid 100) but is no pane")
        try refused({ $0.processes[1].terminal = "pts0" }, "has a recorded terminal; tmux makes its pane's pty")
        try refused({ $0.processes[3].process?.args = ["zsh"] }, "a login-shell pane needs the shell's absolute path")
        // Shape errors are the parser's, with the position.
        #expect(throws: RestoreError.self) { try parse(serverTree.replacingOccurrences(of: "\"loginShell\"", with: "\"loginshel\"")) }
        do {
            _ = try parse(serverTree.replacingOccurrences(of: "\"rows\": 30, \"panes\": [{\"pid\": 101}]", with: "\"rows\": 30"))
            Issue.record("a window without panes was accepted")
        } catch let e as RestoreError {
            #expect(e.description.contains("process #0 (pid 100), line") && e.description.contains("missing required key \"panes\" in tmux.sessions[0].windows[0]"), "\(e)")
        }
    }

    @Test func scriptCommandLines() {
        func files(_ argv: [String]) -> [String]? { ScriptInvocation.parse(argv)?.clobbered }
        #expect(files(["script", "-qfc", "exec bash", "/dev/null"]) == [])
        #expect(files(["script", "-qfc", "exec bash", "out.log"]) == ["out.log"])
        #expect(files(["script", "-a", "out.log"]) == [])
        #expect(files(["script", "-q"]) == ["typescript"])
        #expect(files(["script", "--log-timing", "t.tm", "-B", "io.log", "-c", "bash"]) == ["t.tm", "io.log"])
        #expect(files(["script", "--timing=t.tm", "--command=bash", "x"]) == ["t.tm", "x"])
        #expect(files(["script", "-Z"]) == nil)
        #expect(ScriptInvocation.appending(["/usr/bin/script", "-qfc", "bash", "x"]) == ["/usr/bin/script", "-a", "-qfc", "bash", "x"])
    }
}
