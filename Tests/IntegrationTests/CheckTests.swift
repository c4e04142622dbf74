// `rootless-restore check` run as the unprivileged test user (see Harness.swift): on this
// machine the basic restore must pass, and a feature blocked for real must show as a fail line
// with its fix and exit status 77. The blocks are honest ones: inside a user namespace its
// owner may lower the namespace's own user.max_user_namespaces / user.max_pid_namespaces, which
// is exactly what a machine with those limits at 0 looks like from there.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("rootless-restore check", .serialized)
struct CheckTests {
    /// One line of `check --json`.
    struct Line {
        var id: String
        var verdict: String
        var essential: Bool
        var detail: String
        var fix: String?
    }

    static func parse(_ json: String) throws -> [Line] {
        let data = Data(json.utf8)
        guard let array = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw HarnessError("check --json did not print a JSON array of objects:\n\(json)")
        }
        return try array.map { o in
            guard let id = o["id"] as? String, let verdict = o["verdict"] as? String,
                  let essential = o["essential"] as? Bool, let detail = o["detail"] as? String,
                  o["fix"] is String || o["fix"] is NSNull, o["title"] is String else {
                throw HarnessError("malformed line in check --json: \(o)")
            }
            return Line(id: id, verdict: verdict, essential: essential, detail: detail, fix: o["fix"] as? String)
        }
    }

    static func line(_ lines: [Line], _ id: String) throws -> Line {
        guard let l = lines.first(where: { $0.id == id }) else {
            throw HarnessError("no line \(id) in check --json: \(lines.map(\.id))")
        }
        return l
    }

    /// Runs `check ARGS` as the test user; returns its termination and stdout.
    static func runCheck(_ run: RestoreRun, _ arguments: [String]) throws -> (Termination, String) {
        try run.start(["check"] + arguments)
        let t = try run.waitForExit(timeout: 60)
        return (t, run.stdout)
    }

    /// Runs `sh -c SCRIPT BINARY` inside `unshare --user --map-root-user` as the test user.
    static func runInUserNamespace(_ run: RestoreRun, script: String) throws -> (Termination, String, String) {
        guard let unshare = Paths.tool("unshare"), let sh = Paths.tool("sh") else {
            throw HarnessError("unshare or sh (util-linux, dash) is missing: run scripts/setup.sh")
        }
        let out = run.directory + "/ns.out", err = run.directory + "/ns.err"
        let argv = try Identity.prefix(for: run.user) + [unshare, "--user", "--map-root-user", sh, "-c", script, run.binary]
        let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: run.directory, stdout: out, stderr: err)
        let t = try waitForExit(pid, timeout: 60)
        return (t, readText(out), readText(err))
    }

    @Test("check passes the basic restore here and exits 0", .enabled(if: Prerequisites.userNamespacesWork))
    func passesHere() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let (t, out) = try Self.runCheck(run, [])
        #expect(t == .exited(0), "check ended with \(t):\n\(out)\n\(run.stderr)")
        for title in ["user namespace", "uid_map", "gid_map", "PID namespace", "mount /proc in it", "clone3 set_tid"] {
            #expect(out.contains("pass  \(title)"), "no pass line for \(title):\n\(out)")
        }
        #expect(out.contains("A basic restore"))
        #expect(out.contains(run.user.name))
    }

    @Test("check --json: userns, set_tid and every essential line pass", .enabled(if: Prerequisites.userNamespacesWork))
    func jsonPassesHere() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let (t, out) = try Self.runCheck(run, ["--json"])
        #expect(t == .exited(0), "check --json ended with \(t):\n\(out)\n\(run.stderr)")
        let lines = try Self.parse(out)
        #expect(try Self.line(lines, "userns").verdict == "pass")
        #expect(try Self.line(lines, "set_tid").verdict == "pass")
        #expect(try Self.line(lines, "set_tid").detail.contains("4242"))
        let essential = lines.filter(\.essential)
        #expect(Set(essential.map(\.id)) == ["userns", "capabilities", "uid_map", "gid_map", "pidns", "proc", "set_tid"])
        for l in essential { #expect(l.verdict == "pass", "\(l.id): \(l.detail)") }
        for l in lines where l.verdict != "pass" {
            #expect(l.fix != nil, "\(l.id) is \(l.verdict) without a fix: \(l.detail)")
        }
        // The nesting probe really created levels: at least one below the probe's own.
        #expect(try Self.line(lines, "pidns_levels").detail.contains("confirmed by creating"))
    }

    @Test("with user.max_user_namespaces = 0 the user namespace fails with its fix, exit 77",
          .enabled(if: Prerequisites.userNamespacesWork))
    func userNamespacesBlocked() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let script = "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; exec \"$0\" check --json"
        let (t, out, err) = try Self.runInUserNamespace(run, script: script)
        if t == .exited(99) {
            print("CheckTests: SKIPPING the blocked-userns case: cannot lower user.max_user_namespaces inside a user namespace here: \(err)")
            return
        }
        #expect(t == .exited(77), "check ended with \(t):\n\(out)\n\(err)")
        let lines = try Self.parse(out)
        let userns = try Self.line(lines, "userns")
        #expect(userns.verdict == "fail")
        #expect(userns.detail.contains("ENOSPC") && userns.detail.contains("user.max_user_namespaces = 0"), "\(userns.detail)")
        #expect(userns.fix?.contains("sysctl -w user.max_user_namespaces=") == true, "\(userns.fix ?? "no fix")")
        #expect(try Self.line(lines, "set_tid").verdict == "fail")
    }

    @Test("with user.max_pid_namespaces = 0 only the PID namespace fails, exit 77",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pidNamespacesBlocked() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let script = "echo 0 > /proc/sys/user/max_pid_namespaces || exit 99; exec \"$0\" check"
        let (t, out, err) = try Self.runInUserNamespace(run, script: script)
        if t == .exited(99) {
            print("CheckTests: SKIPPING the blocked-pidns case: cannot lower user.max_pid_namespaces inside a user namespace here: \(err)")
            return
        }
        #expect(t == .exited(77), "check ended with \(t):\n\(out)\n\(err)")
        #expect(out.contains("pass  user namespace"), "\(out)")
        #expect(out.contains("fail  PID namespace"), "\(out)")
        #expect(out.contains("fix: sudo sysctl -w user.max_pid_namespaces="), "\(out)")
        #expect(out.contains("A restore cannot work here"), "\(out)")
    }
}
