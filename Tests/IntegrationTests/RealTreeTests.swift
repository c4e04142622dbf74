// Random REAL trees: Fixtures/realtree/realtree.c builds, from a seed, a tree with real system
// calls (fork, setsid, setpgid, PR_SET_CHILD_SUBREAPER, exits before and after forking, zombies
// with any exit code or signal, SIGSTOP, threads, the root in a user namespace of its own,
// unshare(CLONE_NEWPID) subtrees) as the test user. Each tree is read from /proc with the harness's reader, recorded
// with `rootless-restore record`, killed, restored with `run` (every process holding), and the
// namespace is compared with the table read before the kill. RR_REALTREE_SEEDS (default 40)
// seeds run from RR_REALTREE_FIRST (default 1); the test prints seeds tried and passed.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// One process as /proc showed it, in the tree's own terms (its top level first).
private struct RealRow: Equatable, CustomStringConvertible {
    var nspid: [Int32]
    var ppid: Int32
    var pgid: Int32
    var sid: Int32
    /// R/S/D as "run", T/t as "stopped", Z as "zombie".
    var state: String
    /// Zombies: field 52 of /proc/PID/stat (the wait status).
    var exitCode: Int?
    /// TIDs at every level, one array per thread, sorted.
    var threads: [[Int32]]

    var description: String {
        "nspid=\(nspid) ppid=\(ppid) pgid=\(pgid) sid=\(sid) \(state)"
            + (exitCode.map { " exit=\($0)" } ?? "") + (threads.count > 1 ? " threads=\(threads)" : "")
    }
}

private func stateWord(_ letter: String) -> String {
    switch letter {
    case "T", "t": return "stopped"
    case "Z", "X": return "zombie"
    default: return "run"
    }
}

private func statField52(_ hostPid: Int32) -> Int? {
    let text = readText("/proc/\(hostPid)/stat")
    guard let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    return fields.count > 49 ? Int(fields[49].trimmingCharacters(in: .whitespacesAndNewlines)) : nil
}

/// TIDs of every thread of a process, from `level` of NSpid down, sorted.
private func threadLevels(_ hostPid: Int32, from level: Int) -> [[Int32]] {
    let dir = "/proc/\(hostPid)/task"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    return names.compactMap { name -> [Int32]? in
        guard let tid = Int32(name), let bytes = readFile("\(dir)/\(name)/status"),
              let s = ProcFS.parseStatus(bytes, hostPid: tid), s.nspid.count > level else { return nil }
        return Array(s.nspid[level...])
    }.sorted { $0.lexicographicallyPrecedes($1) }
}

/// The table of the processes below host PID `root` (root included), seen from NSpid level
/// `level` (the tests' own level for a live tree, one deeper for a restored namespace).
/// A parent outside the table reads as 1 (where a restore hangs such a process).
private func realTable(root: Int32, level: Int, includeRoot: Bool) -> [Int32: RealRow] {
    let all = ProcFS.scan()
    var children: [Int32: [HostProcess]] = [:]
    for p in all { children[p.hostPPid, default: []].append(p) }
    var list: [HostProcess] = includeRoot ? all.filter { $0.hostPid == root } : []
    var queue = [root]
    while let h = queue.popLast() {
        for c in children[h] ?? [] { list.append(c); queue.append(c.hostPid) }
    }
    var levelPid: [Int32: Int32] = [:] // host pid -> pid at `level`
    for p in list where p.nspid.count > level { levelPid[p.hostPid] = p.nspid[level] }
    var out: [Int32: RealRow] = [:]
    for p in list where p.nspid.count > level {
        let state = stateWord(p.state)
        out[p.nspid[level]] = RealRow(nspid: Array(p.nspid[level...]), ppid: levelPid[p.hostPPid] ?? 1,
                                      pgid: p.nspgid.count > level ? p.nspgid[level] : 0,
                                      sid: p.nssid.count > level ? p.nssid[level] : 0, state: state,
                                      exitCode: state == "zombie" ? statField52(p.hostPid) : nil,
                                      threads: state == "zombie" ? [] : threadLevels(p.hostPid, from: level))
    }
    return out
}

/// Reads the table until two reads 50 ms apart agree (states settle after SIGSTOP/exit).
private func settledTable(root: Int32, level: Int, includeRoot: Bool) -> [Int32: RealRow] {
    var last = realTable(root: root, level: level, includeRoot: includeRoot)
    for _ in 0..<100 {
        usleep(50_000)
        let now = realTable(root: root, level: level, includeRoot: includeRoot)
        if now == last { return now }
        last = now
    }
    return last
}

private func runAsUser(_ run: RestoreRun, _ argv: [String], name: String, timeout: Double = 60) throws -> (Termination, String) {
    let out = "\(run.directory)/\(name).out"
    unlink(out)
    let pid = try spawn(try Identity.prefix(for: run.user) + argv, env: Identity.cleanEnvironment, cwd: run.directory,
                        stdout: out, stderr: out)
    return (try waitForExit(pid, timeout: timeout), readText(out))
}

/// Drops every `process` object from a recorded tree.json: each process holds when restored
/// (the tree's shape is under test, not the program, which would build a new tree).
private func holdingTree(_ path: String) throws -> Data {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var top = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let list = try #require(top["processes"] as? [[String: Any]])
    top["processes"] = list.map { e -> [String: Any] in
        var e = e
        e["process"] = nil
        e["recorded"] = nil
        return e
    }
    return try JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
}

@Suite("random real trees: record, kill, restore, compare", .serialized)
struct RealTreeTests {
    static let source = Paths.packageRoot + "/Tests/IntegrationTests/Fixtures/realtree/realtree.c"

    @Test("random trees built by real system calls come back as /proc showed them",
          .enabled(if: Prerequisites.userNamespacesWork))
    func randomRealTrees() throws {
        let env = ProcessInfo.processInfo.environment
        let count = Int(env["RR_REALTREE_SEEDS"] ?? "") ?? 40
        let first = Int(env["RR_REALTREE_FIRST"] ?? "") ?? 1
        let features = env["RR_REALTREE_FEATURES"] ?? "gsztpun"
        let cc = try #require(Paths.tool("cc") ?? Paths.tool("gcc"), "no C compiler (scripts/setup.sh installs gcc)")
        var failures: [String] = []
        var passed = 0
        var processes = 0
        // The program, built once for all seeds in a directory of its own.
        var template = Array("/tmp/rr-realtree.XXXXXX".utf8CString)
        let made = try #require(mkdtemp(&template), "mkdtemp")
        let buildDir = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: buildDir) }
        chmod(buildDir, 0o755)
        let program = buildDir + "/realtree"
        let ccPid = try spawn([cc, "-O1", "-pthread", "-o", program, Self.source], env: Identity.cleanEnvironment,
                              cwd: buildDir, stdout: buildDir + "/cc.out", stderr: buildDir + "/cc.out")
        try #require(try waitForExit(ccPid, timeout: 120) == .exited(0), "cc: \(readText(buildDir + "/cc.out"))")
        chmod(program, 0o755)

        for seed in first..<(first + count) {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let dir = run.directory
            let prog = dir + "/realtree"
            try FileManager.default.copyItem(atPath: program, toPath: prog)
            chmod(prog, 0o755)
            let ready = dir + "/ready"
            let root = try spawn(try Identity.prefix(for: run.user) + [prog, String(seed), ready, "16", features],
                                 env: Identity.cleanEnvironment, cwd: dir, stdout: dir + "/tree.log", stderr: dir + "/tree.log")
            var rootAlive = true
            func killTree() {
                guard rootAlive else { return }
                rootAlive = false
                killProcessTree(root: root)
            }
            defer { killTree() }
            let deadline = Date().addingTimeInterval(20)
            while access(ready, F_OK) != 0 && Date() < deadline { usleep(10_000) }
            guard access(ready, F_OK) == 0 else {
                failures.append("seed \(seed): the tree was not built in 20 s: \(readText(dir + "/tree.log"))")
                continue
            }
            let before = settledTable(root: root, level: 0, includeRoot: true)
            processes += before.count

            let (recorded, recordOut) = try runAsUser(run, [run.binary, "record", "--no-env", "-q", "-o", dir + "/tree.json", String(root)], name: "record")
            guard recorded == .exited(0) else {
                failures.append("seed \(seed): record \(recorded): \(recordOut)")
                continue
            }
            killTree()
            try run.write("hold.json", try holdingTree(dir + "/tree.json"))
            try run.startRun(treeFile: dir + "/hold.json")
            do {
                try run.waitUntilReady()
            } catch {
                failures.append("seed \(seed): run failed: \(error)")
                continue
            }
            let after = settledTable(root: run.pid, level: ProcFS.ownDepth + OuterNamespace.levels, includeRoot: false)
                .filter { $0.key != 1 }
            var problems: [String] = []
            for (pid, want) in before.sorted(by: { $0.key < $1.key }) {
                guard let got = after[pid] else { problems.append("pid \(pid) (\(want)) missing"); continue }
                if got != want { problems.append("pid \(pid): before \(want), restored \(got)") }
            }
            for pid in after.keys.sorted() where before[pid] == nil { problems.append("pid \(pid) not in the tree: \(after[pid]!)") }
            if problems.isEmpty {
                passed += 1
            } else {
                failures.append("seed \(seed): \(problems.count) difference(s):\n    " + problems.prefix(12).joined(separator: "\n    "))
            }
        }
        print("realtree: \(count) seeds tried (\(first)...\(first + count - 1), features \(features)), \(passed) passed, \(processes) processes")
        let report = "realtree: \(failures.count) of \(count) seeds failed:\n" + failures.joined(separator: "\n")
        #expect(failures.isEmpty, Comment(rawValue: report))
    }
}
