import CRestoreShim
import Glibc
import RestoreModel

/// Everything one node needs after it is cloned, prepared before the first clone so that no
/// child allocates, formats or looks anything up between fork and exec.
struct PreparedNode {
    enum Kind: UInt8 { case process, runtimeInit, helper }

    var kind: Kind
    var setTid: UnsafeMutablePointer<pid_t>
    var setTidCount: Int
    var cloneFlags: UInt64
    var localPid: pid_t
    /// The PID in the forker's own namespace, the one the ns_last_pid dance can choose.
    var dancePid: pid_t
    /// Resolved executable; nil: the process holds.
    var path: UnsafeMutablePointer<CChar>?
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    var envp: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    var cwd: UnsafeMutablePointer<CChar>?
    var stopped: Bool
    /// Init of a nested namespace: mounts its own /proc as soon as it exists.
    var mountsProc: Bool
    /// PID 1 of some namespace: when it holds it must still reap and answer signals.
    var isNamespaceInit: Bool
    /// Extra threads of a holding process: `threadCount` set_tid arrays of `setTidCount`
    /// entries each (innermost first), and a stack for each.
    var threadTids: UnsafeMutablePointer<pid_t>? = nil
    var threadCount: Int = 0
    var threadStacks: UnsafeMutablePointer<UnsafeMutableRawPointer?>? = nil
    /// User, capabilities, limits, seccomp: applied after all forking, right before exec.
    var identity: UnsafeMutablePointer<PreparedIdentity>? = nil
    /// Controlling terminal and pty slaves on 0-2 (TerminalAttachment).
    var terminals = PreparedTerminals()
    /// "rootless-restore: error: process #3 (pid 17)", for a payload's failures after release.
    var failureLabel: UnsafeMutablePointer<CChar>? = nil
}

/// Size of the stack of a restored (parked) thread; it only ever sleeps.
let parkedThreadStackSize = 64 * 1024

/// Size of each puppet's stack. Puppets share the init's address space (CLONE_VM), each on its
/// own stack, cut from one MAP_NORESERVE mapping: only the pages a puppet touches (a few)
/// cost memory. The child side has no recursion and no large locals.
let puppetStackSize = 128 * 1024

/// What a new puppet starts from (its clone's argument): the world and its node.
struct PuppetStart {
    var world: UnsafeMutablePointer<PuppetWorld>
    var node: Int
}

/// The read-only world of every puppet.
struct PuppetWorld {
    var control: ControlBlock
    /// The puppets' end of the answer socket (CLOEXEC: closed by a successful exec).
    var answerFD: Int32
    /// The coordinator's end; puppets close their inherited copy.
    var coordinatorFD: Int32
    var nodes: UnsafeMutablePointer<PreparedNode>
    var nodeCount: Int
    /// Local PIDs of the processes directly under the runtime's init, first one first.
    var topLevelPids: UnsafeMutablePointer<pid_t>
    var topLevelCount: Int
    var strings: FixedStrings
    /// Scratch space for the few formatted numbers a child writes (pid_max, ns_last_pid).
    var scratch: UnsafeMutablePointer<UInt8>
    /// Choose PIDs with the ns_last_pid dance instead of clone3's set_tid.
    var useDance: Bool
    /// Present when payloads' forks get pinned PIDs.
    var supervisor: ForkSupervisor?
    /// Node indices of the plan's runs of sibling forks, for `forkBatch`.
    var forkList: UnsafeMutablePointer<Int32>
    /// One stack of `puppetStackSize` per node (node i's ends at stacks + (i+1) * size), and
    /// the argument each node's clone passes to Puppet.start.
    var stacks: UnsafeMutableRawPointer
    var starts: UnsafeMutablePointer<PuppetStart>
    /// Slave paths of the restore's ptys ("/dev/pts/K" in the namespace's devpts instance), one
    /// per recorded terminal; nil when the tree has none.
    var terminalPaths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
    var terminalCount: Int = 0
    /// The signals whose disposition a released puppet sets back to SIG_DFL: those not at
    /// SIG_DFL in the coordinator before the first clone (the Swift runtime's handlers, what
    /// the caller ignored).
    var changedSignals: UnsafeMutablePointer<Int32>
    var changedSignalCount: Int32
    /// The signals the coordinator blocks and the inits wait for (InitLoop.signalSet()).
    var initSignals = InitLoop.signalSet()
    /// Testing aid: the fault to inject, and the node that commits it.
    var fault: TestingFault = .none
    var faultNode: Int = -1
    /// The namespace's init shares the coordinator's address space (CLONE_VM, on node 0's
    /// stack) instead of being a fork of it: then it never leaves the child side, not even
    /// once released (no allocation, no errno, no Swift runtime services until it exits),
    /// because the coordinator runs on in the same memory with the same thread pointer.
    /// Only for small trees (PreparedWorld.sharedInitMaxNodes) without a fork supervisor, with
    /// clone3, whose every process has the caller's own ids (docs/performance.md, "The namespace
    /// init shares the runtime's memory").
    var sharedInit = false
}

/// C strings the children use, made once.
struct FixedStrings {
    let root: UnsafeMutablePointer<CChar>
    let proc: UnsafeMutablePointer<CChar>
    let procDir: UnsafeMutablePointer<CChar>
    let pidMax: UnsafeMutablePointer<CChar>
    let nsLastPid: UnsafeMutablePointer<CChar>
    let execFailedStopped: UnsafeMutablePointer<CChar>
    let execFailedAfterJob: UnsafeMutablePointer<CChar>
    let identityFailedStopped: UnsafeMutablePointer<CChar>
    let chdirFailedStopped: UnsafeMutablePointer<CChar>
    let devpts: UnsafeMutablePointer<CChar>
    let devptsDir: UnsafeMutablePointer<CChar>
    let devptsOptions: UnsafeMutablePointer<CChar>
    let ptmx: UnsafeMutablePointer<CChar>
    let ptsPtmx: UnsafeMutablePointer<CChar>
    let initCannotForward: UnsafeMutablePointer<CChar>
    let sigprocmaskFailed: UnsafeMutablePointer<CChar>

    init(_ arena: Arena) {
        root = arena.cString("/")
        proc = arena.cString("proc")
        procDir = arena.cString("/proc")
        pidMax = arena.cString("/proc/sys/kernel/pid_max")
        nsLastPid = arena.cString("/proc/sys/kernel/ns_last_pid")
        execFailedStopped = arena.cString("a stopped process could not exec its payload after SIGCONT")
        execFailedAfterJob = arena.cString("a session leader could not exec its payload once its foreground job ended")
        identityFailedStopped = arena.cString("a stopped process could not take its user, capabilities, limits or seccomp filter after SIGCONT")
        chdirFailedStopped = arena.cString("a stopped process could not change to its working directory after SIGCONT")
        devpts = arena.cString("devpts")
        devptsDir = arena.cString("/dev/pts")
        // A devpts of the namespace's own: its ptys are numbered from 0 and nobody else's show.
        devptsOptions = arena.cString("newinstance,ptmxmode=0666,mode=0620")
        ptmx = arena.cString("/dev/ptmx")
        ptsPtmx = arena.cString("/dev/pts/ptmx")
        initCannotForward = arena.cString("rootless-restore: error: the runtime's init cannot set up signal forwarding")
        sigprocmaskFailed = arena.cString("sigprocmask; the namespace is torn down")
    }
}

/// Where an executable lives, resolved in the coordinator as execvp would, so a missing
/// program is reported before any process exists.
enum ExecutableResolver {
    static let defaultPath = "/usr/local/bin:/usr/bin:/bin"

    static func resolve(_ program: String, env: [String], cwd: String, entry: String) throws -> String {
        if program.contains("/") {
            let path = program.hasPrefix("/") ? program : (cwd.hasSuffix("/") ? cwd : cwd + "/") + program
            try check(path, program: program, entry: entry)
            return path
        }
        let pathVar = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? defaultPath
        var denied: String?
        for dir in pathVar.split(separator: ":", omittingEmptySubsequences: false) {
            let base = dir.isEmpty ? cwd : String(dir)
            let candidate = (base.hasPrefix("/") ? base : cwd + "/" + base) + "/" + program
            var st = stat()
            guard stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if access(candidate, X_OK) == 0 { return candidate }
            denied = candidate
        }
        if let denied {
            throw RestoreError(.cannotExecute, operation: "access", errno: EACCES, entry: entry,
                               message: "\"\(program)\" was found at \(denied) but is not executable")
        }
        throw RestoreError(.notFound, operation: "execvp", errno: ENOENT, entry: entry,
                           message: "\"\(program)\" was not found in PATH=\(pathVar)")
    }

    static func check(_ path: String, program: String, entry: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw RestoreError(.notFound, operation: "stat", errno: Glibc.errno, entry: entry,
                               message: "executable \"\(path)\" does not exist")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0 else {
            throw RestoreError(.cannotExecute, operation: "access", errno: EACCES, entry: entry,
                               message: "\"\(path)\" is not an executable file")
        }
    }
}
