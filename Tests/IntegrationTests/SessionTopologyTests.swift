// Sessions, process groups, zombies, stopped processes and orphans, restored rootless and
// checked from /proc: the zdtm-like fixtures of Fixtures/topologies (each a tree.json), a real
// shell job recorded by hand, and random trees from TreeGenerator compared with their simulation.
//
// Zombies are collected by their parent's payload (a python3 collector: it prints
// "collector PID ready", waits for SIGUSR1, reaps each zombie it was given and prints
// "zombie PID exited|killed|dumped STATUS", then "collector PID done"). The test sends SIGUSR1
// only once it has read "ready" and verified /proc, so nothing depends on timing.
//
// RR_GENERATOR_COUNT (default 20), RR_GENERATOR_SEED (default 0x5EED) and RR_GENERATOR_SIZE
// (`large` for bigger trees) choose the random trees.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RestoreModel
import RestoreTestSupport
import Testing

// MARK: - Fixtures and expectations

enum Topology {
    /// Tests/IntegrationTests/Fixtures/topologies, from this file's place.
    static let directory: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().appendingPathComponent("Fixtures/topologies").path

    static func data(_ name: String) throws -> Data {
        let path = "\(directory)/\(name)/tree.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HarnessError("fixture \(path) is missing")
        }
        return data
    }
}

/// One process as /proc must show it once the tree is restored.
struct ExpectedProcess: CustomStringConvertible {
    enum State: String { case running, stopped, zombie }
    var pid: Int32
    var ppid: Int32
    var pgid: Int32
    var sid: Int32
    var state: State
    /// Zombies: ("exited", code) or ("killed", signal).
    var exit: (how: String, value: Int32)?

    var description: String { "pid=\(pid) ppid=\(ppid) pgid=\(pgid) sid=\(sid) state=\(state.rawValue)" }
}

/// Reads the expectations straight from tree.json (docs/tree-format.md), without RestoreModel:
/// a ppid of 0 or outside the tree means PID 1; PID 1 of the tree has ppid 0.
func expectations(fromTreeJSON data: Data) throws -> (processes: [ExpectedProcess], hasPid1: Bool) {
    guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
          let list = root["processes"] as? [[String: Any]] else {
        throw HarnessError("not a tree.json: no processes array")
    }
    let signalNumbers: [String: Int32] = ["HUP": 1, "INT": 2, "QUIT": 3, "ABRT": 6, "KILL": 9, "USR1": 10, "SEGV": 11,
                                          "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15]
    func int(_ v: Any?) -> Int32? { (v as? NSNumber).map { $0.int32Value } }
    let pids = Set(list.compactMap { int($0["pid"]) })
    var out: [ExpectedProcess] = []
    for p in list {
        guard let pid = int(p["pid"]), let ppid = int(p["ppid"]), let pgid = int(p["pgid"]), let sid = int(p["sid"]) else {
            throw HarnessError("an entry lacks pid, ppid, pgid or sid: \(p)")
        }
        let state = ExpectedProcess.State(rawValue: p["state"] as? String ?? "running") ?? .running
        var exit: (String, Int32)?
        if state == .zombie {
            if let code = int(p["exitStatus"]) {
                exit = ("exited", code)
            } else if let sig = (p["exitStatus"] as? [String: Any])?["signal"] {
                var name = (sig as? String ?? "").uppercased()
                if name.hasPrefix("SIG") { name.removeFirst(3) }
                exit = ("killed", int(sig) ?? signalNumbers[name] ?? -1)
            }
        }
        let expectedPPid: Int32 = pid == 1 ? 0 : (ppid != pid && pids.contains(ppid) ? ppid : 1)
        out.append(ExpectedProcess(pid: pid, ppid: expectedPPid, pgid: pgid, sid: sid, state: state, exit: exit))
    }
    return (out, pids.contains(1))
}

/// The simulated end state of a plan, as expectations.
func expectations(fromSimulation table: [SimulatedProcess]) -> [ExpectedProcess] {
    table.map { s in
        let state: ExpectedProcess.State = s.state == .zombie ? .zombie : s.state == .stopped ? .stopped : .running
        return ExpectedProcess(pid: s.pid, ppid: s.ppid, pgid: s.pgid, sid: s.sid, state: state, exit: nil)
    }
}

/// Compares the namespace with the expectations: every process once, with its pid, ppid, pgid,
/// sid and state (zombie = Z, stopped = T, running = neither); PID 1 is the runtime's init when
/// the tree has none; nothing else (no helper left). Returns the problems.
func topologyProblems(_ observed: [NamespaceProcess], _ expected: [ExpectedProcess], hasPid1: Bool, user: TestUser) -> [String] {
    var problems: [String] = []
    var byPid: [Int32: [NamespaceProcess]] = [:]
    for p in observed { byPid[p.pid, default: []].append(p) }
    for (pid, list) in byPid where list.count > 1 { problems.append("pid \(pid) appears \(list.count) times") }
    for e in expected {
        guard let seen = byPid[e.pid]?.first else {
            problems.append("pid \(e.pid): missing from /proc (expected \(e))")
            continue
        }
        let want = "pid=\(e.pid) ppid=\(e.ppid) pgid=\(e.pgid) sid=\(e.sid)"
        let got = "pid=\(seen.pid) ppid=\(seen.ppid) pgid=\(seen.pgid) sid=\(seen.sid)"
        if want != got { problems.append("expected \(want), /proc shows \(got)") }
        let letter = seen.host.state
        switch e.state {
        case .zombie where letter != "Z": problems.append("pid \(e.pid): state \(letter), expected Z (zombie)")
        case .stopped where letter != "T": problems.append("pid \(e.pid): state \(letter), expected T (stopped)")
        case .running where ["Z", "X", "T", "t"].contains(letter):
            problems.append("pid \(e.pid): state \(letter), expected a running process")
        default: break
        }
        if seen.host.realUid != user.uid {
            problems.append("pid \(e.pid): runs as host uid \(seen.host.realUid), not \(user.uid)")
        }
    }
    var known = Set(expected.map(\.pid))
    if !hasPid1 {
        known.insert(1)
        if byPid[1] == nil { problems.append("no PID 1 (the runtime's init) in the namespace") }
    }
    for p in observed where !known.contains(p.pid) {
        problems.append("a process not in the tree is left (a helper?): \(p) \(p.host.commandLine)")
    }
    return problems
}

// MARK: - Driving a run

extension RestoreRun {
    /// Whether the runtime process still runs (not yet exited).
    var runtimeAlive: Bool {
        guard pid > 0, let status = readFile("/proc/\(pid)/status"),
              let p = ProcFS.parseStatus(status, hostPid: pid) else { return false }
        return p.state != "Z" && p.state != "X"
    }

    /// Polls the runtime's stdout until `done` holds; fails if the runtime ends first.
    @discardableResult
    func waitForOutput(_ what: String, timeout: Double = 60, until done: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let out = stdout
            if done(out) { return out }
            if !runtimeAlive {
                let last = stdout
                if done(last) { return last }
                throw HarnessError("the runtime ended while waiting for \(what)\nstdout:\n\(last)\nstderr:\n\(stderr)")
            }
            if Date() > deadline {
                throw HarnessError("timed out after \(timeout) s waiting for \(what)\nstdout:\n\(out)\nstderr:\n\(stderr)")
            }
            usleep(20_000)
        }
    }

    /// The host PID of a namespace process.
    func hostPid(of nsPid: Int32) throws -> pid_t {
        guard let p = namespace().first(where: { $0.pid == nsPid }) else {
            throw HarnessError("pid \(nsPid) is not in the namespace")
        }
        return p.host.hostPid
    }

    /// SIGKILLs the namespace's PID 1, which ends every process in it at once, and waits for
    /// the runtime to return (the holders would otherwise outlive a SIGTERM to the runtime).
    func endNamespace() {
        if let initProcess = namespace().first(where: { $0.pid == 1 }) {
            kill(initProcess.host.hostPid, SIGKILL)
        }
        _ = try? waitForExit(timeout: 30)
    }

    /// The report's `helpers` and each process's `state`, by pid.
    func reportSummary() throws -> (helpers: Int, states: [Int32: String]) {
        guard let data = FileManager.default.contents(atPath: reportPath),
              let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let processes = root["processes"] as? [[String: Any]],
              let helpers = root["helpers"] as? [Any] else {
            throw HarnessError("cannot read the report \(reportPath)")
        }
        var states: [Int32: String] = [:]
        for p in processes {
            if let pid = (p["pid"] as? NSNumber)?.int32Value, let s = p["state"] as? String { states[pid] = s }
        }
        return (helpers.count, states)
    }
}

/// "zombie PID how STATUS" lines of the collectors' output.
func collectedStatuses(_ output: String) -> [Int32: (how: String, value: Int32)] {
    var out: [Int32: (String, Int32)] = [:]
    for line in output.split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count == 4, f[0] == "zombie", let pid = Int32(f[1]), let value = Int32(f[3]) else { continue }
        out[pid] = (String(f[2]), value)
    }
    return out
}

/// Signals whose default action dumps core: a zombie killed by one may report CLD_DUMPED,
/// depending on the host's core_pattern (a pipe ignores RLIMIT_CORE).
let coreSignals: Set<Int32> = [3, 4, 5, 6, 7, 8, 11, 24, 25, 31]

// MARK: - The tests

@Suite("sessions, groups, zombies, stopped processes and orphans", .serialized)
struct SessionTopologyTests {

    /// Restores fixture `name`, checks /proc and the report; returns the run (still restored)
    /// and the expectations. The caller ends the namespace.
    func restore(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> (run: RestoreRun, expected: [ExpectedProcess]) {
        let data = try Topology.data(name)
        let (expected, hasPid1) = try expectations(fromTreeJSON: data)
        let plan = try RestorePlanner.plan(try TreeParser.parse(Array(data)))
        let run = try RestoreRun()
        do {
            try run.startRun(treeFile: try run.write("tree.json", data))
            try run.waitUntilReady()
        } catch {
            run.endNamespace()
            run.tearDown()
            throw error
        }
        let problems = topologyProblems(run.namespace(), expected, hasPid1: hasPid1, user: run.user)
        if !problems.isEmpty {
            Issue.record(Comment(rawValue: "\(name): the namespace does not match the tree:\n"
                + problems.map { "  " + $0 }.joined(separator: "\n")), sourceLocation: sourceLocation)
        }
        let report = try run.reportSummary()
        #expect(report.helpers == plan.helperCount, "\(name): the report lists \(report.helpers) helpers, the plan has \(plan.helperCount)",
                sourceLocation: sourceLocation)
        for e in expected where e.state != .running {
            #expect(report.states[e.pid] == e.state.rawValue, "\(name): the report says pid \(e.pid) is \(report.states[e.pid] ?? "missing")",
                    sourceLocation: sourceLocation)
        }
        return (run, expected)
    }

    /// Sends SIGUSR1 to each collector once it is ready, waits for its statuses, and checks
    /// them against the tree.
    func collectZombies(_ run: RestoreRun, _ expected: [ExpectedProcess], collectors: [Int32],
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        for c in collectors {
            try run.waitForOutput("collector \(c) to be ready") { $0.contains("collector \(c) ready\n") }
            kill(try run.hostPid(of: c), SIGUSR1)
            try run.waitForOutput("collector \(c) to reap its zombies") { $0.contains("collector \(c) done\n") }
        }
        let got = collectedStatuses(run.stdout)
        for e in expected where e.state == .zombie {
            guard let want = e.exit else { continue }
            guard let seen = got[e.pid] else {
                Issue.record("zombie \(e.pid) was not collected; stdout:\n\(run.stdout)", sourceLocation: sourceLocation)
                continue
            }
            let ok = seen.how == want.how && seen.value == want.value
                || (want.how == "killed" && seen.how == "dumped" && seen.value == want.value && coreSignals.contains(want.value))
            #expect(ok, "zombie \(e.pid): collected \(seen.how) \(seen.value), the tree says \(want.how) \(want.value)",
                    sourceLocation: sourceLocation)
        }
    }

    @Test("zdtm session00: new sessions, birth sessions through one and two ancestors, detached orphans",
          .enabled(if: Prerequisites.userNamespacesWork))
    func session00() throws {
        let (run, _) = try restore("session00")
        run.endNamespace()
        run.tearDown()
    }

    @Test("zdtm session01: dead session and group leaders replaced by helpers that never show",
          .enabled(if: Prerequisites.userNamespacesWork))
    func session01() throws {
        let (run, _) = try restore("session01")
        run.endNamespace()
        run.tearDown()
    }

    @Test("zdtm zombie00: zombies with exit codes 0, 3, 200, 255 and killed by SIGKILL, SIGTERM, SIGSEGV, collected by their parent",
          .enabled(if: Prerequisites.userNamespacesWork))
    func zombie00() throws {
        let (run, expected) = try restore("zombie00")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        try collectZombies(run, expected, collectors: [100])
        let got = collectedStatuses(run.stdout)
        #expect(got[103].map { $0.how == "exited" && $0.value == 200 } == true, "exit code 200 must survive (CRIU makes it 72)")
    }

    @Test("zdtm zombie01: a zombie alone in the group of a dead leader keeps its pgid",
          .enabled(if: Prerequisites.userNamespacesWork))
    func zombie01() throws {
        let (run, expected) = try restore("zombie01")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        try collectZombies(run, expected, collectors: [20])
    }

    @Test("zdtm zombie_leader: a zombie session leader whose child lives on under PID 1",
          .enabled(if: Prerequisites.userNamespacesWork))
    func zombieLeader() throws {
        let (run, expected) = try restore("zombie_leader")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        try collectZombies(run, expected, collectors: [30])
        // The session outlives its reaped leader.
        let child = run.namespace().first { $0.pid == 32 }
        #expect(child?.sid == 31 && child?.pgid == 31)
    }

    @Test("zdtm helper_zombie_child: a zombie under the tree's own PID 1, in a dead leader's session",
          .enabled(if: Prerequisites.userNamespacesWork))
    func helperZombieChild() throws {
        let (run, expected) = try restore("helper_zombie_child")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        try collectZombies(run, expected, collectors: [1])
    }

    @Test("zdtm child_subreaper_and_reparent: an orphan that passed a subreaper flagged later, and one it adopted",
          .enabled(if: Prerequisites.userNamespacesWork))
    func childSubreaper() throws {
        let (run, _) = try restore("child_subreaper_and_reparent")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        let seen = run.namespace()
        #expect(seen.first { $0.pid == 53 }?.ppid == 1)
        #expect(seen.first { $0.pid == 56 }?.ppid == 51)
        // The flag itself (not in /proc): when 55 dies, its child 57 must go to 51.
        kill(try run.hostPid(of: 55), SIGKILL)
        let after = try run.waitForNamespace("55 to die and 57 to be adopted") { procs in
            procs.first { $0.pid == 55 }?.host.state == "Z"
        }
        #expect(after.first { $0.pid == 57 }?.ppid == 51, "57 went to \(after.first { $0.pid == 57 }?.ppid ?? -1), not to subreaper 51")
    }

    @Test("zdtm stopped: stopped processes are in state T and run their payload after SIGCONT",
          .enabled(if: Prerequisites.userNamespacesWork))
    func stopped() throws {
        let (run, _) = try restore("stopped")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        #expect(!run.stdout.contains("continued"), "a stopped process ran its payload before SIGCONT")
        kill(try run.hostPid(of: 61), SIGCONT)
        kill(try run.hostPid(of: 63), SIGCONT)
        try run.waitForOutput("pid 61 to run its payload after SIGCONT") { $0.contains("continued 61\n") }
        try run.waitForNamespace("pid 63 to run again after SIGCONT") { procs in
            procs.first { $0.pid == 63 }.map { $0.host.state != "T" } ?? false
        }
    }

    @Test("a real shell job (make-job.sh, recorded by hand): pipeline group, background job, setsid daemon, orphan of a dead group leader, zombie",
          .enabled(if: Prerequisites.userNamespacesWork))
    func shellJob() throws {
        let (run, _) = try restore("shelljob")
        defer { run.tearDown() }
        defer { run.endNamespace() }
        let seen = run.namespace()
        #expect(seen.first { $0.pid == 12 }?.host.state == "Z")
        #expect(seen.first { $0.pid == 1 }.map { $0.pgid == 0 && $0.sid == 0 } == true,
                "the recorded init is in the runtime's own session and group")
    }

    @Test("random trees from simulated histories, restored and compared with the simulation",
          .enabled(if: Prerequisites.userNamespacesWork))
    func generatedTrees() throws {
        let env = ProcessInfo.processInfo.environment
        let count = env["RR_GENERATOR_COUNT"].flatMap { Int($0) } ?? 20
        let base: UInt64 = env["RR_GENERATOR_SEED"].flatMap { s in
            s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
        } ?? 0x5EED
        // RR_GENERATOR_SIZE=large: up to 60 live processes, 300 operations, more subreapers.
        var options = TreeGenerator.Options()
        if env["RR_GENERATOR_SIZE"] == "large" {
            options.operations = 300
            options.maxLive = 60
            options.pids = 2...400
            options.subreaperWeight = 10
        }
        var failures = 0
        for k in 0..<count {
            let seed = base &+ UInt64(k)
            let generated = TreeGenerator.generate(seed: seed, options: options)
            let tree = generated.tree
            let plan = try RestorePlanner.plan(tree)
            let simulated = expectations(fromSimulation: try PlanSimulator.run(plan, tree: tree))
            let json = TreeEncoder.encode(tree, comment: "TreeGenerator seed \(seed)")
            let run = try RestoreRun()
            defer { run.tearDown() }
            defer { run.endNamespace() }
            try run.startRun(treeFile: try run.write("tree.json", Data(json.utf8)))
            try run.waitUntilReady()
            let problems = topologyProblems(run.namespace(), simulated, hasPid1: plan.treeHasInit, user: run.user)
            if !problems.isEmpty {
                failures += 1
                Issue.record(Comment(rawValue: "generated tree (seed \(seed), RR_GENERATOR_SEED=\(seed) RR_GENERATOR_COUNT=1 "
                    + "\(env["RR_GENERATOR_SIZE"] == "large" ? "RR_GENERATOR_SIZE=large " : "")"
                    + "reproduces it) restored differently from its simulation:\n"
                    + problems.prefix(20).map { "  " + $0 }.joined(separator: "\n")
                    + "\nhistory:\n" + generated.history.map { "  " + $0 }.joined(separator: "\n")
                    + "\ntree.json:\n" + json))
                if failures >= 3 { return }
            }
        }
    }

    @Test("the planner's adversarial shapes (dozens of sessions whose leaders died, under the init and a subreaper; daemons; setsid at every level; moved group leaders; leaders in each other's groups), restored and compared with the simulation",
          .enabled(if: Prerequisites.userNamespacesWork))
    func adversarialShapes() throws {
        for shape in ["dead-sessions", "subreaper-sessions", "daemons", "setsid-chain", "group-moves", "group-cycles", "cross-groups"] {
            let tree = AdversarialTrees.tree(shape, count: 81)
            let plan = try RestorePlanner.plan(tree)
            if shape.hasSuffix("sessions") {
                // The point of these shapes: one session helper per dead leader.
                #expect(plan.helperCount >= 40, "\(shape): \(plan.helperCount) helpers")
            }
            let simulated = expectations(fromSimulation: try PlanSimulator.run(plan, tree: tree))
            let run = try RestoreRun()
            defer { run.tearDown() }
            defer { run.endNamespace() }
            try run.startRun(treeFile: try run.write("tree.json", Data(TreeEncoder.encode(tree, comment: shape).utf8)))
            try run.waitUntilReady()
            let problems = topologyProblems(run.namespace(), simulated, hasPid1: plan.treeHasInit, user: run.user)
            let listed = problems.prefix(20).map { "  " + $0 }.joined(separator: "\n")
            #expect(problems.isEmpty, "\(shape) restored differently from its simulation:\n\(listed)")
        }
    }

    @Test("validate prints the plan with its helpers and why; an impossible tree exits 65 naming the processes and the rule")
    func validateExplains() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let good = try run.write("session01.json", try Topology.data("session01"))
        try run.start(["validate", good])
        #expect(try run.waitForExit(timeout: 60) == .exited(0), "\(run.stderr)")
        let out = run.stdout
        #expect(out.contains("3 helpers"))
        #expect(out.contains("session 6's leader is dead"))
        #expect(out.contains("process group 17's leader is dead"))

        let second = try RestoreRun()
        defer { second.tearDown() }
        let bad = try second.write("bad.json", Data("""
            {"version": 1, "processes": [
              {"pid": 5, "ppid": 0, "pgid": 5, "sid": 5},
              {"pid": 13, "ppid": 5, "pgid": 5, "sid": 5},
              {"pid": 18, "ppid": 13, "pgid": 6, "sid": 6}]}
            """.utf8))
        try second.start(["validate", bad])
        #expect(try second.waitForExit(timeout: 60) == .exited(65))
        let err = second.stderr
        #expect(err.contains("process #2 (pid 18)") && err.contains("is in session 6")
                && err.contains("its parent process #1 (pid 13)") && err.contains("can have created session 6"), "\(err)")
    }
}
