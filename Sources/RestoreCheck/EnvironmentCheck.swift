import CLibseccomp
import CRestoreShim
import Glibc
import RestoreEngine
import RestoreModel

/// `rootless-restore check`: finds out, by trying each step in throwaway children, whether
/// this machine lets the caller restore a tree, and gathers the facts that explain why not.
/// The judging and wording live beside it (EnvironmentFacts.assess(), CheckOutput).
///
/// Rules for every probe: the checking process stays single-threaded (no Dispatch, no async);
/// every child gets PR_SET_PDEATHSIG(SIGKILL) or dies with its namespace's init; every child is
/// reaped by its explicit PID; nothing is left running when a probe returns.
public enum EnvironmentCheck {
    /// Everything `check` reports.
    public static func run() -> [CheckItem] {
        gatherFacts(thorough: true).assess()
    }

    /// The cheap probe for `run` to call after a namespace step failed: creates one throwaway
    /// user + PID namespace, maps it, mounts /proc and chooses one PID in it (no nesting, no
    /// helpers), and returns the failing steps with their fixes, one per line; or a sentence
    /// saying that the machine itself allows it. Call it single-threaded; it reaps only its own
    /// children (by PID), so it is safe after the runtime tore its namespace down.
    public static func explainNamespaceFailure() -> String {
        CheckOutput.explanation(gatherFacts(thorough: false).assess())
    }

    /// The facts, gathered. `thorough` adds nested namespaces, newuidmap trials and a scan of
    /// /proc for the caller's processes.
    public static func gatherFacts(thorough: Bool) -> EnvironmentFacts {
        var f = EnvironmentFacts()
        f.uid = UInt32(geteuid())
        f.gid = UInt32(getegid())
        if let pw = getpwuid(geteuid()) { f.userName = String(cString: pw.pointee.pw_name) }
        f.inInitialUserNamespace = SystemCalls.readText("/proc/self/uid_map").map(LinuxFormats.isInitialUserNamespaceMap) ?? true
        f.executablePath = readLink("/proc/self/exe") ?? "rootless-restore"
        f.kernelRelease = SystemCalls.kernelRelease()
        if let text = SystemCalls.readText("/etc/os-release") ?? SystemCalls.readText("/usr/lib/os-release") {
            (f.osID, f.osIDLike) = EnvironmentFacts.parseOSRelease(text)
        }
        let status = SystemCalls.readText("/proc/self/status") ?? ""
        f.seccompMode = LinuxFormats.statusField(status, "Seccomp")?.first.flatMap { Int($0) }
        f.callerCapEff = LinuxFormats.parseCapabilityMask(status, "CapEff")
        f.callerCapBnd = LinuxFormats.parseCapabilityMask(status, "CapBnd")
        f.noNewPrivs = LinuxFormats.statusField(status, "NoNewPrivs")?.first == "1"
        f.callerNSpidColumns = max(1, LinuxFormats.parseNSpid(status).count)

        f.unprivilegedUsernsClone = sysctl("kernel/unprivileged_userns_clone")
        f.maxUserNamespaces = sysctl("user/max_user_namespaces")
        f.maxPidNamespaces = sysctl("user/max_pid_namespaces")
        f.apparmorRestrictUnprivilegedUserns = sysctl("kernel/apparmor_restrict_unprivileged_userns")
        f.hostPidMax = sysctl("kernel/pid_max")
        f.threadsMax = sysctl("kernel/threads-max")
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max {
            f.nprocLimit = UInt64(limit.rlim_cur)
        }
        readCgroupPids(&f)

        f.probe = probeNamespace(deep: thorough)
        if thorough || f.probe.clone.errno == LinuxNumbers.EAGAIN {
            f.userProcesses = countProcesses(ofUID: f.uid)
        }

        f.newuidmap = locateHelper("newuidmap")
        f.newgidmap = locateHelper("newgidmap")
        f.subuidText = SystemCalls.readText("/etc/subuid")
        f.subgidText = SystemCalls.readText("/etc/subgid")
        f.accountUIDs = SystemCalls.readText("/etc/passwd").map(LinuxFormats.accountIDs) ?? []
        f.accountGIDs = SystemCalls.readText("/etc/group").map(LinuxFormats.accountIDs) ?? []
        if thorough {
            trialHelpers(&f)
        }

        f.seccompAPILevel = Int(seccomp_api_get())
        f.libseccompVersion = EngineInfo.libseccompVersion
        f.seccompActionsAvail = SystemCalls.readText("/proc/sys/kernel/seccomp/actions_avail")
        return f
    }

    // MARK: - Small readers

    static func sysctl(_ name: String) -> Int? {
        SystemCalls.readText("/proc/sys/" + name).flatMap(LinuxFormats.parseSysctlInteger)
    }

    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Processes whose real uid is `uid`, as /proc shows them.
    static func countProcesses(ofUID uid: UInt32) -> Int? {
        guard let dir = opendir("/proc") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let first = name.utf8.first, first >= 48, first <= 57 else { continue }
            guard let text = SystemCalls.readText("/proc/\(name)/status"),
                  let real = LinuxFormats.statusField(text, "Uid")?.first, UInt32(real) == uid else { continue }
            n += 1
        }
        return n
    }

    /// pids.max and pids.current of the caller's cgroup (v2) and its ancestors: the tightest.
    static func readCgroupPids(_ f: inout EnvironmentFacts) {
        guard let text = SystemCalls.readText("/proc/self/cgroup"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return }
        var path = String(line.dropFirst(3))
        f.cgroupPath = path
        while true {
            let dir = "/sys/fs/cgroup" + (path == "/" ? "" : path)
            if let maxText = SystemCalls.readText(dir + "/pids.max"), let max = LinuxFormats.parseSysctlInteger(maxText),
               let current = SystemCalls.readText(dir + "/pids.current").flatMap(LinuxFormats.parseSysctlInteger) {
                let left = max - current
                if f.cgroupPidsLeft == nil || left < f.cgroupPidsLeft! {
                    f.cgroupPidsLeft = left
                    f.cgroupPidsMax = max
                    f.cgroupPath = path
                }
            }
            if path == "/" || path.isEmpty { break }
            if let slash = path.lastIndex(of: "/") {
                path = slash == path.startIndex ? "/" : String(path[..<slash])
            } else {
                break
            }
        }
    }

    // MARK: - The namespace probe

    /// What the probe's init reports, one 16-byte record each on a pipe.
    enum ProbeKey: Int32 {
        case pid = 1, mountPrivate, mountProc, pidMax, pidMaxRaise, pidMaxAfter
        case setTid, setTidGot, setTidHigh, setTidHighGot, nestedCreated, nestedStop, done
    }

    struct ProbeRecord {
        var key: Int32
        var pad: Int32 = 0
        var value: Int64
    }

    static let probeTimeoutMs = 10_000
    /// More levels than the kernel allows, so the kernel is what stops the nesting probe.
    static let nestingCap = 40

    /// Creates a user + PID + mount namespace like `run` does, maps it from outside, then has
    /// its init try /proc, set_tid, pid_max and (deep) nested PID namespaces.
    static func probeNamespace(deep: Bool) -> NamespaceProbeResult {
        var r = NamespaceProbeResult()
        let threads = SystemCalls.threadCount()
        guard threads == 1 else {
            r.problem = "the checking process has \(threads) threads; probes must fork from a single-threaded process"
            return r
        }
        var go: [Int32] = [-1, -1]
        var results: [Int32] = [-1, -1]
        guard makePipe(&go) else { r.problem = "pipe: \(ErrnoName.describe(Glibc.errno))"; return r }
        guard makePipe(&results) else {
            r.problem = "pipe: \(ErrnoName.describe(Glibc.errno))"
            close(go[0]); close(go[1])
            return r
        }
        let pid = rr_clone3(RR_CLONE_NEWUSER | RR_CLONE_NEWPID | RR_CLONE_NEWNS, SIGCHLD, nil, 0)
        if pid == 0 {
            _ = rr_prctl_set_pdeathsig(SIGKILL)
            close(go[1])
            close(results[0])
            probeInit(goFD: go[0], out: results[1], deep: deep)
        }
        close(go[0])
        close(results[1])
        if pid < 0 {
            close(go[1])
            close(results[0])
            r.clone = .failed(Int32(-pid))
            r.userOnly = tryUserNamespaceAlone()
            if r.userOnly.errno == ENOSYS || r.clone.errno == ENOSYS { r.unshareUser = tryUnshareUser() }
            return r
        }
        r.clone = .ok
        let child = pid_t(pid)
        defer { reap(child, kill: true) }

        // From outside, as the namespace's creator: what the kernel gave it, then the maps.
        if let status = SystemCalls.readText("/proc/\(child)/status") {
            r.capEff = LinuxFormats.parseCapabilityMask(status)
        }
        r.securityLabel = (SystemCalls.readText("/proc/\(child)/attr/apparmor/current")
            ?? SystemCalls.readText("/proc/\(child)/attr/current")).map { String($0.prefix(while: { $0 != "\n" && $0 != "\0" })) }
        r.setgroups = step(SystemCalls.writeFile("/proc/\(child)/setgroups", "deny"))
        r.uidMap = step(SystemCalls.writeFile("/proc/\(child)/uid_map", "0 \(geteuid()) 1\n"))
        r.gidMap = step(SystemCalls.writeFile("/proc/\(child)/gid_map", "0 \(getegid()) 1\n"))

        var one: UInt8 = 1
        _ = write(go[1], &one, 1)
        close(go[1])
        readProbeRecords(results[0], into: &r)
        close(results[0])
        return r
    }

    /// A pipe with both ends close-on-exec; errno is set when it fails.
    static func makePipe(_ fds: inout [Int32]) -> Bool {
        let e = rr_pipe_cloexec(&fds)
        if e != 0 { errno = -e }
        return e == 0
    }

    static func step(_ errno: Int32) -> ProbeStep { errno == 0 ? .ok : .failed(errno) }

    /// clone3(CLONE_NEWUSER) alone, for a child that exits at once: tells whether the user
    /// namespace or the PID namespace is what the kernel refuses.
    static func tryUserNamespaceAlone() -> ProbeStep {
        let pid = rr_clone3(RR_CLONE_NEWUSER, SIGCHLD, nil, 0)
        if pid == 0 { _exit(0) }
        if pid < 0 { return .failed(Int32(-pid)) }
        reap(pid_t(pid), kill: false)
        return .ok
    }

    /// fork, then unshare(CLONE_NEWUSER) in the child: whether user namespaces work without
    /// clone3 (a seccomp filter may hide clone3 alone). The child reports its errno as its status.
    static func tryUnshareUser() -> ProbeStep {
        let pid = fork()
        if pid == 0 { _exit(min(-rr_unshare(Int32(RR_CLONE_NEWUSER)), 255)) }
        if pid < 0 { return .failed(Glibc.errno) }
        var status: Int32 = 0
        _ = SystemCalls.retrying { waitpid(pid, &status, 0) }
        let code = rr_wifexited(status) != 0 ? rr_wexitstatus(status) : EIO
        return code == 0 ? .ok : .failed(code)
    }

    /// Waits for `pid` by PID (never -1), after SIGKILL if asked.
    static func reap(_ pid: pid_t, kill: Bool) {
        if kill { _ = rr_kill(pid, SIGKILL) }
        var status: Int32 = 0
        _ = SystemCalls.retrying { waitpid(pid, &status, 0) }
    }

    static func readProbeRecords(_ fd: Int32, into r: inout NamespaceProbeResult) {
        let deadline = MonotonicClock.nanoseconds() + UInt64(probeTimeoutMs) * 1_000_000
        var done = false
        while true {
            let now = MonotonicClock.nanoseconds()
            if now >= deadline {
                r.problem = "the probe did not finish within \(probeTimeoutMs / 1000) s"
                return
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = SystemCalls.retrying { poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) }.value
            if ready <= 0 { continue }
            var rec = ProbeRecord(key: 0, value: 0)
            let n = SystemCalls.retrying { withUnsafeMutableBytes(of: &rec) { read(fd, $0.baseAddress, $0.count) } }.value
            if n <= 0 { break }
            guard n == MemoryLayout<ProbeRecord>.size, let key = ProbeKey(rawValue: rec.key) else { continue }
            let v = rec.value
            let asStep: ProbeStep = v == 0 ? .ok : .failed(Int32(truncatingIfNeeded: v))
            switch key {
            case .pid: r.pidInside = Int32(truncatingIfNeeded: v)
            case .mountPrivate: r.mountPrivate = asStep
            case .mountProc: r.mountProc = asStep
            case .pidMax: r.pidMaxInside = Int(v)
            case .pidMaxRaise: r.pidMaxRaise = asStep
            case .pidMaxAfter: r.pidMaxAfterRaise = Int(v)
            case .setTid: r.setTid = asStep
            case .setTidGot: r.setTidGot = Int32(truncatingIfNeeded: v)
            case .setTidHigh: r.setTidHigh = asStep
            case .setTidHighGot: r.setTidHighGot = Int32(truncatingIfNeeded: v)
            case .nestedCreated: r.nestedCreated = Int(v)
            case .nestedStop: r.nestedStop = v < 0 ? .ok : (v == 0 ? .notTried : .failed(Int32(truncatingIfNeeded: v)))
            case .done: done = true
            }
        }
        if !done && r.problem == nil {
            r.problem = "the probe's init ended before finishing"
        }
    }

    // MARK: inside the probe namespace (a forked copy of the single-threaded checker)

    static func send(_ fd: Int32, _ key: ProbeKey, _ value: Int64) {
        var rec = ProbeRecord(key: key.rawValue, value: value)
        _ = withUnsafeBytes(of: &rec) { write(fd, $0.baseAddress, $0.count) }
    }

    static func sendStep(_ fd: Int32, _ key: ProbeKey, _ ok: Bool) {
        send(fd, key, ok ? 0 : Int64(Glibc.errno == 0 ? EIO : Glibc.errno))
    }

    /// PID 1 of the probe namespace. Waits until the maps are written (or the checker is
    /// gone: end of file), then tries each step and reports it.
    static func probeInit(goFD: Int32, out: Int32, deep: Bool) -> Never {
        var byte: UInt8 = 0
        var n: Int
        n = SystemCalls.retrying { read(goFD, &byte, 1) }.value
        if n != 1 { _exit(1) }
        close(goFD)
        send(out, .pid, Int64(rr_getpid()))

        sendStep(out, .mountPrivate, mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0)
        let procOK = mount("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) == 0
        sendStep(out, .mountProc, procOK)

        let pidMaxPath = "/proc/sys/kernel/pid_max"
        var pidMax = procOK ? SystemCalls.readText(pidMaxPath).flatMap(LinuxFormats.parseSysctlInteger) : nil
        if let pidMax { send(out, .pidMax, Int64(pidMax)) }

        let (low, lowErr) = cloneWithPid(NamespaceProbeResult.lowTarget)
        send(out, .setTid, Int64(lowErr))
        if lowErr == 0 { send(out, .setTidGot, Int64(low)) }

        let high = NamespaceProbeResult.highTarget
        if procOK, let current = pidMax, current <= Int(high) {
            let e = SystemCalls.writeFile(pidMaxPath, "\(LinuxNumbers.pidMaxLimit)\n")
            send(out, .pidMaxRaise, Int64(e))
            pidMax = SystemCalls.readText(pidMaxPath).flatMap(LinuxFormats.parseSysctlInteger)
            if let pidMax { send(out, .pidMaxAfter, Int64(pidMax)) }
        }
        let (got, highErr) = cloneWithPid(high)
        send(out, .setTidHigh, Int64(highErr))
        if highErr == 0 { send(out, .setTidHighGot, Int64(got)) }

        if deep {
            let (created, stop) = nestPidNamespaces()
            send(out, .nestedCreated, Int64(created))
            send(out, .nestedStop, stop)
        }
        send(out, .done, 0)
        _exit(0)
    }

    /// clone3 with set_tid = {pid} in the current namespace; the child exits at once and is
    /// reaped by PID. Returns (PID obtained, 0) or (0, errno).
    static func cloneWithPid(_ pid: Int32) -> (Int32, Int32) {
        var tid: pid_t = pid
        let r = rr_clone3(0, SIGCHLD, &tid, 1)
        if r == 0 { _exit(0) }
        if r < 0 { return (0, Int32(-r)) }
        reap(pid_t(r), kill: false)
        return (Int32(r), 0)
    }

    /// Creates PID namespaces one inside the other, each by the previous one's init, until the
    /// kernel refuses or `nestingCap` is reached. Returns how many were created below the
    /// caller's namespace and the errno that stopped it (-1: the cap did).
    static func nestPidNamespaces() -> (Int, Int64) {
        guard let raw = mmap(nil, 16, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            return (0, Int64(Glibc.errno))
        }
        defer { munmap(raw, 16) }
        let shared = raw.bindMemory(to: Int64.self, capacity: 2)
        shared[0] = 0
        shared[1] = 0
        descend(level: 0, shared: shared)
        return (Int(shared[0]), shared[1])
    }

    static func descend(level: Int, shared: UnsafeMutablePointer<Int64>) {
        if level >= nestingCap { shared[1] = -1; return }
        let r = rr_clone3(RR_CLONE_NEWPID, SIGCHLD, nil, 0)
        if r == 0 {
            shared[0] = Int64(level + 1)
            descend(level: level + 1, shared: shared)
            _exit(0)
        }
        if r < 0 { shared[1] = Int64(-r); return }
        reap(pid_t(r), kill: false)
    }

    // MARK: - newuidmap / newgidmap

    static func locateHelper(_ name: String) -> IDHelperFacts {
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        return IDMapWriter.locate(name, in: path + ":/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin")
    }

    /// Really maps a range into a throwaway user namespace with each helper: own id -> 0 and
    /// the first subordinate range (at most 65536 ids) -> 1.
    static func trialHelpers(_ f: inout EnvironmentFacts) {
        for isUID in [true, false] {
            var h = isUID ? f.newuidmap : f.newgidmap
            defer { if isUID { f.newuidmap = h } else { f.newgidmap = h } }
            guard let path = h.path else { continue }
            if f.uid == 0 && f.inInitialUserNamespace { h.trialSkipped = "running as root"; continue }
            guard f.probe.clone == .ok || f.probe.userOnly == .ok else { h.trialSkipped = "no user namespace can be created"; continue }
            let text = isUID ? f.subuidText : f.subgidText
            let ranges = text.map { LinuxFormats.subIDRanges(in: $0, user: f.userName, uid: f.uid) } ?? []
            guard let range = ranges.first else { h.trialSkipped = "no subordinate range for this user"; continue }
            let own = isUID ? f.uid : f.gid
            let count = min(range.count, 65536)
            let result = runHelper(path, ownID: own, start: range.start, count: count, mapFile: isUID ? "uid_map" : "gid_map")
            h.trialStatus = result.status
            h.trialOutput = result.output
            h.trialMap = result.map
        }
    }

    static func runHelper(_ helper: String, ownID: UInt32, start: UInt32, count: UInt32, mapFile: String)
        -> (status: Int32, output: String, map: String) {
        var hold: [Int32] = [-1, -1]
        guard makePipe(&hold) else { return (-1, "pipe failed", "") }
        let pid = rr_clone3(RR_CLONE_NEWUSER, SIGCHLD, nil, 0)
        if pid == 0 {
            _ = rr_prctl_set_pdeathsig(SIGKILL)
            close(hold[1])
            var b: UInt8 = 0
            _ = SystemCalls.retrying { read(hold[0], &b, 1) }
            _exit(0)
        }
        close(hold[0])
        guard pid > 0 else {
            close(hold[1])
            return (-1, "clone3(CLONE_NEWUSER): \(ErrnoName.describe(Int32(-pid)))", "")
        }
        let child = pid_t(pid)
        defer {
            close(hold[1])
            reap(child, kill: false)
        }
        let argv = [helper, "\(child)", "0", "\(ownID)", "1", "1", "\(start)", "\(count)"]
        let result = CommandRunner.run(argv, environment: ["PATH=/usr/bin:/bin:/usr/sbin:/sbin"],
                                       timeout: Double(IDMapWriter.helperTimeoutSeconds), mergeOutput: true, limit: 8192)
        if result.startErrno != nil { return (-1, result.error, "") }
        if result.timedOut { return (-1, result.output + "(\(result.how) after \(IDMapWriter.helperTimeoutSeconds) s)", "") }
        let code = result.status ?? 128 + (result.signal ?? 0)
        let map = SystemCalls.readText("/proc/\(child)/\(mapFile)") ?? ""
        return (code, result.output, map)
    }
}
