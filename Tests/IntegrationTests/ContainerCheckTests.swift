// What a container or chroot lacks, simulated without Podman, as the unprivileged test user:
// no /proc (a tmpfs covers it), a masked /proc (/dev/null bound over a /proc file, as Podman's
// default masks do), no CAP_SETFCAP (the bounding set of a user namespace's root without it),
// and a seccomp profile that hides clone3 (a restored process whose profile answers ENOSYS, as
// Docker's default does). `check` must name each with the exact option that fixes it, and a
// missing /proc must be an error for every command, not the help and exit 0.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("check in containers: what is missing, with the podman option", .serialized)
struct ContainerCheckTests {
    /// Runs `sh -c script` as the test user inside `unshare -Urm` (root of a new user and mount
    /// namespace), with BIN set to the runtime; returns its end and output.
    static func insideUserNamespace(_ run: RestoreRun, _ script: String, tag: String) throws -> (Termination, String, String) {
        let unshare = try #require(Paths.tool("unshare"), "unshare (util-linux) is missing")
        let out = run.directory + "/\(tag).out", err = run.directory + "/\(tag).err"
        let argv = try Identity.prefix(for: run.user) + [unshare, "-Urm", "/bin/sh", "-c", "export BIN=\(run.binary); " + script]
        let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: run.directory, stdout: out, stderr: err)
        let end = try waitForExit(pid, timeout: 120)
        return (end, readText(out), readText(err))
    }

    static func line(_ json: String, _ id: String) throws -> CheckTests.Line {
        let lines = try CheckTests.parse(json)
        return try #require(lines.first { $0.id == id }, "check --json has no \(id) line:\n\(json)")
    }

    @Test("no /proc: every command says so and exits 77", .enabled(if: Prerequisites.userNamespacesWork))
    func missingProc() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let tree = try run.write("tree.json", TestTree.flat(top: 100, children: [101], comment: "two").json())
        for command in ["run \(tree)", "validate \(tree)", "check", "record 1", "diff \(tree) \(tree)"] {
            let (end, out, err) = try Self.insideUserNamespace(run, "mount -t tmpfs none /proc && exec $BIN \(command)",
                                                               tag: "noproc")
            #expect(end == .exited(77), "\(command): \(end); stdout: \(out); stderr: \(err)")
            #expect(err.contains("/proc is not mounted") && !out.contains("USAGE"), "\(command): stderr: \(err); stdout: \(out)")
        }
        run.tearDown()
    }

    @Test("a masked /proc: the fix is --security-opt unmask=/proc/*", .enabled(if: Prerequisites.userNamespacesWork))
    func maskedProc() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // Podman masks /proc/kcore, /proc/keys, /proc/timer_list, ... with /dev/null: cover the
        // first of them this kernel has.
        let masked = "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $f ] && break; done; "
            + "mount --bind /dev/null $f && exec $BIN check --json"
        let (end, out, err) = try Self.insideUserNamespace(run, masked, tag: "masked")
        #expect(end == .exited(77), "stderr: \(err)")
        let proc = try Self.line(out, "proc")
        #expect(proc.verdict == "fail" && proc.fix?.contains("--security-opt unmask=/proc/*") == true, "\(proc)")
        run.tearDown()
    }

    @Test("no CAP_SETFCAP for uid 0: named with --cap-add=SETFCAP, not AppArmor", .enabled(if: Prerequisites.userNamespacesWork))
    func noSetfcap() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let setpriv = try #require(Paths.tool("setpriv"), "setpriv (util-linux) is missing")
        let (end, out, err) = try Self.insideUserNamespace(run, "exec \(setpriv) --bounding-set=-setfcap -- $BIN check --json",
                                                           tag: "setfcap")
        #expect(end == .exited(77), "stderr: \(err)")
        let map = try Self.line(out, "uid_map")
        #expect(map.verdict == "fail" && map.detail.contains("CAP_SETFCAP") && map.fix?.contains("--cap-add=SETFCAP") == true, "\(map)")
        #expect(!map.detail.contains("AppArmor") && map.fix?.contains("apparmor") != true, "\(map)")
        run.tearDown()
    }

    @Test("clone3 hidden by a seccomp profile (ENOSYS): named as such, with seccomp=unconfined",
          .enabled(if: Prerequisites.userNamespacesWork))
    func clone3Hidden() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        // The runtime restores one process whose profile answers clone3 with ENOSYS (38) and
        // execs `check --json` under it, like a container started with Docker's profile.
        let tree = Data("""
            {"version": 1, "processes": [{"pid": 100, "ppid": 0, "pgid": 100, "sid": 100, "process": {
              "args": ["\(run.binary)", "check", "--json"], "env": ["PATH=/usr/bin:/bin"],
              "seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}}}]}
            """.utf8)
        try run.startRun(treeFile: try run.write("tree.json", tree))
        let end = try run.waitForExit(timeout: 120)
        #expect(end == .exited(77), "stderr: \(run.stderr)")
        let userns = try Self.line(run.stdout, "userns")
        #expect(userns.verdict == "fail" && userns.detail.contains("a seccomp profile hides clone3")
                && userns.fix?.contains("--security-opt seccomp=unconfined") == true, "\(userns)")
        run.tearDown()
    }

    @Test("pid_max is the container's own PID namespace's, not the host's", .enabled(if: Prerequisites.userNamespacesWork))
    func containerPidMax() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let unshare = try #require(Paths.tool("unshare"))
        // A container's PID namespace with its own pid_max (Linux 6.14+; before, one global value).
        let (end, out, err) = try Self.insideUserNamespace(run,
            "exec \(unshare) -pf --mount-proc /bin/sh -c 'echo 54321 > /proc/sys/kernel/pid_max || exit 3; exec $BIN check --json'",
            tag: "pidmax")
        if end == .exited(3) {
            print("containerPidMax: SKIPPED: pid_max is not per PID namespace on this kernel (Linux 6.14+): \(err)")
            return
        }
        #expect(end == .exited(0), "stderr: \(err)")
        let pidMax = try Self.line(out, "pid_max")
        #expect(pidMax.detail.contains("this PID namespace's: 54321"), "\(pidMax)")
        let capacity = try Self.line(out, "capacity")
        #expect(capacity.detail.contains("pid_max of this PID namespace = 54321"), "\(capacity)")
        run.tearDown()
    }

    /// Runs ARGV as the test user from the scratch directory.
    static func asTestUser(_ run: RestoreRun, _ argv: [String], tag: String) throws -> (Termination, String, String) {
        let out = run.directory + "/\(tag).out", err = run.directory + "/\(tag).err"
        let pid = try spawn(try Identity.prefix(for: run.user) + argv, env: Identity.cleanEnvironment, cwd: run.directory,
                            stdout: out, stderr: err)
        return (try waitForExit(pid, timeout: 120), readText(out), readText(err))
    }

    @Test("under no_new_privs, a range map names no_new_privs as what stops newuidmap",
          .enabled(if: Prerequisites.userNamespacesWork))
    func noNewPrivsStopsNewuidmap() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let setpriv = try #require(Paths.tool("setpriv"))
        let tree = try run.write("tree.json", TestTree.flat(top: 100, children: [101], comment: "two").json())
        let (end, _, err) = try Self.asTestUser(run, [setpriv, "--no-new-privs", run.binary, "run", "--map-users", "auto", tree], tag: "nnp")
        #expect(end == .exited(77), "stderr: \(err)")
        #expect(err.contains("no_new_privs"), "stderr: \(err)")
        run.tearDown()
    }

    @Test("33 nested user namespaces: check names the nesting, and no fix lowers the limit",
          .enabled(if: Prerequisites.userNamespacesWork))
    func nestedUserNamespaces() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let unshare = try #require(Paths.tool("unshare"))
        // 33 levels of unshare -U below the test user's (the most the kernel allows: it refuses a
        // user namespace whose parent is deeper than 32); check's probe then asks for one more.
        let nest = try run.write("nest.sh", Data("""
            #!/bin/sh
            n=$1; shift
            if [ "$n" -gt 0 ]; then exec \(unshare) -U -r "$0" $((n - 1)) "$@"; fi
            exec "$@"

            """.utf8), mode: 0o755)
        let (end, out, err) = try Self.asTestUser(run, [nest, "33", run.binary, "check", "--json"], tag: "nested")
        #expect(end == .exited(77), "stderr: \(err)")
        let userns = try Self.line(out, "userns")
        #expect(userns.verdict == "fail" && userns.detail.contains("nested 33 deep"), "\(userns)")
        let current = Int(readText("/proc/sys/user/max_user_namespaces").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let fix = userns.fix ?? ""
        for number in fix.split(whereSeparator: { !$0.isNumber }).compactMap({ Int($0) }) where fix.contains("max_user_namespaces=\(number)") {
            #expect(number >= current, "the fix lowers user.max_user_namespaces (\(current)): \(fix)")
        }
        run.tearDown()
    }
}
