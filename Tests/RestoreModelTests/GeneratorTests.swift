import Foundation
import RestoreModel
import RestoreTestSupport
import Testing

// Random trees from simulated histories (TreeGenerator): every one must pass the validator,
// be planned, and its plan must simulate (PlanSimulator) to exactly the tree.
// RR_GENERATOR_UNIT_COUNT (default 3000) and RR_GENERATOR_SEED (default 0x5EED) pick the run.

private let environment = ProcessInfo.processInfo.environment
private let unitCount = environment["RR_GENERATOR_UNIT_COUNT"].flatMap { Int($0) } ?? 3000
private let baseSeed: UInt64 = {
    guard let s = environment["RR_GENERATOR_SEED"] else { return 0x5EED }
    if s.hasPrefix("0x") { return UInt64(s.dropFirst(2), radix: 16) ?? 0x5EED }
    return UInt64(s) ?? 0x5EED
}()

/// Plans and simulates one generated tree; returns a failure description or nil.
func checkGenerated(_ g: TreeGenerator.Generated) -> String? {
    func context() -> String {
        "seed \(g.seed)\nhistory:\n" + g.history.map { "  " + $0 }.joined(separator: "\n")
            + "\ntree:\n" + g.tree.processes.map { "  " + describeEntry($0) }.joined(separator: "\n")
    }
    do { try TreeValidator.validate(g.tree) } catch {
        return "the validator rejects a generated tree: \(error)\n\(context())"
    }
    let plan: RestorePlan
    do { plan = try RestorePlanner.plan(g.tree) } catch {
        return "the planner rejects a generated tree: \(error)\n\(context())"
    }
    do { try PlanSimulator.verify(plan, against: g.tree) } catch {
        return "the plan does not simulate to the tree: \(error)\n\(context())\nplan:\n"
            + plan.describe(tree: g.tree, source: "generated")
    }
    return nil
}

func describeEntry(_ e: ProcessEntry) -> String {
    var s = "pid \(e.pid) ppid \(e.ppid) pgid \(e.pgid) sid \(e.sid)"
    if e.state != .running { s += " \(e.state.rawValue)" }
    if let x = e.exitStatus { s += " (\(x))" }
    if e.childSubreaper { s += " subreaper" }
    return s
}

@Suite("tree generator")
struct GeneratorTests {
    @Test("the same seed gives the same tree; different seeds differ")
    func deterministic() {
        let a = TreeGenerator.generate(seed: 42), b = TreeGenerator.generate(seed: 42)
        #expect(a.tree == b.tree)
        #expect(a.history == b.history)
        let others = (43..<53).map { TreeGenerator.generate(seed: $0).tree }
        #expect(others.contains { $0 != a.tree })
    }

    @Test("SplitMix64 gives the published sequence")
    func splitMix() {
        var r = SplitMix64(seed: 1234567)
        // Reference values of splitmix64 seeded with 1234567 (from the published C code).
        #expect(r.next() == 6_457_827_717_110_365_317)
        #expect(r.next() == 3_203_168_211_198_807_973)
        #expect(r.next() == 9_817_491_932_198_370_423)
    }

    @Test("generated trees cover the interesting shapes")
    func coverage() {
        var zombies = 0, stopped = 0, subreapers = 0, treeInits = 0, foreignOrphans = 0, deadGroupLeaders = 0
        var deadSessionLeaders = 0, birthSessions = 0
        for k in 0..<500 {
            let t = TreeGenerator.generate(seed: baseSeed &+ UInt64(k)).tree
            let byPid = Dictionary(uniqueKeysWithValues: t.processes.map { ($0.pid, $0) })
            if t.processes.contains(where: { $0.pid == 1 }) { treeInits += 1 }
            for e in t.processes {
                if e.state == .zombie { zombies += 1 }
                if e.state == .stopped { stopped += 1 }
                if e.childSubreaper { subreapers += 1 }
                if e.pgid != 0 && byPid[e.pgid] == nil { deadGroupLeaders += 1 }
                if e.sid != 0 && byPid[e.sid] == nil { deadSessionLeaders += 1 }
                if let p = byPid[e.ppid] {
                    if p.childSubreaper || p.pid == 1, e.sid != p.sid, e.sid != e.pid { foreignOrphans += 1 }
                    if e.sid != e.pid, e.sid != p.sid, p.sid == p.pid { birthSessions += 1 }
                } else if e.sid != 0, e.sid != e.pid, byPid[1] == nil { foreignOrphans += 1 }
            }
        }
        let counts = ["zombies": zombies, "stopped": stopped, "subreapers": subreapers, "tree inits": treeInits,
                      "orphans in foreign sessions": foreignOrphans, "dead group leaders": deadGroupLeaders,
                      "dead session leaders": deadSessionLeaders, "birth sessions": birthSessions]
        for (what, n) in counts { #expect(n >= 20, "only \(n) \(what) in 500 trees") }
    }

    @Test("every generated tree validates, plans, and simulates to itself")
    func plansEveryGeneratedTree() {
        var failures: [String] = []
        var failed = 0
        for k in 0..<unitCount {
            if let f = checkGenerated(TreeGenerator.generate(seed: baseSeed &+ UInt64(k))) {
                failed += 1
                if failures.count < 3 { failures.append(f) }
            }
        }
        #expect(failed == 0, "\(failed) of \(unitCount) generated trees failed; the first:\n\(failures.joined(separator: "\n\n"))")
    }

    @Test("larger trees with more PIDs", arguments: [0, 1, 2])
    func largerTrees(variant: Int) {
        var options = TreeGenerator.Options()
        options.operations = 300
        options.maxLive = 60
        options.pids = 2...(variant == 0 ? 70 : 5000)
        options.subreaperWeight = variant == 2 ? 10 : 3
        var failures: [String] = []
        var failed = 0
        let n = max(1, unitCount / 10)
        for k in 0..<n {
            let seed = (baseSeed &+ UInt64(k)) ^ (UInt64(variant + 1) << 40)
            if let f = checkGenerated(TreeGenerator.generate(seed: seed, options: options)) {
                failed += 1
                if failures.count < 2 { failures.append(f) }
            }
        }
        #expect(failed == 0, "\(failed) of \(n) larger trees failed; the first:\n\(failures.joined(separator: "\n\n"))")
    }
}
