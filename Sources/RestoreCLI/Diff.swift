import ArgumentParser
import Glibc
import RestoreModel

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two process trees field by field, per PID.",
        discussion: """
        A and B are tree.json files (e.g. a recording and a `record` of its restore) or CRIU \
        pstree JSON (`crit decode -i pstree.img --pretty`). Processes are matched by pid; for \
        each, nspid, ppid, pgid, sid, state, exitStatus, threads, args, cwd, user, terminal \
        (the session whose terminal it controls or has on fds 0-2, its foreground group and its modes; \
        terminal ids are names), shellJobs (an interactive bash's jobs) and tmux (a server's sessions, \
        windows and panes) are compared (env with --env). Every difference is listed as `pid N FIELD: A ... | B ...`.

        A process whose parent is not in its tree (ppid 0 or an unrecorded PID) hangs under \
        the namespace's PID 1 once restored: when both sides have their parent outside their \
        tree, the ppids count as equal (--exact-top-ppid compares the numbers).

        --restored says B was recorded from a restore of A, and leaves out what a restore does \
        not reproduce by design: args, env and cwd of processes that hold or are stopped in A \
        (they have not exec'd yet), threads and user of processes stopped in A (set up when \
        they are continued), threads of processes that run args in A (their payload starts \
        its own), and fields A leaves to the runtime's default.

        Examples:
          rootless-restore record 4242 -o job.json
          rootless-restore run --report report.json job.json &
          rootless-restore record <host pid of the restored 4242> -o restored.json
          rootless-restore diff --restored job.json restored.json

        Exit codes: 0 the trees are the same; 1 they differ (the differences are listed); \
        64 usage error; 65 a tree is invalid; 66 a tree cannot be read.
        """)

    @Argument(help: "The first tree (tree.json or CRIU pstree JSON). '-' reads stdin.")
    var a: String

    @Argument(help: "The second tree.")
    var b: String

    @Flag(help: "Compare environments too.")
    var env = false

    @Flag(help: "B was recorded from a restore of A: ignore what a restore does not reproduce (see above).")
    var restored = false

    @Flag(help: "Compare the ppid of processes whose parent is outside the tree as numbers.")
    var exactTopPpid = false

    @Option(name: .long, help: ArgumentHelp("Do not compare FIELD (nspid, ppid, pgid, sid, state, exitStatus, threads, args, env, cwd, user, terminal, shellJobs, tmux); repeat or separate with commas.", valueName: "FIELD"))
    var ignore: [String] = []

    @Option(name: .long, help: ArgumentHelp("Decoded core-<PID>.json files for the input that is a CRIU pstree (task state, zombie exit status).", valueName: "DIR"))
    var criuCores: String?

    @Flag(name: .shortAndLong, help: "Print nothing; only the exit status tells.")
    var quiet = false

    func ignoredFields() throws -> Set<TreeDiff.Field> {
        var out = Set<TreeDiff.Field>()
        for name in ignore.flatMap({ $0.split(separator: ",") }) {
            let trimmed = String(name.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
            guard let f = TreeDiff.Field.allCases.first(where: { $0.rawValue.lowercased() == trimmed.lowercased() }) else {
                throw ValidationError("--ignore: unknown field \"\(trimmed)\"; fields are "
                                      + TreeDiff.Field.allCases.map(\.rawValue).joined(separator: ", "))
            }
            out.insert(f)
        }
        return out
    }

    func validate() throws {
        if a == "-" && b == "-" { throw ValidationError("only one of A and B can be '-' (standard input)") }
        _ = try ignoredFields()
    }

    func run() throws {
        let options = TreeDiff.Options(compareEnv: env, exactTopPPid: exactTopPpid, restored: restored,
                                       ignored: try ignoredFields())
        let treeA: ProcessTree, treeB: ProcessTree
        do {
            let bytesA = try LoadedTree.readTree(a), bytesB = try LoadedTree.readTree(b)
            let pstreeA = CRIUImport.isPstree(bytesA), pstreeB = CRIUImport.isPstree(bytesB)
            if let criuCores, !pstreeA && !pstreeB {
                throw RestoreError(.input, operation: "read", entry: criuCores,
                                   message: "--criu-cores was given, but neither A nor B is a CRIU pstree (`crit decode -i pstree.img --pretty`)")
            }
            try Self.refuseReport(bytesA, a)
            try Self.refuseReport(bytesB, b)
            treeA = try LoadedTree.decode(bytesA, path: a, criuCores: pstreeA ? criuCores : nil)
            treeB = try LoadedTree.decode(bytesB, path: b, criuCores: pstreeB ? criuCores : nil)
            try Self.checkUnique(treeA, a)
            try Self.checkUnique(treeB, b)
        } catch {
            throw fail(error)
        }
        let differences = TreeDiff.compare(treeA, treeB, options: options)
        if !quiet { writeAll(1, Self.render(differences, treeA, treeB, a: a, b: b, options: options)) }
        if !differences.isEmpty { throw ExitCode(1) }
    }

    /// A `run --report` file lists what /proc showed, but not command lines or thread IDs:
    /// point to `record`, which reads all of it.
    static func refuseReport(_ bytes: [UInt8], _ path: String) throws {
        guard String(decoding: bytes.prefix(256), as: UTF8.self).contains("\"treeHasInit\""),
              let root = try? JSONValue.parse(bytes), case .object(let o) = root.kind,
              o["treeHasInit"] != nil, o["helpers"] != nil else { return }
        throw RestoreError(.invalidTree, operation: "parse", entry: LoadedTree.displayName(path),
                           message: "is a `run --report` file, not a tree: record the restored tree instead "
                               + "(`rootless-restore record HOSTPID -o restored.json`, HOSTPID being the hostPid of its "
                               + "top process in the report) and compare that")
    }

    /// Matching by pid needs each pid once per tree.
    static func checkUnique(_ tree: ProcessTree, _ path: String) throws {
        var seen: [Int32: Int] = [:]
        for p in tree.processes {
            if let first = seen[p.pid] {
                throw RestoreError.invalid(LoadedTree.displayName(path),
                                           "process #\(first) and process #\(p.index) both have pid \(p.pid)")
            }
            seen[p.pid] = p.index
        }
    }

    static func render(_ differences: [TreeDiff.Difference], _ treeA: ProcessTree, _ treeB: ProcessTree,
                       a: String, b: String, options: TreeDiff.Options) -> String {
        var out = "A: \(LoadedTree.displayName(a)) (\(treeA.processes.count) processes)\n"
        out += "B: \(LoadedTree.displayName(b)) (\(treeB.processes.count) processes)\n"
        out += "compared: " + options.comparedFields.map(\.rawValue).joined(separator: ", ")
        if options.restored { out += " (as a restore of A)" }
        out += "\n"
        if differences.isEmpty {
            return out + "no differences\n"
        }
        for d in differences { out += d.description + "\n" }
        let pids = Set(differences.map(\.pid)).count
        out += "\(differences.count) difference\(differences.count == 1 ? "" : "s") in \(pids) process\(pids == 1 ? "" : "es")\n"
        return out
    }
}
