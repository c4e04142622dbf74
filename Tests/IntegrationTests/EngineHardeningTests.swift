// Faults found by attacking the engine (issue 14): each test fails on the engine before its
// fix. What the runtime leaves behind is checked by RestoreRun.tearDown (no process of the
// test user may remain).

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("engine hardening: kills, stopped processes, signals", .serialized)
struct EngineHardeningTests {

    @Test("SIGKILL of run before its namespace init armed its parent-death signal leaves nothing",
          .enabled(if: Prerequisites.userNamespacesWork))
    func killBeforeParentDeathSignal() throws {
        let tree = TestTree.flat(top: 100, children: [101], comment: "two holders")
        let run = try RestoreRun()
        defer { run.tearDown() }
        // The init waits a second before it arms PR_SET_PDEATHSIG: the window made wide.
        try run.startRun(treeFile: try run.write("tree.json", tree.json()), extra: ["--testing-fault", "slow-init-start"])
        let seen = try run.waitForNamespace(timeout: 30, "the namespace init") { $0.contains { $0.pid == 1 } }
        let initHost = seen.first { $0.pid == 1 }!.host.hostPid
        run.signal(SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while kill(initHost, 0) == 0 && Date() < deadline { usleep(20_000) }
        let state = readText("/proc/\(initHost)/stat").split(separator: " ").dropFirst(2).first ?? "gone"
        #expect(kill(initHost, 0) != 0 || state == "Z", "the namespace init \(initHost) outlived the killed runtime (state \(state))")
    }

    @Test("the runtime's init that cannot create its signalfd says so and tears the namespace down (it once forwarded nothing, silently)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func initSignalfdFailureIsLoud() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // The supervising init (a payload-spawned child) lowers its open-file limit to 3 before
        // its signalfd, which then fails with EMFILE: no ordinary limit reaches that call.
        try run.startRun(treeFile: try run.write("tree.json", Data(Self.descriptorTrees["pinned"]!.utf8)),
                         extra: ["--testing-fault", "init-file-limit"])
        let t = try run.waitForExit(timeout: 30)
        #expect(t == .exited(125), "\(t): \(run.stderr)")
        #expect(run.stderr.contains("the runtime's init cannot set up signal forwarding: signalfd: EMFILE"), "\(run.stderr)")
    }

    @Test("a fork listener the kernel refuses for longer than the hand-over's bound (ETOOMANYREFS) fails the restore naming the entry and the cause: no hang, nothing left",
          .enabled(if: Prerequisites.userNamespacesWork))
    func handOverRefusedPastItsBound() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // Another process of the same user keeps 4 000 descriptors in flight (sent over a Unix
        // socket it never reads), more than the runtime's open-file limit (256): the kernel
        // refuses every SCM_RIGHTS of that user's processes with ETOOMANYREFS until it ends.
        let holder = """
        import array, os, socket, time
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = os.open("/dev/null", os.O_RDONLY)
        for _ in range(16):
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd] * 250))])
        print("in flight", flush=True)
        time.sleep(120)
        """
        let out = run.directory + "/inflight.out"
        let python = Paths.tool("python3") ?? "/usr/bin/python3"
        let pid = try spawn(try Identity.prefix(for: run.user) + [python, "-c", holder], env: Identity.cleanEnvironment, cwd: nil,
                            stdout: out, stderr: out)
        defer { kill(pid, SIGKILL); _ = try? waitForExit(pid, timeout: 10) }
        let ready = Date().addingTimeInterval(20)
        while !readText(out).contains("in flight") && Date() < ready && reap(pid) == nil { usleep(20_000) }
        try #require(readText(out).contains("in flight"), "the descriptor holder: \(readText(out))")
        let started = Date()
        try run.startRun(treeFile: try run.write("tree.json", Data(Self.descriptorTrees["pinned"]!.utf8)),
                         launcher: ["/bin/sh", "-c", "ulimit -Sn 256; exec \"$0\" \"$@\""])
        let t = try run.waitForExit(timeout: 40)
        #expect(t == .exited(125), "\(t): \(run.stderr)")
        // The bound is 5 s of retries (ForkSupervisor.handOverPatienceNs).
        #expect(Date().timeIntervalSince(started) >= 4.5, "gave up before its bound: \(run.stderr)")
        #expect(run.stderr.contains("(pid 10") && run.stderr.contains("cannot hand its fork listener to the runtime's init")
                && run.stderr.contains("ETOOMANYREFS"), "\(run.stderr)")
    }

    @Test("SIGTERM ends a tree that holds a stopped process", .enabled(if: Prerequisites.userNamespacesWork))
    func sigtermWithStoppedProcess() throws {
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100},
          {"pid": 101, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped"},
          {"pid": 102, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped", "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}}
        ]}
        """
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady()
        #expect(run.namespace().filter { $0.host.state.hasPrefix("T") }.count == 2, "\(run.namespace().map(\.host.summary))")
        run.signal(SIGTERM)
        let t = try run.waitForExit(timeout: 20)
        #expect(t == .exited(143) || t == .signaled(SIGTERM), "\(t): \(run.stderr)")
    }

    @Test("the runtime's init forwards SIGWINCH, SIGCONT, SIGALRM and SIGUSR1 to the tree",
          .enabled(if: Prerequisites.userNamespacesWork))
    func everySignalIsForwarded() throws {
        // A top-level payload that reports each signal it gets, then exits on SIGUSR1.
        let script = """
        for s in WINCH CONT ALRM; do trap "echo got $s" $s; done
        trap 'echo got USR1; exit 7' USR1
        echo ready
        while :; do sleep 0.05; done
        """
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["bash", "-c", \(String(data: try JSONSerialization.data(withJSONObject: [script], options: .fragmentsAllowed), encoding: .utf8)!.dropFirst().dropLast())], "env": ["PATH=/usr/bin:/bin"]}}
        ]}
        """
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady()
        let deadline = Date().addingTimeInterval(20)
        while !run.stdout.contains("ready") && Date() < deadline { usleep(20_000) }
        for (sig, name) in [(SIGWINCH, "WINCH"), (SIGCONT, "CONT"), (SIGALRM, "ALRM")] {
            run.signal(sig)
            while !run.stdout.contains("got \(name)") && Date() < deadline { usleep(20_000) }
            #expect(run.stdout.contains("got \(name)"), "SIG\(name) did not reach the payload; stdout: \(run.stdout)")
        }
        run.signal(SIGUSR1)
        let t = try run.waitForExit(timeout: 20)
        #expect(t == .exited(7), "\(t): \(run.stdout) \(run.stderr)")
    }

    /// Trees for the descriptor test: plain (the runtime's init does not supervise), with a
    /// payload-spawned child (the runtime's init supervises forks), and with the tree's own PID 1
    /// forking pinned children (the supervisor runs beside it, OutsideSupervisor).
    static let descriptorTrees: [String: String] = [
        "plain": """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sh", "-c", "sleep 1000 & wait"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 101, "ppid": 100, "pgid": 100, "sid": 100},
          {"pid": 102, "ppid": 100, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 103, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped"}
        ]}
        """,
        "pinned": """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sh", "-c", "sleep 1000 & wait"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"},
          {"pid": 101, "ppid": 100, "pgid": 100, "sid": 100},
          {"pid": 102, "ppid": 100, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 103, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped"}
        ]}
        """,
        "pid1-pinned": """
        {"version": 1, "processes": [
          {"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "process": {"args": ["sh", "-c", "sleep 1000 & wait"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 5000, "ppid": 1, "pgid": 1, "sid": 1, "spawn": "payload"},
          {"pid": 101, "ppid": 1, "pgid": 1, "sid": 1}
        ]}
        """,
    ]

    @Test("nothing in the namespace inherits the caller's descriptors: not the init, not the fork supervisor, not a restored process (which keep 0, 1, 2 only)",
          .enabled(if: Prerequisites.userNamespacesWork), arguments: ["plain", "pinned", "pid1-pinned"])
    func noInheritedDescriptors(shape: String) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // The caller leaves descriptor 7 open (not close-on-exec), as a careless shell would.
        let pins = run.directory + "/pins.log"
        try run.startRun(treeFile: try run.write("tree.json", Data(Self.descriptorTrees[shape]!.utf8)), extra: ["--pin-log", pins],
                         launcher: ["/bin/sh", "-c", "exec 7</etc/hostname; exec \"$0\" \"$@\""])
        try run.waitUntilReady()
        let pinned = shape != "plain"
        var seen: [NamespaceProcess] = []
        // Once a known, intermittent "sh: 0: Cannot fork" (5000 never came): dash catches SIGCHLD
        // without SA_RESTART, and the stopped 103's SIGCHLD failed the pinned fork with EINTR
        // before the supervisor had received its notification. Now that SIGCHLD comes before
        // the shell execs (Release: stopped processes first), and a notification is received
        // the moment it is queued (the supervisor's receiver; forkStormKeepsPinning).
        do {
            seen = try run.waitForNamespace(timeout: 20, "every process (the pinned child 5000, the supervisor)") { now in
                !pinned || (now.contains { $0.pid == 5000 } && (shape != "pid1-pinned" || now.contains { $0.ppid == 0 && $0.pid > 5000 }))
            }
        } catch {
            throw HarnessError("\(error)\npin log:\n\(readText(pins))")
        }
        // The runtime's own processes in the namespace: its init (PID 1 unless the tree has
        // one) and the supervisor beside a tree's PID 1 (nobody's child there).
        // The receiver shares its supervisor's descriptor table (CLONE_FILES).
        let servers = seen.filter { shape == "pid1-pinned" ? ($0.ppid == 0 && $0.pid != 1) : $0.pid == 1 }
        #expect(servers.count == 1, "\(seen)")
        let runtimeOwn = servers + seen.filter(\.isForkReceiver)
        #expect(runtimeOwn.count == (pinned ? 2 : 1), "the supervisor and its receiver: \(seen)")
        for p in seen {
            let dir = "/proc/\(p.host.hostPid)/fd"
            let fds = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? ["?"]).filter { !["0", "1", "2"].contains($0) }.sorted()
            let targets = fds.map { "\($0)->" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\($0)")) ?? "?") }
            if runtimeOwn.contains(where: { $0.pid == p.pid }) {
                #expect(!targets.contains { $0.hasSuffix("->/etc/hostname") }, "the runtime's \(p.pid) holds the caller's descriptor 7: \(targets)")
            } else {
                #expect(fds.isEmpty, "pid \(p.pid) (\(p.host.commandLine)) holds descriptors \(targets)")
            }
        }
        if pinned, let server = servers.first {
            // The supervisor keeps its own socket's sending end: with it closed the socket reads
            // as end of file forever and the poll loop spins (it once did, starving pin checks).
            func cpuTicks() -> Int {
                let stat = readText("/proc/\(server.host.hostPid)/stat")
                guard let close = stat.lastIndex(of: ")") else { return 0 }
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                return fields.count > 12 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : 0
            }
            let before = cpuTicks()
            usleep(1_000_000)
            let used = cpuTicks() - before
            #expect(used < sysconf(Int32(_SC_CLK_TCK)) / 4, "the idle supervisor (pid \(server.pid)) used \(used) clock ticks of CPU in 1 s")
        }
    }

    @Test("--pid-method dance and auto work without clone3 (a seccomp filter says ENOSYS, as Docker's default profile does)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func danceWithoutClone3() throws {
        let tree = TestTree(comment: "sessions, a dead session leader, a payload", processes: [
            TreeProcess(pid: 100, ppid: 0, pgid: 100, sid: 100),
            TreeProcess(pid: 101, ppid: 100, pgid: 100, sid: 100, args: ["sleep", "1000"]),
            TreeProcess(pid: 102, ppid: 100, pgid: 102, sid: 100),
            TreeProcess(pid: 200, ppid: 100, pgid: 200, sid: 200),
            TreeProcess(pid: 201, ppid: 200, pgid: 200, sid: 200),
            TreeProcess(pid: 301, ppid: 100, pgid: 300, sid: 300),
        ])
        for method in ["clone3", "dance", "auto"] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let launcher = try Self.buildNoClone3(in: run)
            try run.start(["run", "--report", run.reportPath, "--pid-method", method, try run.write("tree.json", tree.json())],
                          launcher: [launcher])
            if method == "clone3" {
                // The control: the filter does hide clone3, and clone3 mode says so.
                let t = try run.waitForExit(timeout: 30)
                #expect(t == .exited(77) && run.stderr.contains("clone3 is not available"), "\(t): \(run.stderr)")
                // The probe's refusal says what to do; check's namespace trial would only add noise.
                #expect(!run.stderr.contains("user namespace: "), "\(run.stderr)")
                continue
            }
            try run.waitUntilReady()
            verifyNamespace(run.namespace(), matches: tree, user: run.user)
            // auto says once that it fell back; an explicit dance is what was asked for.
            let note = "choosing PIDs with the ns_last_pid dance instead"
            #expect(run.stderr.contains(note) == (method == "auto"), "\(method): \(run.stderr)")
        }
    }

    @Test("an unusual clone3 errno is named as it is, not as a missing set_tid (a seccomp filter answers clone3 with EACCES, then EINVAL)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func unusualClone3Errno() throws {
        let tree = TestTree.flat(top: 100, children: [101], comment: "two holders")
        for (errno, method) in [(EACCES, "clone3"), (EACCES, "auto"), (EINVAL, "clone3"), (EINVAL, "auto")] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let launcher = try Self.buildNoClone3(in: run)
            try run.start(["run", "--report", run.reportPath, "--pid-method", method, try run.write("tree.json", tree.json())],
                          extraEnvironment: ["NO_CLONE3_ERRNO=\(errno)"], launcher: [launcher])
            let what = "clone3 -> errno \(errno), --pid-method \(method)"
            if errno == EACCES && method == "auto" {
                // Not a missing set_tid, but the dance (the legacy clone) still works: said as it is.
                try run.waitUntilReady()
                verifyNamespace(run.namespace(), matches: tree, user: run.user)
                #expect(run.stderr.contains("clone3 fails here with EACCES"), "\(what): \(run.stderr)")
            } else {
                let t = try run.waitForExit(timeout: 30)
                #expect(t == .exited(77), "\(what): \(t): \(run.stderr)")
                // EACCES is caught by the probe; EINVAL is what a kernel with set_tid answers the
                // probe, so only the namespace's own clone3 meets it.
                let said = errno == EACCES ? "clone3 fails here with EACCES" : "cannot create a user and PID namespace: clone3 fails with EINVAL"
                let firstLine = run.stderr.split(separator: "\n").first.map(String.init) ?? ""
                #expect(firstLine.contains(said), "\(what): \(run.stderr)")
            }
            // The wordings of a missing set_tid (the namespace's clone3 once said one for any EINVAL).
            #expect(!run.stderr.contains("no set_tid") && !run.stderr.contains("or set_tid (5.5+)"), "\(what): \(run.stderr)")
        }
    }

    @Test("WAIT_KILLABLE_RECV is probed once by the runtime: where the kernel does not know it, no puppet tries it (a filter kills any that does)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func killableRecvProbedOnce() throws {
        for shape in ["pinned", "pid1-pinned"] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let launcher = try Self.buildNoClone3(in: run)
            // NO_KILLABLE_RECV: the probe (no program) gets EINVAL, as before Linux 5.19; a
            // filter installed with the flag anyway kills its puppet (before: every puppet tried
            // the flag and retried without it on EINVAL).
            try run.start(["run", "--report", run.reportPath, "--pin-mismatch", "error",
                           try run.write("tree.json", Data(Self.descriptorTrees[shape]!.utf8))],
                          extraEnvironment: ["NO_KILLABLE_RECV=1"], launcher: [launcher])
            try run.waitUntilReady()
            let seen = try run.waitForNamespace(timeout: 20, "\(shape): the pinned child 5000") { now in now.contains { $0.pid == 5000 } }
            #expect(!seen.contains { $0.host.state == "Z" }, "\(shape): \(seen.map(\.host.summary)) \(run.stderr)")
            #expect(run.stderr.isEmpty, "\(shape): \(run.stderr)")
        }
    }

    /// A real dash running `cmd &` jobs: dash catches SIGCHLD without SA_RESTART, so a job's
    /// SIGCHLD during a supervised fork that is not received yet fails the fork with EINTR
    /// ("Cannot fork") unless the supervisor makes it restart (InterruptedForkRestart). The
    /// receiver waits 300 µs before each receive (`--testing-fault slow-receive`), so that the
    /// window is wide: measured without the fault, 10 of 10 runs of this loop failed before the
    /// restart existed, and 9 of 10 with `--interrupted-forks fail`.
    static func dashJobLoopTree(_ script: String) -> String {
        let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["/bin/dash", "-c", "\(escaped)"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}
        ]}
        """
    }

    @Test("dash's `cmd &` loop under pinning: a fork that a job's SIGCHLD interrupts before the supervisor receives it restarts (all 300 jobs run); with --interrupted-forks fail, dash says Cannot fork",
          .enabled(if: Prerequisites.userNamespacesWork && FileManager.default.isExecutableFile(atPath: "/bin/dash")))
    func interruptedForksRestart() throws {
        let loop = "i=0; while [ $i -lt 300 ]; do /bin/sleep 0.00$((i % 3)) & i=$((i+1)); /bin/sleep 0.002; done; wait; echo done $i"
        for mode in ["restart", "fail"] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.startRun(treeFile: try run.write("tree.json", Data(Self.dashJobLoopTree(loop).utf8)),
                             extra: ["--interrupted-forks", mode, "--testing-fault", "slow-receive"])
            let t = try run.waitForExit(timeout: 120)
            if mode == "restart" {
                #expect(t == .exited(0) && run.stdout.contains("done 300") && !run.stderr.contains("Cannot fork"), "\(mode): \(t) \(run.stdout) \(run.stderr)")
            } else {
                // The same loop without the restart: the test fails if the feature is absent.
                #expect(t != .exited(0) && !run.stdout.contains("done") && run.stderr.contains("Cannot fork"), "\(mode): \(t) \(run.stdout) \(run.stderr)")
            }
        }
    }

    @Test("a forker traced for the restart reads T (stopped) and is untraced while stopped, is traced again after its next fork, and record --freeze still freezes it",
          .enabled(if: Prerequisites.userNamespacesWork && FileManager.default.isExecutableFile(atPath: "/bin/dash")))
    func tracedForkerStopsAndIsRecorded() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", Data(Self.dashJobLoopTree("while :; do /bin/sleep 0.05; done").utf8)))
        func status(_ pid: Int32) -> (state: String, tracer: Int32) {
            let text = readText("/proc/\(pid)/status")
            let field = { (key: String) in text.split(separator: "\n").first { $0.hasPrefix(key + ":") }?.split(separator: "\t").dropFirst().first.map(String.init) ?? "" }
            return (String(field("State").prefix(1)), Int32(field("TracerPid")) ?? -1)
        }
        let seen = try run.waitForNamespace(timeout: 30, "dash traced by the supervisor") { now in
            now.contains { $0.pid == 100 && status($0.host.hostPid).tracer > 0 }
        }
        let dash = seen.first { $0.pid == 100 }!.host.hostPid
        let initPid = seen.first { $0.pid == 1 }!.host.hostPid
        #expect(status(dash).tracer == initPid, "traced by the runtime's init (host pid \(initPid)): \(status(dash))")
        for round in 1...3 {
            kill(dash, SIGSTOP)
            _ = try run.waitForNamespace(timeout: 10, "dash stopped, round \(round)") { _ in status(dash).state == "T" }
            // Detached at its group stop: a plain stop, as a recording shows it.
            #expect(status(dash).tracer == 0, "round \(round): stopped and untraced: \(status(dash))")
            kill(dash, SIGCONT)
            _ = try run.waitForNamespace(timeout: 10, "dash traced again, round \(round)") { _ in status(dash).tracer == initPid }
        }
        // record --freeze (ptrace) cannot seize a traced process: it stops it, so that the
        // supervisor lets go, freezes it, and continues it after.
        let out = run.directory + "/frozen.json"
        let rec = try spawn(try Identity.prefix(for: run.user) + [run.binary, "record", "--freeze", String(dash), "-o", out],
                            env: Identity.cleanEnvironment, cwd: run.directory, stdout: run.directory + "/rec.out", stderr: run.directory + "/rec.err")
        let rt = try waitForExit(rec, timeout: 30)
        #expect(rt == .exited(0), "record --freeze: \(rt) \(readText(run.directory + "/rec.err"))")
        let recorded = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])?["processes"] as? [[String: Any]] ?? []
        #expect(!recorded.isEmpty && !recorded.contains { $0["state"] as? String == "stopped" }, "recorded: \(recorded.prefix(2))")
        _ = try run.waitForNamespace(timeout: 10, "dash running and traced again after the recording") { _ in
            status(dash).state != "T" && status(dash).tracer == initPid
        }
    }

    @Test("a payload forking while its children exit keeps its pinning: its forks are received at once by the supervisor's receiver (few interrupted), an interrupted one never ends pinning, never stalls it",
          .enabled(if: Prerequisites.userNamespacesWork))
    func forkStormKeepsPinning() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        guard let cc = Paths.tool("cc") ?? Paths.tool("gcc") else { throw HarnessError("no C compiler for Fixtures/fork_storm") }
        let storm = run.directory + "/fork_storm"
        let pid = try spawn([cc, "-O1", "-o", storm, Paths.packageRoot + "/Tests/IntegrationTests/Fixtures/fork_storm/fork_storm.c"],
                            env: Identity.cleanEnvironment, cwd: nil, stdout: run.directory + "/cc.out", stderr: run.directory + "/cc.out")
        guard try waitForExit(pid, timeout: 60) == .exited(0) else { throw HarnessError("cc: \(readText(run.directory + "/cc.out"))") }
        chmod(storm, 0o755)
        // 300 forks, one every 2 ms, each child exiting within 2 ms, by one pinned forker (its
        // pinned child's PID is given back each time that child is reaped unrecognised, so many
        // forks are pinned). Paced: the share interrupted then measures how long a fork waits
        // unreceived, not how many forks per second the supervisor lets through. It starts after
        // 1 s, so that the receiver is seen before the storm is over (on a loaded machine it was
        // not: "the runtime ended while waiting for the fork supervisor's receiver").
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["\(storm)", "300", "2000", "1000"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}
        ]}
        """
        let pinLog = run.directory + "/pins.log"
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)), extra: ["--pin-log", pinLog])
        // The supervisor's receiver takes each notification the moment it is queued, from its
        // own session (ForkSupervisor.startReceiver): a process of the runtime's, not the tree's.
        let seen = try run.waitForNamespace(timeout: 30, "the fork supervisor's receiver") { now in now.contains(where: \.isForkReceiver) }
        let receiver = seen.first(where: \.isForkReceiver)!
        #expect(receiver.ppid == 1 && receiver.pid > 5000, "the receiver is the init's child, above every pinned PID: \(receiver)")
        // Before: an interrupted fork's notification made the receive fail with ENOENT, which
        // libseccomp turned into ECANCELED and the supervisor into the end of pinning (every later
        // fork: ENOSYS); a fork restarted after its continue stalled the supervisor for 1 s each.
        let t = try run.waitForExit(timeout: 90)
        #expect(t == .exited(0), "\(t): \(run.stdout) \(run.stderr)")
        let line = run.stdout.split(separator: "\n").first { $0.hasPrefix("forks=") }.map(String.init) ?? ""
        #expect(line.hasPrefix("forks=300 ") && line.hasSuffix(" other=0"), "\(run.stdout) \(run.stderr)")
        #expect(!run.stderr.contains("no longer get pinned PIDs"), "\(run.stderr)")
        // A fork waits interruptibly until it is received: the receiver's scheduling delay is
        // a window the kernel leaves open (README, Pinned PIDs). Measured on 2 shared cores:
        // with the receiver 0 to 0.01 interrupted forks per fork at load 3, 0.02 to 0.07 at load
        // 5 to 7; without it (the supervisor received between its other work) 0.05 to 0.23 at
        // load 3, 0.55 to 0.67 at load 5 to 7; a receiver in the init's session, 0.13 to 0.31.
        // Paced (one fork every 2 ms), after the supervisor's hot path was cut: 0.007 to 0.012
        // at load averages of 49 to 86 (docs/performance.md).
        let eintr = Int(line.split(separator: " ").first { $0.hasPrefix("eintr=") }?.dropFirst(6) ?? "") ?? -1
        // Since forkers are traced from their listener on (InterruptedForkRestart), an
        // interrupted fork restarts: none fails (before, 0 to 5 of 300 in full runs).
        #expect(eintr == 0, "no fork fails with EINTR: \(line)")
        print("fork storm under pinning: \(line) (EINTR: forks interrupted before the supervisor received them)")
        // PID 5000 was created again and again (each child reaped before it showed what it
        // became gives it back): at the end it is not "never created" but not kept, with the
        // count of forks that had it (it was said to be never created).
        let lines = readText(pinLog).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let repinned = lines.filter { $0["kind"] as? String == "check" && $0["repinned"] as? Bool == true }.count
        let final = lines.last { $0["kind"] as? String == "check" && $0["pid"] as? Int == 5000 && $0["repinned"] == nil }
        #expect(repinned > 0 && final?["created"] as? Bool == true && final?["endedForks"] as? Int == repinned, "\(repinned) given back; last check: \(String(describing: final))")
        #expect(!run.stderr.contains("never created") && run.stderr.contains("process #1 (pid 5000): pin missing: not kept:")
                && run.stderr.contains("\(repinned) fork\(repinned == 1 ? "" : "s") got its PID"), "\(run.stderr)")
        #expect(!ProcFS.scan().contains { $0.hostPid == receiver.host.hostPid }, "the receiver outlived the namespace: \(receiver)")
    }

    /// Fixtures/no_clone3, compiled into the run's directory.
    static func buildNoClone3(in run: RestoreRun) throws -> String {
        guard let cc = Paths.tool("cc") ?? Paths.tool("gcc") else { throw HarnessError("no C compiler for Fixtures/no_clone3") }
        let launcher = run.directory + "/no_clone3"
        let pid = try spawn([cc, "-O1", "-o", launcher, Paths.packageRoot + "/Tests/IntegrationTests/Fixtures/no_clone3/no_clone3.c"],
                            env: Identity.cleanEnvironment, cwd: nil, stdout: run.directory + "/cc.out", stderr: run.directory + "/cc.out")
        guard try waitForExit(pid, timeout: 60) == .exited(0) else { throw HarnessError("cc: \(readText(run.directory + "/cc.out"))") }
        chmod(launcher, 0o755)
        return launcher
    }

    /// The TIDs /proc shows for a host PID's threads, at the tests' first nested level.
    static func tids(of hostPid: Int32) -> [Int32] {
        let taskDir = "/proc/\(hostPid)/task"
        return ((try? FileManager.default.contentsOfDirectory(atPath: taskDir)) ?? []).compactMap { t in
            let status = readText("\(taskDir)/\(t)/status")
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { return nil }
            let cols = line.dropFirst(6).split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { Int32($0) }
            return cols.dropFirst(ProcFS.ownDepth + OuterNamespace.levels).first
        }.sorted()
    }

    @Test("without clone3, threads get their TIDs by the dance too, the supervisor beside a tree's PID 1 starts, and --quiet silences the fallback note",
          .enabled(if: Prerequisites.userNamespacesWork))
    func threadsAndSupervisorWithoutClone3() throws {
        let tids: [Int32] = [300, 7, 45_000, 301, 12, 33_333, 99]
        let threads = """
        {"version": 1, "processes": [
          {"pid": 300, "ppid": 0, "pgid": 300, "sid": 300, "threads": \(tids)},
          {"pid": 302, "ppid": 300, "pgid": 300, "sid": 300, "state": "stopped", "threads": [302, 40]},
          {"pid": 303, "ppid": 300, "pgid": 300, "sid": 300}
        ]}
        """
        for (method, quiet) in [("dance", false), ("auto", true)] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let launcher = try Self.buildNoClone3(in: run)
            try run.start(["run", "--report", run.reportPath, "--pid-method", method] + (quiet ? ["--quiet"] : [])
                          + [try run.write("tree.json", Data(threads.utf8))], launcher: [launcher])
            try run.waitUntilReady()
            let seen = run.namespace()
            let holder = try #require(seen.first { $0.pid == 300 }, "\(seen)")
            #expect(Self.tids(of: holder.host.hostPid) == tids.sorted(), "\(method): pid 300's threads")
            let stopped = try #require(seen.first { $0.pid == 302 }, "\(seen)")
            #expect(Self.tids(of: stopped.host.hostPid) == [40, 302], "\(method): pid 302's threads")
            #expect(stopped.host.state == "T", "\(method): \(stopped)")
            #expect(run.stderr.isEmpty, "\(method)\(quiet ? " --quiet" : ""): \(run.stderr)")
        }
        // A tree's own PID 1 forking a pinned child: its supervisor is forked in the namespace
        // without clone3 (the dance gives it a PID above the tree's).
        let run = try RestoreRun()
        defer { run.tearDown() }
        let launcher = try Self.buildNoClone3(in: run)
        try run.start(["run", "--report", run.reportPath, "--quiet", "--pin-mismatch", "error",
                       try run.write("tree.json", Data(Self.descriptorTrees["pid1-pinned"]!.utf8))], launcher: [launcher])
        try run.waitUntilReady()
        let seen = try run.waitForNamespace(timeout: 20, "the pinned child 5000 and the supervisor") { now in
            now.contains { $0.pid == 5000 && $0.ppid == 1 } && now.contains { $0.ppid == 0 && $0.pid > 5000 }
        }
        #expect(seen.filter { !$0.isForkReceiver }.count == 4, "PID 1, 5000 (sleep), 101, the supervisor: \(seen)")
    }

    @Test("ulimit -u exhaustion says which limit, not a bare EAGAIN", .enabled(if: Prerequisites.userNamespacesWork))
    func processLimitIsNamed() throws {
        guard let prlimit = Paths.tool("prlimit") else { throw HarnessError("prlimit (util-linux) is missing") }
        let tree = TestTree.flat(top: 100, children: Array(101..<180), comment: "80 holders")
        let run = try RestoreRun()
        defer { run.tearDown() }
        try run.startRun(treeFile: try run.write("tree.json", tree.json()), launcher: [prlimit, "--nproc=40"])
        let t = try run.waitForExit(timeout: 60)
        #expect(t == .exited(125), "\(t): \(run.stderr)")
        #expect(run.stderr.contains("ulimit -u, RLIMIT_NPROC = 40"), "\(run.stderr)")
    }

    @Test("a killed namespace init is named, not the tree process asked last", .enabled(if: Prerequisites.userNamespacesWork))
    func killedInitIsBlamed() throws {
        let children = TestTree.scatteredPids(count: 5999, maxPid: 60_000, excluding: [1, 100])
        let tree = TestTree.flat(top: 100, children: children, comment: "6000 holders")
        let run = try RestoreRun()
        defer { run.tearDown() }
        // The runtime pauses once half the processes exist (a hidden testing aid), so the init
        // certainly dies mid-restore, however fast the restore is.
        try run.startRun(treeFile: try run.write("tree.json", tree.json()), extra: ["--testing-fault", "pause-mid-restore"])
        try run.waitForRuntimePaused()
        let seen = run.namespace()
        let initHost = try #require(seen.first { $0.pid == 1 }?.host.hostPid)
        kill(initHost, SIGKILL)
        let t = try run.waitForExit(timeout: 60)
        #expect(access(run.reportPath, F_OK) != 0, "the restore had finished before the init was killed")
        #expect(t == .exited(125), "\(t): \(run.stderr)")
        #expect(run.stderr.contains("the namespace init: died during the restore (killed by signal 9)"), "\(run.stderr)")
        #expect(!run.stderr.contains("every restored process is gone"), "\(run.stderr)")
    }

    /// 70 exec'ing processes, then a top one whose payload forks the pinned PID 5000; each
    /// exec'ing process hands its fork listener to the init, the top one last.
    static let manyListeners: String = {
        var entries = [#"{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["sh", "-c", "sleep 1000 & wait"], "env": ["PATH=/usr/bin:/bin"]}}"#,
                       #"{"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}"#]
        for pid in 101...170 {
            entries.append(#"{"pid": \#(pid), "ppid": 100, "pgid": 100, "sid": 100, "process": {"args": ["sleep", "1000"], "env": ["PATH=/usr/bin:/bin"]}}"#)
        }
        return "{\"version\": 1, \"processes\": [\n" + entries.joined(separator: ",\n") + "\n]}"
    }()

    @Test("pinning survives a low soft open-file limit (the init raises it), and its loss is an error naming the process",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pinningUnderLowFileLimit() throws {
        guard let prlimit = Paths.tool("prlimit") else { throw HarnessError("prlimit (util-linux) is missing") }
        do {
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.startRun(treeFile: try run.write("tree.json", Data(Self.manyListeners.utf8)), launcher: [prlimit, "--nofile=40:4096"])
            try run.waitUntilReady()
            let seen = try run.waitForNamespace(timeout: 20, "the pinned child 5000") { $0.contains { $0.pid == 5000 } }
            #expect(seen.first { $0.pid == 5000 }?.ppid == 100)
            #expect(!run.stderr.contains("error"), "\(run.stderr)")
        }
        do {
            // The hard limit too low: the loss must be said, naming the process.
            let run = try RestoreRun()
            defer { run.tearDown() }
            try run.startRun(treeFile: try run.write("tree.json", Data(Self.manyListeners.utf8)), launcher: [prlimit, "--nofile=40:40"])
            try run.waitUntilReady()
            let deadline = Date().addingTimeInterval(20)
            while !run.stderr.contains("no longer get pinned PIDs") && Date() < deadline { usleep(50_000) }
            // Which processes lose their listener depends on the order in which they exec (the
            // init runs out of fds at some point of it): every loss must be an error that names
            // its process and the fix, and there must be at least one.
            let losses = run.stderr.split(separator: "\n").filter { $0.contains("no longer get pinned PIDs") }
            #expect(!losses.isEmpty, "\(run.stderr)")
            for line in losses {
                let named = line.range(of: #"error: process #[0-9]+ \(pid 1[0-7][0-9]\): its forks no longer get pinned PIDs"#,
                                       options: .regularExpression) != nil
                #expect(named && line.contains("ulimit -n"), "a loss of pinning that does not name its process and the fix: \(line)")
            }
        }
    }
    /// Assembles Fixtures/multiarch/fork-ARCH.S into the run's directory with binutils.
    static func assemble(_ arch: String, in run: RestoreRun) throws -> String {
        let (asFlag, ldEmulation) = arch == "i386" ? ("--32", "elf_i386") : ("--x32", "elf32_x86_64")
        guard let assembler = Paths.tool("as"), let linker = Paths.tool("ld") else { throw HarnessError("binutils (as, ld) are missing") }
        let out = run.directory + "/fork-\(arch)"
        let log = run.directory + "/as.out"
        for argv in [[assembler, asFlag, "-o", out + ".o", Paths.packageRoot + "/Tests/IntegrationTests/Fixtures/multiarch/fork-\(arch).S"],
                     [linker, "-m", ldEmulation, "-static", "-o", out, out + ".o"]] {
            let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: nil, stdout: log, stderr: log)
            guard try waitForExit(pid, timeout: 60) == .exited(0) else { throw HarnessError("\(argv[0]): \(readText(log))") }
        }
        chmod(out, 0o755)
        return out
    }

    @Test("an i386 or x32 payload under pinning is supervised, not killed for its architecture: its fork gets the pinned PID",
          .enabled(if: Prerequisites.userNamespacesWork), arguments: ["i386", "x32"])
    func otherArchitecturePayloadIsPinned(arch: String) throws {
        #if arch(x86_64)
        let run = try RestoreRun()
        defer { run.tearDown() }
        let program = try Self.assemble(arch, in: run)
        // Probe: can this kernel run the architecture at all (x32 is often compiled out or off)?
        let probe = try spawn(["/bin/sh", "-c", "\"$0\" & p=$!; sleep 0.2; kill -0 $p 2>/dev/null || exit 1; pkill -P $p; kill $p; exit 0", program],
                              env: Identity.cleanEnvironment, cwd: nil, stdout: run.directory + "/probe.out", stderr: run.directory + "/probe.out")
        if try waitForExit(probe, timeout: 30) != .exited(0) {
            print("[multi-arch] \(arch) skipped: this kernel cannot run \(arch) programs (\(readText(run.directory + "/probe.out").trimmingCharacters(in: .whitespacesAndNewlines)))")
            return
        }
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {"args": ["\(program)"], "env": []}},
          {"pid": 5000, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}
        ]}
        """
        let pins = run.directory + "/pins.log"
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)), extra: ["--pin-log", pins])
        try run.waitUntilReady()
        let seen = try run.waitForNamespace(timeout: 20, "the \(arch) payload's pinned child 5000") { $0.contains { $0.pid == 5000 } }
        #expect(seen.first { $0.pid == 5000 }?.ppid == 100, "\(seen)")
        let parent = try #require(seen.first { $0.pid == 100 }, "the \(arch) payload is gone: \(seen)\n\(run.stderr)")
        #expect(parent.host.state == "S", "\(parent)")
        #expect(readText(pins).contains(#""expected": 5000, "got": 5000, "pinned": true"#), "pin log: \(readText(pins))")
        #expect(!run.stderr.contains("error"), "\(run.stderr)")
        #else
        print("[multi-arch] skipped: i386/x32 payloads exist on x86-64 only")
        #endif
    }
    @Test("a newuidmap that hangs is killed after 10 s, with whatever it started: run fails naming it, nothing is left",
          .enabled(if: Prerequisites.userNamespacesWork))
    func hangingNewuidmapTimesOut() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        guard run.user.dropsPrivileges else {
            print("[newuidmap timeout] skipped: a setuid-root stand-in for newuidmap needs the tests to run as root")
            return
        }
        // A stand-in earlier in PATH, root-owned and setuid like the real one (the runtime
        // checks that before using it; the kernel ignores setuid on scripts, so it runs as the
        // test user). It forks a child and waits: killing the helper alone would leave that.
        let bin = run.directory + "/bin"
        mkdir(bin, 0o755)
        let helper = try run.write("bin/newuidmap", Data("#!/bin/sh\nsleep 1000\n".utf8), mode: 0o755)
        chown(helper, 0, 0)
        chmod(helper, 0o4755)
        let tree = TestTree.flat(top: 100, children: [101], comment: "two holders")
        let started = Date()
        try run.startRun(treeFile: try run.write("tree.json", tree.json()), extra: ["--map-users", "auto"],
                         launcher: ["/usr/bin/env", "PATH=\(bin):/usr/bin:/bin"])
        let t = try run.waitForExit(timeout: 40)
        let took = Date().timeIntervalSince(started)
        #expect(t == .exited(77), "\(t): \(run.stderr)")
        #expect(run.stderr.contains("\(helper) did not finish within 10 s writing the uid map") && run.stderr.contains("ETIMEDOUT"), "\(run.stderr)")
        #expect(took >= 10 && took < 30, "run took \(took) s")
    }
    @Test("a stopped payload whose exec fails after SIGCONT says which process and why (the answer socket is gone by then)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func stoppedExecFailureIsNamed() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let program = try run.write("payload.sh", Data("#!/bin/sh\nexec sleep 1000\n".utf8), mode: 0o755)
        let tree = """
        {"version": 1, "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100},
          {"pid": 101, "ppid": 100, "pgid": 100, "sid": 100, "state": "stopped", "process": {"args": ["\(program)"], "env": ["PATH=/usr/bin:/bin"]}}
        ]}
        """
        try run.startRun(treeFile: try run.write("tree.json", Data(tree.utf8)))
        try run.waitUntilReady()
        let stopped = try #require(run.namespace().first { $0.pid == 101 }, "\(run.namespace())")
        // The payload becomes unexecutable while the process is stopped; SIGCONT lets it try.
        chmod(program, 0)
        kill(stopped.host.hostPid, SIGCONT)
        let want = "rootless-restore: error: process #1 (pid 101): a stopped process could not exec its payload after SIGCONT (EACCES, Permission denied)"
        let deadline = Date().addingTimeInterval(20)
        while !run.stderr.contains(want) && Date() < deadline { usleep(50_000) }
        #expect(run.stderr.contains(want), "\(run.stderr)")
    }
}



