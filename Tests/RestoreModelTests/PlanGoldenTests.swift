import Foundation
import RestoreModel
import RestoreTestSupport
import Testing

// The planner's output must not change when its algorithms do: plans (as `validate` prints
// them) or refusals of generated and adversarial trees, against digests recorded before the
// planner's quadratic corners were made linear (issue 14 item 9).
// RR_WRITE_PLAN_GOLDENS=FILE records the digests instead (only when the change is meant).

/// FNV-1a, 64 bits: stable on every platform, unlike Hasher.
func fnv1a(_ text: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return String(h, radix: 16)
}

/// Every case: name and tree.
func planGoldenCases() -> [(String, ProcessTree)] {
    var cases: [(String, ProcessTree)] = []
    for shape in AdversarialTrees.shapes {
        for n in [2, 3, 4, 7, 20, 61, 200] { cases.append(("\(shape)-\(n)", AdversarialTrees.tree(shape, count: n))) }
    }
    for k in 0..<UInt64(1500) {
        cases.append(("seed-\(k)", TreeGenerator.generate(seed: 0x60_1DE7 &+ k).tree))
    }
    for variant in 0..<3 {
        var options = TreeGenerator.Options()
        options.operations = 300
        options.maxLive = 60
        options.pids = 2...(variant == 0 ? 70 : 5000)
        options.subreaperWeight = variant == 2 ? 10 : 3
        for k in 0..<UInt64(150) {
            let seed = (0x60_1DE7 &+ k) ^ (UInt64(variant + 1) << 40)
            cases.append(("large\(variant)-\(k)", TreeGenerator.generate(seed: seed, options: options).tree))
        }
    }
    // Refusals too: generated trees with one entry moved to another parent, session or group
    // (those the validator passes; the planner refuses many, and its diagnosis names why).
    for k in 0..<UInt64(600) {
        var rng = SplitMix64(seed: 0xBAD_7EE5 &+ k)
        var tree = TreeGenerator.generate(seed: 0x0DD_5EED &+ k).tree
        guard tree.processes.count > 1 else { continue }
        let i = rng.below(tree.processes.count), j = rng.below(tree.processes.count)
        switch rng.below(4) {
        case 0: tree.processes[i].ppid = tree.processes[j].pid
        case 1: tree.processes[i].sid = tree.processes[j].sid
        case 2: tree.processes[i].pgid = tree.processes[j].pgid
        default: tree.processes[i].childSubreaper.toggle()
        }
        guard (try? TreeValidator.validate(tree)) != nil else { continue }
        cases.append(("mutated-\(k)", tree))
    }
    for shape in AdversarialTrees.shapes {
        // Without the subreaper, or with the daemons' flags gone, orphans cannot be placed.
        var tree = AdversarialTrees.tree(shape, count: 20)
        for i in tree.processes.indices { tree.processes[i].childSubreaper = false }
        if (try? TreeValidator.validate(tree)) != nil { cases.append(("\(shape)-no-subreapers", tree)) }
    }
    return cases
}

func planDigest(_ tree: ProcessTree) -> String {
    do {
        return fnv1a(try RestorePlanner.plan(tree).describe(tree: tree, source: "golden"))
    } catch {
        return "refused-" + fnv1a("\(error)")
    }
}

@Suite("plan goldens")
struct PlanGoldenTests {
    @Test("the adversarial shapes plan, and their plans simulate to the trees", arguments: AdversarialTrees.shapes)
    func adversarialShapesSimulate(shape: String) throws {
        for n in [2, 7, 61, 400] {
            let tree = AdversarialTrees.tree(shape, count: n)
            try TreeValidator.validate(tree)
            try PlanSimulator.verify(try RestorePlanner.plan(tree), against: tree)
        }
    }

    @Test("plans and refusals are the ones recorded before the planner was made linear")
    func unchanged() throws {
        let lines = planGoldenCases().map { "\($0.0) \(planDigest($0.1))" }
        if let path = ProcessInfo.processInfo.environment["RR_WRITE_PLAN_GOLDENS"] {
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        let url = try #require(Bundle.module.url(forResource: "Fixtures/plan-goldens", withExtension: "txt"))
        let recorded = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(recorded.count == lines.count, "the cases changed: \(recorded.count) recorded, \(lines.count) now")
        let changed = zip(recorded, lines).filter { $0 != $1 }
        #expect(changed.isEmpty, "\(changed.count) plans changed; the first: \(changed.prefix(5).map { "\($0.0) -> \($0.1)" })")
    }
}
