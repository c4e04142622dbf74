import ArgumentParser
import Glibc
import RestoreEngine
import RestoreModel

public struct RootlessRestore: ParsableCommand {
    public static let version = "0.1.0"

    /// Every command names itself (commandName): otherwise the parser derives the name from
    /// String(describing:) of the type, and each such first cast scans all ~3 700 protocol
    /// conformance records of the static binary, about 1 ms of every start (perf, docs/performance.md).
    public static let configuration = CommandConfiguration(
        commandName: "rootless-restore",
        abstract: "Rebuild a recorded process tree with the same PIDs, parents, groups and sessions, without root.",
        discussion: """
        rootless-restore creates a new user namespace and PID namespace as an ordinary user, \
        maps your uid/gid into it, and recreates every process of tree.json with clone3() and \
        set_tid, so each gets its recorded PID. Then each process runs its payload.

        Examples:
          rootless-restore validate examples/hello/tree.json
          rootless-restore run examples/hello/tree.json
          rootless-restore run --report report.json tree.json

        \(exitCodeHelp)
        """,
        version: "\(version) (libseccomp \(EngineInfo.libseccompVersion))",
        subcommands: [Run.self, Validate.self, Record.self, Diff.self, Check.self])

    public init() {}

    /// The executable's entry point: every command needs /proc (its own state, the restored
    /// processes', the namespace's fresh proc), so without it each says so and exits 77.
    public static func entry() {
        let arguments = Array(CommandLineArguments.current().dropFirst())
        let helpOnly = arguments.isEmpty || arguments.contains { ["-h", "--help", "--version", "help"].contains($0) }
        if !CommandLineArguments.procIsMounted && !helpOnly {
            writeStderr("rootless-restore: error: /proc is not mounted here (/proc/self/status is missing); "
                        + "every command reads process state from /proc, and a restore mounts a fresh one, which the "
                        + "kernel allows only where a proc is already visible. Mount it (mount -t proc proc /proc), "
                        + "or give the chroot or container one (chroot: mount --rbind /proc ROOT/proc; podman: "
                        + "--security-opt unmask=/proc/*)\n")
            Glibc.exit(RestoreError.ExitCode.environment)
        }
        if RunInvocation.runFast(arguments) { return }
        main(arguments)
    }

    static let exitCodeHelp = """
        Exit codes:
          0-255  run: the tree's exit status: PID 1's if the tree has one,
                 else the first top-level process's (128+N: killed by signal N)
          64     usage error
          65     the tree is invalid (the message names the entry)
          66     the tree file cannot be read
          77     this machine or user cannot create the namespaces (see the message)
          125    the restore failed, or its --report or --pin-log could not be written
                 (full filesystem, a name that may not be replaced); the whole
                 namespace was torn down and no partial report was left
          126    a payload could not be executed
          127    a payload's executable was not found
          128+N  the restore was interrupted by signal N; the namespace was torn down
        """
}

/// Reads, parses, validates and plans a tree; every failure is a RestoreError.
struct LoadedTree {
    var tree: ProcessTree
    var plan: RestorePlan
    var pinned: PinnedForks
    /// Server PID -> the generated configuration of each tmux server (its panes leave the tree).
    var tmuxConfigs: [Int32: String] = [:]
    var phases: [(String, Double)]

    init(path: String, criuCores: String? = nil, overrides: LaunchOverrides = LaunchOverrides()) throws {
        var start = MonotonicClock.nanoseconds()
        var phases: [(String, Double)] = []
        func lap(_ name: String) { let now = MonotonicClock.nanoseconds(); phases.append((name, Double(now - start) / 1e6)); start = now }
        // The file's bytes are a temporary, freed before validation and planning.
        tree = try Self.decode(try Self.readTree(path), path: path, criuCores: criuCores)
        if !overrides.isEmpty { tree = try overrides.apply(to: tree, callerEnvironment: Self.callerEnvironment()) }
        lap("parse")
        try TreeValidator.validate(tree)
        lap("validate")
        tree = ShellJobReplay.apply(to: tree, callerEnvironment: Self.callerEnvironment())
        let full = tree
        (tree, pinned) = try PinnedForks.split(full)
        tmuxConfigs = TmuxReplay.configs(in: full)
        plan = try RestorePlanner.plan(tree)
        lap("plan")
        self.phases = phases
    }

    /// This process's environment, KEY=VALUE, for --env-from-caller.
    static func callerEnvironment() -> [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee { out.append(String(cString: entry)); p += 1 }
        return out
    }

    static func readTree(_ path: String) throws -> [UInt8] {
        let fd = path == "-" ? 0 : open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw RestoreError(.input, operation: "open", errno: e, entry: path, message: "cannot open the tree file")
        }
        defer { if fd != 0 { close(fd) } }
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) > TreeParser.maxFileSize {
            throw RestoreError(.invalidTree, operation: "read", entry: path,
                               message: "is \(st.st_size) bytes; tree files are limited to \(TreeParser.maxFileSize) bytes")
        }
        var out: [UInt8] = []
        // Sized once from the file (growing by doubling copied a 60 MB tree several times).
        if (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 { out.reserveCapacity(Int(st.st_size) + 1) }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let (n, e) = SystemCalls.retrying { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if e != 0 {
                throw RestoreError(.input, operation: "read", errno: e, entry: path, message: "cannot read the tree file")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > TreeParser.maxFileSize {
                throw RestoreError(.invalidTree, operation: "read", entry: path,
                                   message: "is larger than the \(TreeParser.maxFileSize)-byte limit for tree files")
            }
        }
        return out
    }
}

/// Prints a RestoreError the way users read it and exits with its documented code.
func fail(_ error: Error) -> ExitCode {
    if let e = error as? RestoreError {
        writeStderr("rootless-restore: error: \(e.description)\n")
        return ExitCode(e.exitCode)
    }
    writeStderr("rootless-restore: error: \(error)\n")
    return ExitCode(RestoreError.ExitCode.restoreFailed)
}

func writeStderr(_ s: String) { writeAll(2, s) }

func writeAll(_ fd: Int32, _ s: String) {
    var bytes = Array(s.utf8)
    var offset = 0
    while offset < bytes.count {
        let (n, _) = SystemCalls.retrying { bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) } }
        if n <= 0 { return }
        offset += n
    }
}
