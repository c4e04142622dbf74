// The MPI demo end to end, as the unprivileged test user: start `mpirun -np 4` on a program
// that writes application-level checkpoints named by PID, record the running job, kill it,
// restore it. mpirun must come back at its PID, its ranks at theirs (forked again by mpirun
// itself, pinned by the fork supervisor), each rank must resume from the checkpoint under its
// own PID, and the result must equal an uninterrupted run. Then the same again inside an outer
// user + PID namespace, as in a rootless container.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

enum MPI {
    static let mpicc = Paths.tool("mpicc")
    static let mpirun = Paths.tool("mpirun")
    static var available: Bool { mpicc != nil && mpirun != nil }
    static let source = Paths.packageRoot + "/examples/mpi/ring.c"
}

@Suite("MPI ranks restored without root", .serialized)
struct MPITests {
    @Test("mpirun -np 4: record, kill, restore; same PIDs, resumed ranks, same result",
          .enabled(if: Prerequisites.userNamespacesWork))
    func mpiRoundTrip() throws {
        try roundTrip(outerNamespace: false)
    }

    @Test("the same inside an outer user+PID namespace (unshare --user --map-current-user --pid)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func mpiRoundTripInsideContainer() throws {
        try roundTrip(outerNamespace: true)
    }

    func roundTrip(outerNamespace: Bool) throws {
        guard MPI.available else {
            Issue.record("mpicc/mpirun missing: scripts/setup.sh installs openmpi-bin and libopenmpi-dev")
            return
        }
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        let user = run.user
        // An outer namespace, like a rootless container: everything below runs inside it.
        let wrap: [String] = outerNamespace
            ? [Paths.tool("unshare") ?? "/usr/bin/unshare", "--user", "--map-current-user", "--pid", "--fork", "--mount-proc"]
            : []
        let prefix = try Identity.prefix(for: user)

        // Build the program.
        let ring = dir + "/ring"
        let cc = try spawn([MPI.mpicc!, "-O2", "-o", ring, MPI.source], env: Identity.cleanEnvironment, cwd: dir,
                           stdout: dir + "/cc.out", stderr: dir + "/cc.out")
        #expect(try waitForExit(cc, timeout: 120) == .exited(0), "mpicc: \(readText(dir + "/cc.out"))")
        chmod(ring, 0o755)
        for sub in ["ref", "ck"] {
            mkdir(dir + "/" + sub, 0o755)
            if user.dropsPrivileges { chown(dir + "/" + sub, user.uid, user.gid) }
        }
        let mpirunArgs = [MPI.mpirun!, "--oversubscribe", "-np", "4", ring]

        // The uninterrupted reference.
        let ref = try spawn(prefix + wrap + mpirunArgs + [dir + "/ref", "40", "0"], env: Identity.cleanEnvironment, cwd: dir,
                            stdout: dir + "/ref.out", stderr: dir + "/ref.out")
        #expect(try waitForExit(ref, timeout: 120) == .exited(0), "reference run: \(readText(dir + "/ref.out"))")
        let expected = try #require(resultLine(readText(dir + "/ref.out")), "no result in \(readText(dir + "/ref.out"))")

        // The live job, in a shell (inside the outer namespace when asked) that also records
        // and kills it, so that record sees the job from the same namespace as the restore.
        let script = """
            set -e
            \(mpirunArgs.joined(separator: " ")) \(dir)/ck 40 150 > \(dir)/live.out 2>&1 &
            job=$!
            for i in $(seq 600); do
              if [ -f \(dir)/ck/committed ] && [ "$(cat \(dir)/ck/committed)" -ge 10 ]; then break; fi
              sleep 0.05
            done
            \(run.binary) record --freeze --spawn-by-payload $job -o \(dir)/job.json
            pids=$(grep -o '"pid": [0-9]*' \(dir)/job.json | grep -o '[0-9]*$' | tr '\\n' ' ')
            kill -KILL $pids
            wait $job || true
            \(run.binary) run --pin-log \(dir)/pins.log --report \(dir)/report.json \(dir)/job.json > \(dir)/restored.out 2>&1 &
            restore=$!
            echo "restore-started $restore"
            wait $restore
            """
        try run.write("job.sh", Data(script.utf8), mode: 0o755)
        let shell = try spawn(prefix + wrap + ["/bin/sh", dir + "/job.sh"], env: Identity.cleanEnvironment, cwd: dir,
                              stdout: dir + "/job.out", stderr: dir + "/job.out")

        // While the restored job runs, check every recorded PID from the host's /proc.
        var checked = false
        let deadline = Date().addingTimeInterval(120)
        var job: [[String: Any]] = []
        while Date() < deadline, reap(shell) == nil {
            if job.isEmpty, let data = FileManager.default.contents(atPath: dir + "/job.json"),
               let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let procs = obj["processes"] as? [[String: Any]] {
                job = procs
            }
            if !job.isEmpty, FileManager.default.fileExists(atPath: dir + "/report.json") {
                let recorded = job.compactMap { ($0["pid"] as? Int).map(Int32.init) }
                let all = ProcFS.scan()
                // Levels: the restored processes sit one level below the runtime that made them.
                let restored = all.filter { p in
                    p.realUid == user.uid && p.nspid.count >= 2 && (p.commandLine.contains("ring") || p.commandLine.contains("mpirun"))
                }
                let byInner = Dictionary(restored.map { ($0.nspid.last!, $0) }, uniquingKeysWith: { a, _ in a })
                if recorded.allSatisfy({ byInner[$0] != nil }) {
                    let root = recorded[0]
                    for pid in recorded.dropFirst() {
                        let child = byInner[pid]!
                        #expect(child.hostPPid == byInner[root]!.hostPid, "rank \(pid) is not a child of mpirun \(root)")
                    }
                    checked = true
                    break
                }
            }
            usleep(20_000)
        }
        #expect(checked, "the restored job's processes never all showed up with their recorded PIDs; job.out: \(readText(dir + "/job.out")) restored.out: \(readText(dir + "/restored.out"))")
        #expect(try waitForExit(shell, timeout: 180) == .exited(0), "job.sh: \(readText(dir + "/job.out"))")

        let restoredOut = readText(dir + "/restored.out")
        #expect(resultLine(restoredOut) == expected, "restored result differs: \(restoredOut)")
        // Each rank printed the PID it resumed under (its own getpid()); it must be the recorded one.
        let recordedRanks = Set(job.dropFirst().compactMap { $0["pid"] as? Int })
        let resumed = Set(restoredOut.split(separator: "\n").compactMap { line -> Int? in
            let f = line.split(separator: " ")
            guard f.count >= 4, f[0] == "rank", f[2] == "pid" else { return nil }
            return Int(f[3])
        })
        #expect(resumed == recordedRanks, "ranks resumed as \(resumed), recorded \(recordedRanks)")
        #expect(readText(dir + "/pins.log").contains("\"pinned\": true"), "no pinned PID was logged")
        #expect(!readText(dir + "/pins.log").contains("\"kind\": \"fork\", \"expected\": null"), "a rank fork was not pinned")
    }

    func resultLine(_ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("result ") }.map { String($0.split(separator: " ")[1]) }
    }
}
