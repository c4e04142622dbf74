// Valid trees of the shapes that once made planning quadratic (issue 14 item 9), each a real
// system's pattern repeated: the same shapes as scripts/bench/trees.py, which measures them
// at 10^4 to 10^6 processes. Here they are small, for tests that compare plans.

import RestoreModel

public enum AdversarialTrees {
    /// trees.py's shapes that matter to the planner (its `seccomp` shape only to the compiler).
    public static let shapes = ["flat", "chain", "dead-sessions", "subreaper-sessions", "daemons",
                                "setsid-chain", "group-moves", "group-cycles", "cross-groups", "threads"]

    /// About `count` processes of `shape`, in the order trees.py writes them.
    public static func tree(_ shape: String, count n: Int) -> ProcessTree {
        var entries: [ProcessEntry] = []
        func p(_ pid: Int32, _ ppid: Int32, _ pgid: Int32, _ sid: Int32, subreaper: Bool = false,
               threads: [Int32] = []) {
            entries.append(ProcessEntry(index: entries.count, pid: pid, ppid: ppid, pgid: pgid, sid: sid,
                                        threads: threads, childSubreaper: subreaper))
        }
        let l: Int32 = 100
        let units2 = Int32(max(1, (n - 1) / 2)), units3 = Int32(max(1, (n - 1) / 3))
        switch shape {
        case "flat":
            for i in 0..<Int32(n) { p(100 + i, i == 0 ? 0 : 100, 100, 100) }
        case "chain":
            for i in 0..<Int32(n) { p(100 + i, i == 0 ? 0 : 99 + i, 100, 100) }
        case "dead-sessions", "subreaper-sessions":
            var reaper: Int32 = 0
            if shape == "subreaper-sessions" { p(l, 0, l, l, subreaper: true); reaper = l }
            for k in 0..<units2 {
                let s = 101 + 3 * k
                p(s + 1, reaper, s, s)
                p(s + 2, reaper, s + 2, s)
            }
        case "daemons":
            p(l, 0, l, l)
            for k in 0..<units2 {
                let d = 101 + 2 * k
                p(d, 0, d, d, subreaper: true)
                p(d + 1, d, l, l)
            }
        case "setsid-chain":
            p(l, 0, l, l)
            var prev = l
            for k in 0..<units2 {
                let c = 101 + 2 * k
                p(c, prev, c, c)
                p(c + 1, c, prev, prev)
                prev = c
            }
        case "group-moves":
            p(l, 0, l, l)
            for k in 0..<units3 {
                let a = 101 + 3 * k
                p(a, l, a + 1, l)
                p(a + 1, l, a + 1, l)
                p(a + 2, a, a, l)
            }
        case "group-cycles":
            p(l, 0, l, l)
            for k in 0..<units3 {
                let a = 101 + 3 * k
                p(a, l, a + 1, l)
                p(a + 1, l, a, l)
                p(a + 2, l, a + 2, l)
            }
        case "cross-groups":
            p(l, 0, l, l)
            var prev = l
            for k in 0..<units2 {
                let t = 101 + 2 * k
                p(t, l, t, l)
                p(t + 1, t, prev, l)
                prev = t
            }
        case "threads":
            p(l, 0, l, l)
            for k in 0..<Int32(max(1, n - 1)) {
                let t = 104 + 4 * k
                p(t, l, l, l, threads: [t, t + 1, t + 2, t + 3])
            }
        default:
            preconditionFailure("AdversarialTrees: unknown shape \(shape)")
        }
        return ProcessTree(processes: entries)
    }
}
