/// What a launcher changes in a recorded tree when it restores it: the arguments it gives the
/// root now (Open MPI's orted gets a new job id, new peer URIs and ports on every launch) and
/// the environment variables that describe the new job (SLURM_*, OMPI_*, PMIX_*), taken from
/// the caller instead of the recording. A pure transformation of the parsed tree, applied before
/// validation and planning, so every check of the tree sees the result.
public struct LaunchOverrides: Sendable, Equatable {
    /// Replaces the root's arguments (argv[1...]); argv[0], the recorded program, stays.
    public var rootArguments: [String]?
    /// Variables whose name starts with one of these come from the caller's environment: the
    /// recorded ones are dropped from every process that has a recorded environment, and the
    /// caller's are added.
    public var environmentPrefixes: [String]

    public init(rootArguments: [String]? = nil, environmentPrefixes: [String] = []) {
        self.rootArguments = rootArguments
        self.environmentPrefixes = environmentPrefixes
    }

    public var isEmpty: Bool { rootArguments == nil && environmentPrefixes.isEmpty }

    /// Problems with the options alone, one message per offending value, before any tree is read.
    public static func problems(environmentPrefixes: [String], option: String = "--env-from-caller") -> [String] {
        environmentPrefixes.compactMap { prefix in
            if prefix.isEmpty { return "\(option) needs a non-empty prefix (an empty one would take the whole environment)" }
            if prefix.contains("=") || prefix.utf8.contains(0) { return "\(option) \(prefix): a variable name prefix cannot contain '=' or NUL" }
            return nil
        }
    }

    /// The processes that have no parent in the tree (ppid 0 or not a PID of the tree).
    public static func roots(of tree: ProcessTree) -> [ProcessEntry] {
        let pids = Set(tree.processes.map(\.pid))
        return tree.processes.filter { $0.ppid == 0 || $0.ppid == $0.pid || !pids.contains($0.ppid) }
    }

    /// The tree with the overrides applied. `callerEnvironment` is the caller's KEY=VALUE list.
    /// Throws (invalidTree, naming the entry) when an override does not fit the tree.
    public func apply(to tree: ProcessTree, callerEnvironment: [String]) throws -> ProcessTree {
        if let problem = Self.problems(environmentPrefixes: environmentPrefixes).first {
            throw RestoreError(.invalidTree, operation: "override", message: problem)
        }
        var out = tree
        if let rootArguments {
            let roots = Self.roots(of: tree)
            guard roots.count == 1, let root = roots.first else {
                let names = roots.prefix(5).map(\.label).joined(separator: ", ")
                throw RestoreError(.invalidTree, operation: "override",
                                   message: "--root-args replaces the arguments of the tree's one root, but the tree has \(roots.count) roots (\(names)\(roots.count > 5 ? ", ..." : "")): restore each subtree from its own file")
            }
            guard let args = root.process?.args, let program = args.first else {
                throw RestoreError.invalid(root.label, "is the tree's root and holds (has no args): --root-args replaces the arguments of a root that runs a program")
            }
            guard !root.spawnedByPayload else {
                throw RestoreError.invalid(root.label, "is the tree's root but is marked \"spawn\": \"payload\": nothing would exec the new arguments")
            }
            if let bad = rootArguments.first(where: { $0.utf8.contains(0) }) {
                throw RestoreError(.invalidTree, operation: "override", message: "--root-args: argument \(bad.debugDescription) contains NUL")
            }
            let i = tree.processes.firstIndex { $0.index == root.index }!
            out.processes[i].process!.args = [program] + rootArguments
        }
        if !environmentPrefixes.isEmpty {
            func taken(_ entry: String) -> Bool {
                let name = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? entry
                return environmentPrefixes.contains { name.hasPrefix($0) }
            }
            let fromCaller = callerEnvironment.filter(taken)
            for i in out.processes.indices {
                guard let env = out.processes[i].process?.env else { continue }
                out.processes[i].process!.env = env.filter { !taken($0) } + fromCaller
            }
        }
        return out
    }
}

extension LaunchOverrides {
    /// A tree path as a launcher passes it to every node: `%h` is this host's short name (up to
    /// the first dot), `%%` a literal `%`. Other `%` sequences are refused, so a typo does not
    /// silently name another file.
    public static func expandTreePath(_ path: String, hostname: String) throws -> String {
        let short = hostname.split(separator: ".", maxSplits: 1).first.map(String.init) ?? hostname
        var out = ""
        var it = path.makeIterator()
        while let c = it.next() {
            guard c == "%" else { out.append(c); continue }
            switch it.next() {
            case "h": out += short
            case "%": out.append("%")
            case let other:
                throw RestoreError(.input, operation: "expand", entry: path,
                                   message: "unknown %-sequence \"%\(other.map(String.init) ?? "")\" in the tree path (%h is the host's short name, %% a literal %)")
            }
        }
        return out
    }
}
