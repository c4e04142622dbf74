// MPI jobs across two simulated nodes (scripts/testhosts.sh: network, UTS, mount and PID
// namespaces per node, sshd and slurmd on each, slurmctld), recorded on every node, killed and
// restored through the launchers' own mechanisms by examples/multinode/mpi-job.sh, which runs as
// the unprivileged test user on node1 (logged in with ssh). While the restored job runs, the
// harness reads each node's own /proc and checks that every recorded rank is there at its
// recorded PID under its recorded parent; at the end, the result must equal the uninterrupted
// run's. scripts/test.sh brings the hosts up before these tests and down after them.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

enum TestHosts {
    /// scripts/testhosts.sh keeps one cluster per user: /run/rr-testhosts-USER.
    static var state: String { "/run/rr-testhosts-\(Identity.userName)" }
    static let nodes = ["node1", "node2"]
    static let script = Paths.packageRoot + "/scripts/testhosts.sh"

    /// The host PID of a node's init (its PID namespace's PID 1), if the node is up.
    static func initPid(_ node: String) -> Int32? {
        guard let pid = Int32(readText("\(state)/\(node).init").trimmingCharacters(in: .whitespacesAndNewlines)),
              kill(pid, 0) == 0 else { return nil }
        return pid
    }

    /// Why the multi-node tests cannot run here, or nil when the hosts are up for the test user.
    static let unavailable: String? = {
        guard getuid() == 0 else { return "the simulated nodes need root to set up (scripts/testhosts.sh); the tests do not run as root" }
        guard case .success(let user) = Identity.user else { return "no test user" }
        let owner = readText("\(state)/user").trimmingCharacters(in: .whitespacesAndNewlines)
        guard !owner.isEmpty else { return "the simulated nodes are not up (\(state)/user missing): scripts/test.sh starts them with scripts/testhosts.sh up --user \(user.name)" }
        guard owner == user.name else { return "the simulated nodes are up for user \(owner), not the test user \(user.name)" }
        for node in nodes where initPid(node) == nil { return "node \(node) of the simulated cluster is not running" }
        return nil
    }()
    static var available: Bool {
        if let why = unavailable { print("[multi-node] skipped: \(why)") }
        return unavailable == nil
    }
}

@Suite("MPI jobs across two simulated nodes", .serialized)
struct MultiNodeTests {
    @Test("Open MPI, 4 ranks on 2 nodes under Slurm: sbatch, srun --overlap record, scancel, sbatch restore",
          .enabled(if: TestHosts.available, "needs the simulated nodes of scripts/testhosts.sh"))
    func openMPISlurm() throws { try job("openmpi-slurm") }

    @Test("Open MPI, 4 ranks on 2 nodes over ssh: orted restored through orte_launch_agent",
          .enabled(if: TestHosts.available, "needs the simulated nodes of scripts/testhosts.sh"))
    func openMPISsh() throws { try job("openmpi-ssh") }

    @Test("MPICH, 4 ranks on 2 nodes over ssh: hydra_pmi_proxy restored through HYDRA_LAUNCHER_EXEC=rr-ssh",
          .enabled(if: TestHosts.available, "needs the simulated nodes of scripts/testhosts.sh"))
    func mpichSsh() throws { try job("mpich-ssh") }

    /// A recorded rank: its node, PID and parent's PID, as the node's PID namespace saw them.
    struct Rank: Hashable { var node: String; var pid: Int32; var ppid: Int32 }

    func job(_ mode: String) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory
        for file in ["examples/mpi/ring.c", "examples/multinode/mpi-job.sh", "examples/multinode/rr-ssh"] {
            let target = dir + "/" + (file as NSString).lastPathComponent
            try FileManager.default.copyItem(atPath: Paths.packageRoot + "/" + file, toPath: target)
            chmod(target, 0o755)
        }
        let out = dir + "/mpi-job.log"
        let job = try spawn(["/bin/bash", TestHosts.script, "ssh", "--user", run.user.name, "node1", "sh", dir + "/mpi-job.sh", mode, dir],
                            env: Identity.cleanEnvironment, cwd: dir, stdout: out, stderr: out)
        var jobEnded: Termination?
        defer { if jobEnded == nil { kill(job, SIGKILL); _ = try? waitForExit(job, timeout: 10) } }

        func epoch(_ name: String) -> Double? { Double(readText(dir + "/" + name).trimmingCharacters(in: .whitespacesAndNewlines)) }
        /// The user's ring processes on each node, from the node's own /proc.
        func ringsByNode() -> [String: [HostProcess]] {
            var out: [String: [HostProcess]] = [:]
            for node in TestHosts.nodes {
                guard let initPid = TestHosts.initPid(node) else { continue }
                let root = "/proc/\(initPid)/root/proc"
                out[node] = ProcFS.scan(root: root).filter { p in
                    p.realUid == run.user.uid && readText("\(root)/\(p.hostPid)/comm").hasPrefix("ring")
                }
            }
            return out
        }
        var recorded: [Rank] = []
        var liveReady: Double?, restoreReady: Double?
        var lastSeen = ""
        let deadline = Date().addingTimeInterval(400)
        while jobEnded == nil, Date() < deadline {
            jobEnded = reap(job)
            let now = Date().timeIntervalSince1970
            if liveReady == nil, epoch("t-live-launch") != nil, epoch("t-restore-launch") == nil,
               ringsByNode().values.map(\.count) == [2, 2] {
                liveReady = now
            }
            if restoreReady == nil, epoch("t-restore-launch") != nil {
                if recorded.isEmpty { recorded = try ranks(dir) }
                let seen = ringsByNode()
                // The restored ranks are one PID namespace below their node's: NSpid is
                // [PID on the node, PID in the restored namespace] and the latter is the recorded one.
                var found: Set<Rank> = []
                var procsOf: [String: [Int32: HostProcess]] = [:]
                for (node, procs) in seen {
                    for p in ProcFS.scan(root: "/proc/\(TestHosts.initPid(node) ?? 0)/root/proc") where p.nspid.count == 2 {
                        procsOf[node, default: [:]][p.hostPid] = p
                    }
                    for p in procs where p.nspid.count == 2 {
                        let parentInner = procsOf[node]?[p.hostPPid]?.nspid.last ?? -1
                        found.insert(Rank(node: node, pid: p.nspid[1], ppid: parentInner))
                    }
                }
                lastSeen = found.map { "\($0.node):\($0.pid)<-\($0.ppid)" }.sorted().joined(separator: " ")
                if !recorded.isEmpty, Set(recorded).isSubset(of: found) { restoreReady = now }
            }
            usleep(20_000)
        }
        let text = readText(out)
        jobEnded = jobEnded ?? reap(job)
        #expect(jobEnded == .exited(0), "mpi-job.sh \(mode) did not succeed (\(String(describing: jobEnded))):\n\(text)")
        #expect(recorded.count == 4 && Set(recorded.map(\.node)) == Set(TestHosts.nodes),
                "the recordings should hold 2 ranks per node: \(recorded)")
        #expect(restoreReady != nil, "the restored ranks never all showed up at their recorded PIDs under their recorded parents on their nodes; recorded \(recorded), last seen \(lastSeen)\n\(text)")
        let expected = resultLine(readText(dir + "/ref.out"))
        #expect(expected != nil, "no reference result: \(readText(dir + "/ref.out"))")
        #expect(resultLine(readText(dir + "/restored.out")) == expected, "restored: \(readText(dir + "/restored.out"))")
        #expect(readText(dir + "/restored.out").contains("resumed-from 1"), "the restored job did not resume from a checkpoint: \(readText(dir + "/restored.out"))")
        // Figures for the record (the harness's own clock, sampled every 20 ms).
        if let live = epoch("t-live-launch"), let restore = epoch("t-restore-launch"), let liveReady, let restoreReady {
            print(String(format: "[multi-node] %@: original start %.2f s, restore %.2f s (to every rank at its PID on its node), cold start+finish of the same job %@ s",
                         mode, liveReady - live, restoreReady - restore, readText(dir + "/cold-seconds").trimmingCharacters(in: .whitespacesAndNewlines)))
        }
    }

    /// The ranks of job-node1.json and job-node2.json: entries whose program is ./ring.
    func ranks(_ dir: String) throws -> [Rank] {
        var out: [Rank] = []
        for node in TestHosts.nodes {
            guard let data = FileManager.default.contents(atPath: "\(dir)/job-\(node).json") else { return [] }
            let tree = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            for p in tree["processes"] as? [[String: Any]] ?? [] {
                let args = (p["process"] as? [String: Any])?["args"] as? [String] ?? []
                guard args.first?.hasSuffix("ring") == true, let pid = p["pid"] as? Int, let ppid = p["ppid"] as? Int else { continue }
                out.append(Rank(node: node, pid: Int32(pid), ppid: Int32(ppid)))
            }
        }
        return out
    }

    func resultLine(_ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("result ") }.map { String($0.split(separator: " ")[1]) }
    }
}
