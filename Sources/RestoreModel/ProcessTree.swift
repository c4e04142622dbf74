/// A recorded process tree: the content of tree.json, version 1 (docs/tree-format.md).
public struct ProcessTree: Sendable, Equatable {
    public static let currentVersion = 1

    public var version: Int
    public var processes: [ProcessEntry]
    /// OCI-style id maps; nil means the default single-id map (caller's id -> 0).
    public var uidMappings: [IDMapping]?
    public var gidMappings: [IDMapping]?
    /// The terminals the tree's processes had (controlling terminal or on fds 0-2): each is
    /// rebuilt as a pty of the restore's own devpts instance (docs/tree-format.md, "Terminals").
    public var terminals: [TerminalSpec] = []

    public init(version: Int = ProcessTree.currentVersion, processes: [ProcessEntry],
                uidMappings: [IDMapping]? = nil, gidMappings: [IDMapping]? = nil,
                terminals: [TerminalSpec] = []) {
        self.version = version
        self.processes = processes
        self.uidMappings = uidMappings
        self.gidMappings = gidMappings
        self.terminals = terminals
    }
}

/// One recorded terminal (`terminals[k]`). Processes name it by `id`.
public struct TerminalSpec: Sendable, Equatable {
    /// Opaque name, unique in the tree ("pts3" when recorded from /dev/pts/3).
    public var id: String
    /// The session whose controlling terminal it is: the PID of its leader (a process of the
    /// tree with sid == pid). nil: no session of the tree had it as controlling terminal.
    public var session: Int32?
    /// The foreground process group (tcgetpgrp; tpgid in /proc/PID/stat), a group of `session`.
    public var foreground: Int32?
    /// What it was when recorded, for messages only ("/dev/pts/3").
    public var recordedAs: String?
    /// Window size (TIOCGWINSZ), when it could be read.
    public var rows: UInt16?
    public var columns: UInt16?
    /// Its modes (tcgetattr of the slave): `stty -echo` and the like survive the restore.
    public var modes: TerminalModes?

    public init(id: String, session: Int32? = nil, foreground: Int32? = nil, recordedAs: String? = nil,
                rows: UInt16? = nil, columns: UInt16? = nil) {
        self.id = id
        self.session = session
        self.foreground = foreground
        self.recordedAs = recordedAs
        self.rows = rows
        self.columns = columns
    }

    /// How messages name it: `terminals[0] ("pts3")`.
    public func label(_ k: Int) -> String { "terminals[\(k)] (\(JSONValue.quoted(id, limit: 40)))" }
}

/// A terminal's termios (`terminals[k].modes`), as glibc's `struct termios` on Linux x86_64
/// holds it: the four flag words (the line speed is in `cflag`) and the control characters.
public struct TerminalModes: Sendable, Equatable {
    public var iflag: UInt32
    public var oflag: UInt32
    public var cflag: UInt32
    public var lflag: UInt32
    /// c_cc: VINTR, VQUIT, VERASE, VKILL, VEOF, VTIME, VMIN, ... (at most 32).
    public var cc: [UInt8]

    public init(iflag: UInt32, oflag: UInt32, cflag: UInt32, lflag: UInt32, cc: [UInt8]) {
        self.iflag = iflag
        self.oflag = oflag
        self.cflag = cflag
        self.lflag = lflag
        self.cc = cc
    }
}

/// One line of a uid_map or gid_map, OCI names: `containerID hostID size`.
public struct IDMapping: Sendable, Equatable {
    public var containerID: UInt32
    public var hostID: UInt32
    public var size: UInt32

    public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
        self.containerID = containerID
        self.hostID = hostID
        self.size = size
    }
}

public enum ProcessState: String, Sendable, Equatable, CaseIterable {
    case running, stopped, zombie
}

/// How a zombie ended: an exit code 0...255, or the signal that killed it.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case code(Int32)
    case signal(Int32)

    public var description: String {
        switch self {
        case .code(let c): return "exit code \(c)"
        case .signal(let s): return "killed by signal \(s)"
        }
    }
}

/// One recorded process. PIDs are as seen in the tree's top PID namespace unless noted.
public struct ProcessEntry: Sendable, Equatable {
    /// Position in the file's `processes` array (0-based), for messages.
    public var index: Int
    /// Line in the source file where the entry starts, when parsed from text.
    public var line: Int?
    /// PIDs from the tree's top namespace down to the process's own, outermost first
    /// (the order of `NSpid:` in /proc/PID/status). Never empty; `nspid[0]` is `pid`.
    public var nspid: [Int32]
    /// 0, or a PID not in the tree: the process hangs under the namespace init.
    public var ppid: Int32
    public var pgid: Int32
    public var sid: Int32
    public var state: ProcessState
    /// Zombies only.
    public var exitStatus: ExitStatus? {
        get { extras?.value.exitStatus }
        set { update { $0.exitStatus = newValue } }
    }
    /// Thread IDs (top namespace), including the main thread's (== pid), as CRIU lists them.
    public var threads: [Int32]
    /// For a process in a nested PID namespace: each thread's TIDs at every level, outermost
    /// first (like `nspid`), in the order of `threads`. Empty when given as plain TIDs.
    public var threadLevels: [[Int32]] {
        get { extras?.value.threadLevels ?? [] }
        set { update { $0.threadLevels = newValue } }
    }
    /// This process is the init (PID 1) of a new, nested PID namespace.
    public var newPidNamespace: Bool
    /// PR_SET_CHILD_SUBREAPER was set on the process.
    public var childSubreaper: Bool
    /// What runs once the tree is built; nil or no `args` means the process holds.
    public var process: ProcessSpec? {
        get { extras?.value.process }
        set { update { $0.process = newValue } }
    }
    /// `"spawn": "payload"`: the process is forked by its parent's payload, not by the
    /// runtime; the runtime's fork supervisor gives it its recorded PID (in fork order).
    public var spawnedByPayload: Bool = false
    /// What `record` saw the process be (`"recorded"`): the runtime compares a pinned fork
    /// with it; nil when the tree was not recorded or nothing was worth keeping.
    public var recorded: RecordedIdentity? {
        get { extras?.value.recorded }
        set { update { $0.recorded = newValue } }
    }
    /// `"tmux"`: the process is a tmux server restarted with the sessions, windows and panes
    /// it held (TmuxReplay); its panes are its payload-spawned children.
    public var tmux: TmuxServerSpec? {
        get { extras?.value.tmux }
        set { update { $0.tmux = newValue } }
    }
    /// `"terminal"`: the id of its controlling terminal (a `terminals` entry whose session is
    /// this process's); nil: none.
    public var terminal: String? {
        get { extras?.value.terminal }
        set { update { $0.terminal = newValue } }
    }
    /// `"stdio"`: per descriptor 0, 1, 2, the id of the terminal it had open there (nil: not a
    /// recorded terminal; such descriptors are run's own, as for every process).
    public var stdio: [String?] {
        get { extras?.value.stdio ?? [] }
        set { update { $0.stdio = newValue } }
    }
    /// `"shellJobs"`: the job-control jobs of an interactive bash, in the order it started
    /// them; their processes are payload-spawned and the restored bash starts them again
    /// (ShellJobReplay, docs/tree-format.md "Shell jobs").
    public var shellJobs: [ShellJobSpec] {
        get { extras?.value.shellJobs ?? [] }
        set { update { $0.shellJobs = newValue } }
    }

    /// What most entries lack, held out of line (nil when all of it is absent or empty): an
    /// entry is then under half the size, which is most of `validate`'s memory for a
    /// 10^6-process tree.
    private struct Extras: Sendable, Equatable {
        var exitStatus: ExitStatus?
        var threadLevels: [[Int32]] = []
        var process: ProcessSpec?
        var recorded: RecordedIdentity?
        var tmux: TmuxServerSpec?
        var terminal: String?
        var stdio: [String?] = []
        var shellJobs: [ShellJobSpec] = []
        static let none = Extras()
    }
    private var extras: Box<Extras>?

    private mutating func update(_ change: (inout Extras) -> Void) {
        var x = extras?.value ?? Extras()
        change(&x)
        extras = x == Extras.none ? nil : Box(x)
    }

    public var pid: Int32 { nspid[0] }

    /// How messages name this entry: `process #3 (pid 17)`.
    public var label: String { "process #\(index) (pid \(pid))" }

    public init(index: Int, line: Int? = nil, pid: Int32, ppid: Int32, pgid: Int32, sid: Int32,
                nspid: [Int32]? = nil, state: ProcessState = .running, exitStatus: ExitStatus? = nil,
                threads: [Int32] = [], newPidNamespace: Bool = false, childSubreaper: Bool = false,
                process: ProcessSpec? = nil) {
        self.index = index
        self.line = line
        self.nspid = nspid ?? [pid]
        self.ppid = ppid
        self.pgid = pgid
        self.sid = sid
        self.state = state
        self.threads = threads
        self.newPidNamespace = newPidNamespace
        self.childSubreaper = childSubreaper
        if exitStatus != nil { self.exitStatus = exitStatus }
        if process != nil { self.process = process }
    }
}

/// One job of an interactive shell's job table (`shellJobs[k]`): a process group of the
/// shell's session led by one of its children.
public struct ShellJobSpec: Sendable, Equatable {
    public enum State: String, Sendable, Equatable, CaseIterable {
        /// In the background, running (`cmd &`).
        case running
        /// Stopped (^Z, or a stop signal).
        case stopped
        /// The terminal's foreground job the shell was waiting for.
        case foreground
    }

    /// The job's process group: the PID of its first member, which leads it.
    public var pgid: Int32
    public var state: State
    /// The signal that stopped it (SIGTSTP: ^Z, SIGSTOP, SIGTTIN, SIGTTOU): bash shows
    /// "Stopped", "Stopped (signal)", "Stopped (tty input)", "Stopped (tty output)". Stopped only.
    public var stopSignal: Int32?
    /// The PIDs of the shell's children in the group, in pipeline order (start time).
    public var members: [Int32]

    public init(pgid: Int32, state: State, stopSignal: Int32? = nil, members: [Int32]) {
        self.pgid = pgid
        self.state = state
        self.stopSignal = stopSignal
        self.members = members
    }
}

/// An immutable value held by reference (ProcessEntry's large optional parts).
final class Box<Value: Sendable & Equatable>: Sendable, Equatable {
    let value: Value
    init(_ value: Value) { self.value = value }
    static func == (a: Box, b: Box) -> Bool { a === b || a.value == b.value }
}

/// `"recorded"`: what the process was when `record` read it, kept so that a restore can tell
/// whether a pinned fork became the same thing (docs/tree-format.md, "Recorded identity").
public struct RecordedIdentity: Sendable, Equatable {
    /// /proc/PID/exe: the program the process runs.
    public var exe: String?
    /// /proc/PID/cmdline as read, NUL-separated strings; for a rewritten title, the title.
    public var cmdline: [String]?
    /// The process overwrote its argv/environ area with a process title (nginx, PostgreSQL,
    /// sshd): `cmdline` is not the argv it was started with.
    public var titleRewritten: Bool = false
    /// The process was forked by its parent and has not exec'd since (same program and memory
    /// layout as the parent): it is a copy of its parent, not a program of its own.
    public var forkedNotExeced: Bool = false
    /// Start time in clock ticks after boot (/proc/PID/stat field 22), on the recording host.
    public var startTime: UInt64?
    /// 0-based position among the siblings with the same parent, by start time: the order in
    /// which the parent created them (of those still alive or unreaped when recorded).
    public var forkOrder: Int?

    public init(exe: String? = nil, cmdline: [String]? = nil, titleRewritten: Bool = false,
                forkedNotExeced: Bool = false, startTime: UInt64? = nil, forkOrder: Int? = nil) {
        self.exe = exe
        self.cmdline = cmdline
        self.titleRewritten = titleRewritten
        self.forkedNotExeced = forkedNotExeced
        self.startTime = startTime
        self.forkOrder = forkOrder
    }
}

/// The OCI-like `process` object.
public struct ProcessSpec: Sendable, Equatable {
    /// argv; nil or empty means the process holds (stays idle until signalled).
    public var args: [String]?
    /// KEY=VALUE strings; nil means the runtime's own environment.
    public var env: [String]?
    /// nil means the runtime's working directory.
    public var cwd: String?
    public var user: UserSpec?
    /// OCI `process.capabilities`; nil leaves the sets as the kernel makes them.
    public var capabilities: CapabilitySpec?
    /// OCI `process.noNewPrivileges`; nil means false.
    public var noNewPrivileges: Bool?
    /// OCI `process.rlimits`, one per type; nil leaves the runtime's limits.
    public var rlimits: [RlimitSpec]?
    /// The OCI `linux.seccomp` object, loaded last before exec.
    public var seccomp: SeccompSpec?

    public init(args: [String]? = nil, env: [String]? = nil, cwd: String? = nil, user: UserSpec? = nil,
                capabilities: CapabilitySpec? = nil, noNewPrivileges: Bool? = nil,
                rlimits: [RlimitSpec]? = nil, seccomp: SeccompSpec? = nil) {
        self.args = args
        self.env = env
        self.cwd = cwd
        self.user = user
        self.capabilities = capabilities
        self.noNewPrivileges = noNewPrivileges
        self.rlimits = rlimits
        self.seccomp = seccomp
    }
}

public struct UserSpec: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var additionalGids: [UInt32]
    /// The file mode creation mask (0...0o777); nil leaves the runtime's.
    public var umask: UInt32?

    public init(uid: UInt32, gid: UInt32, additionalGids: [UInt32] = [], umask: UInt32? = nil) {
        self.uid = uid
        self.gid = gid
        self.additionalGids = additionalGids
        self.umask = umask
    }
}
