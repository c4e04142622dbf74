// `run` as a launcher uses it (an MPI launch agent, srun, ssh): the tree's file named by %h,
// the root's arguments replaced by the ones given now, and chosen environment variables taken
// from the caller. The restored root must be at its recorded PID and see the new arguments and
// environment; a tree the options do not fit is refused before anything is created.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("run options for launchers", .serialized)
struct LaunchOptionsTests {
    static var hostShortName: String {
        var u = utsname()
        uname(&u)
        let name = withUnsafeBytes(of: &u.nodename) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return String(name.split(separator: ".").first ?? Substring(name))
    }

    @Test("--root-args and --env-from-caller: new argv[1...] and SLURM_*/OMPI_* from the caller, recorded PIDs",
          .enabled(if: Prerequisites.userNamespacesWork))
    func rootArgumentsAndCallerEnvironment() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let out = run.directory + "/seen"
        // The recorded root would print the old job; its child holds.
        let tree = TestTree(comment: "a daemon and a holding child", processes: [
            TreeProcess(pid: 4100, ppid: 0, pgid: 4100, sid: 4100,
                        args: ["/bin/sh", "-c", "echo recorded > \(out)"],
                        env: ["PATH=/usr/bin:/bin", "SLURM_JOB_ID=111", "SLURM_NODEID=1", "OMPI_MCA_old=1", "KEEP=kept"]),
            TreeProcess(pid: 4123, ppid: 4100, pgid: 4100, sid: 4100),
        ])
        try run.write("job-\(Self.hostShortName).json", tree.json())
        let script = "echo \"args=$0,$1 job=$SLURM_JOB_ID node=${SLURM_NODEID-unset} old=${OMPI_MCA_old-unset} new=$OMPI_MCA_new keep=$KEEP\" > \(out); exec sleep 600"
        try run.start(["run", "--report", run.reportPath, "--root-args",
                       "--env-from-caller", "SLURM_", "--env-from-caller", "OMPI_",
                       run.directory + "/job-%h.json", "--", "-c", script, "zero", "one"],
                      extraEnvironment: ["SLURM_JOB_ID=222", "OMPI_MCA_new=2", "KEEP=caller"])
        try run.waitUntilReady()
        let seen = try run.waitForNamespace("the root's output") { _ in
            readText(out).hasSuffix("\n")
        }
        verifyNamespace(seen, matches: tree, user: run.user)
        #expect(readText(out) == "args=zero,one job=222 node=unset old=unset new=2 keep=kept\n", "saw: \(readText(out))")
        run.tearDown()
    }

    @Test("--root-args on a tree with two roots: exit 65 naming both, nothing created",
          .enabled(if: Prerequisites.userNamespacesWork))
    func severalRootsRefused() throws {
        let run = try RestoreRun()
        defer { run.tearDown() }
        let tree = TestTree(comment: "two roots", processes: [
            TreeProcess(pid: 300, ppid: 0, pgid: 300, sid: 300, args: ["/bin/true"]),
            TreeProcess(pid: 310, ppid: 0, pgid: 310, sid: 310, args: ["/bin/true"]),
        ])
        try run.start(["run", "--report", run.reportPath, "--root-args",
                       try run.write("tree.json", tree.json()), "--", "x"])
        let end = try run.waitForExit()
        #expect(end == .exited(65), "stderr: \(run.stderr)")
        #expect(run.stderr.contains("2 roots") && run.stderr.contains(tree.label(ofPid: 300)) && run.stderr.contains(tree.label(ofPid: 310)),
                "stderr: \(run.stderr)")
        #expect(access(run.reportPath, F_OK) != 0)
        #expect(run.mostNamespaceProcessesSeen == 0, "processes were created")
        run.tearDown()
    }
}
