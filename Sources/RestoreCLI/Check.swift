import ArgumentParser
import Glibc
import RestoreCheck
import RestoreEngine
import RestoreModel

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Tell whether this machine lets you restore process trees, and how to fix what is missing.",
        discussion: """
        Tries each step of a restore in throwaway child processes, as you, rather than trusting \
        sysctls: an unprivileged user namespace (and which of kernel.unprivileged_userns_clone, \
        user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns is in the way), \
        the uid and gid maps, a PID namespace with a fresh /proc, clone3 with set_tid (PID 4242, \
        and 40000, above the default pid_max), how many nested PID namespaces remain, process \
        limits, newuidmap/newgidmap with their /etc/subuid and /etc/subgid ranges (tried for real), \
        and seccomp user notification (libseccomp API level, kernel actions_avail).

        Each line says pass, warn or fail; warn and fail lines give the command that fixes them. \
        Nothing is left running afterwards. Run it as the user who will restore.

        Exit codes:
          0   a basic restore works (user + PID namespace, maps, /proc, set_tid)
          77  it does not (the fail lines say why)
        """)

    @Flag(name: .long, help: "Print a JSON array of {id, title, verdict, essential, detail, fix} instead of text.")
    var json = false

    func run() throws {
        let items = EnvironmentCheck.run()
        if json {
            writeAll(1, CheckOutput.json(items))
        } else {
            let who = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
            writeAll(1, "rootless-restore \(RootlessRestore.version) check, as \(who):\n\n" + CheckOutput.text(items))
        }
        let code = EnvironmentFacts.exitCode(items)
        if code != 0 { throw ExitCode(code) }
    }
}
