// rootless-restore inside rootless Podman, as the unprivileged test user: a local image built
// from the static binary by scripts/podman-image.sh (podman import, no registry), then `check`,
// core restore cases and the MPI example inside containers, and a job recorded in one container
// and restored in another. The harness finds the containers' processes in the host's /proc (a
// container's root is the test user there) and checks them with its own reader.
//
// Options the containers need here (Podman 4.3, kernel 6.x with hybrid cgroups):
//   --security-opt unmask=/proc/*   a new proc can only be mounted where /proc is fully visible;
//   runc (containers.conf)          crun 1.8 refuses hybrid cgroup hosts;
//   --network none                  slirp4netns needs /dev/net/tun, which this host denies (the
//                                   tests only use loopback);
//   -v /usr/bin:/usr/bin:ro -v /usr/lib:/usr/lib:ro -v /usr/share:/usr/share:ro -v /etc/openmpi:/etc/openmpi:ro
//                                   only for MPI: the host's Open MPI, not baked into the image,
//                                   and the host's loader at /lib64 for its dynamic programs.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

enum Podman {
    static let tool = Paths.tool("podman")
    static let image = "localhost/rootless-restore:static"
    static let binaryInside = "/usr/local/bin/rootless-restore"
    static let options = ["--rm", "--network", "none", "--security-opt", "unmask=/proc/*"]

    /// Why the Podman tests cannot run, or nil.
    static let unavailable: String? = {
        guard tool != nil else { return "podman is not installed (scripts/setup.sh installs it)" }
        guard case .success(let user) = Identity.user else { return "no test user" }
        guard user.dropsPrivileges else { return "the Podman tests run the test user's own rootless Podman: run them as root (scripts/test.sh)" }
        guard Prerequisites.userNamespacesWork else { return "the test user cannot create user namespaces" }
        return nil
    }()
    static var available: Bool {
        if let why = unavailable { print("[podman] skipped: \(why)") }
        return unavailable == nil
    }

    /// The static-pie release binary (scripts/setup.sh builds it).
    static var staticBinary: Result<String, HarnessError> {
        let env = ProcessInfo.processInfo.environment
        let path = env["RR_STATIC_BINARY"] ?? Paths.packageRoot + "/.build/release/rootless-restore"
        guard access(path, X_OK) == 0 else {
            return .failure(HarnessError("no static release binary at \(path): scripts/setup.sh builds it (or set RR_STATIC_BINARY)"))
        }
        return .success(path)
    }

    /// argv that runs `podman ARGS` as the test user with the per-user settings of
    /// scripts/podman-image.sh (sourced from DIR, where the test copied it).
    static func command(_ run: RestoreRun, _ args: [String]) throws -> [String] {
        let script = ". \(run.directory)/podman-image.sh --env && exec podman \"$@\""
        return try Identity.prefix(for: run.user) + ["/bin/bash", "-c", script, "podman"] + args
    }

    static var environment: [String] { Identity.cleanEnvironment + ["USER=\(Identity.userName)"] }

    /// Runs podman to the end; returns its termination and output.
    @discardableResult
    static func run(_ run: RestoreRun, _ args: [String], name: String, timeout: Double = 120) throws -> (Termination, String) {
        let out = "\(run.directory)/\(name).out"
        let pid = try spawn(try command(run, args), env: environment, cwd: run.directory, stdout: out, stderr: out)
        let end = try waitForExit(pid, timeout: timeout)
        return (end, readText(out))
    }

    /// Builds the image (once per test; it takes about a second) in the test's directory.
    static func buildImage(_ run: RestoreRun) throws {
        let binary = try staticBinary.get()
        try FileManager.default.copyItem(atPath: Paths.packageRoot + "/scripts/podman-image.sh", toPath: run.directory + "/podman-image.sh")
        try FileManager.default.copyItem(atPath: binary, toPath: run.directory + "/rootless-restore-static")
        chmod(run.directory + "/podman-image.sh", 0o755)
        chmod(run.directory + "/rootless-restore-static", 0o755)
        let out = "\(run.directory)/image.out"
        let pid = try spawn(try Identity.prefix(for: run.user) + ["/bin/bash", run.directory + "/podman-image.sh", run.directory + "/rootless-restore-static", image],
                            env: environment, cwd: run.directory, stdout: out, stderr: out)
        let end = try waitForExit(pid, timeout: 120)
        guard end == .exited(0) else { throw HarnessError("podman-image.sh failed (\(end)): \(readText(out))") }
    }

    /// The MPI ring test program built in the test's directory, its `ref` and `ck` output
    /// directories, and the options that give a container the host's Open MPI read-only.
    /// The container is root in its user namespace, which mpirun refuses without the two
    /// OMPI_ALLOW_RUN_AS_ROOT variables.
    static func prepareMPI(_ run: RestoreRun) throws -> (ring: String, options: [String]) {
        let dir = run.directory
        let ring = dir + "/ring"
        let cc = try spawn([MPI.mpicc!, "-O2", "-o", ring, MPI.source], env: Identity.cleanEnvironment, cwd: dir,
                           stdout: dir + "/cc.out", stderr: dir + "/cc.out")
        let built = try waitForExit(cc, timeout: 120)
        guard built == .exited(0) else { throw HarnessError("mpicc failed (\(built)): \(readText(dir + "/cc.out"))") }
        chmod(ring, 0o755)
        for sub in ["ref", "ck"] { mkdir(dir + "/" + sub, 0o755); chown(dir + "/" + sub, run.user.uid, run.user.gid) }
        // The host's programs are dynamic: they need its loader at /lib64 (the image's own binary is
        // static-pie and brings none); their libraries are found in the mounted /usr/lib.
        guard let loader = realpath("/lib64/ld-linux-x86-64.so.2", nil) else {
            throw HarnessError("the host has no /lib64/ld-linux-x86-64.so.2 for the host's programs in the container")
        }
        defer { free(loader) }
        let options = Podman.options + ["-v", "\(String(cString: loader)):/lib64/ld-linux-x86-64.so.2:ro",
                                        "-v", "/usr/bin:/usr/bin:ro", "-v", "/usr/lib:/usr/lib:ro", "-v", "/usr/share:/usr/share:ro",
                                        "-v", "/etc/openmpi:/etc/openmpi:ro", "-v", "\(dir):\(dir)", "-w", dir,
                                        "-e", "OMPI_ALLOW_RUN_AS_ROOT=1", "-e", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                        "-e", "PATH=/usr/local/bin:/usr/bin:/bin"]
        return (ring, options)
    }

    /// Rootless Podman keeps a pause process (it holds the user namespace) after the last
    /// container: end it, so that the test leaves nothing of the test user running.
    static func stopPauseProcess(_ run: RestoreRun) {
        _ = try? Podman.run(run, ["system", "migrate"], name: "migrate", timeout: 30)
        for p in ProcFS.scan() where p.realUid == run.user.uid && p.hostPPid == 1 && p.commandLine == "podman" {
            kill(p.hostPid, SIGKILL)
        }
    }

    /// The host PID of the rootless-restore that runs inside a container (its first level).
    static func runtimePid(_ run: RestoreRun, timeout: Double = 60) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let p = ProcFS.scan().first(where: { p in
                p.realUid == run.user.uid && p.nspid.count == ProcFS.ownDepth + 1
                    && p.commandLine.hasPrefix(binaryInside + " run")
            }) { return p.hostPid }
            usleep(20_000)
        }
        throw HarnessError("no \(binaryInside) run process appeared in a container within \(timeout) s")
    }
}

extension Identity {
    static var userName: String { (try? user.get().name) ?? "rrtest" }
}

@Suite("rootless Podman: a local image of the static binary", .serialized)
struct PodmanTests {

    @Test("the image holds one static binary; check passes with unmask=/proc/* and names it without",
          .enabled(if: Podman.available, "needs rootless Podman for the test user"))
    func checkInside() throws {
        let run = try RestoreRun()
        defer { Podman.stopPauseProcess(run); run.tearDown() }
        try Podman.buildImage(run)
        let ldd = try spawn(["/usr/bin/ldd", run.directory + "/rootless-restore-static"], env: Identity.cleanEnvironment, cwd: nil,
                            stdout: run.directory + "/ldd.out", stderr: run.directory + "/ldd.out")
        _ = try waitForExit(ldd, timeout: 30)
        // setup.sh links it static-pie: no shared library at all, so the image needs none.
        #expect(readText(run.directory + "/ldd.out").contains("statically linked"), "ldd: \(readText(run.directory + "/ldd.out"))")

        let (good, goodOut) = try Podman.run(run, ["run"] + Podman.options + [Podman.image, Podman.binaryInside, "check"], name: "check")
        print("[podman] check with \(Podman.options.joined(separator: " ")):\n\(goodOut)")
        #expect(good == .exited(0), "check inside the container: \(goodOut)")
        let (masked, maskedOut) = try Podman.run(run, ["run", "--rm", "--network", "none", Podman.image, Podman.binaryInside, "check"], name: "check-masked")
        #expect(masked == .exited(77), "check with the default /proc masks: \(maskedOut)")
        #expect(maskedOut.contains("unmask"), "check should name the podman option: \(maskedOut)")
    }

    @Test("core restore cases inside a container: scattered PIDs, a chain, PID 1, sessions",
          .enabled(if: Podman.available, "needs rootless Podman for the test user"))
    func coreCasesInside() throws {
        let trees: [TestTree] = [
            TestTree.flat(top: 100, children: TestTree.scatteredPids(count: 59, maxPid: 4_000_000, including: [2, 3, 32768, 65536, 4_000_000], excluding: [1, 100]),
                          comment: "60 holders with scattered PIDs"),
            TestTree(comment: "chain", processes: Self.chain()),
            TestTree(comment: "own PID 1 and two sessions", processes: [
                TreeProcess(pid: 1, ppid: 0, pgid: 1, sid: 1),
                TreeProcess(pid: 50, ppid: 1, pgid: 50, sid: 1),
                TreeProcess(pid: 51, ppid: 50, pgid: 50, sid: 1),
                TreeProcess(pid: 700, ppid: 1, pgid: 700, sid: 700),
                TreeProcess(pid: 40000, ppid: 700, pgid: 40001, sid: 700),
                TreeProcess(pid: 40001, ppid: 700, pgid: 40001, sid: 700),
            ]),
        ]
        // One scratch directory for all: the pause process Podman leaves is ended once, at
        // the end (it then awaits the machine's init, which can take half a minute to reap).
        let run = try RestoreRun()
        defer { Podman.stopPauseProcess(run); run.tearDown() }
        try Podman.buildImage(run)
        for (i, tree) in trees.enumerated() {
            let started = Date()
            defer { print("[podman] \(tree.comment): \(String(format: "%.1f", Date().timeIntervalSince(started))) s") }
            let treeFile = try run.write("tree-\(i).json", tree.json())
            let report = "\(run.directory)/report-\(i).json"
            let args = ["run"] + Podman.options + ["-v", "\(run.directory):\(run.directory)", Podman.image,
                        Podman.binaryInside, "run", "--report", report, treeFile]
            let out = run.directory + "/container-\(i).out"
            let podman = try spawn(try Podman.command(run, args), env: Podman.environment, cwd: run.directory, stdout: out, stderr: out)
            var ended: Termination?
            defer { if ended == nil { kill(podman, SIGKILL); _ = try? waitForExit(podman, timeout: 30) } }
            let deadline = Date().addingTimeInterval(90)
            while access(report, F_OK) != 0 {
                if let end = reap(podman) { ended = end; Issue.record("the container ended (\(end)) before the report: \(readText(out))"); return }
                guard Date() < deadline else { Issue.record("no report after 90 s: \(readText(out))"); return }
                usleep(20_000)
            }
            let runtime = try Podman.runtimePid(run)
            verifyNamespace(ProcFS.namespaceProcesses(under: runtime, outerLevels: 1), matches: tree, user: run.user)
            // SIGTERM ends the tree (forwarded to every process of the namespace): 128+15.
            kill(runtime, SIGTERM)
            ended = try waitForExit(podman, timeout: 60)
            #expect(ended == .exited(143), "container after SIGTERM: \(readText(out))")
        }
    }

    @Test("MPI inside containers: mpirun -np 4 recorded in one container, restored in a fresh one",
          .enabled(if: Podman.available && MPI.available, "needs rootless Podman and Open MPI"))
    func mpiAcrossContainers() throws {
        let run = try RestoreRun()
        defer { Podman.stopPauseProcess(run); run.tearDown() }
        try Podman.buildImage(run)
        let dir = run.directory
        let (ring, mpiOptions) = try Podman.prepareMPI(run)
        // mpirun.openmpi: /usr/bin/mpirun is a link through /etc/alternatives, not in the image.
        let mpirun = "/usr/bin/mpirun.openmpi --oversubscribe -np 4 \(ring)"
        let (refEnd, refOut) = try Podman.run(run, ["run"] + mpiOptions + [Podman.image, "sh", "-c", "\(mpirun) \(dir)/ref 40 0"], name: "ref")
        #expect(refEnd == .exited(0), "reference run: \(refOut)")
        let expected = try #require(resultLine(refOut), "no result: \(refOut)")

        // Container 1: the live job, recorded and killed.
        // setsid: a job of the container's PID-1 shell is in session 1 and process group 1,
        // and a restore, whose init is PID 1, cannot recreate a foreign session 1.
        let record = """
            setsid \(mpirun) \(dir)/ck 40 150 > \(dir)/live.out 2>&1 &
            job=$!
            i=0
            until [ -f \(dir)/ck/committed ] && [ "$(cat \(dir)/ck/committed)" -ge 10 ]; do
              i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.05
            done
            \(Podman.binaryInside) record --freeze --spawn-by-payload $job -o \(dir)/job.json
            kill -KILL $(grep -o '"pid": [0-9]*' \(dir)/job.json | grep -o '[0-9]*$')
            wait $job
            exit 0
            """
        let (recEnd, recOut) = try Podman.run(run, ["run"] + mpiOptions + [Podman.image, "sh", "-c", record], name: "record", timeout: 180)
        #expect(recEnd == .exited(0), "record container: \(recOut) \(readText(dir + "/live.out"))")
        let data = try #require(FileManager.default.contents(atPath: dir + "/job.json"), "no job.json: \(recOut)")
        let procs = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["processes"] as? [[String: Any]])
        let recorded = procs.compactMap { ($0["pid"] as? Int).map(Int32.init) }
        #expect(recorded.count == 5, "mpirun and 4 ranks: \(recorded)")

        // Container 2, fresh: the restore; every rank must be at its recorded PID.
        let out = dir + "/restore.out"
        let podman = try spawn(try Podman.command(run, ["run"] + mpiOptions + [Podman.image, Podman.binaryInside, "run", "--report", run.reportPath, dir + "/job.json"]),
                               env: Podman.environment, cwd: dir, stdout: out, stderr: out)
        defer { kill(podman, SIGKILL); _ = try? waitForExit(podman, timeout: 30) }
        var checked = false
        let deadline = Date().addingTimeInterval(120)
        var seen: [Int32] = []
        var ended: Termination?
        while Date() < deadline {
            ended = reap(podman)
            if ended != nil { break }
            if access(run.reportPath, F_OK) == 0, let runtime = try? Podman.runtimePid(run, timeout: 5) {
                let ns = ProcFS.namespaceProcesses(under: runtime, outerLevels: 1)
                seen = ns.map(\.pid).sorted()
                let byPid = Dictionary(ns.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
                if recorded.allSatisfy({ byPid[$0] != nil }) {
                    for pid in recorded.dropFirst() {
                        #expect(byPid[pid]?.ppid == recorded[0], "rank \(pid) is not a child of mpirun \(recorded[0]): \(String(describing: byPid[pid]))")
                    }
                    checked = true
                    break
                }
            }
            usleep(20_000)
        }
        #expect(checked, "the restored ranks never all showed up at their recorded PIDs \(recorded); seen \(seen); \(readText(out))")
        let end = try ended ?? waitForExit(podman, timeout: 120)
        #expect(end == .exited(0), "restore container: \(readText(out))")
        #expect(resultLine(readText(out)) == expected, "restored: \(readText(out))")
    }

    @Test("a job of a container's PID-1 shell, recorded from the host: restored in a fresh container at its PIDs, in session 1 and group 1, its forks pinned and matched",
          .enabled(if: Podman.available, "needs rootless Podman for the test user"))
    func pidOneShellJobRecordedFromHost() throws {
        let run = try RestoreRun()
        defer { Podman.stopPauseProcess(run); run.tearDown() }
        try Podman.buildImage(run)
        let dir = run.directory
        let script = "sleep 1001 & sleep 1002 & wait"
        // Container 1: busybox sh is PID 1 and starts the job, which forks two sleeps: all in
        // session 1 and group 1 (runc makes PID 1 a session leader).
        let live = try spawn(try Podman.command(run, ["run"] + Podman.options + ["-v", "\(dir):\(dir)", Podman.image, "sh", "-c", "sh -c '\(script)' & wait"]),
                             env: Podman.environment, cwd: dir, stdout: dir + "/live.out", stderr: dir + "/live.out")
        var liveEnded = false
        defer { if !liveEnded { kill(live, SIGKILL); _ = try? waitForExit(live, timeout: 30) } }
        var job: HostProcess?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, job == nil {
            let inside = ProcFS.scan().filter { $0.realUid == run.user.uid && $0.nspid.count == ProcFS.ownDepth + 1 }
            job = inside.first { j in
                j.commandLine == "sh -c \(script)" && inside.filter { $0.hostPPid == j.hostPid && $0.commandLine.hasPrefix("sleep 100") }.count == 2
            }
            if job == nil { usleep(50_000) }
        }
        let j = try #require(job, "the container's job never showed up: \(readText(dir + "/live.out"))")
        let pidOne = try #require(ProcFS.scan().first { $0.hostPid == j.hostPPid })
        #expect(pidOne.nspid.last == 1 && j.nspgid.last == 1 && j.nssid.last == 1, "\(pidOne) \(j)")

        // Recorded from the host, as the test user (the container's processes are theirs there).
        let out = dir + "/record.out"
        let rec = try spawn(try Identity.prefix(for: run.user) + [run.binary, "record", "--spawn-by-payload", "-o", dir + "/job.json", String(j.hostPid)],
                            env: Identity.cleanEnvironment, cwd: dir, stdout: out, stderr: out)
        try #require(try waitForExit(rec, timeout: 60) == .exited(0), "record: \(readText(out))")
        #expect(!readText(out).contains("does not name its program"), "argv[0] sh is looked up in the container's files, not the host's: \(readText(out))")
        let data = try #require(FileManager.default.contents(atPath: dir + "/job.json"))
        let procs = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["processes"] as? [[String: Any]])
        try #require(procs.count == 3, "\(procs)")
        let pids = procs.compactMap { ($0["pid"] as? Int).map(Int32.init) }
        #expect(pids[0] == j.nspid.last && procs[0]["ppid"] as? Int == 1 && procs[0]["pgid"] as? Int == 1 && procs[0]["sid"] as? Int == 1, "\(procs[0])")
        #expect(((procs[0]["process"] as? [String: Any])?["args"] as? [String]) == ["sh", "-c", script], "\(procs[0])")
        #expect(procs.dropFirst().allSatisfy { $0["spawn"] as? String == "payload" && $0["ppid"] as? Int == Int(pids[0]) }, "\(procs)")

        // The kill: the container's PID 1, from the host; its namespace ends with it.
        kill(pidOne.hostPid, SIGKILL)
        _ = try waitForExit(live, timeout: 60)
        liveEnded = true

        // The tree's maps are the host's view of the container's: a fresh container refuses
        // them, naming the option that replaces them with its own ids.
        let restore = ["run"] + Podman.options + ["-v", "\(dir):\(dir)", Podman.image, Podman.binaryInside, "run"]
        let (refused, refusedOut) = try Podman.run(run, restore + [dir + "/job.json"], name: "refused", timeout: 60)
        #expect(refused == .exited(77) && refusedOut.contains("--map-users 0:0:1"), "\(refused): \(refusedOut)")

        let restoreOut = dir + "/restore.out"
        let podman = try spawn(try Podman.command(run, restore + ["--map-users", "0:0:1", "--map-groups", "0:0:1", "--pin-log", dir + "/pins.log",
                                                              "--report", run.reportPath, dir + "/job.json"]),
                               env: Podman.environment, cwd: dir, stdout: restoreOut, stderr: restoreOut)
        var ended: Termination?
        defer { if ended == nil { kill(podman, SIGKILL); _ = try? waitForExit(podman, timeout: 30) } }
        let ready = Date().addingTimeInterval(90)
        while access(run.reportPath, F_OK) != 0 {
            if let end = reap(podman) { ended = end; Issue.record("the container ended (\(end)) before the report: \(readText(restoreOut))"); return }
            guard Date() < ready else { Issue.record("no report after 90 s: \(readText(restoreOut))"); return }
            usleep(20_000)
        }
        let runtime = try Podman.runtimePid(run)
        var seen: [NamespaceProcess] = []
        let forked = Date().addingTimeInterval(30)
        while Date() < forked {
            seen = ProcFS.namespaceProcesses(under: runtime, outerLevels: 1)
            if pids.allSatisfy({ p in seen.contains { $0.pid == p } }) { break }
            usleep(20_000)
        }
        for (k, pid) in pids.enumerated() {
            let p = seen.first { $0.pid == pid }
            #expect(p?.ppid == (k == 0 ? 1 : pids[0]) && p?.pgid == 1 && p?.sid == 1, "pid \(pid): \(String(describing: p)); \(seen)")
        }
        #expect(seen.first { $0.pid == pids[1] }?.host.commandLine == "sleep 1001" && seen.first { $0.pid == pids[2] }?.host.commandLine == "sleep 1002", "\(seen)")
        let initProcess = seen.first { $0.pid == 1 }
        #expect(initProcess?.sid == 1 && initProcess?.pgid == 1, "the runtime's init leads session 1: \(String(describing: initProcess))")
        let checked = Date().addingTimeInterval(20)
        while Date() < checked, readText(dir + "/pins.log").components(separatedBy: "\"kind\": \"check\"").count < 3 { usleep(50_000) }
        let checks = readText(dir + "/pins.log").split(separator: "\n").filter { $0.contains("\"kind\": \"check\"") }
        #expect(checks.count == 2 && checks.allSatisfy { $0.contains("\"matched\": true") }, "\(readText(dir + "/pins.log"))\n\(readText(restoreOut))")
        kill(runtime, SIGTERM)
        ended = try waitForExit(podman, timeout: 60)
        #expect(ended == .exited(143), "container after SIGTERM: \(readText(restoreOut))")
    }

    @Test("mpirun as a container's PID 1, recorded from the host with --freeze: restored in a fresh container, its ranks pinned at their PIDs by the supervisor beside PID 1, same result",
          .enabled(if: Podman.available && MPI.available, "needs rootless Podman and Open MPI"))
    func mpirunAsPidOne() throws {
        let run = try RestoreRun()
        defer { Podman.stopPauseProcess(run); run.tearDown() }
        try Podman.buildImage(run)
        let dir = run.directory
        let (ring, mpiOptions) = try Podman.prepareMPI(run)
        let mpirun = ["/usr/bin/mpirun.openmpi", "--oversubscribe", "-np", "4", ring]
        let (refEnd, refOut) = try Podman.run(run, ["run"] + mpiOptions + [Podman.image] + mpirun + [dir + "/ref", "40", "0"], name: "ref")
        #expect(refEnd == .exited(0), "reference run: \(refOut)")
        let expected = try #require(resultLine(refOut), "no result: \(refOut)")

        // Container 1: mpirun is its PID 1 (podman execs it directly).
        let live = try spawn(try Podman.command(run, ["run"] + mpiOptions + [Podman.image] + mpirun + [dir + "/ck", "40", "150"]),
                             env: Podman.environment, cwd: dir, stdout: dir + "/live.out", stderr: dir + "/live.out")
        var liveEnded = false
        defer { if !liveEnded { kill(live, SIGKILL); _ = try? waitForExit(live, timeout: 30) } }
        var root: HostProcess?
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            if root == nil {
                root = ProcFS.scan().first { $0.realUid == run.user.uid && $0.nspid.count == ProcFS.ownDepth + 1 && $0.nspid.last == 1
                    && $0.commandLine.hasPrefix("/usr/bin/mpirun.openmpi") }
            }
            if root != nil, let n = Int(readText(dir + "/ck/committed").trimmingCharacters(in: .whitespacesAndNewlines)), n >= 10 { break }
            if let end = reap(live) { liveEnded = true; Issue.record("the job's container ended (\(end)): \(readText(dir + "/live.out"))"); return }
            usleep(50_000)
        }
        let mpirunHost = try #require(root, "no mpirun as a container's PID 1: \(readText(dir + "/live.out"))")
        let out = dir + "/record.out"
        let rec = try spawn(try Identity.prefix(for: run.user) + [run.binary, "record", "--freeze", "--spawn-by-payload", "-o", dir + "/job.json", String(mpirunHost.hostPid)],
                            env: Identity.cleanEnvironment, cwd: dir, stdout: out, stderr: out)
        try #require(try waitForExit(rec, timeout: 60) == .exited(0), "record: \(readText(out))")
        kill(mpirunHost.hostPid, SIGKILL)
        _ = try waitForExit(live, timeout: 60)
        liveEnded = true
        let data = try #require(FileManager.default.contents(atPath: dir + "/job.json"))
        let procs = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["processes"] as? [[String: Any]])
        let recorded = procs.compactMap { ($0["pid"] as? Int).map(Int32.init) }
        #expect(recorded.first == 1 && recorded.count == 5 && procs.dropFirst().allSatisfy { $0["spawn"] as? String == "payload" },
                "mpirun as PID 1 and 4 payload-spawned ranks: \(recorded)")

        // Container 2, fresh: the tree's PID 1 is mpirun, so the fork supervisor runs beside it.
        let restoreOut = dir + "/restore.out"
        let podman = try spawn(try Podman.command(run, ["run"] + mpiOptions + [Podman.image, Podman.binaryInside, "run", "--map-users", "0:0:1", "--map-groups", "0:0:1",
                                                                              "--pin-mismatch", "error", "--report", run.reportPath, dir + "/job.json"]),
                               env: Podman.environment, cwd: dir, stdout: restoreOut, stderr: restoreOut)
        defer { kill(podman, SIGKILL); _ = try? waitForExit(podman, timeout: 30) }
        var checked = false
        var seen: [Int32] = []
        var ended: Termination?
        let until = Date().addingTimeInterval(120)
        while Date() < until {
            ended = reap(podman)
            if ended != nil { break }
            if access(run.reportPath, F_OK) == 0, let runtime = try? Podman.runtimePid(run, timeout: 5) {
                let ns = ProcFS.namespaceProcesses(under: runtime, outerLevels: 1)
                seen = ns.map(\.pid).sorted()
                let byPid = Dictionary(ns.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
                if recorded.allSatisfy({ byPid[$0] != nil }) {
                    #expect(byPid[1]?.host.commandLine.hasPrefix("/usr/bin/mpirun.openmpi") == true, "PID 1: \(String(describing: byPid[1]))")
                    for pid in recorded.dropFirst() {
                        #expect(byPid[pid]?.ppid == 1, "rank \(pid) is not a child of mpirun (PID 1): \(String(describing: byPid[pid]))")
                    }
                    checked = true
                    break
                }
            }
            usleep(20_000)
        }
        #expect(checked, "the restored ranks never all showed up at their recorded PIDs \(recorded); seen \(seen); \(readText(restoreOut))")
        let end = try ended ?? waitForExit(podman, timeout: 120)
        #expect(end == .exited(0), "restore container: \(readText(restoreOut))")
        #expect(resultLine(readText(restoreOut)) == expected, "restored: \(readText(restoreOut))")
    }

    /// 30 processes, each the child of the previous, PIDs decreasing; two process groups.
    static func chain() -> [TreeProcess] {
        var out: [TreeProcess] = []
        for i in 0..<30 {
            let pid = Int32(9000 - i * 97)
            let ppid: Int32 = i == 0 ? 0 : out[i - 1].pid
            let pgid: Int32 = i < 15 ? 9000 : 9000 - 15 * 97
            out.append(TreeProcess(pid: pid, ppid: ppid, pgid: pgid, sid: 9000))
        }
        return out
    }

    func resultLine(_ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("result ") }.map { String($0.split(separator: " ")[1]) }
    }
}
