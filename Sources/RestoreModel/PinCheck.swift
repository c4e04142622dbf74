/// Whether a pinned fork became what the recording says the process at that PID was.
///
/// The fork supervisor gives a payload's forks their recorded PIDs in fork order; when the
/// payload forks in another order (a `make -j4` job finished between `record` and the kill,
/// a daemon's startup child is gone), a PID lands on another job. So after pinning, the
/// runtime looks at what the child became and compares it with the entry's `recorded`:
/// - once the child has exec'd (its exe or auxiliary vector differs from its forker's at the
///   fork), its exe and argv are compared with `recorded.exe` and `recorded.cmdline` (argv only
///   when the recorded title was not rewritten: a rewritten title is set later, by the program);
/// - a child that has not exec'd after `settleNanoseconds` is compared as a fork: it must have
///   been recorded `forkedNotExeced`, with the same exe and the same argv or title (PostgreSQL's
///   "postgres: checkpointer "), else it is a mismatch;
/// - a child that ended before it could be checked is reported unchecked, not matched.
/// An entry without `recorded` (hand-written trees) is never checked.
public enum PinCheck {
    /// How long a pinned fork that has not exec'd is given before it is judged as a fork.
    public static let settleNanoseconds: UInt64 = 2_000_000_000

    public enum Verdict: Sendable, Equatable {
        case matched
        case mismatch(String)
        /// Nothing to compare with, or the child was gone before it could be seen.
        case unchecked(String)

        public var matched: Bool? {
            switch self {
            case .matched: return true
            case .mismatch: return false
            case .unchecked: return nil
            }
        }
    }

    /// What the child looked like: exe (readlink of /proc/PID/exe, " (deleted)" removed),
    /// argv (/proc/PID/cmdline), and whether it has exec'd since its fork.
    public struct Observation: Sendable, Equatable {
        public var exe: String?
        public var cmdline: [String]
        public var execd: Bool

        public init(exe: String?, cmdline: [String], execd: Bool) {
            self.exe = exe
            self.cmdline = cmdline
            self.execd = execd
        }
    }

    /// Has the child exec'd? A fork shares its forker's program and auxiliary vector
    /// (/proc/PID/auxv, with AT_RANDOM's address: exec gives a new one); its argv says nothing,
    /// since a process may rewrite its title without exec'ing.
    public static func hasExeced(exe: String?, auxv: [UInt8], forkerExe: String?, forkerAuxv: [UInt8]) -> Bool {
        exe != forkerExe || auxv != forkerAuxv
    }

    public static func compare(_ recorded: RecordedIdentity?, _ seen: Observation) -> Verdict {
        guard let recorded, recorded.exe != nil || recorded.cmdline != nil else {
            return .unchecked("the tree records no identity for it")
        }
        var differences: [String] = []
        if !seen.execd && !recorded.forkedNotExeced {
            differences.append("it has not exec'd, but the recording saw it run a program of its own")
        }
        if seen.execd && recorded.forkedNotExeced {
            differences.append("it exec'd, but the recording saw a fork that had not")
        }
        if let want = recorded.exe.map(strippedDeleted), let got = seen.exe.map(strippedDeleted), want != got {
            differences.append("it runs \(got), the recording \(want)")
        }
        // An exec'd program is compared by argv unless it rewrites its title (it may not have
        // yet); a fork that never exec'd is compared by title, set by then.
        if !seen.execd || !recorded.titleRewritten, let want = recorded.cmdline, want != seen.cmdline {
            differences.append("its argv is \(quoted(seen.cmdline)), the recording's \(quoted(want))")
        }
        return differences.isEmpty ? .matched : .mismatch(differences.joined(separator: "; "))
    }

    static func strippedDeleted(_ path: String) -> String {
        path.hasSuffix(" (deleted)") ? String(path.dropLast(10)) : path
    }

    static func quoted(_ argv: [String]) -> String {
        let text = argv.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
        return text.count > 160 ? String(text.prefix(160)) + "…" : text
    }
}
