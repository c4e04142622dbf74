// Identity and confinement, end to end: range maps through newuidmap/newgidmap (the test
// user's /etc/subuid and /etc/subgid ranges), per-process uid/gid/groups, capability sets,
// seccomp profiles and rlimits, all read back from the host's /proc (Uid/Gid/Groups,
// Cap*, Seccomp, NoNewPrivs, /proc/PID/limits, uid_map); and every check that must stop a
// restore before any process exists, with its message.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

// MARK: - Helpers (independent of the runtime's code)

/// The test user's first line in /etc/subuid or /etc/subgid (by name or uid).
private func firstSubRange(_ file: String, _ user: TestUser) throws -> (start: UInt32, count: UInt32) {
    let text = readText(file)
    for line in text.split(separator: "\n") {
        let f = line.split(separator: ":", omittingEmptySubsequences: false)
        guard f.count == 3, f[0] == user.name || f[0] == String(user.uid),
              let start = UInt32(f[1]), let count = UInt32(f[2]), count > 0 else { continue }
        return (start, count)
    }
    throw HarnessError("\(file) has no range for \(user.name): scripts/test.sh adds 200000-265535 (usermod --add-subuids)")
}

/// /proc/PID/status as key -> whitespace-separated words.
private func statusFields(_ pid: Int32) -> [String: [String]] {
    var out: [String: [String]] = [:]
    for line in readText("/proc/\(pid)/status").split(separator: "\n") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        out[String(line[..<colon])] = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }
    return out
}

/// Lines of /proc/PID/uid_map or gid_map as the tests' namespace reads them.
private func idMap(_ pid: Int32, _ file: String) -> [[UInt32]] {
    readText("/proc/\(pid)/\(file)").split(separator: "\n").map {
        $0.split(whereSeparator: { $0 == " " }).compactMap { UInt32($0) }
    }
}

/// The host id of an inner id under `map`.
private func outerID(_ inner: UInt32, _ map: [[UInt32]]) -> UInt32? {
    for line in map where line.count == 3 && inner >= line[0] && UInt64(inner) < UInt64(line[0]) + UInt64(line[2]) {
        return line[1] + (inner - line[0])
    }
    return nil
}

/// A capability mask from bit numbers.
private func caps(_ bits: [Int]) -> UInt64 { bits.reduce(0) { $0 | (UInt64(1) << UInt64($1)) } }

private enum Cap {
    static let chown = 0, kill = 5, setgid = 6, setuid = 7, netBindService = 10, netRaw = 13, sysAdmin = 21
    static func name(_ bit: Int) -> String {
        [0: "CAP_CHOWN", 5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 10: "CAP_NET_BIND_SERVICE",
         13: "CAP_NET_RAW", 21: "CAP_SYS_ADMIN"][bit]!
    }
    static func names(_ bits: [Int]) -> [String] { bits.map(name) }
}

/// Writes `{"version": 1, "processes": [...]}` plus `top` members to the run's directory.
private func writeTree(_ run: RestoreRun, _ processes: [[String: Any]], top: [String: Any] = [:],
                       name: String = "tree.json") throws -> String {
    var tree: [String: Any] = ["version": 1, "processes": processes]
    for (k, v) in top { tree[k] = v }
    return try run.write(name, try JSONSerialization.data(withJSONObject: tree, options: [.prettyPrinted, .sortedKeys]))
}

private func entry(_ pid: Int, _ process: [String: Any]?) -> [String: Any] {
    var e: [String: Any] = ["pid": pid, "ppid": 0, "pgid": pid, "sid": pid]
    if let process { e["process"] = process }
    return e
}

/// The restored processes by namespace PID, once every one of `pids` is there.
private func restored(_ run: RestoreRun, _ pids: [Int32]) throws -> [Int32: HostProcess] {
    let seen = try run.waitForNamespace(timeout: 30, "processes \(pids)") { list in
        pids.allSatisfy { p in list.contains { $0.pid == p } }
    }
    return Dictionary(seen.map { ($0.pid, $0.host) }, uniquingKeysWith: { a, _ in a })
}

/// A directory every uid may write to, for payload results.
private func outputDirectory(_ run: RestoreRun) throws -> String {
    let dir = run.directory + "/out"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    chmod(dir, 0o1777)
    return dir
}

/// Waits until `path` holds a complete line.
private func waitForLine(_ path: String, timeout: Double = 20) -> String? {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let text = readText(path)
        if text.hasSuffix("\n") { return text.trimmingCharacters(in: .whitespacesAndNewlines) }
        usleep(20_000)
    }
    return nil
}

private let shellEnv = ["PATH=/usr/bin:/bin", "LANG=C"]

@Suite("identity and confinement", .serialized)
struct IdentityTests {

    // MARK: Users

    @Test("uid 0, 1000 and 65534 inside through --map-users auto / --map-groups auto: Uid/Gid/Groups from /proc",
          .enabled(if: Prerequisites.userNamespacesWork))
    func usersThroughSubordinateRanges() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let subuid = try firstSubRange("/etc/subuid", run.user)
        let subgid = try firstSubRange("/etc/subgid", run.user)
        try #require(subuid.count >= 65535 && subgid.count >= 65535, "the test user's ranges must cover 1...65535")
        let file = try writeTree(run, [
            entry(10, ["user": ["uid": 0, "gid": 0]]),
            entry(11, ["user": ["uid": 1000, "gid": 1000, "additionalGids": [100, 1000, 65534], "umask": 0o027]]),
            entry(12, ["args": ["sleep", "1000"], "env": shellEnv,
                       "user": ["uid": 65534, "gid": 65534, "additionalGids": [65534]]]),
            entry(13, nil),
        ])
        try run.startRun(treeFile: file, extra: ["--map-users", "auto", "--map-groups", "auto"])
        try run.waitUntilReady()
        let procs = try restored(run, [10, 11, 12, 13])

        // The maps, as the host reads them: own id -> 0, the first range from 1.
        let expectedUIDMap: [[UInt32]] = [[0, run.user.uid, 1], [1, subuid.start, subuid.count]]
        let expectedGIDMap: [[UInt32]] = [[0, run.user.gid, 1], [1, subgid.start, subgid.count]]
        let host10 = try #require(procs[10]).hostPid
        #expect(idMap(host10, "uid_map") == expectedUIDMap)
        #expect(idMap(host10, "gid_map") == expectedGIDMap)
        #expect(readText("/proc/\(host10)/setgroups").hasPrefix("allow"), "a /etc/subgid range must leave setgroups allowed")

        func check(_ pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32]?, umask: String? = nil,
                   sourceLocation: SourceLocation = #_sourceLocation) {
            guard let p = procs[pid] else { Issue.record("pid \(pid) missing", sourceLocation: sourceLocation); return }
            let s = statusFields(p.hostPid)
            let u = String(outerID(uid, expectedUIDMap)!), g = String(outerID(gid, expectedGIDMap)!)
            #expect(s["Uid"] == [u, u, u, u], "pid \(pid): Uid \(s["Uid"] ?? []) for inner \(uid)", sourceLocation: sourceLocation)
            #expect(s["Gid"] == [g, g, g, g], "pid \(pid): Gid \(s["Gid"] ?? []) for inner \(gid)", sourceLocation: sourceLocation)
            if let groups {
                let want = Set(groups.map { String(outerID($0, expectedGIDMap)!) })
                #expect(Set(s["Groups"] ?? []) == want, "pid \(pid): Groups \(s["Groups"] ?? [])", sourceLocation: sourceLocation)
            }
            if let umask { #expect(s["Umask"] == [umask], "pid \(pid): Umask \(s["Umask"] ?? [])", sourceLocation: sourceLocation) }
        }
        check(10, uid: 0, gid: 0, groups: [])
        check(11, uid: 1000, gid: 1000, groups: [100, 1000, 65534], umask: "0027")
        check(12, uid: 65534, gid: 65534, groups: [65534])
        // Without process.user: the ids the test user maps to, i.e. 0.
        check(13, uid: 0, gid: 0, groups: nil)
        #expect(procs[12]?.commandLine == "sleep 1000")
        let report = readText(run.reportPath)
        #expect(report.contains("\"processes\""), "report: \(report)")
    }

    @Test("the tree's own uidMappings/gidMappings with a range at 0 (the test user unmapped)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func treeMappingsWithoutOwnId() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let subuid = try firstSubRange("/etc/subuid", run.user)
        let subgid = try firstSubRange("/etc/subgid", run.user)
        let size = min(subuid.count, subgid.count, 2000)
        let file = try writeTree(run, [
            entry(20, nil),
            entry(21, ["args": ["sleep", "1000"], "env": shellEnv, "user": ["uid": 1000, "gid": 1001, "additionalGids": [5]]]),
        ], top: ["uidMappings": [["containerID": 0, "hostID": Int(subuid.start), "size": Int(size)]],
                 "gidMappings": [["containerID": 0, "hostID": Int(subgid.start), "size": Int(size)]]])
        try run.startRun(treeFile: file)
        try run.waitUntilReady()
        let procs = try restored(run, [20, 21])
        let s20 = statusFields(try #require(procs[20]).hostPid)
        let s21 = statusFields(try #require(procs[21]).hostPid)
        // No process.user and the test user unmapped: inner 0.
        #expect(s20["Uid"]?.first == String(subuid.start) && s20["Gid"]?.first == String(subgid.start))
        #expect(s21["Uid"] == Array(repeating: String(subuid.start + 1000), count: 4))
        #expect(s21["Gid"] == Array(repeating: String(subgid.start + 1001), count: 4))
        #expect(s21["Groups"] == [String(subgid.start + 5)])
        #expect(idMap(procs[21]!.hostPid, "uid_map") == [[0, subuid.start, size]])
    }

    // MARK: Capabilities

    @Test("capability sets from CapBnd/CapEff/CapPrm/CapInh/CapAmb: holding, exec'd as uid 1000 with ambient, exec'd as root",
          .enabled(if: Prerequisites.userNamespacesWork))
    func capabilitySets() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let spec: [String: Any] = [
            "bounding": Cap.names([Cap.kill, Cap.netBindService, Cap.chown, Cap.setuid]),
            "permitted": Cap.names([Cap.kill, Cap.netBindService, Cap.setuid]),
            "effective": Cap.names([Cap.kill, Cap.setuid]),
            "inheritable": Cap.names([Cap.netBindService]),
            "ambient": Cap.names([Cap.netBindService]),
        ]
        let file = try writeTree(run, [
            entry(30, ["user": ["uid": 1000, "gid": 1000], "capabilities": spec]),
            entry(31, ["args": ["sleep", "1000"], "env": shellEnv, "user": ["uid": 1000, "gid": 1000], "capabilities": spec]),
            entry(32, ["args": ["sleep", "1000"], "env": shellEnv,
                       "capabilities": ["bounding": Cap.names([Cap.kill, Cap.chown]), "permitted": [String](), "effective": [String]()]]),
            entry(33, ["capabilities": ["bounding": Cap.names([Cap.sysAdmin]), "permitted": Cap.names([Cap.sysAdmin, Cap.netRaw]),
                                        "effective": Cap.names([Cap.netRaw])]]),
        ])
        try run.startRun(treeFile: file, extra: ["--map-users", "auto", "--map-groups", "auto"])
        try run.waitUntilReady()
        let procs = try restored(run, [30, 31, 32, 33])

        func expectSets(_ pid: Int32, bnd: [Int], eff: [Int], prm: [Int], inh: [Int], amb: [Int],
                        sourceLocation: SourceLocation = #_sourceLocation) {
            guard let p = procs[pid] else { Issue.record("pid \(pid) missing", sourceLocation: sourceLocation); return }
            let s = statusFields(p.hostPid)
            for (key, bits) in [("CapBnd", bnd), ("CapEff", eff), ("CapPrm", prm), ("CapInh", inh), ("CapAmb", amb)] {
                let seen = s[key]?.first.flatMap { UInt64($0, radix: 16) }
                #expect(seen == caps(bits), "pid \(pid) \(key): \(s[key] ?? []) instead of \(String(caps(bits), radix: 16))",
                        sourceLocation: sourceLocation)
            }
        }
        // Holding: exactly the sets given.
        expectSets(30, bnd: [Cap.kill, Cap.netBindService, Cap.chown, Cap.setuid], eff: [Cap.kill, Cap.setuid],
                   prm: [Cap.kill, Cap.netBindService, Cap.setuid], inh: [Cap.netBindService], amb: [Cap.netBindService])
        // Exec'd as uid 1000 (not root): the kernel keeps the ambient set as permitted and effective.
        expectSets(31, bnd: [Cap.kill, Cap.netBindService, Cap.chown, Cap.setuid], eff: [Cap.netBindService],
                   prm: [Cap.netBindService], inh: [Cap.netBindService], amb: [Cap.netBindService])
        // Exec'd as uid 0: permitted and effective become the bounding set.
        expectSets(32, bnd: [Cap.kill, Cap.chown], eff: [Cap.kill, Cap.chown], prm: [Cap.kill, Cap.chown], inh: [], amb: [])
        // A permitted capability outside the bounding set stays permitted (the bounding set limits exec).
        expectSets(33, bnd: [Cap.sysAdmin], eff: [Cap.netRaw], prm: [Cap.sysAdmin, Cap.netRaw], inh: [], amb: [])
    }

    // MARK: Seccomp

    @Test("seccomp: mkdir fails with EPERM, ptrace kills the caller; Seccomp: 2; with and without noNewPrivileges",
          .enabled(if: Prerequisites.userNamespacesWork))
    func seccompProfiles() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let perl = try #require(Paths.tool("perl"), "perl is missing (it calls ptrace for this test)")
        #if arch(x86_64)
        let ptraceNumber = 101
        #elseif arch(arm64)
        let ptraceNumber = 117
        #else
        let ptraceNumber = -1
        Issue.record("no ptrace number for this architecture")
        #endif
        let out = try outputDirectory(run)
        let mkdirProfile: [String: Any] = [
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [["names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1]],
        ]
        let ptraceProfile: [String: Any] = [
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [["names": ["ptrace"], "action": "SCMP_ACT_KILL"]],
        ]
        let file = try writeTree(run, [
            // noNewPrivileges: the filter is loaded last.
            entry(40, ["args": ["sh", "-c", "mkdir \(out)/blocked 2>\(out)/mkdir.err; echo $? > \(out)/mkdir.status; exec sleep 1000"],
                       "env": shellEnv, "noNewPrivileges": true, "seccomp": mkdirProfile]),
            // No noNewPrivileges and a uid change: the filter goes in while CAP_SYS_ADMIN is still held.
            entry(41, ["args": ["sh", "-c", "\(perl) -e 'syscall(\(ptraceNumber), 0, 0, 0, 0); print qq(survived\\n)' > \(out)/ptrace.out 2>&1; echo $? > \(out)/ptrace.status; exec sleep 1000"],
                       "env": shellEnv, "user": ["uid": 1000, "gid": 1000], "seccomp": ptraceProfile]),
            // A holding process gets its filter too.
            entry(42, ["seccomp": mkdirProfile, "noNewPrivileges": true]),
        ])
        try run.startRun(treeFile: file, extra: ["--map-users", "auto", "--map-groups", "auto"])
        try run.waitUntilReady()
        let procs = try restored(run, [40, 41, 42])

        #expect(waitForLine(out + "/mkdir.status") == "1")
        #expect(readText(out + "/mkdir.err").contains("Operation not permitted"), "mkdir said: \(readText(out + "/mkdir.err"))")
        #expect(access(out + "/blocked", F_OK) != 0, "the directory was created despite the profile")
        #expect(waitForLine(out + "/ptrace.status") == String(128 + SIGSYS), "perl ended with \(readText(out + "/ptrace.status")) (\(readText(out + "/ptrace.out")))")
        #expect(!readText(out + "/ptrace.out").contains("survived"))
        for pid: Int32 in [40, 41, 42] {
            guard let p = procs[pid] else { Issue.record("pid \(pid) missing"); continue }
            let s = statusFields(p.hostPid)
            #expect(s["Seccomp"] == ["2"], "pid \(pid): Seccomp \(s["Seccomp"] ?? [])")
        }
        #expect(statusFields(procs[40]!.hostPid)["NoNewPrivs"] == ["1"])
        #expect(statusFields(procs[41]!.hostPid)["NoNewPrivs"] == ["0"])
        // uid 0 without a capabilities object keeps its capabilities, filter or not.
        #expect(statusFields(procs[42]!.hostPid)["CapEff"]?.first.flatMap { UInt64($0, radix: 16) } != 0)
    }

    @Test("a holding process shares the runtime init's address space: a payload of the same (lowered) uid cannot open its memory",
          .enabled(if: Prerequisites.userNamespacesWork),
          arguments: ["uid"])
    func holderMemoryIsNotReachable(_ kind: String) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let out = try outputDirectory(run)
        // /proc/PID/mem for writing needs PTRACE_MODE_ATTACH: granted to a peer with the same
        // uid and no fewer capabilities when the target is dumpable. A holder's memory is the
        // init's, so it must not be. Each case alone in its tree: one uid change would make
        // the whole shared address space undumpable, and hide a cap-only case.
        // The probe waits (bounded) until the holder has its lowered identity: before that it
        // has the init's capabilities, which alone refuse the payload.
        let lowered = kind == "uid" ? "^Uid:\\s*1000\\s" : "^CapPrm:\\s*0000000000000000"
        let wait = "i=0; while [ $i -lt 200 ] && ! grep -Eq '\(lowered)' /proc/50/status; do sleep 0.05; i=$((i+1)); done; grep -E '\(lowered)' /proc/50/status > \(out)/lowered.txt; "
        let probe = wait + "if (exec 3<>/proc/50/mem) 2>\(out)/mem.err; then echo opened; else echo refused; fi > \(out)/mem.out; exec sleep 1000"
        let noCaps: [String: Any] = ["bounding": [String](), "permitted": [String](), "effective": [String](),
                                     "inheritable": [String](), "ambient": [String]()]
        let identity: [String: Any] = kind == "uid" ? ["user": ["uid": 1000, "gid": 1000]] : ["capabilities": noCaps]
        var payload: [String: Any] = ["args": ["sh", "-c", probe], "env": shellEnv]
        for (k, v) in identity { payload[k] = v }
        let file = try writeTree(run, [entry(50, identity), entry(51, payload)])
        try run.startRun(treeFile: file, extra: ["--map-users", "auto", "--map-groups", "auto"])
        try run.waitUntilReady()
        let procs = try restored(run, [50, 51])
        let answer = waitForLine(out + "/mem.out")
        #expect(!readText(out + "/lowered.txt").isEmpty, "the holder never showed its lowered identity")
        #expect(answer == "refused", "the payload could open the holder's (the init's) memory: \(answer ?? "no answer") \(readText(out + "/mem.err"))")
        // The same uid and capabilities on the host, so only dumpability stands between them.
        let h = statusFields(try #require(procs[50]).hostPid), p = statusFields(try #require(procs[51]).hostPid)
        #expect(h["Uid"] == p["Uid"] && h["CapPrm"] == p["CapPrm"], "holder \(h["Uid"] ?? []) \(h["CapPrm"] ?? []), payload \(p["Uid"] ?? []) \(p["CapPrm"] ?? [])")
    }

    // MARK: Resource limits

    @Test("RLIMIT_NOFILE and RLIMIT_NPROC from /proc/PID/limits, holding and exec'd",
          .enabled(if: Prerequisites.userNamespacesWork))
    func resourceLimits() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        var nofile = rlimit(), nproc = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &nofile)
        getrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &nproc)
        let fileHard = min(UInt64(nofile.rlim_max), 200), procHard = min(UInt64(nproc.rlim_max), 3000)
        let limits: [[String: Any]] = [
            ["type": "RLIMIT_NOFILE", "soft": Int(fileHard / 2), "hard": Int(fileHard)],
            ["type": "RLIMIT_NPROC", "soft": Int(procHard - 1), "hard": Int(procHard)],
        ]
        let file = try writeTree(run, [
            entry(50, ["rlimits": limits]),
            entry(51, ["args": ["sleep", "1000"], "env": shellEnv, "user": ["uid": 1000, "gid": 1000], "rlimits": limits]),
        ])
        try run.startRun(treeFile: file, extra: ["--map-users", "auto", "--map-groups", "auto"])
        try run.waitUntilReady()
        let procs = try restored(run, [50, 51])
        for pid: Int32 in [50, 51] {
            guard let p = procs[pid] else { Issue.record("pid \(pid) missing"); continue }
            let rows = readText("/proc/\(p.hostPid)/limits").split(separator: "\n")
            func row(_ label: String) -> [String] {
                rows.first { $0.hasPrefix(label) }.map { $0.dropFirst(label.count).split(separator: " ").prefix(2).map(String.init) } ?? []
            }
            #expect(row("Max open files") == [String(fileHard / 2), String(fileHard)], "pid \(pid)")
            #expect(row("Max processes") == [String(procHard - 1), String(procHard)], "pid \(pid)")
        }
    }

    // MARK: Record round trip

    @Test("record keeps uid, gid, umask, capability sets and rlimits; restoring the recording gives the same /proc",
          .enabled(if: Prerequisites.userNamespacesWork))
    func recordRoundTrip() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        var nofile = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &nofile)
        let hard = min(UInt64(nofile.rlim_max), 300)
        let uid = Int(run.user.uid), gid = Int(run.user.gid)
        // The test user's ids mapped to themselves, as record writes them.
        let file = try writeTree(run, [
            entry(60, ["args": ["sleep", "1000"], "env": shellEnv, "cwd": "/",
                       "user": ["uid": uid, "gid": gid, "umask": 0o077],
                       "capabilities": ["bounding": Cap.names([Cap.kill, Cap.chown, Cap.netBindService]),
                                        "permitted": Cap.names([Cap.netBindService]), "effective": Cap.names([Cap.netBindService]),
                                        "inheritable": Cap.names([Cap.netBindService]), "ambient": Cap.names([Cap.netBindService])],
                       "rlimits": [["type": "RLIMIT_NOFILE", "soft": Int(hard - 1), "hard": Int(hard)]]]),
        ], top: ["uidMappings": [["containerID": uid, "hostID": uid, "size": 1]],
                 "gidMappings": [["containerID": gid, "hostID": gid, "size": 1]]])
        try run.startRun(treeFile: file)
        try run.waitUntilReady()
        let host = try #require(try restored(run, [60])[60]).hostPid
        let recorded = run.directory + "/recorded.json"
        let recorder = try spawn(try Identity.prefix(for: run.user) + [run.binary, "record", "-q", "-o", recorded, String(host)],
                                 env: Identity.cleanEnvironment, cwd: run.directory,
                                 stdout: run.directory + "/record.out", stderr: run.directory + "/record.out")
        #expect(try waitForExit(recorder, timeout: 30) == .exited(0), "record: \(readText(run.directory + "/record.out"))")
        let data = try #require(FileManager.default.contents(atPath: recorded))
        let tree = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let process = try #require(((tree["processes"] as? [[String: Any]])?.first)?["process"] as? [String: Any])
        let user = try #require(process["user"] as? [String: Any])
        #expect(user["uid"] as? Int == uid && user["gid"] as? Int == gid)
        #expect(user["umask"] as? Int == 0o077)
        let capabilities = try #require(process["capabilities"] as? [String: Any])
        #expect(Set(capabilities["bounding"] as? [String] ?? []) == ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
        for set in ["effective", "permitted", "inheritable", "ambient"] {
            #expect(capabilities[set] as? [String] == ["CAP_NET_BIND_SERVICE"], "\(set): \(capabilities[set] ?? "none")")
        }
        let limits = try #require(process["rlimits"] as? [[String: Any]])
        let nofileRow = limits.first { $0["type"] as? String == "RLIMIT_NOFILE" }
        #expect(nofileRow?["soft"] as? Int == Int(hard - 1) && nofileRow?["hard"] as? Int == Int(hard))
        #expect(limits.count == 16, "every resource limit is recorded: \(limits.count)")

        // Restore the recording (after the first restore is gone: one restore at a time): the
        // same ids, sets, umask and limits come back.
        let s1 = statusFields(host), limits1 = readText("/proc/\(host)/limits")
        run.tearDown()
        let again = try RestoreRun()
        defer { again.tearDown() }
        try again.startRun(treeFile: try again.write("tree.json", data))
        try again.waitUntilReady()
        let host2 = try #require(try restored(again, [60])[60]).hostPid
        let s2 = statusFields(host2)
        for key in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "Umask", "Uid", "Gid", "Groups", "NoNewPrivs"] {
            #expect(s1[key] != nil && s1[key] == s2[key], "\(key): \(s1[key] ?? []) restored, \(s2[key] ?? []) restored from the recording")
        }
        #expect(limits1.contains("Max open files") && limits1 == readText("/proc/\(host2)/limits"))
    }

    // MARK: Checks before anything exists

    /// Runs `rootless-restore ARGS` to its end; it must fail with `code` before creating a
    /// single process, saying `fragments`.
    private func expectRefusal(_ arguments: [String], tree processes: [[String: Any]], top: [String: Any] = [:],
                               code: Int32, _ fragments: [String], path: String? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let file = try writeTree(run, processes, top: top)
        let status: Termination
        if let path {
            let pid = try spawn(try Identity.prefix(for: run.user) + [run.binary] + arguments + [file],
                                env: ["PATH=\(path)", "HOME=/tmp", "LANG=C"], cwd: run.directory,
                                stdout: run.stdoutPath, stderr: run.stderrPath)
            status = try waitForExit(pid, timeout: 30)
        } else {
            try run.start(arguments + [file])
            status = try run.waitForExit(timeout: 30)
            #expect(run.mostNamespaceProcessesSeen == 0, "processes were created", sourceLocation: sourceLocation)
        }
        let said = run.stderr
        #expect(status == .exited(code), "exit \(status), stderr: \(said)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(said.contains(f), "stderr lacks \(f): \(said)", sourceLocation: sourceLocation)
        }
        #expect(access(run.reportPath, F_OK) != 0, "a report was written", sourceLocation: sourceLocation)
    }

    @Test("a --map-users range outside /etc/subuid is refused (77)", .enabled(if: Prerequisites.userNamespacesWork))
    func rangeNotInSubuid() throws {
        let user = try Identity.user.get()
        try expectRefusal(["run", "--map-users", "0:\(user.uid):1", "--map-users", "1:4000000000:10"],
                          tree: [entry(1, nil)], code: 77,
                          ["error: --map-users 1:4000000000:10: outer uids 4000000000...4000000009 are not yours in /etc/subuid (\(user.name) has ",
                           "usermod --add-subuids 4000000000-4000000009 \(user.name)"])
    }

    @Test("overlapping map lines are refused: on the command line (64) and in the tree (65)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func overlappingLines() throws {
        let user = try Identity.user.get()
        let sub = try firstSubRange("/etc/subuid", user)
        try expectRefusal(["run", "--map-users", "0:\(sub.start):10", "--map-users", "5:\(sub.start + 100):10"],
                          tree: [entry(1, nil)], code: 64,
                          ["--map-users 5:\(sub.start + 100):10: inner ids 5...14 overlap --map-users 0:\(sub.start):10 (0...9)"])
        try expectRefusal(["run", "--map-groups", "auto", "--map-groups", "7:\(sub.start):1"], tree: [entry(1, nil)], code: 77,
                          ["inner ids 7...7 overlap --map-groups auto (1:"])
        try expectRefusal(["run"], tree: [entry(1, nil)],
                          top: ["uidMappings": [["containerID": 0, "hostID": Int(user.uid), "size": 1],
                                                ["containerID": 0, "hostID": Int(sub.start), "size": 5]]],
                          code: 65, ["uidMappings[1]: container ids 0...4 overlap uidMappings[0] (0...0)"])
    }

    @Test("a uid or gid of the tree that no map line covers is refused (65), naming the entry",
          .enabled(if: Prerequisites.userNamespacesWork))
    func idNotCovered() throws {
        let user = try Identity.user.get()
        let sub = try firstSubRange("/etc/subuid", user)
        let outside = Int(min(UInt64(sub.count) + 10, 4_000_000_000))
        try expectRefusal(["run", "--map-users", "auto", "--map-groups", "auto"],
                          tree: [entry(1, nil), entry(2, ["user": ["uid": outside, "gid": 0]])], code: 65,
                          ["error: process #1 (pid 2): runs as uid \(outside), which no line of the uid map covers (--map-users: 0:\(user.uid):1, 1:\(sub.start):\(sub.count))"])
        try expectRefusal(["run"], tree: [entry(3, ["user": ["uid": 0, "gid": 0, "additionalGids": [100]]])], code: 65,
                          ["error: process #0 (pid 3): has additionalGids 100, which need a gid range map written by newgidmap from your /etc/subgid range (e.g. --map-groups auto); with the default map (0:\(user.gid):1) the kernel denies setgroups"])
    }

    @Test("newuidmap missing from PATH, or without its setuid bit, is refused (77)",
          .enabled(if: Prerequisites.userNamespacesWork))
    func helperProblems() throws {
        let user = try Identity.user.get()
        let empty = "/tmp/rr-it-nohelper-\(getpid())"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        chmod(empty, 0o755)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        try expectRefusal(["run", "--map-users", "auto"], tree: [entry(1, nil)], code: 77,
                          ["error: --map-users: the uid map 0:\(user.uid):1, 1:", "which needs newuidmap, but it was not found in PATH=\(empty)",
                           "apt-get install uidmap"], path: empty)

        let system = try #require(Paths.tool("newgidmap"), "newgidmap is missing: scripts/setup.sh installs uidmap")
        let plain = "/tmp/rr-it-plainhelper-\(getpid())"
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        chmod(plain, 0o755)
        defer { try? FileManager.default.removeItem(atPath: plain) }
        let copy = plain + "/newgidmap"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: system, toPath: copy)
        chmod(copy, 0o755)
        var st = stat()
        stat(copy, &st)
        try expectRefusal(["run", "--map-groups", "auto"], tree: [entry(1, nil)], code: 77,
                          ["error: \(copy): has neither the setuid bit (mode 755, owner uid \(st.st_uid)) nor the cap_setgid file capability, so it cannot write the gid map 0:\(user.gid):1, 1:"],
                          path: plain + ":/usr/bin:/bin")
    }

    @Test("a hard rlimit above the runtime's own, an unknown system call, an unknown capability are refused",
          .enabled(if: Prerequisites.userNamespacesWork))
    func confinementProblems() throws {
        var nofile = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &nofile)
        if UInt64(nofile.rlim_max) < UInt64(Int.max) {
            let above = Int(UInt64(nofile.rlim_max) + 1)
            try expectRefusal(["run"], tree: [entry(5, ["rlimits": [["type": "RLIMIT_NOFILE", "soft": 1, "hard": above]]])], code: 77,
                              ["error: process #0 (pid 5), line ", "process.rlimits[0] asks for a hard RLIMIT_NOFILE of \(above), above the runtime's own hard limit \(nofile.rlim_max); raising a hard limit needs CAP_SYS_RESOURCE on the host"])
        }
        let profile: [String: Any] = ["defaultAction": "SCMP_ACT_ALLOW",
                                      "syscalls": [["names": ["getpid", "mkdri"], "action": "SCMP_ACT_ERRNO"]]]
        for command in ["run", "validate"] {
            try expectRefusal([command], tree: [entry(6, ["seccomp": profile])], code: 65,
                              ["error: process #0 (pid 6), line ", "process.seccomp.syscalls[0].names[1] \"mkdri\" is not a system call libseccomp ", "(did you mean \"mkdir\"?)"])
        }
        try expectRefusal(["run"], tree: [entry(7, ["capabilities": ["bounding": ["CAP_KILL", "CAP_SYSADMIN"]]])], code: 65,
                          ["process.capabilities.bounding[1] \"CAP_SYSADMIN\" is not a Linux capability (did you mean \"CAP_SYS_ADMIN\"?)"])
    }
}
