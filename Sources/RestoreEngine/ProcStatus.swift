import Glibc

/// The fields of /proc/PID/status that describe a process's place in the tree.
public struct ProcStatus: Sendable, Equatable {
    public var hostPid: Int32
    /// All columns as the reader's /proc shows them, outermost first.
    public var nspid: [Int32]
    public var nspgid: [Int32]
    public var nssid: [Int32]
    public var hostPPid: Int32
    /// First letter of `State:` (R, S, D, T, t, Z, X, I).
    public var state: Character
    public var threads: Int

    /// Reads /proc/PID/status; nil when the process is gone.
    public static func read(_ pid: Int32, procRoot: String = "/proc") -> ProcStatus? {
        guard let text = SystemCalls.readText("\(procRoot)/\(pid)/status") else { return nil }
        var s = ProcStatus(hostPid: pid, nspid: [], nspgid: [], nssid: [], hostPPid: 0, state: "?", threads: 0)
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let value = line[line.index(after: colon)...]
            func numbers() -> [Int32] { value.split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { Int32($0) } }
            switch key {
            case "NSpid": s.nspid = numbers()
            case "NSpgid": s.nspgid = numbers()
            case "NSsid": s.nssid = numbers()
            case "PPid": s.hostPPid = numbers().first ?? 0
            case "Threads": s.threads = Int(numbers().first ?? 0)
            case "State": s.state = value.first(where: { $0 != "\t" && $0 != " " }) ?? "?"
            default: break
            }
        }
        return s
    }

    /// Number of PID-namespace levels above and including the reader's own.
    public static func ownLevelCount() -> Int {
        read(Int32(getpid()))?.nspid.count ?? 1
    }

    public var stateName: String {
        switch state {
        case "Z", "X": return "zombie"
        case "T", "t": return "stopped"
        default: return "running"
        }
    }
}
