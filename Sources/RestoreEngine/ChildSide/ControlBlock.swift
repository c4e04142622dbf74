import CRestoreShim
import Glibc

/// What the coordinator asks a puppet (a restored process still running runtime code) to do.
enum PuppetCommand: UInt32 {
    case none = 0
    /// Finish namespace setup (init only): private mounts, fresh /proc, pid_max. a = needed pid_max;
    /// b > 0: then, set up, clone node b - 1 as `fork` does (the plan's first step, posted with it).
    case setupNamespace
    /// clone3 the node `a` with its prepared set_tid array.
    case fork
    /// clone3, one after another without waiting for the coordinator, the `b` nodes listed in
    /// the prepared fork list from offset `a` (consecutive siblings of the plan).
    case forkBatch
    case setsid
    /// setpgid(0, a): a is the group id as seen in the puppet's own namespace.
    case setpgid
    case setChildSubreaper
    /// _exit(a) without an answer (helpers).
    case exit
    /// a > 0: die of signal a; a <= 0: exit with code -a. No answer (zombies-to-be).
    case die
    /// waitpid(a) for an exited helper, then answer.
    case reap
    /// waitid(a, WEXITED|WNOWAIT): wait until the zombie-to-be is dead without reaping it.
    case awaitZombie
    /// Session leader: make group b (its own namespace's number) the foreground group of
    /// terminal a (tcsetpgrp), once every group exists.
    case setForeground
    /// Testing aid: fork and reap children without chosen PIDs until the next command.
    case noise
    /// Become what the tree says: exec the payload, hold, or (init) run the init loop.
    case release
    /// The PID dance only: create the holder's recorded threads now, while nothing else forks
    /// (their TIDs come from ns_last_pid, which a concurrent fork would race).
    case startThreads
}

/// One answer from a puppet. Sent as one SOCK_SEQPACKET record; the kernel adds the sender's
/// PID as seen from the coordinator (SCM_CREDENTIALS), which is how host PIDs are learnt.
struct PuppetAnswer {
    enum Kind: Int32 {
        /// A new process is up; value = getpid() in its own namespace.
        case ready = 1
        case done = 2
        /// stage + errno (value).
        case failed = 3
    }

    var node: Int32
    var kind: Int32
    var stage: Int32
    var value: Int32
}

/// Stages a child can fail in; their names are part of the user-visible messages.
enum PuppetStage: Int32 {
    case clone3 = 1, setsid, setpgid, subreaper, mountPrivate, mountProc, pidMax, reap, awaitZombie
    case chdir, exec, pdeathsig, setgid, setuid, threads, nsLastPid, seccompNotify
    case setgroups, setrlimit, capabilities, noNewPrivileges, seccomp
    case mountDevpts, bindPtmx, controllingTerminal, foreground, terminalStdio
    /// The dance gave a thread another TID (the value) than recorded.
    case threadTid
    /// Sending the fork listener to the runtime's init (SCM_RIGHTS) failed.
    case listenerHandOver

    var operation: String {
        switch self {
        case .clone3: return "clone3"
        case .setsid: return "setsid"
        case .setpgid: return "setpgid"
        case .subreaper: return "prctl(PR_SET_CHILD_SUBREAPER)"
        case .mountPrivate: return "mount --make-rprivate /"
        case .mountProc: return "mount proc /proc"
        case .pidMax: return "write /proc/sys/kernel/pid_max"
        case .reap: return "waitpid"
        case .awaitZombie: return "waitid(WNOWAIT)"
        case .chdir: return "chdir"
        case .exec: return "execve"
        case .pdeathsig: return "prctl(PR_SET_PDEATHSIG)"
        case .setgid: return "setgid"
        case .setuid: return "setuid"
        case .threads: return "clone3(CLONE_THREAD)"
        case .nsLastPid: return "write /proc/sys/kernel/ns_last_pid"
        case .seccompNotify: return "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)"
        case .setgroups: return "setgroups"
        case .setrlimit: return "setrlimit"
        case .capabilities: return "capset"
        case .noNewPrivileges: return "prctl(PR_SET_NO_NEW_PRIVS)"
        case .seccomp: return "seccomp(SECCOMP_SET_MODE_FILTER)"
        case .mountDevpts: return "mount devpts /dev/pts (newinstance)"
        case .bindPtmx: return "mount --bind /dev/pts/ptmx /dev/ptmx"
        case .controllingTerminal: return "ioctl(TIOCSCTTY)"
        case .foreground: return "tcsetpgrp"
        case .terminalStdio: return "open the pty slave onto 0, 1, 2"
        case .threadTid: return "clone(CLONE_THREAD)"
        case .listenerHandOver: return "sendmsg(SCM_RIGHTS)"
        }
    }
}

/// Command slots in MAP_SHARED memory, one per node, inherited by every puppet through fork.
/// Each slot is four words: sequence number (the futex word), command, two arguments.
struct ControlBlock {
    let words: UnsafeMutablePointer<UInt32>
    let count: Int

    init?(nodes: Int, in arena: Arena) {
        let bytes = max(nodes, 1) * 16
        guard let p = arena.map(bytes, shared: true) else { return nil }
        words = p.bindMemory(to: UInt32.self, capacity: max(nodes, 1) * 4)
        count = nodes
    }

    /// Coordinator side: post a command and wake the puppet.
    func post(_ node: Int, _ command: PuppetCommand, _ a: Int32 = 0, _ b: Int32 = 0) {
        let slot = words + node * 4
        slot[1] = command.rawValue
        slot[2] = UInt32(bitPattern: a)
        slot[3] = UInt32(bitPattern: b)
        _ = rr_atomic_add(slot, 1)
        _ = rr_futex_wake(slot, 1)
    }

    /// Puppet side: block until the sequence number moves past `seen`.
    func wait(_ node: Int, seen: inout UInt32) -> (PuppetCommand, Int32, Int32) {
        let slot = words + node * 4
        while true {
            let now = rr_atomic_load(slot)
            if now != seen {
                seen = now
                return (PuppetCommand(rawValue: slot[1]) ?? .none,
                        Int32(bitPattern: slot[2]), Int32(bitPattern: slot[3]))
            }
            _ = rr_futex_wait(slot, now, -1)
        }
    }

    func sequence(_ node: Int) -> UInt32 { rr_atomic_load(words + node * 4) }
}
