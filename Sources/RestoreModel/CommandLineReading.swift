/// What /proc/PID/cmdline and /proc/PID/environ say, and whether they still are the argv and
/// environment the process was started with. Programs that set a process title (nginx,
/// PostgreSQL, sshd, php-fpm, zygotes) overwrite the area where the kernel put argv and environ
/// at exec; /proc then shows the title, padding and leftovers, not an argv.
public struct CommandLineReading: Sendable, Equatable {
    /// The NUL-separated strings of cmdline (the terminating NUL dropped).
    public var args: [String]
    /// The KEY=VALUE entries of environ; nil when the area is overwritten or unreadable.
    public var env: [String]?
    /// The argument area no longer holds the argv of the exec; `titleReason` says why.
    public var titleRewritten: Bool
    public var titleReason: String?
    /// The environment area no longer holds the environment of the exec.
    public var envRewritten: Bool

    /// The bounds of the argument and environment areas: /proc/PID/stat fields 48...51
    /// (arg_start, arg_end, env_start, env_end); all 0 when the reader may not see them.
    public struct Areas: Sendable, Equatable {
        public var argStart: UInt64, argEnd: UInt64, envStart: UInt64, envEnd: UInt64
        public init(argStart: UInt64, argEnd: UInt64, envStart: UInt64, envEnd: UInt64) {
            self.argStart = argStart
            self.argEnd = argEnd
            self.envStart = envStart
            self.envEnd = envEnd
        }
        var known: Bool { argStart != 0 || argEnd != 0 }
    }

    /// - Parameters:
    ///   - argv0IsProgram: args[0], looked up as execvp would (PATH, cwd), is the file
    ///     /proc/PID/exe names. A title is not a file name.
    public static func read(cmdline: [UInt8], environ: [UInt8]?, areas: Areas?, argv0IsProgram: Bool) -> CommandLineReading {
        var parts = cmdline.isEmpty ? [] : split(cmdline)
        let terminated = cmdline.last == 0
        if terminated { parts.removeLast() }
        // Empty strings at the end: legitimate empty arguments, or a title's NUL padding.
        var trimmed = parts
        var trailingEmpty = 0
        while let last = trimmed.last, last.isEmpty, trimmed.count > 1 { trimmed.removeLast(); trailingEmpty += 1 }

        var env: [String]?
        var envRewritten = false
        if let environ {
            var entries = environ.isEmpty ? [] : split(environ)
            if environ.last == 0 { entries.removeLast() }
            // Every entry an exec leaves is a non-empty string; KEY=VALUE by convention, and
            // this runtime writes nothing else. Empty strings are padding of an overwritten area.
            envRewritten = entries.contains { $0.isEmpty || !isKeyValue($0) }
            env = envRewritten ? nil : entries
        }

        var reason: String?
        if !cmdline.isEmpty && !terminated {
            reason = "its command line does not end in a NUL byte, so the kernel shows it as a process title"
        } else if let a = areas, a.known, a.envStart != a.argEnd {
            reason = "its argument area was moved (prctl PR_SET_MM): it no longer adjoins the environment as after an exec"
        } else if !argv0IsProgram, let first = parts.first,
                  first.contains(": ") || first.contains(" ") || trailingEmpty > 0 || envRewritten {
            reason = "argv[0] \(JSONValue.quoted(first, limit: 60)) names no program and "
                + (trailingEmpty > 0 ? "is followed by \(trailingEmpty) empty strings of padding"
                   : envRewritten ? "the environment area holds strings that are not KEY=VALUE"
                   : "reads like a title")
        }
        if reason != nil { parts = trimmed }
        return CommandLineReading(args: parts, env: env, titleRewritten: reason != nil, titleReason: reason,
                                  envRewritten: envRewritten)
    }

    /// The directory to restart a recorded program in, when it is not its cwd now. A program
    /// may change directory after it starts (PostgreSQL into its data directory, daemons to
    /// /), and relative paths in its argv (`postgres -D data`) resolve only from where it was
    /// started, which the shell that started it left in PWD. Returns PWD and the argument
    /// when an argument (or the value after `=` in one) is a relative path that exists from
    /// PWD but not from the cwd; nil otherwise (PWD can be stale: only evidence moves it).
    public static func launchDirectory(cwd: String, env: [String], args: [String],
                                       exists: (String) -> Bool) -> (dir: String, argument: String)? {
        guard let pwd = env.last(where: { $0.hasPrefix("PWD=") }).map({ String($0.dropFirst(4)) }),
              pwd.hasPrefix("/"), pwd != cwd else { return nil }
        func under(_ dir: String, _ path: String) -> String { dir.hasSuffix("/") ? dir + path : dir + "/" + path }
        for a in args.dropFirst() {
            let value = a.firstIndex(of: "=").map { String(a[a.index(after: $0)...]) }
            for c in [a] + (value.map { [$0] } ?? []) where !c.isEmpty && !c.hasPrefix("/") && !c.hasPrefix("-") {
                if exists(under(pwd, c)) && !exists(under(cwd, c)) { return (pwd, c) }
            }
        }
        return nil
    }

    public static func isKeyValue(_ s: String) -> Bool {
        guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { return false }
        return true
    }

    static func split(_ bytes: [UInt8]) -> [String] {
        bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }
}
