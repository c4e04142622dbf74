import ArgumentParser
import Glibc
import RestoreEngine
import RestoreModel

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write tree.json for a live process and all its descendants.",
        discussion: """
        Records, for every process, its PIDs at every namespace level from the root's own PID \
        namespace down, ppid, pgid, sid, state (zombie exit status included), threads, argv, \
        environment, working directory and credentials. The tree is read until two passes agree, \
        with start times compared to catch PID reuse. Environments hold secrets: the file is \
        written with mode 0600 unless --no-env is given.

        Examples:
          rootless-restore record 4242 -o job.json
          rootless-restore record --freeze --spawn-by-payload $(pgrep -o mpirun) -o mpi.json

        Exit codes: 0 recorded; 66 the tree cannot be read (the message says which process and why).
        """)

    @Argument(help: "PID of the tree's root, as this shell sees it.")
    var pid: Int32

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to FILE instead of stdout.", valueName: "FILE"))
    var output: String?

    @Flag(help: "Leave environments out.")
    var noEnv = false

    @Flag(help: "Stop the tree with SIGSTOP while reading it and resume it after; states are recorded as they were before.")
    var freeze = false

    @Flag(help: "Record what can be read, warn about the rest, instead of refusing.")
    var partial = false

    @Flag(help: "Mark every process but the root \"spawn\": \"payload\": on restore the root's payload forks them again and the fork supervisor gives them their recorded PIDs (for launchers such as mpirun).")
    var spawnByPayload = false

    @Flag(name: .shortAndLong, help: "Print no warnings.")
    var quiet = false

    func run() throws {
        var options = RecordOptions()
        options.includeEnv = !noEnv
        options.freeze = freeze
        options.partial = partial
        options.spawnByPayload = spawnByPayload
        do {
            let (tree, warnings) = try TreeRecorder.record(root: pid, options: options)
            let text = TreeEncoder.encode(tree, comment: "recorded by rootless-restore record \(pid)")
            if let output {
                // A fresh temporary name (O_EXCL: never an old file or a planted link) with the
                // mode set explicitly, since environments hold secrets.
                let tmp = output + ".tmp-\(getpid())"
                let mode: mode_t = noEnv ? 0o644 : 0o600
                let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
                guard fd >= 0 else { throw RestoreError(.input, operation: "open", errno: errno, entry: tmp, message: "cannot write the tree") }
                fchmod(fd, mode)
                writeAll(fd, text)
                close(fd)
                guard rename(tmp, output) == 0 else {
                    unlink(tmp)
                    throw RestoreError(.input, operation: "rename", errno: errno, entry: output, message: "cannot write the tree")
                }
            } else {
                writeAll(1, text)
            }
            if !quiet { for w in warnings { writeStderr("rootless-restore: warning: \(w)\n") } }
        } catch {
            throw fail(error)
        }
    }
}
