// The files `run` writes for its user (--report, --pin-log), attacked as runc's and CRIU's
// suites attack theirs: a second user (nobody) plants symlinks to the test user's own files in
// a shared directory, and a full filesystem cuts the report short. The victim's files must
// never change, a partial report must never appear, and a failed write ends the restore.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RestoreEngine
import RestoreModel
import Testing

@Suite("files run writes: planted symlinks, full filesystems", .serialized)
struct OutputFileTests {
    /// The second, hostile user.
    static let attacker = (name: "nobody", uid: uid_t(65534), gid: gid_t(65534))

    /// A parent whose payload forks one pinned child (so --pin-log is written), then exits 0.
    static let pinnedTree = Data("""
        {"version": 1, "comment": "one payload-spawned child", "processes": [
          {"pid": 100, "ppid": 0, "pgid": 100, "sid": 100,
           "process": {"args": ["/bin/sh", "-c", "/bin/sleep 0.2 & wait"], "env": ["PATH=/usr/bin:/bin"]}},
          {"pid": 150, "ppid": 100, "pgid": 100, "sid": 100, "spawn": "payload"}
        ]}
        """.utf8)

    /// Runs `ln -s target link` as the second user.
    static func plantSymlink(_ target: String, at link: String) throws {
        let setpriv = try #require(Paths.tool("setpriv"), "setpriv (util-linux) is missing")
        let argv = [setpriv, "--reuid=\(attacker.uid)", "--regid=\(attacker.gid)", "--clear-groups", "--",
                    "/bin/ln", "-s", target, link]
        let pid = try spawn(argv, env: Identity.cleanEnvironment, cwd: nil, stdout: "/dev/null", stderr: "/dev/null")
        #expect(try waitForExit(pid, timeout: 10) == .exited(0), "nobody could not plant \(link)")
        var st = stat()
        #expect(lstat(link, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK && st.st_uid == attacker.uid)
    }

    /// A file of the victim (the test user) that the attack aims at.
    static func victimFile(_ run: RestoreRun, _ name: String) throws -> String {
        let path = try run.write(name, Data("precious \(name)\n".utf8), mode: 0o644)
        if run.user.dropsPrivileges { chown(path, run.user.uid, run.user.gid) }
        return path
    }

    static func shared(_ run: RestoreRun, sticky: Bool) -> String {
        let dir = run.directory + (sticky ? "/sticky" : "/open")
        mkdir(dir, 0o777)
        chmod(dir, sticky ? 0o1777 : 0o777)
        return dir
    }

    @Test("a symlink planted by another user in a shared directory is never followed",
          .enabled(if: Prerequisites.userNamespacesWork && getuid() == 0))
    func plantedSymlinks() throws {
        // Sticky (like /tmp): the other user's entry may not be replaced: run fails, 125,
        // before or after the tree exists, and the victim's file is intact.
        for option in ["--report", "--pin-log"] {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let victim = try Self.victimFile(run, "precious")
            let dir = Self.shared(run, sticky: true)
            try Self.plantSymlink(victim, at: dir + "/out")
            let tree = try run.write("tree.json", Self.pinnedTree)
            try run.start(["run", option, dir + "/out", tree])
            let end = try run.waitForExit(timeout: 60)
            #expect(end == .exited(125), "\(option): stderr: \(run.stderr)")
            #expect(run.stderr.contains("cannot write the \(option == "--report" ? "report" : "pin log")"), "\(option): \(run.stderr)")
            #expect(readText(victim) == "precious precious\n", "\(option) followed nobody's symlink into the victim's file")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            #expect(left == ["out"], "\(option): temporary files left behind: \(left)")
            run.tearDown()
        }
        // Not sticky: the symlinks are replaced by the user's own new files; the victims stay.
        do {
            let run = try RestoreRun()
            defer { run.tearDown() }
            let victimReport = try Self.victimFile(run, "precious-report")
            let victimLog = try Self.victimFile(run, "precious-log")
            let dir = Self.shared(run, sticky: false)
            try Self.plantSymlink(victimReport, at: dir + "/report.json")
            try Self.plantSymlink(victimLog, at: dir + "/pins.log")
            let tree = try run.write("tree.json", Self.pinnedTree)
            try run.start(["run", "--report", dir + "/report.json", "--pin-log", dir + "/pins.log", tree])
            let end = try run.waitForExit(timeout: 60)
            #expect(end == .exited(0), "stderr: \(run.stderr)")
            #expect(readText(victimReport) == "precious precious-report\n", "--report wrote through nobody's symlink")
            #expect(readText(victimLog) == "precious precious-log\n", "--pin-log wrote through nobody's symlink")
            for name in ["report.json", "pins.log"] {
                var st = stat()
                #expect(lstat(dir + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_uid == run.user.uid,
                        "\(name) should now be the test user's own regular file")
            }
            #expect(readText(dir + "/report.json").contains("\"processes\""))
            #expect(readText(dir + "/pins.log").contains("\"expected\": 150"), "pin log: \(readText(dir + "/pins.log"))")
            run.tearDown()
        }
    }

    @Test("a target whose directory is a file is refused as ENOTDIR, whatever errno held before")
    func notADirectoryNamesItsOwnErrno() throws {
        // stat succeeds on a regular file, so errno is not set: a stale value must not be reported.
        errno = ENOENT
        do {
            try OutputFile.checkWritable("/etc/hostname/report.json", what: "the report")
            Issue.record("a path below a regular file was accepted")
        } catch let e as RestoreError {
            #expect(e.errno == ENOTDIR, "\(e)")
            #expect("\(e)".contains("ENOTDIR"), "\(e)")
        }
    }

    @Test("a report that does not fit on the filesystem: no partial report, the restore is torn down, 125",
          .enabled(if: Prerequisites.userNamespacesWork && getuid() == 0))
    func fullFilesystem() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let dir = run.directory + "/full"
        mkdir(dir, 0o755)
        // One page: a report of 300 processes (about 60 KB) cannot fit.
        guard mount("tmpfs", dir, "tmpfs", 0, "size=4k,mode=0777") == 0 else {
            Issue.record("mount tmpfs: \(String(cString: strerror(errno)))")
            return
        }
        defer { umount2(dir, Int32(MNT_DETACH)) }
        let tree = TestTree.flat(top: 100, children: Array(Int32(101)...399), comment: "300 holders")
        try run.start(["run", "--report", dir + "/report.json", try run.write("tree.json", tree.json())])
        let end = try run.waitForExit(timeout: 60)
        #expect(end == .exited(125), "stderr: \(run.stderr)")
        #expect(run.stderr.contains("cannot write the report") && run.stderr.contains("ENOSPC"), "stderr: \(run.stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? ["?"]
        #expect(left.isEmpty, "a partial report or a temporary file was left: \(left)")
        run.tearDown()
    }
}
