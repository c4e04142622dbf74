import CRestoreShim
import Glibc

/// The command line as main() received it. Swift's `CommandLine.arguments` reads
/// /proc/self/cmdline on Linux, so in a chroot or container without /proc it is empty, and every
/// command used to print the help and exit 0.
public enum CommandLineArguments {
    public static func current() -> [String] {
        let argc = Int(rr_saved_argc())
        guard argc > 0, let argv = rr_saved_argv() else { return CommandLine.arguments }
        return (0..<argc).map { argv[$0].map { String(cString: $0) } ?? "" }
    }

    /// Whether /proc is mounted where this process can see it.
    public static var procIsMounted: Bool { access("/proc/self/status", F_OK) == 0 }
}
