import RestoreCheck
import RestoreModel
import Testing

// Parsing and judging for `rootless-restore check`: no kernel involved, the facts are made up.

@Suite("environment facts: parsing")
struct EnvironmentParsingTests {
    @Test("a suggested range overlaps nothing and is aligned")
    func freeRange() {
        #expect(EnvironmentFacts.suggestFreeRange(existing: [])?.start == 100000)
        let existing = [SubIDRange(owner: "a", start: 100000, count: 65536),
                        SubIDRange(owner: "b", start: 165536, count: 65536)]
        let s = EnvironmentFacts.suggestFreeRange(existing: existing)!
        #expect(s.start == 262144)
        #expect(s.start % 65536 == 0)
        #expect(existing.allSatisfy { UInt64(s.start) >= $0.end })
        let high = [SubIDRange(owner: "a", start: UInt32.max - 10, count: 5)]
        #expect(EnvironmentFacts.suggestFreeRange(existing: high) == nil)
    }

    @Test("os-release")
    func osRelease() {
        let (id, like) = EnvironmentFacts.parseOSRelease("PRETTY_NAME=\"Ubuntu 24.04\"\nID=ubuntu\nID_LIKE=debian\n")
        #expect(id == "ubuntu" && like == ["debian"])
        let (rid, rlike) = EnvironmentFacts.parseOSRelease("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n")
        #expect(rid == "rocky" && rlike == ["rhel", "centos", "fedora"])
    }

    @Test("seccomp actions_avail")
    func actions() {
        #expect(EnvironmentFacts.kernelHasUserNotif("kill_process kill_thread trap errno user_notif trace log allow\n"))
        #expect(!EnvironmentFacts.kernelHasUserNotif("kill_process kill_thread trap errno trace log allow\n"))
        #expect(!EnvironmentFacts.kernelHasUserNotif("user_notify"))
    }

    @Test("PID-namespace levels left below the caller")
    func levels() {
        #expect(EnvironmentFacts.pidNamespaceLevelsLeft(callerNSpidColumns: 1) == 32)
        #expect(EnvironmentFacts.pidNamespaceLevelsLeft(callerNSpidColumns: 3) == 30)
        #expect(EnvironmentFacts.pidNamespaceLevelsLeft(callerNSpidColumns: 33) == 0)
        #expect(EnvironmentFacts.pidNamespaceLevelsLeft(callerNSpidColumns: 40) == 0)
    }

    @Test("JSON strings are escaped")
    func jsonQuote() {
        #expect(JSONOutput.string("a\"b\\c\nd\u{1}").text() == "\"a\\\"b\\\\c\\nd\\u0001\"")
    }
}

/// A machine where everything works, as an ordinary user.
private func healthy() -> EnvironmentFacts {
    var f = EnvironmentFacts()
    f.uid = 1001
    f.gid = 1001
    f.userName = "rrtest"
    f.kernelRelease = "6.18.44"
    f.osID = "debian"
    f.maxUserNamespaces = 96365
    f.maxPidNamespaces = 96365
    f.hostPidMax = 4_194_304
    f.threadsMax = 192730
    f.callerNSpidColumns = 1
    var p = NamespaceProbeResult()
    p.clone = .ok
    p.capEff = 0x1ff_ffff_ffff
    p.setgroups = .ok
    p.uidMap = .ok
    p.gidMap = .ok
    p.pidInside = 1
    p.mountPrivate = .ok
    p.mountProc = .ok
    p.pidMaxInside = 4_194_304
    p.setTid = .ok
    p.setTidGot = NamespaceProbeResult.lowTarget
    p.setTidHigh = .ok
    p.setTidHighGot = NamespaceProbeResult.highTarget
    p.nestedCreated = 31
    p.nestedStop = .failed(LinuxNumbers.ENOSPC)
    f.probe = p
    f.newuidmap = IDHelperFacts(name: "newuidmap", path: "/usr/bin/newuidmap")
    f.newuidmap.mode = 0o104755
    f.newgidmap = IDHelperFacts(name: "newgidmap", path: "/usr/bin/newgidmap")
    f.newgidmap.mode = 0o104755
    f.subuidText = "rrtest:100000:65536\n"
    f.subgidText = "rrtest:100000:65536\n"
    f.seccompAPILevel = 6
    f.seccompActionsAvail = "kill_process kill_thread trap errno user_notif trace log allow\n"
    return f
}

private func item(_ items: [CheckItem], _ id: String, sourceLocation: SourceLocation = #_sourceLocation) -> CheckItem {
    guard let found = items.first(where: { $0.id == id }) else {
        Issue.record("no item \(id) in \(items.map(\.id))", sourceLocation: sourceLocation)
        return CheckItem(id: id, title: id, verdict: .fail, detail: "missing")
    }
    return found
}

@Suite("environment facts: verdicts")
struct EnvironmentVerdictTests {
    @Test("a healthy machine passes everything and exits 0")
    func healthyMachine() {
        let items = healthy().assess()
        #expect(items.allSatisfy { $0.verdict == .pass }, "\(items.filter { $0.verdict != .pass })")
        #expect(EnvironmentFacts.exitCode(items) == 0)
        #expect(Set(items.filter(\.essential).map(\.id)) == EnvironmentFacts.essentialIDs)
        #expect(item(items, "pidns_levels").detail.contains("32 nested levels"))
        #expect(CheckOutput.text(items).contains("A basic restore"))
        let json = CheckOutput.json(items)
        #expect(json.hasPrefix("[") && json.contains("\"id\": \"set_tid\", \"title\": \"clone3 set_tid\", \"verdict\": \"pass\""))
    }

    @Test("Debian's kernel.unprivileged_userns_clone = 0: EPERM, fix names the sysctl")
    func debianSysctl() {
        var f = healthy()
        f.unprivilegedUsernsClone = 0
        f.probe = NamespaceProbeResult()
        f.probe.clone = .failed(LinuxNumbers.EPERM)
        f.probe.userOnly = .failed(LinuxNumbers.EPERM)
        let items = f.assess()
        let u = item(items, "userns")
        #expect(u.verdict == .fail)
        #expect(u.detail.contains("kernel.unprivileged_userns_clone = 0"))
        #expect(u.fix?.hasPrefix("sudo sysctl -w kernel.unprivileged_userns_clone=1") == true)
        #expect(item(items, "set_tid").verdict == .fail)
        #expect(EnvironmentFacts.exitCode(items) == 77)
        #expect(CheckOutput.explanation(items).contains("kernel.unprivileged_userns_clone=1"))
    }

    @Test("user.max_user_namespaces = 0: ENOSPC, fix raises it")
    func maxUserNamespacesZero() {
        var f = healthy()
        f.maxUserNamespaces = 0
        f.probe = NamespaceProbeResult()
        f.probe.clone = .failed(LinuxNumbers.ENOSPC)
        f.probe.userOnly = .failed(LinuxNumbers.ENOSPC)
        let u = item(f.assess(), "userns")
        #expect(u.verdict == .fail && u.detail.contains("ENOSPC"))
        #expect(u.fix?.hasPrefix("sudo sysctl -w user.max_user_namespaces=96365") == true)
    }

    @Test("Ubuntu's AppArmor restriction: the namespace exists, the maps are refused")
    func apparmor() {
        var f = healthy()
        f.apparmorRestrictUnprivilegedUserns = 1
        f.executablePath = "/usr/local/bin/rootless-restore"
        f.probe.securityLabel = "unprivileged_userns"
        f.probe.uidMap = .failed(LinuxNumbers.EPERM)
        f.probe.setgroups = .failed(LinuxNumbers.EPERM)
        f.probe.mountPrivate = .failed(LinuxNumbers.EPERM)
        f.probe.setTid = .failed(LinuxNumbers.EPERM)
        f.probe.setTidGot = nil
        let items = f.assess()
        #expect(item(items, "userns").verdict == .pass)
        let caps = item(items, "capabilities")
        #expect(caps.verdict == .fail && caps.fix?.contains("apparmor_parser") == true)
        #expect(caps.fix?.contains("/usr/local/bin/rootless-restore") == true)
        #expect(item(items, "uid_map").verdict == .fail)
        #expect(item(items, "gid_map").detail.contains("setgroups"))
        #expect(item(items, "set_tid").fix?.contains("apparmor") == true)
        #expect(EnvironmentFacts.exitCode(items) == 77)
    }

    @Test("no CAP_SYS_ADMIN in CapEff fails the capabilities line")
    func strippedCaps() {
        var f = healthy()
        f.probe.capEff = 0
        #expect(item(f.assess(), "capabilities").verdict == .fail)
    }

    @Test("user namespace works but the PID namespace does not (user.max_pid_namespaces = 0)")
    func pidNamespaceRefused() {
        var f = healthy()
        f.maxPidNamespaces = 0
        f.probe = NamespaceProbeResult()
        f.probe.clone = .failed(LinuxNumbers.ENOSPC)
        f.probe.userOnly = .ok
        let items = f.assess()
        #expect(item(items, "userns").verdict == .pass)
        let p = item(items, "pidns")
        #expect(p.verdict == .fail && p.fix == "sudo sysctl -w user.max_pid_namespaces=96365")
        #expect(EnvironmentFacts.exitCode(items) == 77)
    }

    @Test("clone3 hidden by a container's seccomp profile")
    func seccompENOSYS() {
        var f = healthy()
        f.seccompMode = 2
        f.probe = NamespaceProbeResult()
        f.probe.clone = .failed(LinuxNumbers.ENOSYS)
        f.probe.userOnly = .failed(LinuxNumbers.ENOSYS)
        let u = item(f.assess(), "userns")
        #expect(u.detail.contains("seccomp") && u.fix?.contains("seccomp=unconfined") == true)
        // Probed, not guessed from the release: unshare works, so a filter hides clone3 ...
        f.seccompMode = 0
        f.kernelRelease = "5.2.0"
        f.probe.unshareUser = .ok
        let hidden = item(f.assess(), "userns")
        #expect(hidden.detail.contains("a seccomp profile hides clone3") && hidden.fix?.contains("--security-opt seccomp=unconfined") == true,
                "\(hidden)")
        // ... and when unshare fails too, the kernel lacks it, whatever the release says.
        f.kernelRelease = "6.8.0"
        f.probe.unshareUser = .failed(LinuxNumbers.EINVAL)
        let old = item(f.assess(), "userns")
        #expect(old.detail.contains("has no clone3") && old.fix?.contains("upgrade the kernel") == true, "\(old)")
    }

    @Test("33 nested user namespaces: nesting is named, and no fix lowers the limit")
    func nestedUserNamespaces() {
        var f = healthy()
        f.inInitialUserNamespace = false
        f.maxUserNamespaces = 100_000
        f.threadsMax = 2000
        f.probe = NamespaceProbeResult()
        f.probe.clone = .failed(LinuxNumbers.ENOSPC)
        f.probe.userOnly = .failed(LinuxNumbers.ENOSPC)
        let u = item(f.assess(), "userns")
        #expect(u.detail.contains("nested 33 deep") && u.fix?.contains("shallower user namespace") == true, "\(u)")
        let raised = u.fix.flatMap { $0.split(separator: "=").last.flatMap { Int($0.prefix(while: \.isNumber)) } } ?? 0
        #expect(raised >= 100_000, "a fix must not lower user.max_user_namespaces: \(u.fix ?? "")")
        // In the initial namespace nesting cannot be the cause.
        f.inInitialUserNamespace = true
        let host = item(f.assess(), "userns")
        #expect(!host.detail.contains("nested") && (host.fix?.contains("max_user_namespaces=200000") == true), "\(host)")
    }

    @Test("suggested subordinate ranges grant nothing taken; inside a namespace the host is named")
    func subIDSuggestions() {
        var f = healthy()
        f.subuidText = "other:100000:65536\n"
        f.accountUIDs = [0, 1001, 196700]
        let s = item(f.assess(), "subuid")
        #expect(s.fix == "sudo usermod --add-subuids 262144-327679 rrtest", "\(s)")
        f.inInitialUserNamespace = false
        #expect(item(f.assess(), "subuid").fix?.contains("granted on the host") == true)
    }

    @Test("no_new_privs or a bounding set without cap_setuid: newuidmap is named as unable")
    func helperUnderNoNewPrivs() {
        var f = healthy()
        f.noNewPrivs = true
        #expect(item(f.assess(), "newuidmap").detail.contains("no_new_privs"))
        f.noNewPrivs = false
        f.callerCapBnd = 0
        let h = item(f.assess(), "newuidmap")
        #expect(h.verdict == .warn && h.detail.contains("bounding set") && h.detail.contains("empty"), "\(h)")
    }

    @Test("a container without CAP_SETFCAP cannot map its uid 0 (Linux 5.12+): named, with podman's option, not AppArmor")
    func setfcapMissing() {
        var f = healthy()
        f.uid = 0
        f.userName = "root"
        f.inInitialUserNamespace = false
        f.callerCapEff = 0x1ff_ffff_ffff & ~(UInt64(1) << 31)
        f.probe.uidMap = .failed(LinuxNumbers.EPERM)
        f.probe.capEff = 0
        let u = item(f.assess(), "uid_map")
        #expect(u.verdict == .fail && u.detail.contains("CAP_SETFCAP") && u.fix?.contains("--cap-add=SETFCAP") == true, "\(u)")
        #expect(!u.detail.contains("AppArmor") && u.fix?.contains("apparmor") != true, "\(u)")
        // With the capability, the same refusal is not blamed on it.
        f.callerCapEff = 0x1ff_ffff_ffff
        #expect(!item(f.assess(), "uid_map").detail.contains("CAP_SETFCAP"))
    }

    @Test("a masked /proc (container) refuses a new proc mount")
    func maskedProc() {
        var f = healthy()
        f.probe.mountProc = .failed(LinuxNumbers.EPERM)
        let p = item(f.assess(), "proc")
        #expect(p.verdict == .fail && p.fix?.contains("--security-opt unmask=/proc/*") == true, "\(p)")
    }

    @Test("an old kernel without set_tid")
    func oldKernel() {
        var f = healthy()
        f.kernelRelease = "5.4.0-150-generic"
        f.probe.setTid = .failed(LinuxNumbers.E2BIG)
        f.probe.setTidGot = nil
        let items = f.assess()
        #expect(item(items, "kernel").verdict == .warn)
        #expect(item(items, "set_tid").fix?.contains("5.5") == true)
        #expect(EnvironmentFacts.exitCode(items) == 77)
    }

    @Test("a PID above pid_max is a warning with the sysctl, not a failure")
    func pidMaxTooLow() {
        var f = healthy()
        f.kernelRelease = "6.8.0"
        f.hostPidMax = 32768
        f.probe.pidMaxInside = 32768
        f.probe.pidMaxRaise = .failed(LinuxNumbers.EACCES)
        f.probe.setTidHigh = .failed(LinuxNumbers.EINVAL)
        f.probe.setTidHighGot = nil
        let items = f.assess()
        let p = item(items, "pid_max")
        #expect(p.verdict == .warn && p.fix?.hasPrefix("sudo sysctl -w kernel.pid_max=4194304") == true)
        #expect(p.fix?.contains("6.14") == true)
        #expect(EnvironmentFacts.exitCode(items) == 0)
    }

    @Test("nesting: fewer levels than NSpid suggests is explained")
    func nesting() {
        var f = healthy()
        f.callerNSpidColumns = 3
        f.probe.nestedCreated = 20
        let n = item(f.assess(), "pidns_levels")
        #expect(n.detail.contains("level 2") && n.detail.contains("30 should remain"))
        #expect(n.detail.contains("fewer than expected"))
        f.probe.nestedCreated = 0
        #expect(item(f.assess(), "pidns_levels").verdict == .warn)
    }

    @Test("optional parts only warn: no uidmap, no subuid, old libseccomp, no user_notif")
    func optionalParts() {
        var f = healthy()
        f.osID = "fedora"
        f.newuidmap = IDHelperFacts(name: "newuidmap")
        f.newgidmap.mode = 0o100755
        f.subuidText = "someoneelse:100000:65536\n"
        f.subgidText = nil
        f.seccompAPILevel = 3
        f.seccompActionsAvail = "kill_process errno allow"
        let items = f.assess()
        #expect(EnvironmentFacts.exitCode(items) == 0)
        #expect(item(items, "newuidmap").fix == "sudo dnf install shadow-utils")
        #expect(item(items, "newgidmap").fix?.contains("chmod u+s /usr/bin/newgidmap") == true)
        #expect(item(items, "subuid").fix == "sudo usermod --add-subuids 196608-262143 rrtest")
        #expect(item(items, "subgid").verdict == .warn)
        #expect(item(items, "seccomp_api").verdict == .warn)
        #expect(item(items, "seccomp_kernel").verdict == .warn)
        #expect(CheckOutput.text(items).contains("fix: sudo dnf install shadow-utils"))
    }

    @Test("newuidmap with file capabilities instead of setuid, and a failed trial")
    func helperCapabilities() {
        var f = healthy()
        f.newuidmap.mode = 0o100755
        f.newuidmap.fileCapability = [0x01, 0, 0, 0x02, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        f.newuidmap.trialStatus = 0
        f.newuidmap.trialMap = "         0       1001          1\n         1     100000      65536\n"
        let ok = item(f.assess(), "newuidmap")
        #expect(ok.verdict == .pass && ok.detail.contains("cap_setuid+ep") && ok.detail.contains("1 100000 65536"))
        f.newuidmap.trialStatus = 1
        f.newuidmap.trialOutput = "newuidmap: uid range [1-65537) -> [100000-165536) not allowed\n"
        let bad = item(f.assess(), "newuidmap")
        #expect(bad.verdict == .warn && bad.detail.contains("not allowed"))
    }

    @Test("process limits: a tight ulimit -u warns, and EAGAIN at creation names it")
    func limits() {
        var f = healthy()
        f.nprocLimit = 50
        f.userProcesses = 10
        let c = item(f.assess(), "capacity")
        #expect(c.verdict == .warn && c.detail.contains("about 40 more") && c.fix?.contains("ulimit -u") == true)
        f.probe = NamespaceProbeResult()
        f.probe.clone = .failed(LinuxNumbers.EAGAIN)
        f.probe.userOnly = .failed(LinuxNumbers.EAGAIN)
        let u = item(f.assess(), "userns")
        #expect(u.verdict == .fail && u.detail.contains("ulimit -u = 50"))
    }

    @Test("root in the initial namespace is warned about")
    func root() {
        var f = healthy()
        f.uid = 0
        f.inInitialUserNamespace = true
        #expect(item(f.assess(), "caller").verdict == .warn)
        f.inInitialUserNamespace = false
        #expect(item(f.assess(), "caller").verdict == .pass)
    }

    @Test("a probe that could not run fails the basic verdict")
    func probeProblem() {
        var f = healthy()
        f.probe = NamespaceProbeResult()
        f.probe.problem = "the checking process has 3 threads"
        let items = f.assess()
        #expect(EnvironmentFacts.exitCode(items) == 77)
        #expect(item(items, "userns").detail.contains("3 threads"))
        #expect(items.filter { $0.id == "userns" }.count == 1)
    }

    @Test("set_tid that yields another PID fails")
    func wrongPid() {
        var f = healthy()
        f.probe.setTidGot = 2
        #expect(item(f.assess(), "set_tid").verdict == .fail)
    }
}
