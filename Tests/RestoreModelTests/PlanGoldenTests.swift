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
