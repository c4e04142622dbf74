import RestoreModel

// Recording an interactive bash's jobs for job replay (ShellJobReplay): the job-control jobs
// of a bash with a controlling terminal are the process groups of its session that its own
// children lead. Their processes (and what they forked) are marked payload-spawned, and the
// shell's entry lists them in `shellJobs`, so that the restored bash forks them again.

extension TreeRecorder {
    static func recordShellJobs(_ snaps: [Snapshot], _ entries: inout [ProcessEntry], options: RecordOptions,
                                stopCodes: [Int32: Int32] = [:], warnings: inout [String], notes: inout [String]) {
        var childrenOf: [Int32: [Int]] = [:]
        for (j, s) in snaps.enumerated().dropFirst() { childrenOf[s.hostPPid, default: []].append(j) }
        for (i, s) in snaps.enumerated() where s.state != "Z" && s.ttyNr != 0 {
            let shell = entries[i]
            // A tmux pane's shell too: tmux starts it with its recorded environment (TmuxReplay).
            let inPane = entries.contains { $0.pid == shell.ppid && $0.tmux.map { TmuxReplay.panes(of: $0).contains(shell.pid) } ?? false }
            guard let args = shell.process?.args, !args.isEmpty, !shell.spawnedByPayload || inPane, !options.hold.contains(s.hostPid),
                  ShellJobReplay.isBash(shell) else { continue }
            func onTerminal(_ fd: Int) -> Bool { fd < shell.stdio.count && shell.stdio[fd] != nil }
            guard ShellJobReplay.isInteractive(args: args, stdinTerminal: onTerminal(0), stderrTerminal: onTerminal(2)) else { continue }
            // Its children that lead a group of their own in its session, with their group.
            let children = (childrenOf[s.hostPid] ?? []).sorted { (snaps[$0].startTime, snaps[$0].hostPid) < (snaps[$1].startTime, snaps[$1].hostPid) }
            let leaders = children.filter { entries[$0].pid == entries[$0].pgid && entries[$0].pgid != shell.pgid && entries[$0].sid == shell.sid }
            guard !leaders.isEmpty else { continue }
            // The terminal's foreground group, in the tree's numbers (tpgid is the reader's).
            let foreground = snaps.firstIndex { $0.nspgid.first == s.tpgid }.map { entries[$0].pgid }
            var jobs: [ShellJobSpec] = []
            var replayed: [Int] = []
            var described: [String] = []
            for leader in leaders {
                let group = entries[leader].pgid
                let members = children.filter { entries[$0].pgid == group }
                let text = members.map { (entries[$0].recorded?.cmdline ?? []).joined(separator: " ") }.joined(separator: " | ")
                func skip(_ why: String) {
                    warnings.append("process \(shell.pid) (bash): its job \(group) (\(JSONValue.quoted(text, limit: 60))) is not replayed: \(why); it is restored as processes the shell did not fork (not in its job table)")
                }
                if let z = members.first(where: { snaps[$0].state == "Z" }) { skip("its process \(entries[z].pid) is a zombie"); continue }
                if let h = members.first(where: { options.hold.contains(snaps[$0].hostPid) }) { skip("its process \(entries[h].pid) is recorded holding"); continue }
                if let f = members.first(where: { entries[$0].recorded?.forkedNotExeced ?? false }) {
                    skip("its process \(entries[f].pid) is a fork of the shell that never exec'd (a subshell or a shell function), whose commands are not known"); continue
                }
                if let t = members.first(where: { entries[$0].recorded?.titleRewritten ?? false || (entries[$0].recorded?.cmdline ?? []).isEmpty }) {
                    skip("the argv of its process \(entries[t].pid) cannot be read"); continue
                }
                var job = ShellJobSpec(pgid: group, state: .running, members: members.map { entries[$0].pid })
                if group == foreground {
                    job.state = .foreground
                } else if members.allSatisfy({ entries[$0].state == .stopped }) {
                    job.state = .stopped
                    let first = snaps[members.first { entries[$0].state == .stopped }!]
                    let signal = (stopCodes[first.hostPid] ?? first.exitCode) & 0x7f
                    job.stopSignal = (19...22).contains(signal) ? signal : 20
                }
                jobs.append(job)
                replayed += members
                described.append("[\(jobs.count)] \(job.state.rawValue) \(JSONValue.quoted(text, limit: 60)) (pids \(job.members.map(String.init).joined(separator: ", ")))")
            }
            guard !jobs.isEmpty else { continue }
            // The jobs' processes and everything below them: forked again by the shell and by
            // the jobs' programs.
            var below = replayed
            var k = 0
            while k < below.count {
                entries[below[k]].spawnedByPayload = true
                below += childrenOf[snaps[below[k]].hostPid] ?? []
                k += 1
            }
            entries[i].shellJobs = jobs
            var note = "process \(shell.pid) (bash, host pid \(s.hostPid)): job replay: the restored shell starts its \(jobs.count) jobs again from PROMPT_COMMAND, with their PIDs: " + described.joined(separator: "; ")
            if below.count > replayed.count {
                note += "; \(below.count - replayed.count) processes below them are marked \"spawn\": \"payload\" (their job's program forks them again)"
            }
            notes.append(note + " (record --no-job-replay restores them as processes the shell did not fork)")
        }
    }
}
