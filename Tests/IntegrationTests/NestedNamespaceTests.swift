// Nested PID namespaces and thread IDs, restored rootless and checked from the host's /proc:
// every process's NSpid, NSpgid and NSsid at every level, threads' TIDs from /proc/PID/task.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// One expected process: its PIDs, groups and sessions at every level, outermost first, as
/// /proc/PID/status shows them from the tree's top namespace down (0: leader not visible).
struct NestedExpectation {
    var nspid: [Int32]
    var nspgid: [Int32]
    var nssid: [Int32]
    var ppid: Int32
}

/// The processes the runtime `root` made, with their columns from the tree's top level down.
func restoredColumns(under root: Int32) -> [(nspid: [Int32], nspgid: [Int32], nssid: [Int32], ppid: Int32, host: HostProcess)] {
    let all = ProcFS.scan()
    guard let runtime = all.first(where: { $0.hostPid == root }) else { return [] }
    let drop = runtime.nspid.count // the tree's top level is one below the runtime's own
    let byHost = Dictionary(all.map { ($0.hostPid, $0) }, uniquingKeysWith: { a, _ in a })
    func descends(_ p: HostProcess) -> Bool {
        var cur = p.hostPPid
        var hops = 0
        while cur > 1, hops < 10_000 {
            if cur == root { return true }
            guard let parent = byHost[cur] else { return false }
            cur = parent.hostPPid
            hops += 1
        }
        return false
    }
    return all.filter(descends).map { p in
        let parentTop = byHost[p.hostPPid].flatMap { $0.nspid.count > drop ? $0.nspid[drop] : nil } ?? 0
        return (Array(p.nspid.dropFirst(drop)), Array(p.nspgid.dropFirst(drop)), Array(p.nssid.dropFirst(drop)), parentTop, p)
    }
}

@Suite("nested PID namespaces and threads", .serialized)
struct NestedNamespaceTests {
    @Test("three levels: a container init, a nested container inside it, workers in both; NSpid/NSpgid/NSsid at every level",
          .enabled(if: Prerequisites.userNamespacesWork))
    func threeLevels() throws {
        let tree = """
        {"version": 1, "comment": "container init 1; nested container 50 (setsid); nested-nested 70 (setsid) and 65 (no setsid: its leaders are invisible inside)",
         "processes": [
          {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1},
          {"pid": 20, "ppid": 1, "pgid": 1, "sid": 1},
          {"pid": 50, "nspid": [50, 1], "newPidNamespace": true, "ppid": 1, "pgid": 50, "sid": 50},
          {"pid": 60, "nspid": [60, 7], "ppid": 50, "pgid": 50, "sid": 50},
          {"pid": 61, "nspid": [61, 8], "ppid": 50, "pgid": 61, "sid": 50},
          {"pid": 62, "nspid": [62, 9], "ppid": 61, "pgid": 61, "sid": 50},
          {"pid": 65, "nspid": [65, 40, 1], "newPidNamespace": true, "ppid": 50, "pgid": 50, "sid": 50},
          {"pid": 66, "nspid": [66, 41, 2], "ppid": 65, "pgid": 50, "sid": 50},
          {"pid": 70, "nspid": [70, 30, 1], "newPidNamespace": true, "ppid": 50, "pgid": 70, "sid": 70},
          {"pid": 71, "nspid": [71, 31, 5], "ppid": 70, "pgid": 70, "sid": 70}
         ]}
        """
        let expected: [NestedExpectation] = [
            .init(nspid: [1], nspgid: [1], nssid: [1], ppid: 0),
            .init(nspid: [20], nspgid: [1], nssid: [1], ppid: 1),
            .init(nspid: [50, 1], nspgid: [50, 1], nssid: [50, 1], ppid: 1),
            .init(nspid: [60, 7], nspgid: [50, 1], nssid: [50, 1], ppid: 50),
            .init(nspid: [61, 8], nspgid: [61, 8], nssid: [50, 1], ppid: 50),
            .init(nspid: [62, 9], nspgid: [61, 8], nssid: [50, 1], ppid: 61),
            .init(nspid: [65, 40, 1], nspgid: [50, 1, 0], nssid: [50, 1, 0], ppid: 50),
            .init(nspid: [66, 41, 2], nspgid: [50, 1, 0], nssid: [50, 1, 0], ppid: 65),
            .init(nspid: [70, 30, 1], nspgid: [70, 30, 1], nssid: [70, 30, 1], ppid: 50),
            .init(nspid: [71, 31, 5], nspgid: [70, 30, 1], nssid: [70, 30, 1], ppid: 70),
        ]
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady(timeout: 60)
        let seen = restoredColumns(under: run.pid)
        #expect(seen.count == expected.count, "expected \(expected.count) processes, /proc shows \(seen.map(\.nspid))")
        for want in expected {
            guard let got = seen.first(where: { $0.nspid == want.nspid }) else {
                Issue.record("NSpid \(want.nspid) missing from /proc (seen: \(seen.map(\.nspid)))")
                continue
            }
            #expect(got.nspgid == want.nspgid, "NSpid \(want.nspid): NSpgid \(got.nspgid), expected \(want.nspgid)")
            #expect(got.nssid == want.nssid, "NSpid \(want.nspid): NSsid \(got.nssid), expected \(want.nssid)")
            #expect(got.ppid == want.ppid, "NSpid \(want.nspid): ppid \(got.ppid), expected \(want.ppid)")
            #expect(got.host.realUid == run.user.uid)
        }
    }

    @Test("a chain of nested PID namespaces as deep as the kernel allows from the caller's level",
          .enabled(if: Prerequisites.userNamespacesWork))
    func deepestChain() throws {
        // MAX_PID_NS_LEVEL is 32 below the initial namespace; the tree's top is one level below
        // the runtime's own level (ProcFS.ownDepth counts levels including the initial one).
        let depth = 33 - ProcFS.ownDepth
        var procs: [String] = []
        var nspid: [Int32] = [1000]
        procs.append("{\"pid\": 1000, \"ppid\": 0, \"pgid\": 1000, \"sid\": 1000}")
        var parent: Int32 = 1000
        for _ in 1..<depth {
            nspid = nspid.map { $0 + 1 } + [1]
            procs.append("{\"pid\": \(nspid[0]), \"nspid\": \(nspid), \"newPidNamespace\": true, \"ppid\": \(parent), \"pgid\": 1000, \"sid\": 1000}")
            parent = nspid[0]
        }
        let tree = "{\"version\": 1, \"processes\": [\n" + procs.joined(separator: ",\n") + "\n]}"
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady(timeout: 60)
        let seen = restoredColumns(under: run.pid)
        let deepest = seen.max { $0.nspid.count < $1.nspid.count }
        #expect(deepest?.nspid == nspid, "deepest restored process: \(deepest?.nspid ?? []), expected \(nspid)")
        #expect(deepest.map { $0.host.nspid.count } == 33, "the deepest process should sit at the kernel's last level")
        #expect(seen.count == depth + 1, "expected \(depth) processes plus the runtime's init, saw \(seen.count)")
        run.tearDown()

        // One level more must be refused before anything is created.
        nspid = nspid.map { $0 + 1 } + [1]
        procs.append("{\"pid\": \(nspid[0]), \"nspid\": \(nspid), \"newPidNamespace\": true, \"ppid\": \(parent), \"pgid\": 1000, \"sid\": 1000}")
        let tooDeep = "{\"version\": 1, \"processes\": [\n" + procs.joined(separator: ",\n") + "\n]}"
        let second = try RestoreRun()
        defer { second.tearDown() }
        try second.startRun(treeFile: try second.write("tree.json", Data(tooDeep.utf8)))
        let end = try second.waitForExit(timeout: 30)
        #expect(end == .exited(65) || end == .exited(77), "a chain one level too deep ended with \(end): \(second.stderr)")
        #expect(second.stderr.contains("levels"), "the message should say why: \(second.stderr)")
    }

    @Test("a holding process with 8 threads gets their scattered TIDs back",
          .enabled(if: Prerequisites.userNamespacesWork))
    func threadsWithScatteredTids() throws {
        let tids: [Int32] = [300, 7, 45_000, 1_000_000, 301, 12, 33_333, 4_000_000, 99]
        let tree = """
        {"version": 1, "processes": [
          {"pid": 300, "ppid": 0, "pgid": 300, "sid": 300, "threads": \(tids)},
          {"pid": 302, "ppid": 300, "pgid": 300, "sid": 300}
        ]}
        """
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady(timeout: 60)
        let seen = restoredColumns(under: run.pid)
        let holder = try #require(seen.first { $0.nspid == [300] }, "pid 300 missing: \(seen.map(\.nspid))")
        let taskDir = "/proc/\(holder.host.hostPid)/task"
        let taskNames = try FileManager.default.contentsOfDirectory(atPath: taskDir)
        var seenTids: [Int32] = []
        for t in taskNames {
            let status = readText("\(taskDir)/\(t)/status")
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { continue }
            let cols = line.dropFirst(6).split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { Int32($0) }
            if let top = cols.dropFirst(ProcFS.ownDepth).first { seenTids.append(top) }
        }
        #expect(seenTids.sorted() == tids.sorted(), "TIDs in /proc/\(holder.host.hostPid)/task: \(seenTids.sorted()), expected \(tids.sorted())")
    }

    @Test("a holding process two namespaces deep gets its threads back with their TIDs at every level",
          .enabled(if: Prerequisites.userNamespacesWork))
    func nestedThreadsAtEveryLevel() throws {
        let levels: [[Int32]] = [[71, 31, 5], [72, 900, 6], [40_000, 32, 700], [73, 33, 65_000]]
        let tree = """
        {"version": 1, "processes": [
          {"pid": 50, "nspid": [50, 1], "newPidNamespace": true, "ppid": 0, "pgid": 50, "sid": 50},
          {"pid": 70, "nspid": [70, 30, 1], "newPidNamespace": true, "ppid": 50, "pgid": 70, "sid": 70},
          {"pid": 71, "nspid": [71, 31, 5], "ppid": 70, "pgid": 70, "sid": 70, "threads": \(levels)}
        ]}
        """
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady(timeout: 60)
        let seen = restoredColumns(under: run.pid)
        let holder = try #require(seen.first { $0.nspid == [71, 31, 5] }, "NSpid [71, 31, 5] missing: \(seen.map(\.nspid))")
        let taskDir = "/proc/\(holder.host.hostPid)/task"
        var seenLevels: [[Int32]] = []
        for t in try FileManager.default.contentsOfDirectory(atPath: taskDir) {
            let status = readText("\(taskDir)/\(t)/status")
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { continue }
            let cols = line.dropFirst(6).split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { Int32($0) }
            seenLevels.append(Array(cols.dropFirst(ProcFS.ownDepth)))
        }
        let sort: ([Int32], [Int32]) -> Bool = { $0.lexicographicallyPrecedes($1) }
        #expect(seenLevels.sorted(by: sort) == levels.sorted(by: sort), "task NSpids: \(seenLevels)")
    }

    /// The kernel's tools/testing/selftests/clone3/clone3_set_tid.c, case by case, as trees:
    /// each is refused by validation with a clear message (exit 65) before any process exists,
    /// or, where only the kernel can tell, fails cleanly at restore time (exit 125, nothing left).
    @Test("clone3_set_tid conformance: invalid set_tid requests are refused", arguments: [
        ("PID 0", #"{"version":1,"processes":[{"pid":0,"ppid":0,"pgid":0,"sid":0}]}"#, "pid"),
        ("negative PID", #"{"version":1,"processes":[{"pid":-5,"ppid":0,"pgid":0,"sid":0}]}"#, "pid"),
        ("PID >= pid_max", #"{"version":1,"processes":[{"pid":4194304,"ppid":0,"pgid":4194304,"sid":4194304}]}"#, "4194304"),
        ("nested PID other than 1 before the namespace has an init", #"{"version":1,"processes":[{"pid":10,"ppid":0,"pgid":10,"sid":10},{"pid":11,"nspid":[11,3],"newPidNamespace":true,"ppid":10,"pgid":10,"sid":10}]}"#, "1"),
        ("duplicate PID", #"{"version":1,"processes":[{"pid":10,"ppid":0,"pgid":10,"sid":10},{"pid":10,"ppid":0,"pgid":10,"sid":10}]}"#, "10"),
        ("duplicate nested PID in one namespace", #"{"version":1,"processes":[{"pid":10,"nspid":[10,1],"newPidNamespace":true,"ppid":0,"pgid":10,"sid":10},{"pid":11,"nspid":[11,5],"ppid":10,"pgid":10,"sid":10},{"pid":12,"nspid":[12,5],"ppid":10,"pgid":10,"sid":10}]}"#, "5"),
        ("more levels than exist", #"{"version":1,"processes":[{"pid":10,"ppid":0,"pgid":10,"sid":10},{"pid":11,"nspid":[11,4,2],"ppid":10,"pgid":10,"sid":10}]}"#, "level"),
        ("deeper than 32 levels", "{\"version\":1,\"processes\":[{\"pid\":10,\"nspid\":\([10] + Array(repeating: 9, count: 32) + [1]),\"newPidNamespace\":true,\"ppid\":0,\"pgid\":10,\"sid\":10}]}", "32"),
    ])
    func conformance(name: String, tree: String, mentions: String) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.start(["validate", try run.write("tree.json", Data(tree.utf8))])
        let end = try run.waitForExit(timeout: 30)
        #expect(end == .exited(65), "\(name): validate ended with \(end): \(run.stderr)")
        #expect(run.stderr.contains("process #"), "\(name): the message must name the entry: \(run.stderr)")
        #expect(run.stderr.contains(mentions), "\(name): the message should mention \(mentions): \(run.stderr)")
    }

    @Test("clone3_set_tid conformance: a PID taken at restore time fails cleanly (EEXIST), nothing left",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pidTakenAtRestoreTime() throws {
        let tree = #"{"version":1,"processes":[{"pid":10,"ppid":0,"pgid":10,"sid":10},{"pid":11,"nspid":[11,1],"newPidNamespace":true,"ppid":10,"pgid":10,"sid":10},{"pid":12,"nspid":[12,2],"ppid":11,"pgid":10,"sid":10},{"pid":57,"ppid":10,"pgid":10,"sid":10}]}"#
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)), extra: ["--occupy-pid", "57"])
        let end = try run.waitForExit(timeout: 30)
        #expect(end == .exited(125), "ended with \(end): \(run.stderr)")
        #expect(run.stderr.contains("EEXIST") && run.stderr.contains("pid 57"), "stderr: \(run.stderr)")
        let left = Leftovers.waitForNone(user: run.user, since: 0, timeout: 10)
        #expect(left.isEmpty, "left running: \(left.map(\.summary))")
    }
}
