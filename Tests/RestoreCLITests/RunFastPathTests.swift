// The fast path of `run` (RunInvocation.fastParse) must take exactly what swift-argument-parser
// takes, with the same values, and leave everything else to it.

import ArgumentParser
@testable import RestoreCLI
import Testing

@Suite("run's fast path agrees with the argument parser")
struct RunFastPathTests {
    /// What the parser makes of `arguments` (a `run` command), as plain values.
    static func parsed(_ arguments: [String]) throws -> RunInvocation {
        let command = try RootlessRestore.parseAsRoot(arguments)
        let run = try #require(command as? Run, "\(arguments) parsed as \(type(of: command))")
        return run.invocation
    }

    @Test("the forms it takes parse to the parser's values, defaults included")
    func sameValues() throws {
        let forms: [[String]] = [
            ["run", "tree.json"],
            ["run", "--quiet", "tree.json"],
            ["run", "tree.json", "-q"],
            ["run", "-v", "tree.json"],
            ["run", "--verbose", "--report", "r.json", "tree.json"],
            ["run", "--report", "r.json", "--quiet", "job-%h.json"],
            ["run", "tree.json", "--report", "/tmp/r.json"],
            ["run", "run"],
        ]
        for form in forms {
            let fast = try #require(RunInvocation.fastParse(form), "\(form) should take the fast path")
            #expect(fast == (try Self.parsed(form)), "\(form)")
        }
    }

    @Test("everything else goes to the parser")
    func leavesTheRest() throws {
        let others: [[String]] = [
            [], ["run"], ["--help"], ["run", "--help"], ["run", "-h"], ["help", "run"], ["run", "help"],
            ["validate", "tree.json"], ["--quiet", "run", "tree.json"], ["run", "-"], ["run", ""],
            ["run", "a.json", "b.json"], ["run", "--quiet", "--quiet", "tree.json"], ["run", "-qv", "tree.json"],
            ["run", "--report=r.json", "tree.json"], ["run", "--report", "tree.json"], ["run", "--report", "-", "tree.json"],
            ["run", "--report", "a", "--report", "b", "tree.json"], ["run", "tree.json", "--", "x"],
            ["run", "--root-args", "tree.json", "--", "x"], ["run", "--pid-method", "dance", "tree.json"],
            ["run", "--step-timeout", "5", "tree.json"], ["run", "--generate-completion-script", "bash"],
        ]
        for form in others { #expect(RunInvocation.fastParse(form) == nil, "\(form) should go to the parser") }
    }

    @Test("a value the parser's validation refuses is refused by the fast path's too (it then falls back)")
    func validationAgrees() throws {
        let form = ["run", "-q", "-v", "tree.json"]
        let fast = try #require(RunInvocation.fastParse(form))
        #expect(throws: ValidationError.self) { try fast.validate() }
        #expect(throws: (any Error).self) { _ = try RootlessRestore.parseAsRoot(form) }
        #expect(!RunInvocation.runFast(form), "runFast must not run what validation refuses")
    }
}
