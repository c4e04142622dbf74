import ArgumentParser

extension RunInvocation {
    /// `run TREE` with any of `-q`/`--quiet`, `-v`/`--verbose`, `--report FILE`, each at most
    /// once and in any order: the form launchers and scripts/bench.sh use, read without
    /// swift-argument-parser. Its first parse costs about 3 ms of every start (reflection over
    /// every option, each first dynamic cast a scan of all ~3 700 protocol conformance records
    /// of the static binary), more than the restore of a small tree. Anything else (other
    /// options, `--`, `-`, `--x=y`, `help`, repeated flags) is nil, and goes to the parser,
    /// which alone prints help, usage and errors; CLITests checks that both parsers agree.
    static func fastParse(_ arguments: [String]) -> RunInvocation? {
        guard arguments.first == "run" else { return nil }
        var tree: String?
        var quiet = false, verbose = false
        var report: String?
        var rest = arguments.dropFirst()
        while let word = rest.popFirst() {
            switch word {
            case "-q", "--quiet":
                if quiet { return nil }
                quiet = true
            case "-v", "--verbose":
                if verbose { return nil }
                verbose = true
            case "--report":
                guard report == nil, let file = rest.popFirst(), Self.isPlainValue(file) else { return nil }
                report = file
            default:
                guard tree == nil, Self.isPlainValue(word), word != "help" else { return nil }
                tree = word
            }
        }
        guard let tree else { return nil }
        return RunInvocation(tree: tree, quiet: quiet, verbose: verbose, report: report)
    }

    /// A value the parser could not take for an option or a subcommand: not empty, no dash first.
    static func isPlainValue(_ word: String) -> Bool { !word.isEmpty && !word.hasPrefix("-") }

    /// Runs a fast-parsed invocation as the parser would have: validated first (a value it
    /// refuses goes back to the parser, which says why), then run, exiting as `main` does.
    /// False: not taken, nothing was done.
    static func runFast(_ arguments: [String]) -> Bool {
        guard let invocation = fastParse(arguments), (try? invocation.validate()) != nil else { return false }
        do { try invocation.run() } catch { RootlessRestore.exit(withError: error) }
        return true
    }
}
