import ArgumentParser
import Glibc
import RestoreCheck
import RestoreEngine
import RestoreModel

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Restore a process tree in a new user and PID namespace and wait for it.",
        discussion: """
        Every process of the tree is created with its recorded PID, parent, process group and \
        session, and checked against /proc, before any payload starts. A process with `args` \
        then execs them; one without holds (stays idle until signalled). If the tree has PID 1, \
        it is the namespace init and run forwards signals to it; otherwise run's own init is \
        PID 1: it delivers SIGINT, SIGTERM, SIGHUP and SIGQUIT to every process of the \
        namespace and SIGUSR1 and SIGUSR2 to the top-level processes, reaps what it adopts, \
        and ends when every process has exited.
        A failure at any point, or Ctrl-C during the restore, tears the whole namespace down.

        Recorded terminals come back as ptys of the restore's own devpts instance: each \
        session leader gets its controlling terminal, descriptors 0-2 that had it get the pty, \
        the foreground group is as recorded. run holds the ptys (their output is discarded, \
        nothing is typed); --shell-job connects the one of the tree's foreground session to \
        your terminal instead:
          rootless-restore run --shell-job shell.json

        For launchers (an MPI daemon launch agent, srun, ssh), which start the same command on \
        every node with new arguments and a new job's environment: %h in TREE is the host's \
        short name; --root-args makes the words after `--` the root's arguments (argv[1...]; \
        the recorded program stays argv[0]); --env-from-caller PREFIX takes every variable \
        whose name starts with PREFIX from run's own environment instead of the recording \
        (recorded ones dropped, the caller's added, in every process with a recorded env).
          rootless-restore run --root-args --env-from-caller SLURM_ job-%h.json -- ARGS...

        \(RootlessRestore.exitCodeHelp)
        """)

    @Argument(help: "The tree to restore (tree.json, version 1, see docs/tree-format.md; or CRIU pstree JSON, see docs/record-and-criu.md). '-' reads stdin. %h is replaced by the host's short name, %% by %.")
    var tree: String

    @Flag(name: .long, help: "Replace the arguments of the tree's root (argv[1...], the recorded program stays) with the words after `--`. Refused when the tree has several roots or its root holds.")
    var rootArgs = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("With --root-args: the root's new arguments.", valueName: "root-arg"))
    var newRootArguments: [String] = []

    @Option(name: .long, help: ArgumentHelp("Take the environment variables whose name starts with PREFIX from this command's environment instead of the recording (e.g. SLURM_, OMPI_, PMIX_, HYDRA_); repeatable.", valueName: "PREFIX"))
    var envFromCaller: [String] = []

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Print the plan summary and the time of each phase on stderr.")
    var verbose = false

    @Option(name: .long, help: ArgumentHelp("Once every process is restored and released, write a JSON report (PIDs at every level, ppid, pgid, sid, state, read back from /proc, and the time per phase) to FILE, or '-' for stdout.", valueName: "FILE"))
    var report: String?

    @Option(name: .long, help: ArgumentHelp("How PIDs are chosen: clone3 (set_tid, Linux 5.5+, race-free), dance (write ns_last_pid then fork; for older kernels, serialised and verified), or auto (clone3 when the kernel has it).", valueName: "METHOD"))
    var pidMethod: PidMethod = .auto

    @Option(name: .long, help: ArgumentHelp("When a payload's fork gets another PID than the recording says, becomes another process than recorded, or a recorded one is never forked (\"spawn\": \"payload\" processes): warn and go on, or error: kill the namespace and exit 125.", valueName: "POLICY"))
    var pinMismatch: PinMismatchPolicy = .warn

    @Option(name: .long, help: ArgumentHelp("A payload's fork that a signal interrupts before the fork supervisor has received it: restart it, as a real fork does (a payload process that forks is then traced by the supervisor from its first fork on: its TracerPid is set and a debugger cannot attach while it runs; it is detached while stopped), or fail: trace nothing, and such a fork fails with EINTR under a signal handler without SA_RESTART (dash: \"Cannot fork\").", valueName: "restart|fail"))
    var interruptedForks: InterruptedForkPolicy = .restart

    @Option(name: .long, help: ArgumentHelp("Log every PID the fork supervisor hands out, as JSON lines, to FILE.", valueName: "FILE"))
    var pinLog: String?

    @Option(name: .long, help: ArgumentHelp("Seconds a payload may fork nothing while recorded PIDs of its children are still to come before they are reported missing (an error with --pin-mismatch error); above 0, at most 86400.", valueName: "SECONDS"))
    var pinWait: Double = Double(PinLedger.missingAfterNanoseconds) / 1e9

    @Option(name: .long, help: ArgumentHelp("The tree is a CRIU pstree: read task states and zombie exit statuses from the decoded core-<PID>.json files in DIR.", valueName: "DIR"))
    var criuCores: String?

    @Option(name: .long, help: ArgumentHelp("Map inner uids to outer uids through newuidmap: INNER:OUTER:COUNT (util-linux unshare's form), repeatable, or auto: your uid as 0 plus your first /etc/subuid range from 1. Replaces the tree's uidMappings.", valueName: "inner:outer:count|auto"), transform: parseMapRequest)
    var mapUsers: [IDMapRequest] = []

    @Option(name: .long, help: ArgumentHelp("The same for gids, through newgidmap and /etc/subgid; a subgid range also allows setgroups (additionalGids). Replaces the tree's gidMappings.", valueName: "inner:outer:count|auto"), transform: parseMapRequest)
    var mapGroups: [IDMapRequest] = []

    @Flag(name: .long, help: "Connect the restored terminal of the tree's foreground session (the session of its first process, or its only terminal) to this terminal, as CRIU's --shell-job: a restored bash, tmux server or script session is used from here. This terminal is in raw mode until run ends; window size changes are passed on. Needs standard input to be a terminal.")
    var shellJob = false

    @Option(name: .long, help: .hidden)
    var occupyPid: Int32?

    @Option(name: .long, help: .hidden)
    var noiseForkers: Int = 0

    @Option(name: .long, help: .hidden)
    var testingFault: TestingFault = .none

    @Option(name: .long, help: ArgumentHelp("Seconds one restore step may take before the restore is declared stuck (above 0, at most 86400).", valueName: "SECONDS"))
    var stepTimeout: Double = 30
    static let maxStepTimeout: Double = 86_400

    /// The values as one plain struct: what `validate` and `run` work on, and what the fast
    /// path (RunInvocation.fastParse) builds without the parser.
    var invocation: RunInvocation {
        RunInvocation(tree: tree, rootArgs: rootArgs, newRootArguments: newRootArguments, envFromCaller: envFromCaller,
                      quiet: quiet, verbose: verbose, report: report, pidMethod: pidMethod, pinMismatch: pinMismatch,
                      interruptedForks: interruptedForks, pinLog: pinLog, pinWait: pinWait, criuCores: criuCores, mapUsers: mapUsers, mapGroups: mapGroups,
                      shellJob: shellJob, occupyPid: occupyPid, noiseForkers: noiseForkers, testingFault: testingFault,
                      stepTimeout: stepTimeout)
    }

    func validate() throws { try invocation.validate() }

    func run() throws { try invocation.run() }
}

/// `run`'s values, as parsed; the defaults are Run's (CLITests compares the two parsers).
struct RunInvocation: Equatable {
    var tree: String
    var rootArgs = false
    var newRootArguments: [String] = []
    var envFromCaller: [String] = []
    var quiet = false
    var verbose = false
    var report: String?
    var pidMethod: PidMethod = .auto
    var pinMismatch: PinMismatchPolicy = .warn
    var interruptedForks: InterruptedForkPolicy = .restart
    var pinLog: String?
    var pinWait: Double = Double(PinLedger.missingAfterNanoseconds) / 1e9
    var criuCores: String?
    var mapUsers: [IDMapRequest] = []
    var mapGroups: [IDMapRequest] = []
    var shellJob = false
    var occupyPid: Int32?
    var noiseForkers: Int = 0
    var testingFault: TestingFault = .none
    var stepTimeout: Double = 30
    static let maxStepTimeout = Run.maxStepTimeout

    /// Every value is checked here, before anything is created.
    func validate() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other") }
        guard stepTimeout.isFinite, stepTimeout > 0, stepTimeout <= Self.maxStepTimeout else {
            throw ValidationError("--step-timeout \(stepTimeout): give a number of seconds above 0 and at most \(Int(Self.maxStepTimeout)) (one day)")
        }
        guard pinWait.isFinite, pinWait > 0, pinWait <= Self.maxStepTimeout else {
            throw ValidationError("--pin-wait \(pinWait): give a number of seconds above 0 and at most \(Int(Self.maxStepTimeout)) (one day)")
        }
        if let occupyPid, occupyPid < 2 || occupyPid > LinuxNumbers.pidMaxLimit {
            throw ValidationError("--occupy-pid \(occupyPid): a PID from 2 to \(LinuxNumbers.pidMaxLimit)")
        }
        guard (0...1000).contains(noiseForkers) else { throw ValidationError("--noise-forkers \(noiseForkers): 0 to 1000") }
        for (option, path) in [("--report", report), ("--pin-log", pinLog)] {
            guard let path else { continue }
            do { try OutputFile.checkWritable(path, what: option == "--report" ? "the report" : "the pin log") } catch let e as RestoreError {
                throw ValidationError("\(option) \(path): \(e.message)\(e.errno.map { " (\(ErrnoName.describe($0)))" } ?? "")")
            }
        }
        if pinLog == "-" { throw ValidationError("--pin-log needs a file name; standard output carries the tree's own output") }
        if let criuCores, !isDirectory(criuCores) { throw ValidationError("--criu-cores \(criuCores): not a directory") }
        let problems = IDMapRequest.problems(mapUsers, option: "--map-users") + IDMapRequest.problems(mapGroups, option: "--map-groups")
        if !problems.isEmpty { throw ValidationError(problems.joined(separator: "\n")) }
        if !rootArgs && !newRootArguments.isEmpty {
            throw ValidationError("words after `--` (\(newRootArguments.joined(separator: " "))) are only taken with --root-args")
        }
        if shellJob && isatty(0) != 1 {
            throw ValidationError("--shell-job connects the restored terminal to yours, but standard input is not a terminal (run it from a terminal, or without --shell-job: the restored terminals are then held by run, their output discarded)")
        }
        let envProblems = LaunchOverrides.problems(environmentPrefixes: envFromCaller)
        if !envProblems.isEmpty { throw ValidationError(envProblems.joined(separator: "\n")) }
    }

    var overrides: LaunchOverrides {
        LaunchOverrides(rootArguments: rootArgs ? newRootArguments : nil, environmentPrefixes: envFromCaller)
    }

    func run() throws {
        let loaded: LoadedTree
        do {
            let path = try LaunchOverrides.expandTreePath(tree, hostname: hostName())
            loaded = try LoadedTree(path: path, criuCores: criuCores, overrides: overrides)
        } catch { throw fail(error) }
        var options = RunOptions()
        options.quiet = quiet
        options.verbose = verbose
        if !quiet && isatty(2) == 1 {
            let line = ProgressLine()
            options.onProgress = { line.update($0) }
        }
        options.occupyPid = occupyPid
        options.noiseForkers = noiseForkers
        options.testingFault = testingFault
        options.stepTimeout = stepTimeout
        options.pidMethod = pidMethod
        options.pinned = loaded.pinned
        options.tmuxConfigs = loaded.tmuxConfigs
        options.pinMismatch = pinMismatch
        options.interruptedForks = interruptedForks
        options.pinLogPath = pinLog
        options.pinWaitNanoseconds = UInt64(pinWait * 1e9)
        options.mapUsers = mapUsers
        options.mapGroups = mapGroups
        if shellJob {
            do { options.shellJobTerminal = try ShellJob.terminal(of: loaded.tree) } catch { throw fail(error) }
        }
        let reportPath = report
        let verbose = self.verbose
        options.onReady = { report in
            // A report that cannot be written completely fails the restore (torn down, 125):
            // its appearance is the readiness signal, so a partial one must never appear.
            if let reportPath { try OutputFile.write(report.json(), to: reportPath, what: "the report") }
            if verbose {
                let phases = report.phases.map { "\($0.0) \(Double(Int($0.1 * 10)) / 10) ms" }.joined(separator: ", ")
                writeStderr("rootless-restore: restored \(report.processes.count) processes with \(report.helpers.count) helpers (\(phases))\n")
            }
        }
        if verbose {
            writeStderr("rootless-restore: \(loaded.tree.processes.count) processes, \(loaded.plan.helperCount) helpers, \(loaded.plan.steps.count) steps\n")
        }
        let status: Int32
        do {
            status = try RestoreSession(tree: loaded.tree, plan: loaded.plan, options: options).run(phases: loaded.phases)
        } catch var error as RestoreError where (error.kind == .environment && error.operation != "clone3") || error.operation.hasPrefix("mount") {
            // A namespace step the kernel refused: say why in the user's terms, by trying the
            // cheap part of `check` (single-threaded still, and the namespace is torn down).
            // Not for `--pid-method clone3` without clone3 (operation "clone3"): that refusal
            // comes from the probe before any namespace and already says what to do.
            error.message += "\n" + EnvironmentCheck.explainNamespaceFailure()
            throw fail(error)
        } catch {
            throw fail(error)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

extension PidMethod: ExpressibleByArgument {}
extension TestingFault: ExpressibleByArgument {}

/// The kernel's host name (UTS namespace), as `hostname` prints it.
func hostName() -> String {
    var u = utsname()
    uname(&u)
    return withUnsafeBytes(of: &u.nodename) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
}

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// `--map-users` / `--map-groups` values: inner:outer:count or auto.
func parseMapRequest(_ text: String) throws -> IDMapRequest {
    do { return try IDMapRequest.parse(text) } catch let e as RestoreError { throw ValidationError(e.message) }
}
extension PinMismatchPolicy: ExpressibleByArgument {}
extension InterruptedForkPolicy: ExpressibleByArgument {}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a tree and print its restore plan without creating anything.",
        discussion: "Exit status 0 when the tree is valid, 65 when it is not (the message names the entry), 66 when it cannot be read.")

    @Argument(help: "The tree to check (tree.json or CRIU pstree JSON). '-' reads stdin.")
    var tree: String

    @Option(name: .long, help: ArgumentHelp("The tree is a CRIU pstree: read task states and zombie exit statuses from the decoded core-<PID>.json files in DIR.", valueName: "DIR"))
    var criuCores: String?

    @Flag(name: .shortAndLong, help: "Print nothing; only the exit status tells.")
    var quiet = false

    func run() throws {
        do {
            let loaded = try LoadedTree(path: tree, criuCores: criuCores)
            try SeccompCompiler.check(loaded.tree)
            if !quiet { writeAll(1, loaded.plan.describe(tree: loaded.tree, source: tree)) }
        } catch {
            throw fail(error)
        }
    }
}
