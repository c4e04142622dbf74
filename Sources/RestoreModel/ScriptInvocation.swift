/// A util-linux `script` command line (2.35+): which files it writes. A recorded `script` is
/// restarted with its argv, so it forks its child on a new pty again; the files it would
/// truncate on the way are kept by recording it with `--append` (record says so).
public struct ScriptInvocation: Sendable, Equatable {
    /// The typescript and log files it opens for writing (-B, -I, -O, -T, --timing=FILE, the
    /// positional file, or ./typescript when none is given).
    public var files: [String] = []
    /// -a / --append: files are appended to, never truncated.
    public var appends = false

    /// Options that take a value (short letter, long name); `-t`/`--timing` takes one only attached.
    static let withValue: [Character: String] = ["B": "log-io", "c": "command", "E": "echo", "I": "log-in",
                                                 "O": "log-out", "o": "output-limit", "m": "logging-format", "T": "log-timing"]
    static let fileOptions: Set<String> = ["log-io", "log-in", "log-out", "log-timing"]

    /// nil when the command line is not one script accepts (an unknown option).
    public static func parse(_ argv: [String]) -> ScriptInvocation? {
        var r = ScriptInvocation()
        var positional: [String] = []
        var outputGiven = false, inputGiven = false
        var i = 1
        func take(_ long: String, _ value: String) {
            if fileOptions.contains(long) { r.files.append(value) }
            if long == "log-out" || long == "log-io" { outputGiven = true }
            if long == "log-in" { inputGiven = true }
            if long == "timing" { r.files.append(value) }
        }
        while i < argv.count {
            let a = argv[i]
            i += 1
            if a == "--" { positional += argv[i...]; break }
            if a.hasPrefix("--") {
                let body = a.dropFirst(2)
                let name = String(body.split(separator: "=", maxSplits: 1).first ?? "")
                let attached = body.contains("=") ? String(body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[1]) : nil
                switch name {
                case "append": r.appends = true
                case "return", "flush", "force", "quiet", "help", "version": break
                case "timing": if let attached { take("timing", attached) }
                default:
                    guard withValue.values.contains(name) else { return nil }
                    if let attached { take(name, attached) } else {
                        guard i < argv.count else { return nil }
                        take(name, argv[i]); i += 1
                    }
                }
                continue
            }
            if a.hasPrefix("-") && a.count > 1 {
                var letters = Array(a.dropFirst())
                while !letters.isEmpty {
                    let c = letters.removeFirst()
                    if c == "a" { r.appends = true; continue }
                    if "efqhVw".contains(c) { continue }
                    if c == "t" { if !letters.isEmpty { take("timing", String(letters)) }; break }
                    guard let long = withValue[c] else { return nil }
                    if !letters.isEmpty { take(long, String(letters)) } else {
                        guard i < argv.count else { return nil }
                        take(long, argv[i]); i += 1
                    }
                    break
                }
                continue
            }
            positional.append(a)
        }
        if let file = positional.first { r.files.append(file); outputGiven = true }
        // Without a file, -O or -B (or -I), script writes ./typescript.
        if positional.isEmpty && !outputGiven && !inputGiven { r.files.append("typescript") }
        return r
    }

    /// Files that a restart would truncate: all but /dev/null, unless it appends.
    public var clobbered: [String] { appends ? [] : files.filter { $0 != "/dev/null" } }

    /// The same command line with `-a` (append) right after the program.
    public static func appending(_ argv: [String]) -> [String] {
        guard let first = argv.first else { return argv }
        return [first, "-a"] + argv.dropFirst()
    }
}
