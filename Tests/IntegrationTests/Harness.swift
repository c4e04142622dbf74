// The harness of the end-to-end tests: it finds the rootless-restore binary, runs it as an
// unprivileged user (dropping from root with setpriv when the tests run as root, as in CI),
// waits for its --report file, reads the restored tree back from /proc on its own (nothing
// of the runtime's code is used for that), and tears everything down, checking that no
// process of the test user is left.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// A failure of the harness itself (not of the runtime under test).
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Where things are

enum Paths {
    /// The package root, from this file's place: Tests/IntegrationTests/Harness.swift.
    static let packageRoot: String = {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .path
    }()

    /// The binary under test: $RR_BINARY, else <package root>/.build/debug/rootless-restore.
    static let binary: Result<String, HarnessError> = {
        let env = ProcessInfo.processInfo.environment
        let path: String
        if let given = env["RR_BINARY"], !given.isEmpty {
            path = given.hasPrefix("/")
                ? given : FileManager.default.currentDirectoryPath + "/" + given
        } else {
            path = packageRoot + "/.build/debug/rootless-restore"
        }
        guard access(path, X_OK) == 0 else {
            return .failure(HarnessError(
                "rootless-restore binary not found or not executable at \(path): build it with "
                + "`swift build --product rootless-restore` or set RR_BINARY (scripts/test.sh does both)"))
        }
        return .success(path)
    }()

    /// An external tool by name, from the usual system directories.
    static func tool(_ name: String) -> String? {
        for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
            let path = "\(dir)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}

// MARK: - Who runs the runtime

struct TestUser: Sendable {
    var name: String
    var uid: uid_t
    var gid: gid_t
    /// True when the tests run as root and launch the runtime through setpriv.
    var dropsPrivileges: Bool
}

enum Identity {
    /// The unprivileged user the runtime runs as. As root: $RR_TEST_USER, else `rrtest` if it
    /// exists. Otherwise: the current user, directly.
    static let user: Result<TestUser, HarnessError> = {
        if getuid() != 0 {
            let name = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(getuid())"
            return .success(TestUser(name: name, uid: getuid(), gid: getgid(), dropsPrivileges: false))
        }
        let requested = ProcessInfo.processInfo.environment["RR_TEST_USER"].flatMap { $0.isEmpty ? nil : $0 }
        let name = requested ?? "rrtest"
        guard let pw = getpwnam(name) else {
            let why = requested != nil
                ? "RR_TEST_USER=\(name) names no user"
                : "the tests run as root, RR_TEST_USER is not set and there is no user `rrtest`"
            return .failure(HarnessError(
                "\(why): the end-to-end tests must run the runtime as an unprivileged user; "
                + "run them with scripts/test.sh, which creates the user rrtest"))
        }
        let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid
        guard uid != 0 else {
            return .failure(HarnessError("test user \(name) is root (uid 0): it must be an ordinary user"))
        }
        return .success(TestUser(name: name, uid: uid, gid: gid, dropsPrivileges: true))
    }()

    /// The command prefix that runs a program as the test user (empty when not root).
    static func prefix(for user: TestUser) throws -> [String] {
        var argv: [String] = []
        if user.dropsPrivileges {
            guard let setpriv = Paths.tool("setpriv") else {
                throw HarnessError("setpriv (util-linux) is missing: run scripts/setup.sh")
            }
            argv = [setpriv, "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups",
                    "--inh-caps=-all", "--"]
        }
        return argv + OuterNamespace.prefix
    }

    /// The environment the runtime gets: clean, whoever runs the tests.
    static let cleanEnvironment = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C"]
}

// MARK: - Can this kernel do it at all?

enum Prerequisites {
    /// Whether the test user may create a user + PID namespace (`unshare -Urp --fork true`).
    /// False only when the kernel or its settings refuse; a missing binary or user does not
    /// make this false: those tests must fail, not be skipped.
    static let userNamespacesWork: Bool = {
        guard case .success(let user) = Identity.user,
              let prefix = try? Identity.prefix(for: user),
              let unshare = Paths.tool("unshare") else { return true }
        let dir = "/tmp"
        let out = "\(dir)/rr-it-probe-\(getpid()).out"
        defer { unlink(out) }
        do {
            let pid = try spawn(prefix + [unshare, "-Urp", "--fork", "true"],
                                env: Identity.cleanEnvironment, cwd: "/", stdout: out, stderr: out)
            let status = try waitForExit(pid, timeout: 30)
            if status == .exited(0) { return true }
            let said = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            let reason = "user namespaces are not available to \(user.name): `unshare -Urp --fork true` "
                + "ended with \(status): \(said.trimmingCharacters(in: .whitespacesAndNewlines)) "
                + "(see /proc/sys/user/max_user_namespaces, kernel.unprivileged_userns_clone, "
                + "kernel.apparmor_restrict_unprivileged_userns)"
            print("IntegrationTests: SKIPPING the end-to-end tests: \(reason)")
            return false
        } catch {
            return true
        }
    }()
}

// MARK: - Processes

enum Termination: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus s: Int32) {
        if s & 0x7f == 0 { self = .exited((s >> 8) & 0xff) } else { self = .signaled(s & 0x7f) }
    }

    var description: String {
        switch self {
        case .exited(let c): return "exit code \(c)"
        case .signaled(let s): return "signal \(s)"
        }
    }
}

/// posix_spawn with stdin from /dev/null, stdout and stderr to files, every signal back to its
/// default disposition and none blocked, and `cwd` (through `env -C`, which execs: the PID
/// returned is the PID of argv[0] and then of whatever it execs).
func spawn(_ argv: [String], env: [String], cwd: String?, stdout: String, stderr: String,
           terminal: String? = nil) throws -> pid_t {
    var argv = argv
    if let cwd {
        guard let envTool = Paths.tool("env") else { throw HarnessError("env (coreutils) is missing") }
        argv = [envTool, "-C", cwd] + argv
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let terminal {
        // A terminal the test owns (a pty's slave) on 0, 1 and 2.
        posix_spawn_file_actions_addopen(&actions, 0, terminal, O_RDWR | O_NOCTTY, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
    } else if stderr == stdout {
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    }
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var all = sigset_t(), none = sigset_t()
    sigfillset(&all)
    sigemptyset(&none)
    posix_spawnattr_setsigdefault(&attr, &all)
    posix_spawnattr_setsigmask(&attr, &none)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, cEnv)
    guard rc == 0 else {
        throw HarnessError("posix_spawn \(argv[0]) failed: \(String(cString: strerror(rc)))")
    }
    return pid
}

/// waitpid without blocking: nil while the child runs.
func reap(_ pid: pid_t) -> Termination? {
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return Termination(waitStatus: status) }
        if r == -1 && errno == EINTR { continue }
        return nil
    }
}

/// Ends a tree the test started itself (not a restore): stops its root so it forks no more,
/// SIGKILLs it and every descendant, reaps the root and waits (10 s at most) until all are gone.
func killProcessTree(root: pid_t) {
    kill(root, SIGSTOP)
    let all = ProcFS.scan()
    var pids = [root]
    var i = 0
    while i < pids.count { pids += all.filter { $0.hostPPid == pids[i] }.map(\.hostPid); i += 1 }
    for p in pids { kill(p, SIGKILL) }
    _ = try? waitForExit(root, timeout: 10)
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline, pids.contains(where: { readFile("/proc/\($0)/stat") != nil }) { usleep(20_000) }
}

func waitForExit(_ pid: pid_t, timeout: Double) throws -> Termination {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if let t = reap(pid) { return t }
        if Date() > deadline { throw HarnessError("pid \(pid) did not exit within \(timeout) s") }
        usleep(20_000)
    }
}

/// The whole of a small file (for /proc files, whose size stat does not tell), or nil.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    var total = 0
    while true {
        if total == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { break }
        total += n
    }
    return Array(buffer[0..<total])
}

func readText(_ path: String) -> String {
    readFile(path).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

// MARK: - /proc, read independently of the runtime

/// One process as /proc/PID/status shows it from the tests' PID namespace.
struct HostProcess: Sendable {
    var hostPid: Int32
    var hostPPid: Int32
    /// `NSpid:`, `NSpgid:`, `NSsid:`: the tests' level first, then each nested level.
    var nspid: [Int32]
    var nspgid: [Int32]
    var nssid: [Int32]
    /// The first letter of `State:` (R, S, D, T, t, Z, X, ...).
    var state: String
    var realUid: uid_t
    /// `SigCgt:`: the signals the process catches.
    var caughtSignals: UInt64

    func catches(_ signal: Int32) -> Bool { caughtSignals & (UInt64(1) << UInt64(signal - 1)) != 0 }

    var commandLine: String {
        let raw = readFile("/proc/\(hostPid)/cmdline") ?? []
        let text = raw.split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? "[\(readText("/proc/\(hostPid)/comm").trimmingCharacters(in: .whitespacesAndNewlines))]" : text
    }

    var summary: String {
        "host pid \(hostPid) (NSpid \(nspid.map(String.init).joined(separator: " ")), ppid \(hostPPid), "
            + "state \(state), uid \(realUid)): \(commandLine)"
    }
}

enum ProcFS {
    /// The number of PID namespace levels /proc shows for the tests themselves.
    static let ownDepth: Int = {
        parseStatus(readFile("/proc/self/status") ?? [], hostPid: getpid())?.nspid.count ?? 1
    }()

    static func parseStatus(_ bytes: [UInt8], hostPid: Int32) -> HostProcess? {
        var p = HostProcess(hostPid: hostPid, hostPPid: -1, nspid: [], nspgid: [], nssid: [],
                            state: "?", realUid: uid_t.max, caughtSignals: 0)
        func numbers(_ line: ArraySlice<UInt8>) -> [Int64] {
            var out: [Int64] = [], current: Int64 = 0, inNumber = false
            for b in line {
                if b >= 48 && b <= 57 { current = current * 10 + Int64(b - 48); inNumber = true }
                else if inNumber { out.append(current); current = 0; inNumber = false }
            }
            if inNumber { out.append(current) }
            return out
        }
        func afterColon(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
            guard let c = line.firstIndex(of: 58) else { return line[line.endIndex...] }
            return line[(c + 1)...]
        }
        func starts(_ line: ArraySlice<UInt8>, _ key: StaticString) -> Bool {
            let n = key.utf8CodeUnitCount
            guard line.count >= n else { return false }
            return key.withUTF8Buffer { k in zip(k, line.prefix(n)).allSatisfy { $0 == $1 } }
        }
        for line in bytes.split(separator: 10) {
            if starts(line, "PPid:") { p.hostPPid = Int32(numbers(afterColon(line)).first ?? -1) }
            else if starts(line, "NSpid:") { p.nspid = numbers(afterColon(line)).map { Int32($0) } }
            else if starts(line, "NSpgid:") { p.nspgid = numbers(afterColon(line)).map { Int32($0) } }
            else if starts(line, "NSsid:") { p.nssid = numbers(afterColon(line)).map { Int32($0) } }
            else if starts(line, "Uid:") { p.realUid = uid_t(numbers(afterColon(line)).first ?? -1) }
            else if starts(line, "State:") {
                let rest = afterColon(line).drop { $0 == 32 || $0 == 9 }
                p.state = rest.first.map { String(UnicodeScalar($0)) } ?? "?"
            } else if starts(line, "SigCgt:") {
                let hex = String(decoding: afterColon(line), as: UTF8.self)
                    .trimmingCharacters(in: .whitespaces)
                p.caughtSignals = UInt64(hex, radix: 16) ?? 0
            }
        }
        guard p.hostPPid >= 0, !p.nspid.isEmpty else { return nil }
        if p.nspgid.isEmpty { p.nspgid = [0] }
        if p.nssid.isEmpty { p.nssid = [0] }
        return p
    }

    /// Every process /proc lists now (those that vanish while reading are left out).
    static func scan() -> [HostProcess] { scan(root: "/proc") }

    /// The same for another procfs mount, e.g. a simulated node's (`/proc/<its init>/root/proc`):
    /// `hostPid` and `nspid` are then as that node's PID namespace sees them.
    static func scan(root: String) -> [HostProcess] {
        guard let dir = opendir(root) else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids.compactMap { pid in
            readFile("\(root)/\(pid)/status").flatMap { parseStatus($0, hostPid: pid) }
        }
    }

    /// Fields 7 and 8 of /proc/PID/stat: tty_nr (the controlling terminal's device as
    /// major << 8 | minor for small numbers; 0: none) and tpgid (its foreground group, -1: none).
    static func terminal(_ pid: Int32) -> (ttyNr: UInt32, tpgid: Int32)? {
        let text = readText("/proc/\(pid)/stat")
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 5, let tty = Int64(fields[4]), let tpgid = Int32(fields[5]) else { return nil }
        return (UInt32(truncatingIfNeeded: tty), tpgid)
    }

    /// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
    static func startTime(_ pid: Int32) -> UInt64? {
        let text = readText("/proc/\(pid)/stat")
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}

/// A process of the restored namespace, as the namespace itself would see it.
struct NamespaceProcess: Sendable, CustomStringConvertible {
    var pid: Int32
    /// The namespace PID of the parent; 0 when the parent is outside (the runtime).
    var ppid: Int32
    var pgid: Int32
    var sid: Int32
    var host: HostProcess

    var description: String {
        "pid=\(pid) ppid=\(ppid) pgid=\(pgid) sid=\(sid) state=\(host.state) (host pid \(host.hostPid))"
    }

    /// The fork supervisor's notification receiver (ForkSupervisor.startReceiver): the runtime's
    /// own, not the tree's. Told by its name and by being alone in a session of its own.
    var isForkReceiver: Bool {
        readText("/proc/\(host.hostPid)/comm").trimmingCharacters(in: .whitespacesAndNewlines) == "rr-fork-recv"
            && sid == pid && pgid == pid
    }
}

extension ProcFS {
    /// The processes below `root` (host PID, by host PPid chain) that live in a PID namespace
    /// nested under the tests' own, seen from the first nested level.
    static func namespaceProcesses(under root: Int32, in all: [HostProcess]? = nil,
                                   outerLevels: Int = OuterNamespace.levels) -> [NamespaceProcess] {
        let all = all ?? scan()
        var byPid: [Int32: HostProcess] = [:]
        for p in all { byPid[p.hostPid] = p }
        var below: [Int32: Bool] = [root: true]
        func isBelow(_ pid: Int32) -> Bool {
            var chain: [Int32] = []
            var cur = pid
            var answer = false
            while true {
                if let known = below[cur] { answer = known; break }
                guard let p = byPid[cur], p.hostPPid > 0, chain.count < 100_000 else { answer = false; break }
                chain.append(cur)
                cur = p.hostPPid
            }
            for c in chain { below[c] = answer }
            return answer
        }
        let level = ownDepth + outerLevels
        return all.compactMap { p -> NamespaceProcess? in
            guard p.hostPid != root, p.nspid.count > level, isBelow(p.hostPid) else { return nil }
            var ppid: Int32 = 0
            if let parent = byPid[p.hostPPid], parent.nspid.count > level { ppid = parent.nspid[level] }
            return NamespaceProcess(pid: p.nspid[level], ppid: ppid,
                                    pgid: p.nspgid.count > level ? p.nspgid[level] : 0,
                                    sid: p.nssid.count > level ? p.nssid[level] : 0, host: p)
        }
    }
}

// MARK: - One run of the runtime

/// A launched `rootless-restore`, its scratch directory and its output.
final class RestoreRun {
    let user: TestUser
    let directory: String
    let binary: String
    let reportPath: String
    let stdoutPath: String
    let stderrPath: String
    private(set) var pid: pid_t = 0
    private(set) var termination: Termination?
    private var startTime: UInt64 = 0
    /// The most namespace processes seen at once by `waitForExit` while it polled.
    private(set) var mostNamespaceProcessesSeen = 0
    private var tornDown = false

    /// A fresh scratch directory under /tmp, readable by the test user, with a copy of the
    /// binary (the repository may live under /root, which the user cannot read).
    /// Holds `EndToEndLock` from here until `tearDown()`.
    init() throws {
        let user = try Identity.user.get()
        let source = try Paths.binary.get()
        self.user = user
        try EndToEndLock.shared.acquire()
        var template = Array("/tmp/rr-it.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            EndToEndLock.shared.release()
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        chmod(directory, 0o755)
        if user.dropsPrivileges { chown(directory, user.uid, user.gid) }
        binary = directory + "/rootless-restore"
        reportPath = directory + "/report.json"
        stdoutPath = directory + "/stdout"
        stderrPath = directory + "/stderr"
        do {
            try FileManager.default.copyItem(atPath: source, toPath: binary)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            tornDown = true  // deinit still runs: nothing for it to do
            EndToEndLock.shared.release()
            throw error
        }
        chmod(binary, 0o755)
        Leftovers.clearBeforeTest(user: user)
    }

    /// Writes a file of the scratch directory, readable by everyone.
    @discardableResult
    func write(_ name: String, _ data: Data, mode: mode_t = 0o644) throws -> String {
        let path = directory + "/" + name
        try data.write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
        return path
    }

    /// Starts `rootless-restore ARGS` as the test user, in the scratch directory.
    /// `terminal`: a pty slave the test owns, on 0, 1 and 2 instead of the output files.
    func start(_ arguments: [String], extraEnvironment: [String] = [], launcher: [String] = [],
               terminal: String? = nil) throws {
        precondition(pid == 0, "one launch per RestoreRun")
        let argv = try Identity.prefix(for: user) + launcher + [binary] + arguments
        pid = try spawn(argv, env: Identity.cleanEnvironment + extraEnvironment, cwd: directory,
                        stdout: stdoutPath, stderr: stderrPath, terminal: terminal)
        startTime = ProcFS.startTime(pid) ?? 0
    }

    /// `run --report <dir>/report.json EXTRA TREE`.
    /// `run --report <dir>/report.json EXTRA TREE`; with RR_PID_METHOD=dance (or clone3) the
    /// suite's restore cases run with that PID method (scripts/test.sh runs them with both).
    func startRun(treeFile: String, extra: [String] = [], environment: [String] = [], launcher: [String] = []) throws {
        let method = ProcessInfo.processInfo.environment["RR_PID_METHOD"].map { ["--pid-method", $0] } ?? []
        try start(["run", "--report", reportPath] + method + extra + [treeFile], extraEnvironment: environment, launcher: launcher)
    }

    var stdout: String { readText(stdoutPath) }
    var stderr: String { readText(stderrPath) }

    private var outputForMessages: String {
        let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        let out = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func tail(_ s: String) -> String { s.count > 4000 ? "…" + String(s.suffix(4000)) : s }
        return "stderr of the runtime:\n\(err.isEmpty ? "(empty)" : tail(err))"
            + (out.isEmpty ? "" : "\nstdout:\n\(tail(out))")
    }

    /// Polls until the report file exists (the runtime renames it into place once every
    /// process is created, verified and started). Fails if the runtime exits first.
    func waitUntilReady(timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if access(reportPath, F_OK) == 0 { return }
            if let t = reapIfDone() {
                throw HarnessError("the runtime ended (\(t)) before writing its report \(reportPath)\n"
                                   + outputForMessages)
            }
            if Date() > deadline {
                throw HarnessError("no report at \(reportPath) after \(timeout) s; the runtime "
                                   + "(host pid \(pid)) is still running\n" + outputForMessages)
            }
            usleep(20_000)
        }
    }

    /// Polls until the runtime exits; also counts the namespace processes each time.
    @discardableResult
    func waitForExit(timeout: Double = 60) throws -> Termination {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let t = reapIfDone() { return t }
            let seen = ProcFS.namespaceProcesses(under: pid).count
            mostNamespaceProcessesSeen = max(mostNamespaceProcessesSeen, seen)
            if Date() > deadline {
                throw HarnessError("the runtime (host pid \(pid)) did not exit within \(timeout) s\n"
                                   + outputForMessages)
            }
            usleep(20_000)
        }
    }

    /// Polls until `condition` holds for the namespace processes; fails if the runtime exits.
    @discardableResult
    func waitForNamespace(timeout: Double = 60, _ what: String,
                          until condition: ([NamespaceProcess]) -> Bool) throws -> [NamespaceProcess] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let now = ProcFS.namespaceProcesses(under: pid)
            mostNamespaceProcessesSeen = max(mostNamespaceProcessesSeen, now.count)
            if condition(now) { return now }
            if let t = reapIfDone() {
                throw HarnessError("the runtime ended (\(t)) while waiting for \(what)\n" + outputForMessages)
            }
            if Date() > deadline {
                let seen = now.map { "  \($0) \($0.host.commandLine)" }.joined(separator: "\n")
                throw HarnessError("timed out after \(timeout) s waiting for \(what); the namespace held:\n\(seen)\n" + outputForMessages)
            }
            usleep(20_000)
        }
    }

    func namespace() -> [NamespaceProcess] { ProcFS.namespaceProcesses(under: pid) }

    /// The runtime's host PID (inside an outer namespace: unshare's child, the runtime itself).
    var runtimeHostPid: Int32? {
        guard termination == nil, pid > 0 else { return nil }
        if OuterNamespace.enabled { return ProcFS.scan().first(where: { $0.hostPPid == pid })?.hostPid }
        return pid
    }

    /// Signals the runtime.
    func signal(_ sig: Int32) {
        if let runtime = runtimeHostPid { kill(runtime, sig) }
    }

    /// Waits until the runtime says it paused mid-restore (`--testing-fault pause-mid-restore`).
    func waitForRuntimePaused(timeout: Double = 120) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !stderr.contains("testing aid: paused after") {
            if let t = reapIfDone() {
                throw HarnessError("the runtime ended (\(t)) while waiting for it to pause\n" + outputForMessages)
            }
            if Date() > deadline {
                throw HarnessError("timed out after \(timeout) s waiting for the runtime to pause\n" + outputForMessages)
            }
            usleep(20_000)
        }
    }

    private func reapIfDone() -> Termination? {
        if let termination { return termination }
        guard pid > 0 else { return nil }
        termination = reap(pid)
        return termination
    }

    /// Ends the runtime if it still runs (SIGTERM, then SIGKILL), then checks that the test
    /// user has no process left; records an issue listing any and kills them.
    func tearDown(sourceLocation: SourceLocation = #_sourceLocation) {
        guard !tornDown else { return }
        tornDown = true
        if pid > 0, reapIfDone() == nil {
            kill(pid, SIGTERM)
            let soft = Date().addingTimeInterval(5)
            while reapIfDone() == nil && Date() < soft { usleep(20_000) }
            if reapIfDone() == nil {
                kill(pid, SIGKILL)
                while reapIfDone() == nil { usleep(20_000) }
            }
        }
        let left = Leftovers.waitForNone(user: user, since: startTime, timeout: 15)
        if !left.isEmpty {
            Issue.record(Comment(rawValue:
                "\(left.count) process(es) of \(user.name) remained after the runtime ended:\n"
                + left.prefix(50).map { "  " + $0.summary }.joined(separator: "\n")),
                sourceLocation: sourceLocation)
            Leftovers.killAll(left)
            _ = Leftovers.waitForNone(user: user, since: startTime, timeout: 10)
        }
        try? FileManager.default.removeItem(atPath: directory)
        EndToEndLock.shared.release()
    }

    deinit { tearDown() }
}

// MARK: - One end-to-end run at a time

/// Every end-to-end run uses the same test user and ends by checking that the user has no
/// process left, so runs must never overlap, even when suites run in parallel (a plain
/// `swift test`; scripts/test.sh passes --no-parallel). A RestoreRun holds this lock from its
/// init to its tearDown. It is reentrant for the task that holds it, so one test may have two
/// runs alive at once.
final class EndToEndLock: @unchecked Sendable {
    static let shared = EndToEndLock()

    private let gate = DispatchSemaphore(value: 1)
    private let state = NSLock()
    private var owner: Int?
    private var depth = 0

    /// The task running the caller (sync test functions run inside one), else the thread.
    private static func currentOwner() -> Int {
        withUnsafeCurrentTask { $0?.hashValue } ?? Int(bitPattern: UInt(pthread_self()))
    }

    func acquire(timeout seconds: Int = 3600) throws {
        let me = Self.currentOwner()
        state.lock()
        if owner == me {
            depth += 1
            state.unlock()
            return
        }
        state.unlock()
        guard gate.wait(timeout: .now() + .seconds(seconds)) == .success else {
            throw HarnessError("waited \(seconds) s for another end-to-end test to end its RestoreRun; "
                               + "is a RestoreRun kept alive across an `await`? Run with --no-parallel")
        }
        state.lock()
        owner = me
        depth = 1
        state.unlock()
    }

    func release() {
        state.lock()
        depth -= 1
        guard depth == 0 else { state.unlock(); return }
        owner = nil
        state.unlock()
        gate.signal()
    }
}

// MARK: - Leftover processes

/// RR_OUTER_NAMESPACE=1: every launch runs inside an outer user + PID namespace, as in a
/// rootless container (`unshare --user --map-current-user --pid --fork --mount-proc`). The
/// restored namespace is then one level further down, and the runtime is unshare's child.
enum OuterNamespace {
    static let enabled = ProcessInfo.processInfo.environment["RR_OUTER_NAMESPACE"] == "1"
    static var prefix: [String] {
        guard enabled else { return [] }
        return [Paths.tool("unshare") ?? "/usr/bin/unshare", "--user", "--map-current-user", "--pid",
                "--fork", "--mount-proc", "--kill-child"]
    }
    /// Extra PID-namespace levels between the tests and the runtime.
    static var levels: Int { enabled ? 1 : 0 }
}

enum Leftovers {
    /// The test user's processes. As root: every process whose real uid is the user's. Not
    /// root (the tests are that user): those in a nested PID namespace started since `since`.
    static func find(user: TestUser, since: UInt64) -> [HostProcess] {
        let me = getpid()
        return ProcFS.scan().filter { p in
            guard p.realUid == user.uid, p.hostPid != me else { return false }
            if user.dropsPrivileges { return true }
            guard p.nspid.count > ProcFS.ownDepth else { return false }
            return (ProcFS.startTime(p.hostPid) ?? 0) >= since
        }
    }

    static func waitForNone(user: TestUser, since: UInt64, timeout: Double) -> [HostProcess] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let left = find(user: user, since: since)
            if left.isEmpty || Date() > deadline { return left }
            usleep(20_000)
        }
    }

    static func killAll(_ processes: [HostProcess]) {
        for p in processes { kill(p.hostPid, SIGKILL) }
    }

    /// Before a test: the user must have no process (an earlier test or run may have left some).
    static func clearBeforeTest(user: TestUser) {
        guard user.dropsPrivileges else { return }
        let left = find(user: user, since: 0)
        guard !left.isEmpty else { return }
        Issue.record(Comment(rawValue:
            "\(left.count) process(es) of \(user.name) existed before the test started (killed now):\n"
            + left.prefix(20).map { "  " + $0.summary }.joined(separator: "\n")))
        killAll(left)
        _ = waitForNone(user: user, since: 0, timeout: 10)
    }
}
