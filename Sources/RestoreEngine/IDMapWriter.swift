import CRestoreShim
import Glibc
import RestoreModel

/// Writes the user namespace's uid_map and gid_map from outside, as the namespace's creator.
/// One line mapping the caller's own id is written directly (what the kernel allows an
/// ordinary user; gid_map then needs setgroups=deny). Anything larger goes through the setuid
/// helpers newuidmap / newgidmap, which check /etc/subuid and /etc/subgid.
///
/// `init` gathers the facts and checks everything (IDMapPlan) before any process exists;
/// `write(to:)` runs in the coordinator once the namespace's init exists.
public struct IDMapWriter {
    public let plan: IDMapPlan

    /// The maps for a tree: `users`/`groups` (--map-users, --map-groups) when given, else the
    /// tree's uidMappings/gidMappings, else the caller's ids -> 0.
    public init(tree: ProcessTree, users: [IDMapRequest] = [], groups: [IDMapRequest] = []) throws {
        let uid = UInt32(geteuid()), gid = UInt32(getegid())
        // The common case, one line of the caller's own ids each, needs none of the files and
        // helpers facts() looks up (about 1 ms: NSS, /etc/passwd twice, /etc/group, PATH).
        let facts = IDMapPlan.mapsOnlyOwnIDs(tree: tree, users: users, groups: groups, uid: uid, gid: gid)
            ? Self.ownFacts(uid: uid, gid: gid) : Self.facts()
        plan = try IDMapPlan.make(tree: tree, users: users, groups: groups, facts: facts)
    }

    /// The caller's ids alone, for maps of its own ids only.
    static func ownFacts(uid: UInt32, gid: UInt32) -> IDMapFacts {
        IDMapFacts(uid: uid, gid: gid, userName: String(uid), subuidText: nil, subgidText: nil,
                   newuidmap: IDHelperFacts(name: "newuidmap"), newgidmap: IDHelperFacts(name: "newgidmap"),
                   searchPath: "")
    }

    /// The caller's ids, /etc/subuid, /etc/subgid and the helpers as found in PATH.
    static func facts() -> IDMapFacts {
        let uid = UInt32(geteuid()), gid = UInt32(getegid())
        let name = getpwuid(uid_t(uid)).map { String(cString: $0.pointee.pw_name) } ?? String(uid)
        let path = getenv("PATH").map { String(cString: $0) } ?? defaultSearchPath
        var facts = IDMapFacts(uid: uid, gid: gid, userName: name,
                               subuidText: SystemCalls.readText("/etc/subuid"),
                               subgidText: SystemCalls.readText("/etc/subgid"),
                               newuidmap: locate("newuidmap", in: path), newgidmap: locate("newgidmap", in: path),
                               searchPath: path)
        facts.accountUIDs = SystemCalls.readText("/etc/passwd").map(LinuxFormats.accountIDs) ?? []
        facts.accountGIDs = SystemCalls.readText("/etc/group").map(LinuxFormats.accountIDs) ?? []
        facts.inInitialUserNamespace = SystemCalls.readText("/proc/self/uid_map").map(LinuxFormats.isInitialUserNamespaceMap) ?? true
        let status = SystemCalls.readText("/proc/self/status") ?? ""
        facts.noNewPrivs = LinuxFormats.statusField(status, "NoNewPrivs")?.first == "1"
        facts.capBnd = LinuxFormats.parseCapabilityMask(status, "CapBnd")
        return facts
    }

    /// Where helpers are looked for when PATH is unset (execvp's idea, plus the sbin dirs).
    static let defaultSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The first regular file `name` in the directories of `path`, with its mode, owner and
    /// security.capability attribute.
    public static func locate(_ name: String, in path: String) -> IDHelperFacts {
        var facts = IDHelperFacts(name: name)
        for dir in path.split(separator: ":") where dir.hasPrefix("/") {
            let candidate = dir + "/" + name
            var st = stat()
            guard stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            facts.path = candidate
            facts.mode = UInt32(st.st_mode)
            facts.ownerUID = UInt32(st.st_uid)
            var buf = [UInt8](repeating: 0, count: 64)
            let n = rr_getxattr(candidate, "security.capability", &buf, buf.count)
            if n > 0 { facts.fileCapability = Array(buf[0..<n]) }
            break
        }
        return facts
    }

    /// Writes the maps of `pid` (the namespace's init, still waiting for them): uid_map, then
    /// setgroups and gid_map.
    public func write(to pid: Int32) throws {
        let base = "/proc/\(pid)"
        if let helper = plan.uid.helper {
            try run(helper, pid: pid, side: plan.uid)
        } else {
            try writeFile("\(base)/uid_map", plan.uid.mapFileText)
        }
        if let helper = plan.gid.helper {
            // newgidmap sets /proc/PID/setgroups itself: "deny" unless a /etc/subgid range is mapped.
            try run(helper, pid: pid, side: plan.gid)
        } else {
            try writeFile("\(base)/setgroups", "deny")
            try writeFile("\(base)/gid_map", plan.gid.mapFileText)
        }
    }

    func writeFile(_ path: String, _ text: String) throws {
        let e = SystemCalls.writeFile(path, text)
        if e != 0 {
            throw RestoreError(.environment, operation: "write \(path)", errno: e, entry: nil,
                               message: "cannot write the user namespace's id map \"\(text.trimmingSuffixNewline)\"\(e == EPERM ? "; the kernel or a security module (AppArmor's kernel.apparmor_restrict_unprivileged_userns) forbids it for ordinary users" : "")")
        }
    }

    static let helperTimeoutSeconds: UInt64 = 10

    /// Runs `newuidmap PID inner outer count ...` (posix_spawn: the coordinator stays
    /// single-threaded) and waits for it; its output goes into the error message.
    func run(_ helper: String, pid: Int32, side: IDMapPlan.Side) throws {
        var argv = [helper, String(pid)]
        for m in side.lines { argv += [String(m.containerID), String(m.hostID), String(m.size)] }
        let command = argv.joined(separator: " ")
        let out = rr_memfd("rootless-restore-idmap")
        guard out >= 0 else {
            throw RestoreError(.restoreFailed, operation: "memfd_create", errno: -out, message: "cannot capture the output of \(helper)")
        }
        defer { close(out) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out, 1)
        posix_spawn_file_actions_adddup2(&actions, out, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The coordinator blocks the signals it reads from its signalfd; the helper must not.
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        // A process group of its own, so that a timeout kills whatever it started too.
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=\(Self.defaultSearchPath)"), strdup("LC_ALL=C"), nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var child = pid_t()
        let rc = posix_spawn(&child, helper, &actions, &attr, cArgs, cEnv)
        guard rc == 0 else {
            throw RestoreError(.environment, operation: "posix_spawn", errno: rc, entry: helper,
                               message: "cannot run \(command)")
        }
        var status: Int32 = 0
        // Bounded: the coordinator blocks INT and TERM meanwhile, so a hanging helper would
        // make `run` unkillable but by SIGKILL.
        let deadline = MonotonicClock.nanoseconds() + Self.helperTimeoutSeconds * 1_000_000_000
        while SystemCalls.retrying({ waitpid(child, &status, WNOHANG) }).value == 0 {
            if MonotonicClock.nanoseconds() > deadline {
                kill(-child, SIGKILL)
                _ = SystemCalls.retrying { waitpid(child, &status, 0) }
                throw RestoreError(.environment, operation: command, errno: ETIMEDOUT, entry: side.source,
                                   message: "\(helper) did not finish within \(Self.helperTimeoutSeconds) s writing the \(side.kind) map \(side.text); it was killed")
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
            nanosleep(&pause, nil)
        }
        guard rr_wifexited(status) == 0 || rr_wexitstatus(status) != 0 else { return }
        let size = Int(lseek(out, 0, SEEK_END))
        var said = [UInt8](repeating: 0, count: max(0, min(size, 4096)))
        let n = said.withUnsafeMutableBytes { pread(out, $0.baseAddress, $0.count, 0) }
        let text = String(decoding: said.prefix(max(0, n)), as: UTF8.self).trimmingSuffixNewline
        let how = rr_wifexited(status) != 0 ? "exit code \(rr_wexitstatus(status))" : "signal \(rr_wtermsig(status))"
        throw RestoreError(.environment, operation: command, entry: side.source,
                           message: "\(helper) failed (\(how)) writing the \(side.kind) map \(side.text)"
                               + (text.isEmpty ? "" : ": \(text)"))
    }
}

extension String {
    var trimmingSuffixNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
