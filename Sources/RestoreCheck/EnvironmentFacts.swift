import RestoreModel

/// What `rootless-restore check` learnt about this machine, and the pure logic that turns it
/// into verdicts with fixes. The engine (EnvironmentCheck) gathers the facts by trying things
/// in throwaway children; everything here is parsing and judging, testable without a kernel.

// MARK: - Verdicts

public enum CheckVerdict: String, Sendable, Equatable {
    case pass, warn, fail
}

/// One line of the check.
public struct CheckItem: Sendable, Equatable {
    /// Stable machine name: "userns", "set_tid", ... (the `id` of `check --json`).
    public var id: String
    public var title: String
    public var verdict: CheckVerdict
    public var detail: String
    /// The exact command or change that would fix a warn or fail.
    public var fix: String?
    /// Part of what a basic restore needs; any of these failing makes `check` exit 77.
    public var essential: Bool

    public init(id: String, title: String, verdict: CheckVerdict, detail: String, fix: String? = nil,
                essential: Bool = false) {
        self.id = id
        self.title = title
        self.verdict = verdict
        self.detail = detail
        self.fix = fix
        self.essential = essential
    }
}

/// The outcome of one attempted system call of a probe.
public enum ProbeStep: Sendable, Equatable {
    case notTried
    case ok
    case failed(Int32)

    public var errno: Int32? {
        if case .failed(let e) = self { return e }
        return nil
    }
}

/// What the namespace probe saw: one throwaway child created with
/// clone3(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS), mapped from outside, which then tries
/// /proc, set_tid, pid_max and nesting from inside.
public struct NamespaceProbeResult: Sendable, Equatable {
    /// clone3(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS).
    public var clone: ProbeStep = .notTried
    /// clone3(CLONE_NEWUSER) alone, tried when the combined clone failed, to tell which part refuses.
    public var userOnly: ProbeStep = .notTried
    /// fork + unshare(CLONE_NEWUSER), tried when clone3 gave ENOSYS: tells a seccomp filter that
    /// hides clone3 (the kernel has user namespaces) from a kernel without them.
    public var unshareUser: ProbeStep = .notTried
    /// CapEff of the namespace's first process as its creator sees it (nil: unreadable).
    public var capEff: UInt64?
    /// Its security label (/proc/PID/attr/apparmor/current): "unprivileged_userns" is the
    /// AppArmor profile that takes every capability away (Ubuntu 23.10+).
    public var securityLabel: String?
    public var setgroups: ProbeStep = .notTried
    public var uidMap: ProbeStep = .notTried
    public var gidMap: ProbeStep = .notTried
    /// getpid() inside the new namespace (1 expected).
    public var pidInside: Int32?
    public var mountPrivate: ProbeStep = .notTried
    public var mountProc: ProbeStep = .notTried
    /// /proc/sys/kernel/pid_max read inside, after mounting the namespace's own /proc.
    public var pidMaxInside: Int?
    /// Writing a larger pid_max inside (tried only when the high PID would not fit).
    public var pidMaxRaise: ProbeStep = .notTried
    public var pidMaxAfterRaise: Int?
    public static let lowTarget: Int32 = 4242
    public static let highTarget: Int32 = 40000
    /// clone3 with set_tid = {lowTarget}, and the PID it produced.
    public var setTid: ProbeStep = .notTried
    public var setTidGot: Int32?
    /// clone3 with set_tid = {highTarget} (above the default pid_max 32768).
    public var setTidHigh: ProbeStep = .notTried
    public var setTidHighGot: Int32?
    /// Nested PID namespaces created below the probe's own, one inside the other, until the
    /// kernel refused (`nestedStop`: the errno that stopped it; .ok: stopped by our own cap).
    public var nestedCreated: Int?
    public var nestedStop: ProbeStep = .notTried
    /// Something went wrong with the probe itself (timeout, child died, threads).
    public var problem: String?

    public init() {}
}

// MARK: - Facts

/// Everything `check` gathered. Sysctls are nil when the file does not exist on this kernel.
public struct EnvironmentFacts: Sendable, Equatable {
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var userName: String = ""
    /// True when the checking process lives in the initial user namespace (uid_map is the
    /// identity map of all ids).
    public var inInitialUserNamespace = true
    public var executablePath: String = "rootless-restore"
    public var kernelRelease: String = ""
    /// /etc/os-release ID and ID_LIKE, for package names in fixes.
    public var osID: String?
    public var osIDLike: [String] = []
    /// `Seccomp:` of /proc/self/status (0 none, 1 strict, 2 filter).
    public var seccompMode: Int?
    /// CapEff and CapBnd of /proc/self/status, and NoNewPrivs (nil: unreadable).
    public var callerCapEff: UInt64?
    public var callerCapBnd: UInt64?
    public var noNewPrivs = false

    public var unprivilegedUsernsClone: Int?
    public var maxUserNamespaces: Int?
    public var maxPidNamespaces: Int?
    public var apparmorRestrictUnprivilegedUserns: Int?
    /// /proc/sys/kernel/pid_max as the caller reads it: since Linux 6.14 the value of the
    /// caller's own PID namespace (a container's), before that the one global value.
    public var hostPidMax: Int?
    public var threadsMax: Int?
    /// Soft RLIMIT_NPROC; nil: unlimited.
    public var nprocLimit: UInt64?
    /// Processes whose real uid is the caller's, as far as /proc shows.
    public var userProcesses: Int?
    /// Smallest pids.max - pids.current over the caller's cgroup and its ancestors (nil: no limit).
    public var cgroupPidsLeft: Int?
    public var cgroupPidsMax: Int?
    public var cgroupPath: String?
    /// Columns of `NSpid:` in /proc/self/status: the caller's PID-namespace level + 1 as far as
    /// the mounted /proc shows.
    public var callerNSpidColumns: Int = 1

    public var probe = NamespaceProbeResult()
    public var newuidmap = IDHelperFacts(name: "newuidmap")
    public var newgidmap = IDHelperFacts(name: "newgidmap")
    /// Contents of /etc/subuid and /etc/subgid (nil: the file is missing or unreadable).
    public var subuidText: String?
    public var subgidText: String?
    /// Ids of the accounts in /etc/passwd and /etc/group, which no suggested range may include.
    public var accountUIDs: [UInt32] = []
    public var accountGIDs: [UInt32] = []

    /// seccomp_api_get() of the linked libseccomp (0: could not tell), and its version.
    public var seccompAPILevel: Int?
    public var libseccompVersion: String?
    /// /proc/sys/kernel/seccomp/actions_avail.
    public var seccompActionsAvail: String?

    public init() {}
}

// MARK: - Parsing (what only check reads)

extension EnvironmentFacts {
    /// A range of `count` ids nobody has (see SubIDGrant.free).
    public static func suggestFreeRange(existing: [SubIDRange], count: UInt32 = 65536, accounts: [UInt32] = []) -> SubIDRange? {
        SubIDGrant.free(count: count, existing: existing, accounts: accounts)
    }

    /// KEY=value lines of /etc/os-release, quotes removed.
    public static func parseOSRelease(_ text: String) -> (id: String?, idLike: [String]) {
        var id: String?
        var like: [String] = []
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq]
            var value = LinuxFormats.trimmed(line[line.index(after: eq)...])
            if value.count >= 2, let f = value.first, f == "\"" || f == "'", value.last == f {
                value = String(value.dropFirst().dropLast())
            }
            if key == "ID" { id = value }
            if key == "ID_LIKE" { like = value.split(separator: " ").map(String.init) }
        }
        return (id, like)
    }

    /// Whether `actions_avail` lists user notification.
    public static func kernelHasUserNotif(_ actionsAvail: String) -> Bool {
        actionsAvail.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).contains("user_notif")
    }

    /// The ucount limits of nested PID namespaces: levels left below the caller's level.
    public static func pidNamespaceLevelsLeft(callerNSpidColumns: Int) -> Int {
        max(0, LinuxNumbers.maxPidNamespaceLevel - (max(callerNSpidColumns, 1) - 1))
    }
}

// MARK: - Judging

extension EnvironmentFacts {
    /// Items that must all pass for a basic restore (user + PID namespace, single-id maps,
    /// a fresh /proc, set_tid).
    public static let essentialIDs: Set<String> = ["userns", "capabilities", "uid_map", "gid_map", "pidns", "proc", "set_tid"]

    /// Whether a basic restore can work, from the items.
    public static func basicRestorePossible(_ items: [CheckItem]) -> Bool {
        let essential = items.filter(\.essential)
        return !essential.isEmpty && essential.allSatisfy { $0.verdict == .pass }
    }

    /// 0 when a basic restore can work, 77 (the runtime's "environment" code) otherwise.
    public static func exitCode(_ items: [CheckItem]) -> Int32 {
        basicRestorePossible(items) ? 0 : RestoreError.ExitCode.environment
    }

    /// The package-manager command that installs `debianPackage` (or its equivalent).
    public func installCommand(debian: String, fedora: String, arch: String, suse: String? = nil) -> String {
        let ids = [osID ?? ""] + osIDLike
        if ids.contains(where: { ["fedora", "rhel", "centos", "rocky", "almalinux"].contains($0) }) { return "sudo dnf install \(fedora)" }
        if ids.contains("arch") { return "sudo pacman -S \(arch)" }
        if ids.contains(where: { $0.hasPrefix("opensuse") || $0 == "suse" || $0 == "sles" }) { return "sudo zypper install \(suse ?? fedora)" }
        if ids.contains("alpine") { return "sudo apk add \(arch)" }
        return "sudo apt-get install \(debian)"
    }

    /// Inside a container or another namespace: the pid_max read is this PID namespace's
    /// (Linux 6.14+), not necessarily the host's.
    var inContainerLike: Bool { callerNSpidColumns > 1 || !inInitialUserNamespace }

    var userLabel: String { userName.isEmpty ? "uid \(uid)" : "\(userName) (uid \(uid))" }
    var userForCommands: String { userName.isEmpty ? "\(uid)" : userName }

    func sysctlSummary() -> String {
        func show(_ name: String, _ v: Int?) -> String { "\(name) = \(v.map(String.init) ?? "absent")" }
        return [show("kernel.unprivileged_userns_clone", unprivilegedUsernsClone),
                show("user.max_user_namespaces", maxUserNamespaces),
                show("kernel.apparmor_restrict_unprivileged_userns", apparmorRestrictUnprivilegedUserns)]
            .joined(separator: ", ")
    }

    static func errnoText(_ e: Int32) -> String {
        e == LinuxNumbers.EUSERS ? "EUSERS, Too many users" : ErrnoName.describe(e)
    }

    /// Why creating a user namespace failed with `e`, and the fix.
    func userNamespaceDiagnosis(_ e: Int32) -> (String, String?) {
        let N = LinuxNumbers.self
        func persistent(_ setting: String) -> String {
            "(to keep it across reboots: echo '\(setting)' | sudo tee /etc/sysctl.d/60-rootless-restore.conf)"
        }
        switch e {
        case N.EPERM:
            if unprivilegedUsernsClone == 0 {
                return ("kernel.unprivileged_userns_clone = 0: this kernel (Debian/Arch patch) forbids user namespaces to ordinary users",
                        "sudo sysctl -w kernel.unprivileged_userns_clone=1 " + persistent("kernel.unprivileged_userns_clone = 1"))
            }
            if apparmorRestrictUnprivilegedUserns == 1 {
                return ("kernel.apparmor_restrict_unprivileged_userns = 1: AppArmor refuses user namespaces to unconfined programs",
                        apparmorFix())
            }
            if seccompMode == 2 {
                return ("a seccomp filter on this process refuses the call (Seccomp: 2 in /proc/self/status): typical of a container's default profile",
                        "run on the host, or start the container with a seccomp profile that allows clone3 and CLONE_NEWUSER (docker/podman: --security-opt seccomp=unconfined)")
            }
            return ("refused, and none of the known sysctls explains it: a security module (SELinux, AppArmor), a chroot (the kernel refuses user namespaces inside one) or a container policy",
                    "check `dmesg` / the audit log for a denial at the time of this check; outside a chroot or container it should work")
        case N.ENOSPC:
            if maxUserNamespaces == 0 {
                return ("user.max_user_namespaces = 0: user namespaces are disabled for everyone here"
                            + (inInitialUserNamespace ? "" : " (inside a user namespace this is that namespace's own limit, set by its creator)"),
                        "sudo sysctl -w user.max_user_namespaces=\(suggestedMaxUserNamespaces) " + persistent("user.max_user_namespaces = \(suggestedMaxUserNamespaces)"))
            }
            if !inInitialUserNamespace {
                // The kernel answers a 33rd nested user namespace with ENOSPC too; from inside,
                // the depth cannot be read, so nesting comes first and raising is the host's.
                return ("user namespaces are nested 33 deep already (the kernel answers one more level with ENOSPC, and this check runs inside a user namespace), or the limit user.max_user_namespaces = \(maxUserNamespaces.map(String.init) ?? "?") of this namespace is reached",
                        "run rootless-restore from a shallower user namespace (fewer nested containers or unshare -U levels); if the limit is the cause, its owner can raise it: sysctl -w user.max_user_namespaces=\(suggestedMaxUserNamespaces)")
            }
            return ("the user-namespace limit is reached (user.max_user_namespaces = \(maxUserNamespaces.map(String.init) ?? "?") for this user's namespace, counting every user namespace you own)",
                    "end programs that hold user namespaces (containers, sandboxes), or raise the limit: sudo sysctl -w user.max_user_namespaces=\(suggestedMaxUserNamespaces)")
        case N.EUSERS:
            return ("user namespaces are nested 32 deep already: no further level can be created from here",
                    "run rootless-restore from a shallower namespace (fewer nested containers)")
        case N.EAGAIN:
            return ("no process could be created: the per-user process limit (ulimit -u = \(nprocLimit.map(String.init) ?? "unlimited")) or the cgroup's pids.max is reached",
                    capacityFix())
        case N.ENOSYS:
            // Probed, not read from the release: fork + unshare(CLONE_NEWUSER) working means the
            // kernel has user namespaces and a filter answers clone3 with ENOSYS.
            if probe.unshareUser == .ok || (probe.unshareUser == .notTried && seccompMode == 2) {
                return ("clone3 is answered with ENOSYS, but unshare(CLONE_NEWUSER) works: a seccomp profile hides clone3 (Docker's default profile and older container profiles do)"
                            + (seccompMode == 2 ? "; this process runs under a seccomp filter (Seccomp: 2)" : ""),
                        "podman/docker: --security-opt seccomp=unconfined, or a seccomp profile that allows clone3 (rootless-restore needs clone3's set_tid to choose PIDs)")
            }
            return ("this kernel (\(kernelRelease)) has no clone3 (Linux 5.3+; set_tid needs 5.5+)"
                        + (probe.unshareUser.errno.map { "; unshare(CLONE_NEWUSER) fails too: \(Self.errnoText($0))" } ?? ""),
                    "upgrade the kernel to Linux 5.5 or later")
        case N.EINVAL:
            return ("the kernel rejected the flags: it lacks user or PID namespaces (CONFIG_USER_NS, CONFIG_PID_NS) or clone3 arguments",
                    "use a kernel built with CONFIG_USER_NS=y and CONFIG_PID_NS=y (every mainstream distribution kernel has them)")
        default:
            return ("unexpected error", nil)
        }
    }

    /// A raised limit: never lower than the current one (a "fix" that lowers it would be worse).
    var suggestedMaxUserNamespaces: Int { raisedLimit(maxUserNamespaces) }
    var suggestedMaxPidNamespaces: Int { raisedLimit(maxPidNamespaces) }

    func raisedLimit(_ current: Int?) -> Int {
        let base = threadsMax.map { $0 > 2 ? $0 / 2 : 65536 } ?? 65536
        return max(base, (current ?? 0) * 2)
    }

    func apparmorFix() -> String {
        let path = executablePath
        return "either sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or allow this program only: "
            + "printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile rootless-restore \(path) flags=(unconfined) {\\n  userns,\\n}\\n' "
            + "| sudo tee /etc/apparmor.d/rootless-restore && sudo apparmor_parser -r /etc/apparmor.d/rootless-restore"
    }

    /// How many more processes this user could create, and what limits it.
    /// How many more processes this user could create, what limits it, and which limits bind
    /// (the smallest, and any with fewer than 1000 left).
    func capacity() -> (left: Int?, limits: [String], binding: Set<String>) {
        var candidates: [(Int, String)] = []
        var limits: [String] = []
        if let m = hostPidMax {
            let whose = inContainerLike ? " of this PID namespace" : ""
            limits.append("kernel.pid_max\(whose) = \(m) (every restored process also takes a PID here)")
            candidates.append((m - 300, "pid_max"))
        }
        if let t = threadsMax {
            limits.append("kernel.threads-max = \(t)")
            candidates.append((t, "threads-max"))
        }
        if let n = nprocLimit {
            let used = userProcesses ?? 0
            limits.append("ulimit -u = \(n) with \(used) processes of yours running")
            candidates.append((max(0, Int(min(n, UInt64(Int.max))) - used), "nproc"))
        } else {
            limits.append("ulimit -u = unlimited")
        }
        if let left = cgroupPidsLeft {
            limits.append("cgroup \(cgroupPath ?? "?") pids.max = \(cgroupPidsMax.map(String.init) ?? "?") (\(left) left)")
            candidates.append((left, "pids.max"))
        }
        let least = candidates.map(\.0).min()
        let binding = Set(candidates.filter { $0.0 == least || $0.0 < 1000 }.map(\.1))
        return (least, limits, binding)
    }

    func capacityFix() -> String {
        let binding = capacity().binding
        var fixes: [String] = []
        if binding.contains("nproc") {
            fixes.append("raise the process limit: ulimit -u unlimited (its ceiling is `nproc` in /etc/security/limits.conf)")
        }
        if binding.contains("pids.max") {
            fixes.append("raise the cgroup's pids.max (systemd: sudo systemctl set-property user-\(uid).slice TasksMax=infinity)")
        }
        if binding.contains("pid_max") { fixes.append("sudo sysctl -w kernel.pid_max=\(LinuxNumbers.pidMaxLimit)") }
        if binding.contains("threads-max") { fixes.append("sudo sysctl -w kernel.threads-max=\((threadsMax ?? 0) * 2)") }
        return fixes.isEmpty ? "end some processes of this user" : fixes.joined(separator: "; ")
    }

    /// Turns the facts into the lines of `check`.
    public func assess() -> [CheckItem] {
        let N = LinuxNumbers.self
        var items: [CheckItem] = []
        let p = probe

        // Who and what.
        if uid == 0 && inInitialUserNamespace {
            items.append(CheckItem(id: "caller", title: "caller", verdict: .warn,
                                   detail: "running as root: root can do all of this anyway, so these results say nothing about an ordinary user",
                                   fix: "run the check as the user who will restore: sudo -u USER \(executablePath) check"))
        } else {
            items.append(CheckItem(id: "caller", title: "caller", verdict: .pass,
                                   detail: "\(userLabel), gid \(gid)\(inInitialUserNamespace ? "" : ", inside a user namespace")"))
        }
        let kernelOK = LinuxFormats.kernelAtLeast(kernelRelease, 5, 5)
        items.append(CheckItem(id: "kernel", title: "kernel", verdict: kernelOK == false ? .warn : .pass,
                               detail: "Linux \(kernelRelease) (clone3: 5.3+, set_tid: 5.5+, pid_max per PID namespace: 6.14+)",
                               fix: kernelOK == false ? "upgrade the kernel to Linux 5.5 or later (set_tid)" : nil))

        // User namespace, capabilities.
        let userFailed: Bool
        let notTriedUser = "not tried: no user namespace could be created"
        switch p.clone {
        case .notTried:
            userFailed = true
            items.append(CheckItem(id: "userns", title: "user namespace", verdict: .fail,
                                   detail: "the probe could not run: \(p.problem ?? "not tried")", essential: true))
        case .ok:
            userFailed = false
            items.append(CheckItem(id: "userns", title: "user namespace", verdict: .pass,
                                   detail: "clone3(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS) works as \(userLabel); \(sysctlSummary())",
                                   essential: true))
        case .failed(let e):
            if p.userOnly == .ok {
                userFailed = false
                items.append(CheckItem(id: "userns", title: "user namespace", verdict: .pass,
                                       detail: "clone3(CLONE_NEWUSER) alone works; adding CLONE_NEWPID|CLONE_NEWNS fails (below); \(sysctlSummary())",
                                       essential: true))
            } else {
                userFailed = true
                let (why, fix) = userNamespaceDiagnosis(p.userOnly.errno ?? e)
                items.append(CheckItem(id: "userns", title: "user namespace", verdict: .fail,
                                       detail: "clone3(CLONE_NEWUSER) as \(userLabel): \(Self.errnoText(p.userOnly.errno ?? e)): \(why); \(sysctlSummary())",
                                       fix: fix, essential: true))
            }
        }
        let namespaceUp = p.clone == .ok
        let confined = p.securityLabel.map { $0.contains("unprivileged_userns") } ?? false
        let capsMissing = namespaceUp && p.capEff.map { $0 & (UInt64(1) << UInt64(N.CAP_SYS_ADMIN)) == 0 } == true
        /// A refusal inside our own namespace is most likely AppArmor's restriction.
        let apparmorSuspect = confined || capsMissing || apparmorRestrictUnprivilegedUserns == 1
        /// Mapping uid 0 of the caller's namespace (the caller is uid 0 there: a container's
        /// root) needs CAP_SETFCAP there since Linux 5.12 (verify_root_map).
        let setfcapMissing = uid == 0 && callerCapEff.map { $0 & (UInt64(1) << UInt64(N.CAP_SETFCAP)) == 0 } == true
        let denialFix = apparmorSuspect ? apparmorFix() : "find the security module's denial in `dmesg` or the audit log"
        if namespaceUp {
            if confined {
                items.append(CheckItem(id: "capabilities", title: "capabilities in it", verdict: .fail,
                                       detail: "the namespace was created but its first process is confined by AppArmor's \(p.securityLabel ?? "") profile, which denies every capability (kernel.apparmor_restrict_unprivileged_userns = \(apparmorRestrictUnprivilegedUserns.map(String.init) ?? "?"))",
                                       fix: apparmorFix(), essential: true))
            } else if let caps = p.capEff, !capsMissing {
                items.append(CheckItem(id: "capabilities", title: "capabilities in it", verdict: .pass,
                                       detail: "the namespace's first process holds CAP_SYS_ADMIN there (CapEff \(hex(caps)))"
                                       + (p.securityLabel.map { $0 == "unconfined" || $0.isEmpty ? "" : ", security label \($0)" } ?? ""),
                                       essential: true))
            } else if let caps = p.capEff {
                items.append(CheckItem(id: "capabilities", title: "capabilities in it", verdict: .fail,
                                       detail: "the namespace was created but its first process holds no CAP_SYS_ADMIN in it (CapEff \(hex(caps)))"
                                       + (apparmorRestrictUnprivilegedUserns == 1 ? ": kernel.apparmor_restrict_unprivileged_userns = 1 strips capabilities from unconfined programs"
                                          : ": a security module strips capabilities from new user namespaces"),
                                       fix: denialFix, essential: true))
            } else {
                items.append(CheckItem(id: "capabilities", title: "capabilities in it", verdict: .warn,
                                       detail: "could not read CapEff of the probe; the steps below tell", essential: true))
            }
        } else {
            items.append(CheckItem(id: "capabilities", title: "capabilities in it", verdict: .fail,
                                   detail: userFailed ? notTriedUser : "not tried: no user + PID namespace could be created", essential: true))
        }

        // Maps.
        func mapItem(_ id: String, _ step: ProbeStep, what: String, extra: ProbeStep = .ok, extraName: String = "") -> CheckItem {
            if !namespaceUp {
                return CheckItem(id: id, title: id, verdict: .fail, detail: userFailed ? notTriedUser : "not tried: no user + PID namespace could be created", essential: true)
            }
            if let e = extra.errno {
                return CheckItem(id: id, title: id, verdict: .fail,
                                 detail: "writing \"deny\" to \(extraName): \(Self.errnoText(e))",
                                 fix: denialFix, essential: true)
            }
            switch step {
            case .ok:
                return CheckItem(id: id, title: id, verdict: .pass, detail: "\(what) written by the namespace's creator", essential: true)
            case .failed(let e) where e == N.EPERM && id == "uid_map" && setfcapMissing:
                return CheckItem(id: id, title: id, verdict: .fail,
                                 detail: "writing \(what): \(Self.errnoText(e)): the map gives the new namespace uid 0 of this one, which since Linux 5.12 needs CAP_SETFCAP, and this process lacks it (CapEff \(hex(callerCapEff ?? 0))): a container started without SETFCAP",
                                 fix: "podman run --cap-add=SETFCAP (docker: --cap-add SETFCAP), or run as a user other than uid 0 of the container",
                                 essential: true)
            case .failed(let e):
                return CheckItem(id: id, title: id, verdict: .fail,
                                 detail: "writing \(what): \(Self.errnoText(e))" + (apparmorSuspect && e == N.EPERM ? ": the namespace's capabilities are denied (AppArmor's restriction of unprivileged user namespaces)" : ""),
                                 fix: denialFix, essential: true)
            case .notTried:
                return CheckItem(id: id, title: id, verdict: .fail, detail: "not tried", essential: true)
            }
        }
        items.append(mapItem("uid_map", p.uidMap, what: "a single-id map \"0 \(uid) 1\""))
        items.append(mapItem("gid_map", p.gidMap, what: "a single-id map \"0 \(gid) 1\"", extra: p.setgroups, extraName: "setgroups"))

        // PID namespace.
        let levelAbove = max(callerNSpidColumns, 1) - 1
        if case .failed(let e) = p.clone, p.userOnly == .ok {
            var why: String
            var fix: String?
            if e == N.ENOSPC {
                if maxPidNamespaces == 0 {
                    why = "user.max_pid_namespaces = 0"
                    fix = "sudo sysctl -w user.max_pid_namespaces=\(suggestedMaxPidNamespaces)"
                } else if levelAbove >= N.maxPidNamespaceLevel {
                    why = "the caller is already at PID-namespace level \(levelAbove), the deepest the kernel allows"
                    fix = "run from a shallower PID namespace"
                } else {
                    why = "the PID-namespace limit is reached (user.max_pid_namespaces = \(maxPidNamespaces.map(String.init) ?? "?")) or the nesting is 32 deep"
                    fix = "sudo sysctl -w user.max_pid_namespaces=\(suggestedMaxPidNamespaces)"
                }
            } else if e == N.EPERM {
                why = "refused although the user namespace alone works: a security module or seccomp filter"
                fix = "find the denial in `dmesg` or the audit log"
            } else if e == N.EINVAL {
                why = "the kernel lacks PID namespaces (CONFIG_PID_NS) or this process may not create one (it called unshare(CLONE_NEWPID) before)"
                fix = "use a kernel with CONFIG_PID_NS=y; run rootless-restore from a fresh process"
            } else {
                (why, fix) = userNamespaceDiagnosis(e)
            }
            items.append(CheckItem(id: "pidns", title: "PID namespace", verdict: .fail,
                                   detail: "clone3(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS): \(Self.errnoText(e)): \(why)", fix: fix, essential: true))
        } else if namespaceUp {
            if p.pidInside == 1 {
                items.append(CheckItem(id: "pidns", title: "PID namespace", verdict: .pass,
                                       detail: "the probe is PID 1 of a new PID namespace at level \(levelAbove + 1)", essential: true))
            } else {
                items.append(CheckItem(id: "pidns", title: "PID namespace", verdict: .fail,
                                       detail: "the probe did not report its PID in the new namespace (\(p.pidInside.map { "PID \($0)" } ?? p.problem ?? "no answer"))",
                                       essential: true))
            }
        } else {
            items.append(CheckItem(id: "pidns", title: "PID namespace", verdict: .fail,
                                   detail: userFailed ? notTriedUser : "not tried", essential: true))
        }

        // /proc.
        let pidnsUp = namespaceUp && p.pidInside == 1
        if !pidnsUp {
            items.append(CheckItem(id: "proc", title: "mount /proc in it", verdict: .fail, detail: "not tried: no PID namespace", essential: true))
        } else if let e = p.mountPrivate.errno {
            items.append(CheckItem(id: "proc", title: "mount /proc in it", verdict: .fail,
                                   detail: "mount --make-rprivate / in the new mount namespace: \(Self.errnoText(e))",
                                   fix: denialFix, essential: true))
        } else if let e = p.mountProc.errno {
            let why = e == N.EPERM
                ? "the kernel allows a new proc only where the current /proc is fully visible; here parts of it are covered by other mounts (as in a container: masked /proc/kcore, read-only /proc/sys)"
                : "unexpected"
            items.append(CheckItem(id: "proc", title: "mount /proc in it", verdict: .fail,
                                   detail: "mount -t proc proc /proc: \(Self.errnoText(e)): \(why)",
                                   fix: e == N.EPERM ? "start the container with an unmasked /proc: podman run --security-opt unmask=/proc/* (docker: --security-opt systempaths=unconfined), or run on the host" : nil,
                                   essential: true))
        } else if p.mountProc == .ok {
            items.append(CheckItem(id: "proc", title: "mount /proc in it", verdict: .pass,
                                   detail: "a fresh proc for the new PID namespace is mounted on /proc (private mount namespace)", essential: true))
        } else {
            items.append(CheckItem(id: "proc", title: "mount /proc in it", verdict: .fail,
                                   detail: "not tried: \(p.problem ?? "the probe stopped early")", essential: true))
        }

        // set_tid.
        let low = NamespaceProbeResult.lowTarget
        if !pidnsUp {
            items.append(CheckItem(id: "set_tid", title: "clone3 set_tid", verdict: .fail, detail: "not tried: no PID namespace", essential: true))
        } else {
            switch p.setTid {
            case .ok where p.setTidGot == low:
                items.append(CheckItem(id: "set_tid", title: "clone3 set_tid", verdict: .pass,
                                       detail: "PID 1 created a child with the chosen PID \(low)", essential: true))
            case .ok:
                items.append(CheckItem(id: "set_tid", title: "clone3 set_tid", verdict: .fail,
                                       detail: "asked for PID \(low), got \(p.setTidGot.map(String.init) ?? "?"): set_tid is ignored by this kernel",
                                       fix: "upgrade the kernel to Linux 5.5 or later", essential: true))
            case .failed(let e):
                var why = ""
                var fix: String?
                if e == N.EPERM {
                    why = ": no CAP_SYS_ADMIN over the PID namespace"
                    fix = denialFix
                } else if e == N.EINVAL || e == N.E2BIG || e == N.ENOSYS {
                    why = LinuxFormats.kernelAtLeast(kernelRelease, 5, 5) == false
                        ? ": this kernel (\(kernelRelease)) predates set_tid (5.5)" : ": clone3 with set_tid is rejected (seccomp filter or an old kernel)"
                    fix = "upgrade the kernel to Linux 5.5 or later (rootless-restore has no ns_last_pid fallback)"
                }
                items.append(CheckItem(id: "set_tid", title: "clone3 set_tid", verdict: .fail,
                                       detail: "clone3(set_tid={\(low)}) from PID 1: \(Self.errnoText(e))\(why)", fix: fix, essential: true))
            case .notTried:
                items.append(CheckItem(id: "set_tid", title: "clone3 set_tid", verdict: .fail,
                                       detail: "not tried: \(p.problem ?? "the probe stopped early")", essential: true))
            }
        }

        // pid_max and PIDs above 32768.
        items.append(pidMaxItem(pidnsUp: pidnsUp))

        // Nesting.
        items.append(nestingItem(pidnsUp: pidnsUp))

        // How many processes.
        let (left, limits, _) = capacity()
        if let left, left < 1000 {
            items.append(CheckItem(id: "capacity", title: "process limits", verdict: .warn,
                                   detail: "only about \(max(left, 0)) more processes can be created: \(limits.joined(separator: "; "))",
                                   fix: capacityFix()))
        } else {
            items.append(CheckItem(id: "capacity", title: "process limits", verdict: .pass,
                                   detail: (left.map { "about \($0) more processes can be created: " } ?? "") + limits.joined(separator: "; ")))
        }

        // newuidmap / newgidmap and the subordinate ranges.
        items.append(helperItem(newuidmap, capability: N.CAP_SETUID, capName: "cap_setuid"))
        items.append(helperItem(newgidmap, capability: N.CAP_SETGID, capName: "cap_setgid"))
        items.append(subIDItem("subuid", text: subuidText, option: "--add-subuids"))
        items.append(subIDItem("subgid", text: subgidText, option: "--add-subgids"))

        // seccomp user notification.
        if let level = seccompAPILevel, level >= 6 {
            items.append(CheckItem(id: "seccomp_api", title: "libseccomp notify", verdict: .pass,
                                   detail: "libseccomp \(libseccompVersion ?? "?") reports API level \(level) (user notification with TSYNC)"))
        } else {
            let level = seccompAPILevel ?? 0
            items.append(CheckItem(id: "seccomp_api", title: "libseccomp notify", verdict: .warn,
                                   detail: "libseccomp \(libseccompVersion ?? "?") reports API level \(level); user notification needs 6 (libseccomp 2.5+ on Linux 5.7+)",
                                   fix: level >= 1 && LinuxFormats.kernelAtLeast(kernelRelease, 5, 7) == false
                                       ? "upgrade the kernel to Linux 5.7 or later"
                                       : installCommand(debian: "libseccomp2 (2.5 or later)", fedora: "libseccomp", arch: "libseccomp")))
        }
        if let actions = seccompActionsAvail {
            if Self.kernelHasUserNotif(actions) {
                items.append(CheckItem(id: "seccomp_kernel", title: "kernel user_notif", verdict: .pass,
                                       detail: "kernel.seccomp.actions_avail lists user_notif"))
            } else {
                items.append(CheckItem(id: "seccomp_kernel", title: "kernel user_notif", verdict: .warn,
                                       detail: "kernel.seccomp.actions_avail = \(LinuxFormats.trimmed(Substring(actions))): no user_notif",
                                       fix: "upgrade the kernel to Linux 5.0 or later, built with CONFIG_SECCOMP_FILTER=y"))
            }
        } else {
            items.append(CheckItem(id: "seccomp_kernel", title: "kernel user_notif", verdict: .warn,
                                   detail: "/proc/sys/kernel/seccomp/actions_avail is missing: no seccomp filter support (Linux 4.14+ with CONFIG_SECCOMP_FILTER)",
                                   fix: "use a kernel built with CONFIG_SECCOMP_FILTER=y, Linux 5.0 or later"))
        }
        return items
    }

    func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    func pidMaxItem(pidnsUp: Bool) -> CheckItem {
        let high = NamespaceProbeResult.highTarget
        let p = probe
        let hostText = (inContainerLike ? "this PID namespace's: " : "host: ")
            + (hostPidMax.map(String.init) ?? "unknown")
        guard pidnsUp else {
            return CheckItem(id: "pid_max", title: "pid_max / high PIDs", verdict: .fail,
                             detail: "not tried: no PID namespace (\(hostText))")
        }
        let inside = p.pidMaxInside.map(String.init) ?? "unreadable"
        var raised = ""
        if p.pidMaxRaise == .ok { raised = ", raised to \(p.pidMaxAfterRaise.map(String.init) ?? "?") from inside" }
        if let e = p.pidMaxRaise.errno { raised = ", raising it from inside: \(Self.errnoText(e))" }
        // Probed: a fresh namespace that reads or sets its own value has a per-namespace pid_max.
        let perNamespace = p.pidMaxRaise == .ok || (p.pidMaxInside != nil && hostPidMax != nil && p.pidMaxInside != hostPidMax)
        let fix = "sudo sysctl -w kernel.pid_max=\(LinuxNumbers.pidMaxLimit)"
            + (perNamespace ? "" : " (before Linux 6.14 pid_max is one global value)")
        switch p.setTidHigh {
        case .ok where p.setTidHighGot == high:
            return CheckItem(id: "pid_max", title: "pid_max / high PIDs", verdict: .pass,
                             detail: "PID \(high) (above the default 32768) can be chosen; pid_max in the namespace = \(inside)\(raised) (\(hostText))")
        case .failed(let e) where e == LinuxNumbers.EINVAL:
            return CheckItem(id: "pid_max", title: "pid_max / high PIDs", verdict: .warn,
                             detail: "PID \(high) cannot be chosen (EINVAL: beyond pid_max = \(inside)\(raised); \(hostText)): trees with PIDs at or above \(p.pidMaxAfterRaise ?? p.pidMaxInside ?? LinuxNumbers.defaultPidMax) cannot be restored",
                             fix: fix)
        case .failed(let e):
            return CheckItem(id: "pid_max", title: "pid_max / high PIDs", verdict: .warn,
                             detail: "clone3(set_tid={\(high)}): \(Self.errnoText(e)); pid_max in the namespace = \(inside)\(raised) (\(hostText))",
                             fix: fix)
        case .ok:
            return CheckItem(id: "pid_max", title: "pid_max / high PIDs", verdict: .warn,
                             detail: "asked for PID \(high), got \(p.setTidHighGot.map(String.init) ?? "?")")
        case .notTried:
            return CheckItem(id: "pid_max", title: "pid_max / high PIDs", verdict: .warn,
                             detail: "not tried (pid_max in the namespace = \(inside); \(hostText))")
        }
    }

    func nestingItem(pidnsUp: Bool) -> CheckItem {
        let levelAbove = max(callerNSpidColumns, 1) - 1
        let predicted = Self.pidNamespaceLevelsLeft(callerNSpidColumns: callerNSpidColumns)
        let intro = "the caller is at PID-namespace level \(levelAbove) (NSpid has \(callerNSpidColumns) column\(callerNSpidColumns == 1 ? "" : "s")); the kernel allows \(LinuxNumbers.maxPidNamespaceLevel) levels below the initial namespace, so \(predicted) should remain"
        guard pidnsUp, let nested = probe.nestedCreated else {
            return CheckItem(id: "pidns_levels", title: "nested PID namespaces", verdict: pidnsUp ? .warn : .fail,
                             detail: intro + "; not confirmed (the probe did not try)")
        }
        let confirmed = 1 + nested
        var stop = ""
        switch probe.nestedStop {
        case .failed(let e): stop = " (then \(Self.errnoText(e)))"
        case .ok: stop = " (stopped there on purpose)"
        case .notTried: break
        }
        var detail = intro + "; confirmed by creating \(confirmed) nested level\(confirmed == 1 ? "" : "s")\(stop)"
        if confirmed < predicted && probe.nestedStop.errno == LinuxNumbers.ENOSPC {
            detail += "; fewer than expected: /proc here belongs to a nested namespace (NSpid hides outer levels) or user.max_pid_namespaces (\(maxPidNamespaces.map(String.init) ?? "?")) is reached"
        }
        detail += "; a tree may nest \(max(0, confirmed - 1)) PID namespace\(confirmed - 1 == 1 ? "" : "s") below the runtime's"
        if confirmed < 2 {
            return CheckItem(id: "pidns_levels", title: "nested PID namespaces", verdict: .warn, detail: detail,
                             fix: "run rootless-restore from a shallower PID namespace to restore trees with nested namespaces")
        }
        return CheckItem(id: "pidns_levels", title: "nested PID namespaces", verdict: .pass, detail: detail)
    }

    func helperItem(_ h: IDHelperFacts, capability: Int, capName: String) -> CheckItem {
        let note = " (needed only for trees with uid/gid ranges; single-id maps work without it)"
        guard let path = h.path else {
            return CheckItem(id: h.name, title: h.name, verdict: .warn, detail: "\(h.name) is not installed" + note,
                             fix: installCommand(debian: "uidmap", fedora: "shadow-utils", arch: "shadow", suse: "shadow"))
        }
        let setuidRoot = h.mode & 0o4000 != 0 && h.ownerUID == 0
        let cap = h.fileCapability.flatMap(LinuxFormats.parseFileCapability)
        let capOK = cap.map { $0.effective && $0.has(capability) } ?? false
        var how: String
        if setuidRoot { how = "setuid root" }
        else if capOK { how = "file capability \(capName)+ep" }
        else {
            let what = cap != nil ? "has a file capability without \(capName)+ep" : "is neither setuid root nor has file capabilities"
            let unmapped = !inInitialUserNamespace && h.ownerUID == 65534
                ? "; its owner is not mapped into the user namespace this check runs in, so setuid root cannot work here" : ""
            return CheckItem(id: h.name, title: h.name, verdict: .warn,
                             detail: "\(path) \(what) (mode \(String(h.mode & 0o7777, radix: 8)), owner uid \(h.ownerUID))\(unmapped)" + note,
                             fix: "sudo chown root \(path) && sudo chmod u+s \(path)   (or: sudo setcap \(capName)+ep \(path))")
        }
        how = "\(path), \(how)"
        if noNewPrivs {
            return CheckItem(id: h.name, title: h.name, verdict: .warn,
                             detail: "\(how), but this process has no_new_privs set (NoNewPrivs: 1), so the kernel ignores setuid bits and file capabilities: \(h.name) cannot work from here" + note,
                             fix: "start rootless-restore without no_new_privs (not under setpriv --no-new-privs, systemd NoNewPrivileges=yes or a container's no-new-privileges)")
        }
        if let bounding = callerCapBnd, bounding & (UInt64(1) << UInt64(capability)) == 0 {
            return CheckItem(id: h.name, title: h.name, verdict: .warn,
                             detail: "\(how), but \(capName.uppercased()) is not in this process's capability bounding set (CapBnd \(hex(bounding))\(bounding == 0 ? ", empty" : "")), so \(h.name) cannot gain it" + note,
                             fix: "start rootless-restore from a process whose bounding set keeps \(capName) (not under setpriv --bounding-set=-all or capsh --drop)")
        }
        if let skipped = h.trialSkipped {
            return CheckItem(id: h.name, title: h.name, verdict: .pass, detail: how + "; not tried: \(skipped)")
        }
        guard let status = h.trialStatus else {
            return CheckItem(id: h.name, title: h.name, verdict: .pass, detail: how)
        }
        let map = h.trialMap.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " }).joined(separator: " ") }.joined(separator: ", ")
        if status == 0 && !map.isEmpty {
            return CheckItem(id: h.name, title: h.name, verdict: .pass, detail: how + "; mapping a range into a probe namespace worked (\(map))")
        }
        let said = LinuxFormats.trimmed(Substring(h.trialOutput))
        return CheckItem(id: h.name, title: h.name, verdict: .warn,
                         detail: how + "; but running it on a probe namespace failed (exit status \(status))" + (said.isEmpty ? "" : ": \(said)") + note,
                         fix: "check the ranges in /etc/sub\(h.name == "newuidmap" ? "uid" : "gid") for \(userForCommands) and the helper's installation")
    }

    func subIDItem(_ name: String, text: String?, option: String) -> CheckItem {
        let note = " (needed only for trees with uid/gid ranges)"
        let all = text.map(LinuxFormats.parseSubIDFile) ?? []
        let mine = all.filter { $0.owner == userName || $0.owner == String(uid) }
        let accounts = name == "subuid" ? accountUIDs : accountGIDs
        let suggestion = Self.suggestFreeRange(existing: all, accounts: accounts).map { "\($0.start)-\(UInt64($0.start) + UInt64($0.count) - 1)" }
        // Subordinate ids are granted on the host, to the host's user: inside a user namespace
        // (a container, unshare -U) neither the name nor a range seen from here is the host's.
        let fix = !inInitialUserNamespace
            ? "subordinate ids are granted on the host, not in this user namespace: ask the host's administrator for a range for the host user that runs this container (usermod \(option) there)"
            : suggestion.map { "sudo usermod \(option) \($0) \(userForCommands)" }
                ?? "no range of 65536 ids is free in /etc/\(name): free one, then sudo usermod \(option) START-END \(userForCommands)"
        if text == nil {
            return CheckItem(id: name, title: "/etc/\(name)", verdict: .warn, detail: "/etc/\(name) does not exist or cannot be read" + note, fix: fix)
        }
        if mine.isEmpty {
            return CheckItem(id: name, title: "/etc/\(name)", verdict: .warn, detail: "no range for \(userLabel) in /etc/\(name)" + note, fix: fix)
        }
        let total = mine.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        let list = mine.map { "\($0.start)-\($0.end - 1)" }.joined(separator: ", ")
        if total < 65536 {
            return CheckItem(id: name, title: "/etc/\(name)", verdict: .warn,
                             detail: "\(userLabel) has \(total) subordinate ids (\(list)); 65536 are usual so that every id 0-65535 of a tree can be mapped",
                             fix: fix)
        }
        return CheckItem(id: name, title: "/etc/\(name)", verdict: .pass, detail: "\(userLabel) has \(total) subordinate ids: \(list)")
    }
}

// MARK: - Output

public enum CheckOutput {
    /// The human-readable report: one line per item, fixes indented below warn and fail.
    public static func text(_ items: [CheckItem]) -> String {
        let width = items.map(\.title.count).max() ?? 10
        var out = ""
        for item in items {
            let title = item.title + String(repeating: " ", count: max(0, width - item.title.count))
            out += "\(item.verdict.rawValue)  \(title)  \(item.detail)\n"
            if item.verdict != .pass, let fix = item.fix {
                out += "      \(String(repeating: " ", count: width))  fix: \(fix)\n"
            }
        }
        if EnvironmentFacts.basicRestorePossible(items) {
            let warnings = items.filter { $0.verdict != .pass }.count
            out += "\nA basic restore (user + PID namespace, /proc, set_tid) works here"
                + (warnings > 0 ? "; \(warnings) warning\(warnings == 1 ? "" : "s") above concern optional features.\n" : ".\n")
        } else {
            let failed = items.filter { $0.essential && $0.verdict != .pass }.map(\.title)
            out += "\nA restore cannot work here: \(failed.joined(separator: ", ")) failed. Apply the first fix above and check again.\n"
        }
        return out
    }

    /// `check --json`: an array of {id, title, verdict, essential, detail, fix}.
    public static func json(_ items: [CheckItem]) -> String {
        JSONOutput.array(items.map { item in
            .object([("id", .string(item.id)), ("title", .string(item.title)), ("verdict", .string(item.verdict.rawValue)),
                     ("essential", .bool(item.essential)), ("detail", .string(item.detail)), ("fix", .optional(item.fix.map(JSONOutput.string)))])
        }, layout: .lines).document()
    }

    /// The failing or warning essential items as one paragraph, for error messages.
    public static func explanation(_ items: [CheckItem]) -> String {
        let bad = items.filter { $0.essential && $0.verdict != .pass }
        if bad.isEmpty {
            return "a probe namespace could be created, mapped, given a fresh /proc and a chosen PID here, so the machine itself allows it; run `rootless-restore check` for the full report"
        }
        return bad.map { item in
            "\(item.title): \(item.detail)" + (item.fix.map { "; fix: \($0)" } ?? "")
        }.joined(separator: "\n")
    }
}
