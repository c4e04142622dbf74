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
    /// One line each of the caller's own uid and gid: every process of the namespace has the
    /// caller's ids on the host.
    public let ownIDsOnly: Bool

    /// The maps for a tree: `users`/`groups` (--map-users, --map-groups) when given, else the
    /// tree's uidMappings/gidMappings, else the caller's ids -> 0.
    public init(tree: ProcessTree, users: [IDMapRequest] = [], groups: [IDMapRequest] = []) throws {
        let uid = UInt32(geteuid()), gid = UInt32(getegid())
        // The common case, one line of the caller's own ids each, needs none of the files and
        // helpers facts() looks up (about 1 ms: NSS, /etc/passwd twice, /etc/group, PATH).
        ownIDsOnly = IDMapPlan.mapsOnlyOwnIDs(tree: tree, users: users, groups: groups, uid: uid, gid: gid)
        let facts = ownIDsOnly ? Self.ownFacts(uid: uid, gid: gid) : Self.facts()
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

    /// How long newuidmap/newgidmap may take (run and check).
    public static let helperTimeoutSeconds = 10

    /// Runs `newuidmap PID inner outer count ...` and waits for it, bounded: the coordinator
    /// blocks INT and TERM meanwhile, so a hanging helper would make `run` unkillable but by
    /// SIGKILL. Its output goes into the error message.
    func run(_ helper: String, pid: Int32, side: IDMapPlan.Side) throws {
        var argv = [helper, String(pid)]
        for m in side.lines { argv += [String(m.containerID), String(m.hostID), String(m.size)] }
        let command = argv.joined(separator: " ")
        let result = CommandRunner.run(argv, environment: ["PATH=\(Self.defaultSearchPath)", "LC_ALL=C"],
                                       timeout: Double(Self.helperTimeoutSeconds), mergeOutput: true, limit: 4096)
        if let e = result.startErrno {
            throw RestoreError(.environment, operation: "posix_spawn", errno: e, entry: helper,
                               message: "cannot run \(command)")
        }
        if result.timedOut {
            throw RestoreError(.environment, operation: command, errno: ETIMEDOUT, entry: side.source,
                               message: "\(helper) did not finish within \(Self.helperTimeoutSeconds) s writing the \(side.kind) map \(side.text); it was killed")
        }
        guard result.status != 0 else { return }
        let text = result.output.trimmingSuffixNewline
        throw RestoreError(.environment, operation: command, entry: side.source,
                           message: "\(helper) failed (\(result.how)) writing the \(side.kind) map \(side.text)"
                               + (text.isEmpty ? "" : ": \(text)"))
    }
}

extension String {
    var trimmingSuffixNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
