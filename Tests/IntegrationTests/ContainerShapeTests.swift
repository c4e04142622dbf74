// Trees shaped by containers, restored as the test user and checked from /proc.

import Foundation
import Testing

@Suite("container shapes end-to-end", .serialized)
struct ContainerShapeEndToEndTests {
    @Test("a job of a container's PID 1 shell (pgid 1, sid 1, PID 1 not in the tree): the runtime's init leads them",
          .enabled(if: Prerequisites.userNamespacesWork))
    func pidOneSession() throws {
        // podman run IMG bash -c 'mpirun ...' as recorded from mpirun: the shell (PID 1) is
        // not in the tree, the job is in its session and group.
        let tree = TestTree(comment: "job of a container's init shell", processes: [
            TreeProcess(pid: 7, ppid: 1, pgid: 1, sid: 1),
            TreeProcess(pid: 8, ppid: 7, pgid: 1, sid: 1),
            TreeProcess(pid: 9, ppid: 7, pgid: 1, sid: 1),
            TreeProcess(pid: 12, ppid: 7, pgid: 12, sid: 1),
        ])
        let run = try RestoreRun()
        defer { run.tearDown() }
        let seen = try run.restoreAndVerify(tree)
        let initProcess = seen.first { $0.pid == 1 }
        #expect(initProcess?.sid == 1 && initProcess?.pgid == 1, "the runtime's init: \(String(describing: initProcess))")
    }
}
