/// Whether a pinned fork became what the recording says the process at that PID was.
///
/// The fork supervisor gives a payload's forks their recorded PIDs in fork order; when the
/// payload forks in another order (a `make -j4` job finished between `record` and the kill,
/// a daemon's startup child is gone), a PID lands on another job. So after pinning, the
/// runtime looks at what the child became and compares it with the entry's `recorded`:
/// - once the child has exec'd (its exe or auxiliary vector differs from its forker's at the
///   fork), its exe and argv are compared with `recorded.exe` and `recorded.cmdline` (argv only
///   when the recorded title was not rewritten: a rewritten title is set later, by the program);
///   a match is final at once, a mismatch only at the settle time (a wrapper such as `setsid`
///   or `sh -c 'exec ...'` execs the recorded program next);
/// - a child that has not exec'd after `settleNanoseconds` is compared as a fork: it must have
///   been recorded `forkedNotExeced`, with the same exe and the same argv or title (PostgreSQL's
///   "postgres: checkpointer "), else it is a mismatch;
/// - a fork that never execs but rewrites its title is matched as soon as its title and exe
///   are the recorded ones (nginx's workers, PostgreSQL's roles), without the settle time;
/// - a child that ended and was reaped before it showed what it became was not the recorded
///   process (that one was alive when recorded): PostgreSQL's startup process, a backend
///   forked for a connection during startup. Its PID is owed again (PinLedger), so the
///   forker's next fork gets it;
/// - a child that ended but stays a zombie until the settle time is reported unchecked.
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

    /// Whether the child is still there: alive, a zombie (exited, not reaped: its PID is still
    /// taken), or gone (reaped: its PID is free).
    public enum Liveness: Sendable, Equatable { case alive, zombie, gone }

    /// What the supervisor does with a pinned fork it watches.
    public enum Decision: Sendable, Equatable {
        /// Not decided yet: look again.
        case wait
        case decided(Verdict)
        /// It was reaped before it showed what it became: its PID is owed again.
        case ended
    }

    /// The rule above, for one look at the child (`seen` is meaningless unless `.alive`).
    public static func decide(_ recorded: RecordedIdentity?, _ seen: Observation, liveness: Liveness, pastDeadline: Bool) -> Decision {
        switch liveness {
        case .gone:
            return .ended
        case .zombie:
            return pastDeadline ? .decided(.unchecked("it ended before it could be checked (a zombie its parent has not reaped)")) : .wait
        case .alive:
            break
        }
        // An empty argv right after the exe changed is an exec still in progress (the kernel
        // sets the new argument area after switching the program): look again.
        // Another program than recorded may still exec the recorded one (`setsid prog`,
        // `sh -c 'exec prog'`, `env`, `nice`): a mismatch is final only at the deadline.
        if seen.execd && !seen.cmdline.isEmpty {
            let verdict = compare(recorded, seen)
            return verdict == .matched || pastDeadline ? .decided(verdict) : .wait
        }
        if !seen.execd, let r = recorded, r.forkedNotExeced, r.titleRewritten, compare(r, seen) == .matched {
            return .decided(.matched)
        }
        return pastDeadline ? .decided(compare(recorded, seen)) : .wait
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
        // A title is compared without the NUL padding after it (record drops it; /proc shows
        // the rest of the argument area as empty strings).
        let got = recorded.titleRewritten ? unpadded(seen.cmdline) : seen.cmdline
        if !seen.execd || !recorded.titleRewritten, let want = recorded.cmdline,
           (recorded.titleRewritten ? unpadded(want) : want) != got {
            differences.append("its argv is \(quoted(got)), the recording's \(quoted(want))")
        }
        return differences.isEmpty ? .matched : .mismatch(differences.joined(separator: "; "))
    }

    /// A title without the empty strings of padding that follow it.
    public static func unpadded(_ argv: [String]) -> [String] {
        var out = argv
        while out.count > 1, out.last?.isEmpty == true { out.removeLast() }
        return out
    }

    static func strippedDeleted(_ path: String) -> String {
        path.hasSuffix(" (deleted)") ? String(path.dropLast(10)) : path
    }

    public static func quoted(_ argv: [String]) -> String {
        let text = argv.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
        return text.count > 160 ? String(text.prefix(160)) + "…" : text
    }
}
