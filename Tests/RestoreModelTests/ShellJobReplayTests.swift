import Foundation
import RestoreModel
import Testing

// Job replay (`shellJobs`): the words of the script bash reads back as they were (checked by
// running bash on them), the script's order of jobs, stops and the foreground job, the
// environment it goes into, and the validation of `shellJobs` entries.

private func parse(_ text: String) throws -> ProcessTree { try TreeParser.parse(Array(text.utf8)) }

private func problems(_ tree: ProcessTree) -> [String] { TreeValidator.problems(in: tree).map(\.description) }

/// An interactive bash 100 on pts0 with a background job 101, a stopped job 102 (SIGSTOP),
/// a background pipeline 103 | 104 run in /tmp, and the foreground pipeline 105 | 106.
private let shellTree = """
    {"version": 1,
     "terminals": [{"id": "pts0", "session": 100, "foreground": 105}],
     "processes": [
      {"pid": 100, "ppid": 1, "pgid": 100, "sid": 100, "terminal": "pts0", "stdio": ["pts0", "pts0", "pts0"],
       "shellJobs": [{"pgid": 101, "state": "running", "members": [101]},
                     {"pgid": 102, "state": "stopped", "stopSignal": "SIGSTOP", "members": [102]},
                     {"pgid": 103, "state": "running", "members": [103, 104]},
                     {"pgid": 105, "state": "foreground", "members": [105, 106]}],
       "process": {"args": ["bash", "--norc", "-i"], "env": ["PATH=/usr/bin:/bin", "PROMPT_COMMAND=history -a"], "cwd": "/home/u"},
       "recorded": {"exe": "/usr/bin/bash", "cmdline": ["bash", "--norc", "-i"]}},
      {"pid": 101, "ppid": 100, "pgid": 101, "sid": 100, "spawn": "payload", "terminal": "pts0", "process": {"args": ["sleep", "1000"], "cwd": "/home/u"}},
      {"pid": 102, "ppid": 100, "pgid": 102, "sid": 100, "state": "stopped", "spawn": "payload", "terminal": "pts0",
       "process": {"args": ["grep", "it's a $HOME \\"test\\"", "new\\nline"], "cwd": "/home/u"}},
      {"pid": 103, "ppid": 100, "pgid": 103, "sid": 100, "spawn": "payload", "terminal": "pts0", "process": {"args": ["sleep", "1004"], "cwd": "/tmp"}},
      {"pid": 104, "ppid": 100, "pgid": 103, "sid": 100, "spawn": "payload", "terminal": "pts0", "process": {"args": ["cat"], "cwd": "/tmp"}},
      {"pid": 105, "ppid": 100, "pgid": 105, "sid": 100, "spawn": "payload", "terminal": "pts0", "process": {"args": ["sleep", "1002"], "cwd": "/home/u"}},
      {"pid": 106, "ppid": 100, "pgid": 105, "sid": 100, "spawn": "payload", "terminal": "pts0", "process": {"args": ["sleep", "1003"], "cwd": "/home/u"}}
     ]}
    """

/// What bash makes of `text` as the arguments of a command: each word, NUL-terminated.
private func bashWords(_ text: String) throws -> [String] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["--norc", "--noprofile", "-c", "printf '%s\\0' " + text]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    var words = String(decoding: data, as: UTF8.self).components(separatedBy: "\0")
    words.removeLast()
    return words
}

@Suite("Job replay of interactive bash")
struct ShellJobReplayTests {
    @Test func quotedWordsReadBackAsThemselves() throws {
        let words = ["plain", "a b", "it's", "\"double\"", "$HOME", "${x}", "$(id)", "`id`", "new\nline", "tab\there",
                     "", "*", "?", "[a]", "~root", "a=b", "ü ö", "back\\slash", "!x", "ctl\u{1}", "semi;colon", "&", "|", "#x", "{a,b}"]
        #expect(try bashWords(words.map { ShellJobReplay.quote($0) }.joined(separator: " ")) == words)
        // Words of characters that are never special stay as they are (`jobs` shows them so).
        #expect(ShellJobReplay.commandLine(["sleep", "1000"]) == "sleep 1000")
        #expect(ShellJobReplay.commandLine(["./run.sh", "--x=1", "a,b:c@d%e+f"]) == "./run.sh --x=1 a,b:c@d%e+f")
        // A first word that bash would read as an assignment or a reserved word is quoted.
        #expect(ShellJobReplay.commandLine(["a=b", "c=d"]) == "'a=b' c=d")
        #expect(ShellJobReplay.commandLine(["if", "then"]) == "'if' then")
        #expect(ShellJobReplay.quote("new\nline") == "$'new\\nline'")
    }

    @Test func scriptStartsTheJobsInOrderStopsAndForegroundsThem() throws {
        let tree = try parse(shellTree)
        #expect(problems(tree).isEmpty, "\(problems(tree))")
        let jobs = ShellJobReplay.jobs(of: 0, in: tree)
        #expect(jobs.map(\.stopped) == [[], [102], [], []])
        #expect(jobs.map(\.cwd) == [nil, nil, "/tmp", nil])
        let script = ShellJobReplay.script(jobs: jobs, shellCwd: "/home/u", promptCommand: "history -a")
        let lines = script.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 7, "\(lines)")
        // PROMPT_COMMAND is put back first (a ^C of the foreground job ends the script), alias
        // expansion is off while the job lines are read.
        #expect(lines[0] == "PROMPT_COMMAND='history -a'; __rr_a=; shopt -q expand_aliases && __rr_a=1; shopt -u expand_aliases")
        #expect(lines[1] == "sleep 1000 &")
        #expect(lines[2] == #"grep 'it'\''s a $HOME "test"' $'new\nline' &"#)
        // The stopped job is stopped once it runs its program, with the signal that stopped it.
        #expect(lines[3].contains("__rr_e=(grep 'it'\\''s a $HOME \"test\"' $'new\\nline')") && lines[3].contains("/proc/102/cmdline")
                && lines[3].contains("(( ++__rr_n > \(ShellJobReplay.execWaitReads) ))"), "\(lines[3])")
        #expect(lines[4] == "kill -s STOP 102")
        #expect(lines.count > 5 && lines[5] == "builtin cd -- /tmp 2>/dev/null; sleep 1004 | cat & builtin cd -- /home/u 2>/dev/null", "\(script)")
        // The foreground job last, in the foreground, after alias expansion is back.
        #expect(lines.last == "unset __rr_e __rr_n __rr_w; [[ -n $__rr_a ]] && shopt -s expand_aliases; unset __rr_a; sleep 1002 | sleep 1003")

        // A foreground job that is not the last one started (fg %1) is started in its place
        // and brought to the foreground at the end; no recorded PROMPT_COMMAND: unset.
        var reordered = jobs
        reordered[0].spec.state = .foreground
        reordered[3].spec.state = .running
        let other = ShellJobReplay.script(jobs: reordered, shellCwd: nil, promptCommand: nil)
        #expect(other.hasPrefix("unset PROMPT_COMMAND;"))
        #expect(other.contains("\nsleep 1000 &\n") && other.contains("\nsleep 1002 | sleep 1003 &\n") && other.hasSuffix("; fg %1"), "\(other)")
    }

    @Test func scriptRunsInBashAsWritten() throws {
        // The script is valid bash (syntax only: bash -n), whatever the words hold.
        let tree = try parse(shellTree)
        let script = ShellJobReplay.script(jobs: ShellJobReplay.jobs(of: 0, in: tree), shellCwd: "/home/u", promptCommand: "echo 'x'\n$y")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["--norc", "-n", "-c", script]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(script)")
        // The recorded PROMPT_COMMAND comes back as it was.
        let first = String(script.split(separator: "\n").first ?? "")
        let assignment = String(first.prefix { $0 != ";" })
        #expect(try bashWords(String(assignment.dropFirst("PROMPT_COMMAND=".count))) == ["echo 'x'\n$y"], "\(first)")
    }

    @Test func applyPutsTheReplayInTheShellsEnvironment() throws {
        let tree = try parse(shellTree)
        let applied = ShellJobReplay.apply(to: tree, callerEnvironment: ["PATH=/caller"])
        let env = try #require(applied.processes[0].process?.env)
        #expect(env.filter { $0.hasPrefix("PROMPT_COMMAND=") }.count == 1 && env.first == "PATH=/usr/bin:/bin")
        #expect(env.last?.hasPrefix("PROMPT_COMMAND=PROMPT_COMMAND='history -a';") ?? false, "\(env)")
        #expect(applied.processes.dropFirst() == tree.processes.dropFirst())
        // Without a recorded environment: the caller's, plus the replay.
        var noEnv = tree
        noEnv.processes[0].process?.env = nil
        let env2 = try #require(ShellJobReplay.apply(to: noEnv, callerEnvironment: ["PATH=/caller", "PROMPT_COMMAND=date"]).processes[0].process?.env)
        #expect(env2.first == "PATH=/caller" && env2.count == 2 && env2[1].hasPrefix("PROMPT_COMMAND=PROMPT_COMMAND=date;"), "\(env2)")
    }

    @Test func interactiveCommandLines() {
        func interactive(_ args: [String], tty: Bool = true) -> Bool { ShellJobReplay.isInteractive(args: args, stdinTerminal: tty, stderrTerminal: tty) }
        #expect(interactive(["bash"]) && interactive(["-bash"]) && interactive(["bash", "--norc", "-i"], tty: false))
        #expect(interactive(["bash", "--rcfile", "x.sh"]) && interactive(["bash", "-o", "vi"]) && interactive(["bash", "-l"]))
        #expect(!interactive(["bash"], tty: false) && !interactive(["bash", "script.sh"]) && !interactive(["bash", "-c", "sleep 1"]))
        #expect(!interactive(["bash", "-ic", "jobs"]) && !interactive(["bash", "--rcfile", "x", "y.sh"]))
    }

    @Test func roundTripsAndRefusesWhatNoShellCanReplay() throws {
        let tree = try parse(shellTree)
        #expect(try parse(TreeEncoder.encode(tree)).processes.map(\.shellJobs) == tree.processes.map(\.shellJobs))
        #expect(tree.processes[0].shellJobs[1] == ShellJobSpec(pgid: 102, state: .stopped, stopSignal: 19, members: [102]))

        func refused(_ change: (inout ProcessTree) -> Void, _ fragment: String) {
            var t = tree
            change(&t)
            let found = problems(t)
            #expect(found.contains { $0.contains("process #0 (pid 100)") && $0.contains(fragment) }, "\(found)")
        }
        // Not a child of the shell.
        refused({ $0.processes[6].ppid = 105 }, "shellJobs[3] (pgid 105) lists process #6 (pid 106), which is not a child of this shell")
        refused({ $0.processes[0].shellJobs[0].members = [101, 999] }, "shellJobs[0] (pgid 101) lists pid 999, which is not in the tree")
        // Not bash.
        refused({
            $0.processes[0].process?.args = ["zsh", "-i"]
            $0.processes[0].recorded?.exe = "/usr/bin/zsh"
        }, "has shellJobs, but it does not run bash (/usr/bin/zsh)")
        // A job's process the runtime would create as well.
        refused({ $0.processes[1].spawnedByPayload = false }, "which the runtime would create too: mark it \"spawn\": \"payload\"")
        refused({ $0.processes[0].shellJobs[2].members = [104, 103] }, "its first member 104 is not its group leader 103")
        refused({ $0.processes[0].shellJobs[0].members = [102] ; $0.processes[0].shellJobs[0].pgid = 102 }, "lists pid 102, which shellJobs[0] lists too")
        refused({ $0.processes[0].shellJobs[0].state = .foreground }, "has 2 foreground jobs")

        // The parser names the element.
        #expect(throws: RestoreError.self) {
            try parse(shellTree.replacingOccurrences(of: "\"state\": \"running\", \"members\": [101]", with: "\"state\": \"asleep\", \"members\": [101]"))
        }
        do {
            _ = try parse(shellTree.replacingOccurrences(of: "\"stopSignal\": \"SIGSTOP\"", with: "\"stopSignal\": \"SIGKILL\""))
            Issue.record("SIGKILL accepted as a stop signal")
        } catch {
            #expect("\(error)".contains("process #0 (pid 100)") && "\(error)".contains("shellJobs[1].stopSignal must be a stop signal"), "\(error)")
        }
    }
}
