import RestoreModel
import Testing

// Verification without a kernel: the engine's one /proc pass is replaced by made-up
// snapshots, which must be accepted exactly when they match the tree.

private func entry(_ pid: Int32, _ ppid: Int32, _ pgid: Int32, _ sid: Int32, _ state: ProcessState = .running) -> ProcessEntry {
    ProcessEntry(index: 0, pid: pid, ppid: ppid, pgid: pgid, sid: sid, state: state,
                 exitStatus: state == .zombie ? .code(3) : nil)
}

private func makeTree(_ entries: [ProcessEntry]) -> ProcessTree {
    var list = entries
    for i in list.indices { list[i].index = i }
    return ProcessTree(processes: list)
}

/// Snapshots of a perfect restore as a runtime `extraLevels` namespace levels below its /proc
/// would read them: host PID 5000 + node, the runtime itself 4000.
private func perfect(_ tree: ProcessTree, _ plan: RestorePlan, extraLevels: Int = 0) -> RestoreVerification.Observation {
    let host = plan.nodes.indices.map { Int32(5000 + $0) }
    var byPid: [Int32: Int] = [:]
    for (i, n) in plan.nodes.enumerated() { byPid[n.pid] = i }
    let outer = (0..<(1 + extraLevels)).map { Int32(900 + $0) }
    var statuses = [ProcStatus?](repeating: nil, count: plan.nodes.count)
    for (i, e) in tree.processes.enumerated() {
        let node = plan.nodeOfEntry[i]
        let parentPid = RestoreVerification.expectedParent(e, treeHasInit: plan.treeHasInit, treePids: Set(tree.processes.map(\.pid)))
        let parentHost: Int32 = parentPid == 0 ? 4000 : host[byPid[parentPid]!]
        statuses[node] = ProcStatus(hostPid: host[node], nspid: [host[node]] + outer.dropFirst() + e.nspid,
                                    nspgid: outer + [e.pgid], nssid: outer + [e.sid], hostPPid: parentHost,
                                    state: e.state == .zombie ? "Z" : "S", threads: 1)
    }
    return RestoreVerification.Observation(hostPids: host, statuses: statuses, runtimePid: 4000, ownLevels: 1 + extraLevels)
}

@Suite("verification of a built tree (pure)")
struct VerificationTests {
    let tree = makeTree([entry(100, 0, 100, 100), entry(101, 100, 100, 100), entry(102, 100, 102, 100),
                         entry(103, 101, 100, 100, .zombie)])

    @Test func perfectRestoreHasNoProblems() throws {
        let plan = try RestorePlanner.plan(tree)
        let result = RestoreVerification.verify(tree: tree, plan: plan, observed: perfect(tree, plan))
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(result.processes.map(\.nspid) == [[100], [101], [102], [103]])
        #expect(result.processes.map(\.ppid) == [1, 100, 100, 101])
        #expect(result.processes.map(\.pgid) == [100, 100, 102, 100])
        #expect(result.processes.map(\.state) == ["running", "running", "running", "zombie"])
    }

    @Test func outerNamespaceColumnsAreDropped() throws {
        let plan = try RestorePlanner.plan(tree)
        let result = RestoreVerification.verify(tree: tree, plan: plan, observed: perfect(tree, plan, extraLevels: 2))
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(result.processes.map(\.sid) == [100, 100, 100, 100])
    }

    @Test func wrongGroupIsNamed() throws {
        let plan = try RestorePlanner.plan(tree)
        var observed = perfect(tree, plan)
        observed.statuses[plan.nodeOfEntry[2]]!.nspgid[1] = 100
        let result = RestoreVerification.verify(tree: tree, plan: plan, observed: observed)
        #expect(result.problems.count == 1)
        #expect(result.problems.first?.entry == tree.processes[2].label)
        #expect(result.problems.first?.message.contains("pgid 100 instead of 102") == true, "\(result.problems)")
    }

    @Test func wrongParentAndPidsAreNamed() throws {
        let plan = try RestorePlanner.plan(tree)
        var observed = perfect(tree, plan)
        // 102 hangs under 101 instead of 100, and 101 has the wrong PID.
        observed.statuses[plan.nodeOfEntry[2]]!.hostPPid = observed.hostPids[plan.nodeOfEntry[1]]
        observed.statuses[plan.nodeOfEntry[1]]!.nspid = [5001, 111]
        let messages = RestoreVerification.verify(tree: tree, plan: plan, observed: observed).problems.map(\.description)
        #expect(messages.contains { $0.contains("pid 101") && $0.contains("PIDs [111] instead of [101]") }, "\(messages)")
        #expect(messages.contains { $0.contains("pid 102") && $0.contains("ppid 101 instead of 100") }, "\(messages)")
    }

    @Test func unknownParentIsNotTakenForTheRuntime() throws {
        let plan = try RestorePlanner.plan(tree)
        var observed = perfect(tree, plan)
        observed.statuses[plan.nodeOfEntry[0]]!.hostPPid = 77
        let messages = RestoreVerification.verify(tree: tree, plan: plan, observed: observed).problems.map(\.message)
        #expect(messages == ["was restored with ppid unknown (host 77) instead of 1"])
    }

    @Test func vanishedAndLiveZombieAreProblems() throws {
        let plan = try RestorePlanner.plan(tree)
        var observed = perfect(tree, plan)
        observed.statuses[plan.nodeOfEntry[1]] = nil
        observed.statuses[plan.nodeOfEntry[3]]!.state = "S"
        let result = RestoreVerification.verify(tree: tree, plan: plan, observed: observed)
        #expect(result.problems.map(\.message) == ["vanished before its payload started", "was restored with state S instead of zombie"])
        #expect(result.processes.count == 3)
    }

    @Test func reportAfterReleaseMarksStoppedAndThreads() throws {
        let plan = try RestorePlanner.plan(tree)
        let result = RestoreVerification.verify(tree: tree, plan: plan, observed: perfect(tree, plan))
        let after = RestoreVerification.afterRelease(result.processes, tree: tree, stopped: [1], threadsStarted: [2: 4])
        #expect(after.map(\.state) == ["running", "stopped", "running", "zombie"])
        #expect(after.map(\.threads) == [1, 1, 4, 1])
    }
}

@Suite("the /proc/PID/status parser")
struct ProcStatusParserTests {
    static let text = """
        Name:\tsleep
        Umask:\t0022
        State:\tS (sleeping)
        Tgid:\t4711
        Ngid:\t0
        Pid:\t4711
        PPid:\t4700
        TracerPid:\t0
        Uid:\t1000\t1001\t1002\t1003
        Gid:\t100\t100\t100\t100
        FDSize:\t64
        Groups:\t4 24 27 
        NStgid:\t4711\t12
        NSpid:\t4711\t12
        NSpgid:\t4700\t1
        NSsid:\t4690\t1
        Threads:\t3
        CapEff:\t000001ffffffffff

        """

    @Test func fieldsTheRuntimeUses() {
        let s = ProcStatus.parse(Array(Self.text.utf8), pid: 4711)
        #expect(s.nspid == [4711, 12])
        #expect(s.nspgid == [4700, 1])
        #expect(s.nssid == [4690, 1])
        #expect(s.hostPPid == 4700)
        #expect(s.tgid == 4711)
        #expect(s.state == "S")
        #expect(s.threads == 3)
        #expect(s.uid == 1000 && s.gid == 100)
        #expect(s.groups == [4, 24, 27])
        #expect(s.stateName == "running")
    }

    @Test func otherFieldsByName() {
        #expect(ProcStatus.field("CapEff", in: Self.text) == ["000001ffffffffff"])
        #expect(ProcStatus.field("Umask", in: Self.text) == ["0022"])
        #expect(ProcStatus.field("Missing", in: Self.text) == nil)
    }

    @Test func zombiesAndGarbage() {
        let z = ProcStatus.parse(Array("State:\tZ (zombie)\nNSpid:\t9 x 10\nPPid: 99999999999\n".utf8), pid: 9)
        #expect(z.isDead && z.stateName == "zombie")
        #expect(z.nspid == [9, 10])
        #expect(z.hostPPid == 0)
        #expect(ProcStatus.parse(Array("no colon here\n:\n".utf8), pid: 1).nspid.isEmpty)
    }
}

@Suite("errno names from the C library")
struct ErrnoNameTests {
    @Test func namesBeyondTheOldTable() {
        #expect(ErrnoName.describe(109) == "ETOOMANYREFS, Too many references: cannot splice")
        #expect(ErrnoName.describe(33) == "EDOM, Numerical argument out of domain")
        #expect(ErrnoName.describe(17) == "EEXIST, File exists")
        #expect(ErrnoName.describe(11) == "EAGAIN, Resource temporarily unavailable")
        #expect(ErrnoName.describe(4095) == "errno 4095")
    }

    /// Errnos the runtime meets (clone3, setns, newuidmap, mounts, files, seccomp), each as the
    /// user reads it: through the one error type's description, by name and text.
    static let table: [(Int32, String)] = [
        (1, "EPERM, Operation not permitted"), (2, "ENOENT, No such file or directory"),
        (3, "ESRCH, No such process"), (4, "EINTR, Interrupted system call"), (5, "EIO, Input/output error"),
        (7, "E2BIG, Argument list too long"), (9, "EBADF, Bad file descriptor"), (10, "ECHILD, No child processes"),
        (12, "ENOMEM, Cannot allocate memory"), (13, "EACCES, Permission denied"), (16, "EBUSY, Device or resource busy"),
        (20, "ENOTDIR, Not a directory"), (22, "EINVAL, Invalid argument"), (24, "EMFILE, Too many open files"),
        (28, "ENOSPC, No space left on device"), (30, "EROFS, Read-only file system"), (32, "EPIPE, Broken pipe"),
        (34, "ERANGE, Numerical result out of range"), (36, "ENAMETOOLONG, File name too long"),
        (38, "ENOSYS, Function not implemented"), (40, "ELOOP, Too many levels of symbolic links"),
        (75, "EOVERFLOW, Value too large for defined data type"), (87, "EUSERS, Too many users"),
        (95, "EOPNOTSUPP, Operation not supported"), (110, "ETIMEDOUT, Connection timed out"),
        (122, "EDQUOT, Disk quota exceeded"), (125, "ECANCELED, Operation canceled"),
    ]

    @Test(arguments: table)
    func namedThroughTheErrorType(errno: Int32, text: String) {
        let error = RestoreError(.restoreFailed, operation: "clone3", errno: errno, entry: "process #3 (pid 17)", message: "cannot be created")
        #expect(error.description == "process #3 (pid 17): cannot be created (clone3: \(text))")
    }

    @Test func everyErrnoTheLibraryKnowsHasAName() {
        // Linux's errnos run from 1 to 133 (EHWPOISON); none may fall back to a bare number.
        let bare = (1...133).filter { e in e != 41 && e != 58 && ErrnoName.describe(Int32(e)).hasPrefix("errno ") }
        #expect(bare.isEmpty, "errnos described by number only: \(bare)")
    }
}
