import CRestoreShim
import Glibc
import RestoreModel

/// Options of one `run`.
public struct RunOptions: Sendable {
    public var quiet = false
    public var verbose = false
    /// Called as processes are created (the CLI draws it; the engine draws nothing).
    public var onProgress: (@Sendable (RestoreProgress) -> Void)?
    /// Called once the tree is built, verified and released, with the report of verify's
    /// /proc pass. The place to write `--report`; throwing tears the namespace down.
    public var onReady: (@Sendable (RestoreReport) throws -> Void)?
    /// Testing aid: an extra process takes this PID in the new namespace before the restore.
    public var occupyPid: Int32?
    /// Testing aid: this many processes fork continuously in the namespace during the restore.
    public var noiseForkers = 0
    /// Testing aid: make the child side break its rules, to show the tests catch it.
    public var testingFault: TestingFault = .none
    /// Seconds a single step may take before the restore is declared stuck.
    public var stepTimeout: Double = 30
    /// How PIDs are chosen.
    public var pidMethod: PidMethod = .auto
    /// PIDs the payloads' own forks must get (processes marked "spawn": "payload").
    public var pinned = PinnedForks()
    /// Server PID -> the generated configuration of a tmux server of the tree (TmuxReplay).
    public var tmuxConfigs: [Int32: String] = [:]
    public var pinMismatch: PinMismatchPolicy = .warn
    /// Where the fork supervisor logs every pinned PID it handed out (JSON lines).
    public var pinLogPath: String?
    /// How long a forker may take no pinned PID while it owes some before they are reported missing.
    public var pinWaitNanoseconds = PinLedger.missingAfterNanoseconds
    /// What a supervised fork that a signal interrupts before it is received does.
    public var interruptedForks: InterruptedForkPolicy = .restart
    /// --map-users / --map-groups: replace the tree's uidMappings / gidMappings when not empty.
    public var mapUsers: [IDMapRequest] = []
    public var mapGroups: [IDMapRequest] = []
    /// --shell-job: the index in `terminals` of the terminal to connect to the caller's
    /// (ShellJob.terminal(of:)); nil: every terminal is held and drained.
    public var shellJobTerminal: Int?

    public init() {}
}

/// Faults a test can inject into the child side (`--testing-fault`, hidden).
public enum TestingFault: String, Sendable, CaseIterable {
    case none
    /// The first restored process allocates between its clone and its exec.
    case puppetAllocates = "puppet-allocates"
    /// The first restored process dereferences a bad pointer before its exec.
    case puppetCrashes = "puppet-crashes"
    /// The namespace init waits a second before it arms its parent-death signal.
    case slowInitStart = "slow-init-start"
    /// Once half the processes exist, the runtime says so on stderr and waits (up to 60 s) for a
    /// signal, so a test can signal it at a moment that is certainly mid-restore. (Not SIGSTOP:
    /// as the PID 1 of an outer namespace the runtime could not stop itself.)
    /// Forks are not batched then, so that no forker runs ahead of the pause.
    case pauseMidRestore = "pause-mid-restore"
    /// The runtime's supervising init lowers its open-file limit to 3 before its signalfd, which
    /// then fails with EMFILE (no ordinary limit reaches it: the coordinator needs more).
    case initFileLimit = "init-file-limit"
    /// The runtime's init, once released, allocates (the allocation guard must catch it when the
    /// init shares the runtime's memory).
    case initAllocates = "init-allocates"
    /// The fork supervisor's receiver waits 300 µs before each receive, so that signals often
    /// interrupt supervised forks before they are received (InterruptedForkRestart's test).
    case slowReceive = "slow-receive"
}

/// What a payload's supervised fork does when a signal interrupts it before the fork
/// supervisor has received it (the kernel's seccomp wait is interruptible until then).
public enum InterruptedForkPolicy: String, Sendable, CaseIterable {
    /// It restarts, as a real fork does: a process that forks is traced by the supervisor from
    /// its first fork on (TracerPid set; detached while stopped).
    case restart
    /// Nothing is traced; such a fork fails with EINTR under a handler without SA_RESTART.
    case fail
}

/// Where a restore is, for a progress display.
public enum RestoreProgress: Sendable, Equatable {
    /// `created` of `total` processes (helpers included) exist.
    case building(created: Int, total: Int)
    /// The restore ended (built, failed or interrupted): a display should clear itself.
    case finished
}

/// How a process gets its recorded PID.
public enum PidMethod: String, Sendable, CaseIterable {
    /// clone3 with set_tid when the kernel has it (5.5+), else the dance.
    case auto
    /// clone3 with a set_tid array: one PID per namespace level, race-free.
    case clone3
    /// Write PID-1 to the namespace's ns_last_pid, then fork (for kernels before 5.5).
    /// Works inside our own user namespace; serialised; every PID is verified.
    case dance

    /// Whether clone3 with set_tid (Linux 5.5+) works here: probed, not judged from the
    /// release (backports; seccomp profiles that hide clone3 behind ENOSYS).
    public static func kernelHasSetTid() -> Bool {
        rr_probe_clone3() == 2
    }
}
