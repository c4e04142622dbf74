import Foundation
import RestoreModel
import Testing

private func proc(_ pid: Int32, _ ppid: Int32, _ pgid: Int32, _ sid: Int32, state: ProcessState = .running,
                   exit: RestoreModel.ExitStatus? = nil, threads: [Int32] = [], args: [String]? = nil, env: [String]? = nil,
                   cwd: String? = nil, user: UserSpec? = nil) -> ProcessEntry {
    let spec = (args == nil && env == nil && cwd == nil && user == nil)
        ? nil : ProcessSpec(args: args, env: env, cwd: cwd, user: user)
    return ProcessEntry(index: 0, pid: pid, ppid: ppid, pgid: pgid, sid: sid, state: state, exitStatus: exit,
                        threads: threads, process: spec)
}

private func tree(_ entries: ProcessEntry...) -> ProcessTree {
    ProcessTree(processes: entries.enumerated().map { i, e in var e = e; e.index = i; return e })
}

private let me = UserSpec(uid: 1001, gid: 1001)
private let runtimeArgs = ["/tmp/rr/rootless-restore", "run", "--report", "r.json", "job.json"]

/// A recorded job: a shell (parent outside the tree), a running child, a stopped child, a zombie.
private func recording() -> ProcessTree {
    tree(proc(100, 4242, 100, 100, args: ["bash", "job.sh"], env: ["PATH=/bin", "A=1"], cwd: "/work", user: me),
         proc(101, 100, 101, 100, args: ["sleep", "1000"], env: ["PATH=/bin"], cwd: "/work", user: me),
         proc(102, 100, 102, 100, state: .stopped, args: ["sleep", "1001"], env: ["PATH=/bin"], cwd: "/work", user: me),
         proc(103, 101, 101, 100, state: .zombie, exit: .code(200)))
}

@Suite struct TreeDiffTests {
    @Test func identicalTreesHaveNoDifference() {
        #expect(TreeDiff.compare(recording(), recording()).isEmpty)
        #expect(TreeDiff.compare(recording(), recording(), options: .init(compareEnv: true, exactTopPPid: true)).isEmpty)
    }

    @Test func eachFieldIsReported() {
        var b = recording()
        b.processes[1].pgid = 100
        b.processes[1].nspid = [101, 5]
        b.processes[0].sid = 7
        b.processes[3].exitStatus = .code(72)
        b.processes[2].state = .running
        b.processes[1].process?.args = ["sleep", "2000"]
        b.processes[1].process?.cwd = "/"
        b.processes[1].process?.user = UserSpec(uid: 0, gid: 0, additionalGids: [5])
        let d = TreeDiff.compare(recording(), b)
        #expect(d.map(\.description) == [
            "pid 100 sid: A 100 | B 7",
            "pid 101 nspid: A [101] | B [101, 5]",
            "pid 101 pgid: A 101 | B 100",
            "pid 101 args: A [\"sleep\", \"1000\"] | B [\"sleep\", \"2000\"]",
            "pid 101 cwd: A \"/work\" | B \"/\"",
            "pid 101 user: A uid 1001, gid 1001 | B uid 0, gid 0, groups 5",
            "pid 102 state: A stopped | B running",
            "pid 103 exitStatus: A exit code 200 | B exit code 72",
        ])
    }

    @Test func processesInOneTreeOnly() {
        var b = recording()
        b.processes.remove(at: 2)
        b.processes.append(proc(999, 100, 100, 100))
        let d = TreeDiff.compare(recording(), b)
        #expect(d.count == 2)
        #expect(d[0].pid == 102 && d[0].field == nil && d[0].description.hasPrefix("pid 102: only in A: ppid 100, pgid 102, sid 100, stopped"))
        #expect(d[1].description == "pid 999: only in B: ppid 100, pgid 100, sid 100, running")
    }

    @Test func parentsOutsideTheTreeAreEqualUnlessExact() {
        var b = recording()
        b.processes[0].ppid = 1 // restored: hangs under the namespace's PID 1, not in the tree
        #expect(TreeDiff.compare(recording(), b).isEmpty)
        b.processes[0].ppid = 0
        #expect(TreeDiff.compare(recording(), b).isEmpty)
        let exact = TreeDiff.compare(recording(), b, options: .init(exactTopPPid: true))
        #expect(exact.map(\.description) == ["pid 100 ppid: A 4242 | B 0"])
        // A parent inside the tree on one side only is a difference.
        b.processes[0].ppid = 101
        #expect(TreeDiff.compare(recording(), b).map(\.description) == ["pid 100 ppid: A outside the tree | B 101"])
        // And so is an in-tree parent that changed.
        var c = recording()
        c.processes[3].ppid = 100
        #expect(TreeDiff.compare(recording(), c).map(\.description) == ["pid 103 ppid: A 101 | B 100"])
    }

    @Test func threadsAreASetIncludingTheMainThread() {
        let a = tree(proc(5, 0, 5, 5, threads: []), proc(6, 5, 5, 5, threads: [6, 8, 7]))
        let b = tree(proc(5, 0, 5, 5, threads: [5]), proc(6, 5, 5, 5, threads: [7, 8, 6]))
        #expect(TreeDiff.compare(a, b).isEmpty)
        let c = tree(proc(5, 0, 5, 5), proc(6, 5, 5, 5, threads: [6, 7]))
        #expect(TreeDiff.compare(a, c).map(\.description) == ["pid 6 threads: A [6, 7, 8] | B [6, 7]"])
    }

    @Test func environmentOnlyWhenAsked() {
        var b = recording()
        b.processes[0].process?.env = ["PATH=/bin", "A=2", "B=3"]
        #expect(TreeDiff.compare(recording(), b).isEmpty)
        let d = TreeDiff.compare(recording(), b, options: .init(compareEnv: true))
        #expect(d.map(\.description) == [
            "pid 100 env: A 2 variables, only here: \"A=1\" | B 3 variables, only here: \"A=2\", \"B=3\""])
        // Order does not matter.
        var c = recording()
        c.processes[0].process?.env = ["A=1", "PATH=/bin"]
        #expect(TreeDiff.compare(recording(), c, options: .init(compareEnv: true)).isEmpty)
    }

    @Test func ignoredFields() {
        var b = recording()
        b.processes[1].pgid = 100
        b.processes[3].exitStatus = .signal(9)
        #expect(TreeDiff.compare(recording(), b).count == 2)
        #expect(TreeDiff.compare(recording(), b, options: .init(ignored: [.pgid, .exitStatus])).isEmpty)
        #expect(TreeDiff.Options(ignored: [.pgid]).comparedFields.map(\.rawValue)
                == ["nspid", "ppid", "sid", "state", "exitStatus", "threads", "args", "cwd", "user", "terminal", "shellJobs", "tmux"])
    }

    @Test func zombiesHaveNoCommandLineToCompare() {
        var b = recording()
        b.processes[3].process = ProcessSpec(args: ["x"])
        #expect(TreeDiff.compare(recording(), b).isEmpty)
    }

    /// What `record` shows of a restore of `recording()`: the top process under PID 1, the
    /// stopped process still in the runtime (it stops just before its exec).
    private func recordOfRestore() -> ProcessTree {
        var b = recording()
        b.processes[0].ppid = 1
        b.processes[2].process = ProcessSpec(args: runtimeArgs, env: ["HOME=/tmp"], cwd: "/tmp/rr", user: me)
        return b
    }

    @Test func aRestoreRecordedBackDiffersOnlyWhereTheRestoreHasNotExecd() {
        let plain = TreeDiff.compare(recording(), recordOfRestore())
        #expect(plain.map { "\($0.pid) \($0.field!.rawValue)" } == ["102 args", "102 cwd"])
        #expect(TreeDiff.compare(recording(), recordOfRestore(), options: .init(compareEnv: true, restored: true)).isEmpty)
        // `restored` still sees real differences.
        var b = recordOfRestore()
        b.processes[1].process?.args = ["sleep", "5"]
        b.processes[2].state = .running
        #expect(TreeDiff.compare(recording(), b, options: .init(restored: true)).map(\.description)
                == ["pid 101 args: A [\"sleep\", \"1000\"] | B [\"sleep\", \"5\"]", "pid 102 state: A stopped | B running"])
    }

    @Test func restoredStoppedProcessesAreSetUpWhenContinued() {
        // A stopped holder with threads and a user: restored, it stops before either is set up.
        let a = tree(proc(7, 0, 7, 7), proc(8, 7, 7, 7, state: .stopped, threads: [8, 9], user: UserSpec(uid: 5, gid: 5)))
        let b = tree(proc(7, 1, 7, 7, args: runtimeArgs, user: me), proc(8, 7, 7, 7, state: .stopped, args: runtimeArgs, user: me))
        #expect(TreeDiff.compare(a, b, options: .init(restored: true)).isEmpty)
        #expect(TreeDiff.compare(a, b).map { "\($0.pid) \($0.field!.rawValue)" }
                == ["7 args", "7 user", "8 threads", "8 args", "8 user"])
    }

    @Test func restoredHoldersAndDefaults() {
        // A CRIU-style tree: processes hold, no process spec at all, threads recorded.
        let a = tree(proc(7, 0, 7, 7), proc(8, 7, 7, 7, threads: [8, 9]))
        let b = tree(proc(7, 1, 7, 7, args: runtimeArgs, env: ["X=1"], cwd: "/tmp", user: me),
                     proc(8, 7, 7, 7, threads: [8, 9], args: runtimeArgs, env: ["X=1"], cwd: "/tmp", user: me))
        #expect(TreeDiff.compare(a, b, options: .init(compareEnv: true, restored: true)).isEmpty)
        #expect(!TreeDiff.compare(a, b).isEmpty)
        // Threads of holders are restored, so they are compared.
        var c = b
        c.processes[1].threads = []
        #expect(TreeDiff.compare(a, c, options: .init(restored: true)).map(\.description) == ["pid 8 threads: A [8, 9] | B [8]"])
        // Threads of a process that runs args are its new payload's.
        let d = tree(proc(7, 0, 7, 7, threads: [7, 10], args: ["server"]))
        let e = tree(proc(7, 1, 7, 7, threads: [7, 11, 12], args: ["server"]))
        #expect(TreeDiff.compare(d, e, options: .init(restored: true)).isEmpty)
        #expect(TreeDiff.compare(d, e).count == 1)
    }

    @Test func theCRIURestoreOfZombiesIsCaught() throws {
        // CRIU's restore of the zombies fixture brings exit code 200 back as 72.
        let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("criu/zombies")
        var cores: [Int32: [UInt8]] = [:]
        for pid: Int32 in 7692...7697 {
            cores[pid] = Array(try Data(contentsOf: dir.appendingPathComponent("core-\(pid).json")))
        }
        let a = try CRIUImport.tree(pstree: Array(try Data(contentsOf: dir.appendingPathComponent("pstree.json"))), cores: cores)
        var b = a
        b.processes[4].exitStatus = .code(72)
        #expect(TreeDiff.compare(a, b).map(\.description) == ["pid 7696 exitStatus: A exit code 200 | B exit code 72"])
    }
}
