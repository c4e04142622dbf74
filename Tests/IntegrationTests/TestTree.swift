// Trees built in code, written as tree.json (docs/tree-format.md, version 1), and what /proc
// must show once they are restored. Deliberately independent of RestoreModel: the tests state
// the expectation from the file format and the documented rules alone.

import Foundation
import Testing

struct TreeProcess {
    var pid: Int32
    var ppid: Int32
    var pgid: Int32
    var sid: Int32
    /// nil: no `process` object at all, the process holds until signalled.
    var args: [String]? = nil
    var env: [String] = ["PATH=/usr/bin:/bin"]
}

struct TestTree {
    var comment: String
    var processes: [TreeProcess]

    /// How the runtime names an entry in messages: `process #3 (pid 17)` (0-based index).
    func label(ofPid pid: Int32) -> String {
        let index = processes.firstIndex { $0.pid == pid }!
        return "process #\(index) (pid \(pid))"
    }

    func json() -> Data {
        let entries: [[String: Any]] = processes.map { p in
            var entry: [String: Any] = ["pid": Int(p.pid), "ppid": Int(p.ppid),
                                        "pgid": Int(p.pgid), "sid": Int(p.sid)]
            if let args = p.args { entry["process"] = ["args": args, "env": p.env] as [String: Any] }
            return entry
        }
        let tree: [String: Any] = ["version": 1, "comment": comment, "processes": entries]
        return try! JSONSerialization.data(withJSONObject: tree, options: [.prettyPrinted, .sortedKeys])
    }

    /// The namespace view /proc must show: each entry with its pid, pgid, sid, and its ppid,
    /// where a ppid of 0 or outside the tree becomes 1 (the namespace init), and PID 1 itself
    /// has ppid 0. Without a PID 1 in the tree, the runtime's own init is PID 1 (ppid 0).
    var hasPid1: Bool { processes.contains { $0.pid == 1 } }

    func expectedPPid(_ p: TreeProcess) -> Int32 {
        if p.pid == 1 { return 0 }
        return p.ppid != 0 && processes.contains(where: { $0.pid == p.ppid }) ? p.ppid : 1
    }

    // MARK: Shapes used by the tests

    /// A top session leader and `count` holding children with the given PIDs; every 10th
    /// child leads its own process group, the others are in the top's.
    static func flat(top: Int32 = 100, children: [Int32], comment: String) -> TestTree {
        var procs = [TreeProcess(pid: top, ppid: 0, pgid: top, sid: top)]
        for (i, pid) in children.enumerated() {
            procs.append(TreeProcess(pid: pid, ppid: top, pgid: i % 10 == 9 ? pid : top, sid: top))
        }
        return TestTree(comment: comment, processes: procs)
    }

    /// `count` distinct PIDs in 2...maxPid, none equal to `excluding`, deterministic, always
    /// including the values in `including`.
    static func scatteredPids(count: Int, maxPid: Int32, including: [Int32] = [],
                              excluding: Set<Int32> = []) -> [Int32] {
        var chosen = Set<Int32>()
        var ordered: [Int32] = []
        for p in including where !excluding.contains(p) && chosen.insert(p).inserted { ordered.append(p) }
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        while ordered.count < count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let p = Int32(2 + (state >> 33) % UInt64(maxPid - 1))
            if !excluding.contains(p) && chosen.insert(p).inserted { ordered.append(p) }
        }
        return ordered
    }
}

/// Compares the namespace with the tree: every entry exactly once with its pid, ppid, pgid and
/// sid, running as the test user and not a zombie; the runtime's init at PID 1 when the tree
/// has none; nothing else. Records one issue listing every difference.
func verifyNamespace(_ observed: [NamespaceProcess], matches tree: TestTree, user: TestUser,
                     sourceLocation: SourceLocation = #_sourceLocation) {
    var problems: [String] = []
    var byPid: [Int32: [NamespaceProcess]] = [:]
    for p in observed { byPid[p.pid, default: []].append(p) }
    for (pid, list) in byPid where list.count > 1 {
        problems.append("pid \(pid) appears \(list.count) times: \(list)")
    }
    var expectedPids = Set<Int32>()
    for p in tree.processes {
        expectedPids.insert(p.pid)
        let label = tree.label(ofPid: p.pid)
        guard let seen = byPid[p.pid]?.first else {
            problems.append("\(label): missing from /proc")
            continue
        }
        let want = "pid=\(p.pid) ppid=\(tree.expectedPPid(p)) pgid=\(p.pgid) sid=\(p.sid)"
        let got = "pid=\(seen.pid) ppid=\(seen.ppid) pgid=\(seen.pgid) sid=\(seen.sid)"
        if want != got { problems.append("\(label): expected \(want), /proc shows \(got)") }
        if seen.host.state == "Z" || seen.host.state == "X" {
            problems.append("\(label): is a zombie (\(seen))")
        }
        if seen.host.realUid != user.uid {
            problems.append("\(label): runs as host uid \(seen.host.realUid), not \(user.uid) (\(user.name))")
        }
    }
    if !tree.hasPid1 {
        expectedPids.insert(1)
        if let initProcess = byPid[1]?.first {
            if initProcess.ppid != 0 {
                problems.append("the runtime's init (pid 1) has a parent inside the namespace: \(initProcess)")
            }
        } else {
            problems.append("no PID 1 in the namespace (the runtime's init)")
        }
    }
    // The fork supervisor's receiver is the runtime's, a child of its init or of the server
    // beside the tree's PID 1 (nobody's child there), above every PID of the tree.
    let receivers = observed.filter(\.isForkReceiver)
    for r in receivers where r.ppid != (tree.hasPid1 ? observed.first { $0.ppid == 0 && $0.pid != 1 }?.pid ?? -1 : 1) {
        problems.append("the fork supervisor's receiver has an unexpected parent: \(r)")
    }
    if receivers.count > 1 { problems.append("\(receivers.count) fork supervisor receivers: \(receivers)") }
    let extra = observed.filter { !expectedPids.contains($0.pid) && !$0.isForkReceiver }
    if !extra.isEmpty {
        problems.append("\(extra.count) process(es) not in the tree: "
                        + extra.prefix(20).map { "\($0) \($0.host.commandLine)" }.joined(separator: "; "))
    }
    if !problems.isEmpty {
        Issue.record(Comment(rawValue:
            "the namespace does not match the tree (\(problems.count) problem(s), "
            + "\(observed.count) process(es) seen, \(tree.processes.count) in the tree):\n"
            + problems.prefix(40).map { "  " + $0 }.joined(separator: "\n")),
            sourceLocation: sourceLocation)
    }
}

extension RestoreRun {
    /// Restores `tree` as the test user, waits for the report and compares the namespace with
    /// the tree from /proc (`verifyNamespace`); returns what was seen. The caller tears down.
    @discardableResult
    func restoreAndVerify(_ tree: TestTree, timeout: Double = 60,
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> [NamespaceProcess] {
        try startRun(treeFile: try write("tree.json", tree.json()))
        try waitUntilReady(timeout: timeout)
        let seen = namespace()
        verifyNamespace(seen, matches: tree, user: user, sourceLocation: sourceLocation)
        return seen
    }
}
