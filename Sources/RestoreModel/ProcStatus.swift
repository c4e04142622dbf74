/// The fields of /proc/PID/status the runtime uses: the one parser of that format. The engine
/// reads the file (`ProcStatus.read`, in RestoreEngine); parsing is pure and unit-tested.
public struct ProcStatus: Sendable, Equatable {
    /// The PID the file was read for, as the reader's /proc names it.
    public var hostPid: Int32
    /// All columns as the reader's /proc shows them, outermost first.
    public var nspid: [Int32]
    public var nspgid: [Int32]
    public var nssid: [Int32]
    public var hostPPid: Int32
    public var tgid: Int32
    /// First letter of `State:` (R, S, D, T, t, Z, X, I).
    public var state: Character
    public var threads: Int
    /// First column (real id) of `Uid:` / `Gid:`, and `Groups:`.
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    public init(hostPid: Int32, nspid: [Int32] = [], nspgid: [Int32] = [], nssid: [Int32] = [],
                hostPPid: Int32 = 0, tgid: Int32 = 0, state: Character = "?", threads: Int = 0,
                uid: UInt32 = 0, gid: UInt32 = 0, groups: [UInt32] = []) {
        self.hostPid = hostPid
        self.nspid = nspid
        self.nspgid = nspgid
        self.nssid = nssid
        self.hostPPid = hostPPid
        self.tgid = tgid
        self.state = state
        self.threads = threads
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// Parses the text of /proc/PID/status (bytes as read, no allocation per line).
    public static func parse<Bytes: Collection>(_ bytes: Bytes, pid: Int32) -> ProcStatus where Bytes.Element == UInt8 {
        parsing(bytes, pid: pid)
    }

    /// The same for the engine's buffers, specialised here: called across modules, the generic
    /// parser ran unspecialised (witness calls per byte), about a fifth of a 10 000-process
    /// restore's coordinator time.
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>, pid: Int32) -> ProcStatus {
        parsing(bytes, pid: pid)
    }

    public static func parse(_ bytes: [UInt8], pid: Int32) -> ProcStatus {
        bytes.withUnsafeBufferPointer { parsing($0, pid: pid) }
    }

    static func parsing<Bytes: Collection>(_ bytes: Bytes, pid: Int32) -> ProcStatus where Bytes.Element == UInt8 {
        var s = ProcStatus(hostPid: pid)
        var i = bytes.startIndex
        while i != bytes.endIndex {
            // Key up to ':'.
            let keyStart = i
            while i != bytes.endIndex, bytes[i] != UInt8(ascii: ":"), bytes[i] != 10 { i = bytes.index(after: i) }
            let key = bytes[keyStart..<i]
            guard i != bytes.endIndex, bytes[i] == UInt8(ascii: ":") else {
                if i != bytes.endIndex { i = bytes.index(after: i) }
                continue
            }
            i = bytes.index(after: i)
            let valueStart = i
            while i != bytes.endIndex, bytes[i] != 10 { i = bytes.index(after: i) }
            let value = bytes[valueStart..<i]
            if i != bytes.endIndex { i = bytes.index(after: i) }
            switch keyCode(key) {
            case .nspid: s.nspid = numbers(value)
            case .nspgid: s.nspgid = numbers(value)
            case .nssid: s.nssid = numbers(value)
            case .ppid: s.hostPPid = numbers(value).first ?? 0
            case .tgid: s.tgid = numbers(value).first ?? 0
            case .threads: s.threads = Int(numbers(value).first ?? 0)
            case .uid: s.uid = UInt32(truncatingIfNeeded: numbers(value, UInt32.self).first ?? 0)
            case .gid: s.gid = UInt32(truncatingIfNeeded: numbers(value, UInt32.self).first ?? 0)
            case .groups: s.groups = numbers(value, UInt32.self)
            case .state:
                if let c = value.first(where: { $0 != 9 && $0 != 32 }) { s.state = Character(Unicode.Scalar(c)) }
            case .other: break
            }
        }
        return s
    }

    /// One field of a status text as its whitespace-separated words ("NSpid" -> ["7", "1"]);
    /// nil when absent. For the fields the struct does not keep (CapEff, Umask, Seccomp, ...).
    public static func field(_ key: String, in text: String) -> [String]? {
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":"), line[..<colon] == key else { continue }
            return line[line.index(after: colon)...]
                .split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        }
        return nil
    }

    public var stateName: String {
        switch state {
        case "Z", "X": return "zombie"
        case "T", "t": return "stopped"
        default: return "running"
        }
    }

    public var isDead: Bool { state == "Z" || state == "X" }

    enum Key { case nspid, nspgid, nssid, ppid, tgid, threads, uid, gid, groups, state, other }

    static func keyCode<K: Collection>(_ key: K) -> Key where K.Element == UInt8 {
        func eq(_ s: StaticString) -> Bool {
            guard key.count == s.utf8CodeUnitCount else { return false }
            var p = s.utf8Start
            for b in key { if b != p.pointee { return false }; p += 1 }
            return true
        }
        switch key.first {
        case UInt8(ascii: "N"): return eq("NSpid") ? .nspid : eq("NSpgid") ? .nspgid : eq("NSsid") ? .nssid : .other
        case UInt8(ascii: "P"): return eq("PPid") ? .ppid : .other
        case UInt8(ascii: "T"): return eq("Tgid") ? .tgid : eq("Threads") ? .threads : .other
        case UInt8(ascii: "U"): return eq("Uid") ? .uid : .other
        case UInt8(ascii: "G"): return eq("Gid") ? .gid : eq("Groups") ? .groups : .other
        case UInt8(ascii: "S"): return eq("State") ? .state : .other
        default: return .other
        }
    }

    static func numbers<V: Collection, N: FixedWidthInteger>(_ value: V, _ type: N.Type = Int32.self) -> [N] where V.Element == UInt8 {
        var out: [N] = []
        var current: N = 0
        var inNumber = false
        var valid = true
        for b in value {
            if b >= 48 && b <= 57 {
                let (m, o1) = current.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(N(b - 48))
                if o1 || o2 { valid = false }
                current = a
                inNumber = true
            } else if b == 32 || b == 9 {
                if inNumber && valid { out.append(current) }
                current = 0; inNumber = false; valid = true
            } else {
                valid = false
            }
        }
        if inNumber && valid { out.append(current) }
        return out
    }
}
