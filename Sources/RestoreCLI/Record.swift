import ArgumentParser
import Glibc
import RestoreEngine
import RestoreModel

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Write tree.json for a live process and all its descendants.",
        discussion: """
        Records, for every process, its PIDs at every namespace level from the root's own PID \
        namespace down, ppid, pgid, sid, state (zombie exit status included), threads, argv, \
        environment, working directory, credentials, the child-subreaper flag (read inside each \
        process by ptrace; inferred from the tree's shape where ptrace is refused) and what each \
        process is ("recorded": program, command line, creation order). The tree is read until \
        two passes agree, with start times compared to catch PID reuse, and what is written is \
        checked to be a tree `run` accepts; otherwise record refuses, naming the process.

        Programs that overwrite their command line with a process title (nginx, PostgreSQL, \
        sshd) are detected: give such a process its argv with --args PID='["prog", "arg"]'. \
        A fork that never exec'd (nginx and PostgreSQL workers) is recorded holding, or \
        "spawn": "payload" with --spawn-by-payload.

        A tmux server is asked for its sessions, windows and panes (before any freeze) and \
        recorded with them ("tmux"): run starts it again and tmux forks each pane at its \
        recorded PID. A util-linux script's shell is forked again by script the same way (a \
        typescript it writes is then appended to: -a). Other holders of a pty master are \
        warned about.

        Environments hold secrets: -o FILE is created with mode 0600 unless --no-env is given, \
        and standard output is refused when it is a file others may read.

        Examples:
          rootless-restore record 4242 -o job.json
          rootless-restore record --freeze --spawn-by-payload $(pgrep -o mpirun) -o mpi.json

        Exit codes: 0 recorded; 64 usage (a bad --args, an unsafe standard output); 66 the tree \
        cannot be read or would not restore (the message says which process and why); 128+N \
        interrupted by signal N (every process is left as it was).
        """)

    @Argument(help: "PID of the tree's root, as this shell sees it.")
    var pid: Int32

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to FILE instead of stdout.", valueName: "FILE"))
    var output: String?

    @Flag(help: "Leave environments out.")
    var noEnv = false

    @Flag(help: "Hold the tree still while reading it (ptrace stops: no job-control stop a shell could see) and resume it after, also on errors and signals; states are recorded as they were before.")
    var freeze = false

    @Option(name: .customLong("args"), parsing: .singleValue,
            help: ArgumentHelp("The argv of a process whose command line was overwritten (a process title): PID='[\"prog\", \"arg\", ...]' (host PID, JSON array). Repeatable.", valueName: "PID=JSON"))
    var argvOverrides: [String] = []

    @Option(name: .customLong("hold"), parsing: .singleValue,
            help: ArgumentHelp("Record this process (host PID) holding instead of running its program: for launchers such as `unshare --fork` that only wait for the children the restore rebuilds. Repeatable.", valueName: "PID"))
    var holdPids: [Int32] = []

    @Flag(help: "Record what can be read, warn about the rest, instead of refusing.")
    var partial = false

    @Flag(help: "Mark every process but the root \"spawn\": \"payload\": on restore the root's payload forks them again and the fork supervisor gives them their recorded PIDs (for launchers such as mpirun).")
    var spawnByPayload = false

    @Flag(help: "Do not record the jobs of interactive bash shells for job replay: their processes are then restored as children the shell did not fork, and the restored shell's `jobs` lists none of them.")
    var noJobReplay = false

    @Option(help: .hidden)
    var holdFrozen: Double = 0

    @Flag(name: .shortAndLong, help: "Print no warnings.")
    var quiet = false

    func run() throws {
        var options = RecordOptions()
        options.includeEnv = !noEnv
        options.freeze = freeze
        options.partial = partial
        options.spawnByPayload = spawnByPayload
        options.jobReplay = !noJobReplay
        guard holdFrozen.isFinite, holdFrozen >= 0, holdFrozen <= 600 else { throw ValidationError("--hold-frozen must be 0...600 seconds") }
        options.holdFrozenSeconds = holdFrozen
        // Tells a test the hold began (no injection in flight), whatever -q says.
        options.onHoldFrozen = { n in writeStderr("rootless-restore: record: holding \(n) processes frozen\n") }
        options.hold = Set(holdPids)
        for given in argvOverrides {
            guard let eq = given.firstIndex(of: "="), let pid = Int32(given[..<eq]), pid > 0,
                  case .array(let items)? = (try? JSONValue.parse(Array(given[given.index(after: eq)...].utf8)))?.kind,
                  !items.isEmpty else {
                throw ValidationError("--args \(given): expected PID='[\"program\", \"arg\", ...]' (a PID, '=', a non-empty JSON array of strings)")
            }
            var argv: [String] = []
            for item in items {
                guard case .string(let s) = item.kind else { throw ValidationError("--args \(given): every element must be a string") }
                argv.append(s)
            }
            options.argvOverrides[pid] = argv
        }
        if output == nil && !noEnv, let why = Self.unsafeStandardOutput() {
            writeStderr("rootless-restore: error: record: \(why); the tree holds environments, which hold secrets: write it with -o FILE (created 0600), leave environments out with --no-env, or make the file private first (chmod 600)\n")
            throw ExitCode(64)
        }
        do {
            let (tree, warnings, notes) = try TreeRecorder.record(root: pid, options: options)
            let text = TreeEncoder.encode(tree, comment: "recorded by rootless-restore record \(pid)")
            // Created new (O_EXCL|O_NOFOLLOW, never an old file or a planted link) with the
            // mode set explicitly, since environments hold secrets.
            try OutputFile.write(text, to: output ?? "-", mode: noEnv ? 0o644 : 0o600, what: "the tree", kind: .input)
            if !quiet {
                for w in warnings { writeStderr("rootless-restore: warning: \(w)\n") }
                for n in notes { writeStderr("rootless-restore: note: \(n)\n") }
            }
        } catch {
            throw fail(error)
        }
    }

    /// Why standard output is no place for secrets: a regular file others may read (the
    /// shell's redirect created it with the umask's mode, not 0600). nil when it is fine.
    static func unsafeStandardOutput() -> String? {
        var st = stat()
        guard fstat(1, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let mode = st.st_mode & 0o777
        guard mode & 0o077 != 0 else { return nil }
        return "standard output is a file of mode \(String(mode, radix: 8)) that others may read"
    }
}
