/// Job replay for interactive bash (`shellJobs`, docs/tree-format.md "Shell jobs"). A shell's
/// job table lives in its memory, which is not restored: the jobs' processes would come back
/// as children bash never forked, so `jobs`, `fg` and `%1` would know nothing of them.
/// Instead the jobs' processes are payload-spawned, and the restored bash gets a
/// PROMPT_COMMAND that starts them again, in the order they were started, before its first
/// prompt: background ones with `&`, stopped ones stopped again once they run their program,
/// the foreground one last and in the foreground. Bash's forks are pinned to the recorded
/// PIDs (in fork order: a pipeline's members left to right, its first member leading the
/// group), and the pin ledger checks each became the recorded program.
///
/// The script runs as PROMPT_COMMAND: bash reads and runs it line by line, so the first line
/// puts PROMPT_COMMAND back as recorded (a ^C of the foreground job aborts the rest) and turns
/// alias expansion off while the later lines are read (an alias `ls='ls --color'` would
/// change a job's argv); the line of the foreground job turns it back on before it runs.
public enum ShellJobReplay {
    /// The variable bash runs before each prompt.
    public static let variable = "PROMPT_COMMAND"

    /// One job to start again: its spec, each member's argv and the directory it ran in.
    public struct Job: Sendable, Equatable {
        public var spec: ShellJobSpec
        public var argv: [[String]]
        /// The members to stop again (PIDs), in order.
        public var stopped: [Int32]
        /// The job's working directory when it differs from the shell's (nil: the shell's).
        public var cwd: String?

        public init(spec: ShellJobSpec, argv: [[String]], stopped: [Int32] = [], cwd: String? = nil) {
            self.spec = spec
            self.argv = argv
            self.stopped = stopped
            self.cwd = cwd
        }
    }

    /// How many times the replay reads a stopped member's /proc/PID/cmdline at most, waiting
    /// for it to run its program before it is stopped (a stop signal sent earlier would stop
    /// bash's fork before its exec, or be lost while the fork still ignores it as bash does).
    public static let execWaitReads = 200_000

    /// Whether `args` of a bash start an interactive shell with a prompt: `-i`, or neither a
    /// command (`-c`) nor a script operand with standard input and error on a terminal.
    public static func isInteractive(args: [String], stdinTerminal: Bool, stderrTerminal: Bool) -> Bool {
        var interactive = false, command = false, operand = false
        var i = 1
        var optionsEnded = false
        while i < args.count {
            let a = args[i]
            i += 1
            if optionsEnded || !(a.hasPrefix("-") || a.hasPrefix("+")) || a == "-" || a == "+" {
                if a == "-" && !optionsEnded { optionsEnded = true; continue }
                operand = true
                break
            }
            if a == "--" { optionsEnded = true; continue }
            if a.hasPrefix("--") {
                if a == "--rcfile" || a == "--init-file" { i += 1 }
                continue
            }
            for c in a.dropFirst() {
                switch c {
                case "i": interactive = true
                case "c": command = true
                case "o", "O": i += 1
                default: break
                }
            }
        }
        if command { return false }
        if interactive { return true }
        return !operand && stdinTerminal && stderrTerminal
    }

    /// Whether an entry runs bash (its recorded program, else its argv[0]).
    public static func isBash(_ e: ProcessEntry) -> Bool {
        func base(_ s: String) -> Substring { s.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(s) }
        if let exe = e.recorded?.exe { return base(exe) == "bash" }
        guard let a0 = e.process?.args?.first else { return false }
        let b = base(a0)
        return b == "bash" || b == "-bash"
    }

    /// Bash's reserved words: as a command's first word they would not run a program.
    static let reservedWords: Set<String> = ["!", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for",
                                             "function", "if", "in", "select", "then", "time", "until", "while",
                                             "{", "}", "[[", "]]"]

    /// One word as bash reads it back literally: as it is when it has only characters that
    /// are never special (so `jobs` shows `sleep 101`, as it would have), else in single
    /// quotes, or in `$'...'` when it holds control characters (newlines) or non-ASCII bytes
    /// that a terminal would garble.
    public static func quote(_ word: String, commandWord: Bool = false) -> String {
        let safe = word.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "_@%+:,./-".unicodeScalars.contains(c)
                || (c == "=" && !commandWord)
        }
        if !word.isEmpty && safe && !(commandWord && reservedWords.contains(word)) { return word }
        if word.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) {
            return "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
        }
        var out = "$'"
        for c in word.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "'": out += "\\'"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if c.value < 0x20 || c.value == 0x7f {
                    out += "\\x" + (c.value < 0x10 ? "0" : "") + String(c.value, radix: 16)
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out + "'"
    }

    /// A command line: its words quoted, the first as a command word.
    public static func commandLine(_ argv: [String]) -> String {
        argv.enumerated().map { quote($1, commandWord: $0 == 0) }.joined(separator: " ")
    }

    /// The PROMPT_COMMAND that starts `jobs` again (in order) and then sets PROMPT_COMMAND to
    /// `promptCommand` (the recorded one; nil: unset), in a shell whose directory is `shellCwd`.
    public static func script(jobs: [Job], shellCwd: String?, promptCommand: String?) -> String {
        var lines: [String] = []
        let restorePrompt = promptCommand.map { "\(variable)=\(quote($0))" } ?? "unset \(variable)"
        lines.append("\(restorePrompt); __rr_a=; shopt -q expand_aliases && __rr_a=1; shopt -u expand_aliases")
        let foreground = jobs.lastIndex { $0.spec.state == .foreground }
        let foregroundLast = foreground == jobs.indices.last
        for (k, job) in jobs.enumerated() where !(foregroundLast && k == foreground) {
            var line = ""
            if let dir = job.cwd { line += "builtin cd -- \(quote(dir)) 2>/dev/null; " }
            line += job.argv.map(commandLine).joined(separator: " | ") + " &"
            if let dir = shellCwd, job.cwd != nil { line += " builtin cd -- \(quote(dir)) 2>/dev/null" }
            lines.append(line)
            guard !job.stopped.isEmpty else { continue }
            for pid in job.stopped {
                guard let m = job.spec.members.firstIndex(of: pid), m < job.argv.count else { continue }
                lines.append("__rr_e=(\(job.argv[m].map { quote($0) }.joined(separator: " "))); __rr_n=0; until mapfile -d '' -t __rr_w 2>/dev/null < /proc/\(pid)/cmdline "
                             + "&& [[ \"${__rr_w[*]}\" == \"${__rr_e[*]}\" ]] || (( ++__rr_n > \(execWaitReads) )); do :; done")
            }
            let signal = TreeParser.signalNames[job.spec.stopSignal ?? 20] ?? "TSTP"
            lines.append("kill -s \(signal) \(job.stopped.map(String.init).joined(separator: " "))")
        }
        var last = "unset __rr_e __rr_n __rr_w; [[ -n $__rr_a ]] && shopt -s expand_aliases; unset __rr_a"
        if let f = foreground {
            if foregroundLast {
                let job = jobs[f]
                if let dir = job.cwd { last += "; builtin cd -- \(quote(dir)) 2>/dev/null" }
                last += "; " + job.argv.map(commandLine).joined(separator: " | ")
            } else {
                last += "; fg %\(f + 1)"
            }
        }
        lines.append(last)
        return lines.joined(separator: "\n")
    }

    /// The jobs of entry `i` as the tree has them, ready for `script`.
    public static func jobs(of i: Int, in tree: ProcessTree) -> [Job] {
        let shell = tree.processes[i]
        var byPid: [Int32: ProcessEntry] = [:]
        for e in tree.processes where e.ppid == shell.pid { byPid[e.pid] = e }
        return shell.shellJobs.map { spec in
            let members = spec.members.compactMap { byPid[$0] }
            let argv = members.map { $0.process?.args ?? $0.recorded?.cmdline ?? [] }
            let stopped = members.filter { spec.state == .stopped || $0.state == .stopped }.map(\.pid)
            let cwd = members.first?.process?.cwd
            return Job(spec: spec, argv: argv, stopped: stopped, cwd: cwd == shell.process?.cwd ? nil : cwd)
        }
    }

    /// The tree with every shell that has `shellJobs` given its replay: PROMPT_COMMAND in
    /// its environment (the caller's environment when the tree has none for it).
    public static func apply(to tree: ProcessTree, callerEnvironment: [String]) -> ProcessTree {
        var out = tree
        for (i, e) in tree.processes.enumerated() where !e.shellJobs.isEmpty {
            guard var spec = e.process, !(spec.args ?? []).isEmpty else { continue }
            var env = spec.env ?? callerEnvironment
            let prefix = variable + "="
            let recorded = env.last { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
            env.removeAll { $0.hasPrefix(prefix) }
            env.append(prefix + script(jobs: jobs(of: i, in: tree), shellCwd: spec.cwd, promptCommand: recorded))
            spec.env = env
            out.processes[i].process = spec
        }
        return out
    }
}
