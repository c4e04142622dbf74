/// The Linux formats that both the restore path and `check` read, parsed once: /etc/subuid
/// lines, security.capability, sysctl integers, /proc/PID/status fields, uid_map, and the
/// kernel release. Pure text and byte parsing; the engine does the reading.

/// The Linux numbers this file needs (generic and x86 errno values agree on these).
public enum LinuxNumbers {
    public static let EPERM: Int32 = 1
    public static let ENOENT: Int32 = 2
    public static let E2BIG: Int32 = 7
    public static let EAGAIN: Int32 = 11
    public static let ENOMEM: Int32 = 12
    public static let EACCES: Int32 = 13
    public static let EBUSY: Int32 = 16
    public static let EEXIST: Int32 = 17
    public static let EINVAL: Int32 = 22
    public static let ENOSPC: Int32 = 28
    public static let ENOSYS: Int32 = 38
    public static let EUSERS: Int32 = 87

    public static let CAP_SETGID = 6
    public static let CAP_SETUID = 7
    public static let CAP_SYS_ADMIN = 21
    public static let CAP_SETFCAP = 31
    /// MAX_PID_NS_LEVEL: the deepest PID namespace has level 32 (the initial one is 0).
    public static let maxPidNamespaceLevel = 32
    public static let defaultPidMax = 32768
    public static let pidMaxLimit = 4_194_304
}

/// One line of /etc/subuid or /etc/subgid: `owner:start:count`, owner a name or a uid.
public struct SubIDRange: Sendable, Equatable {
    public var owner: String
    public var start: UInt32
    public var count: UInt32

    public init(owner: String, start: UInt32, count: UInt32) {
        self.owner = owner
        self.start = start
        self.count = count
    }

    /// One past the last id (UInt64: start + count may pass 2^32 - 1).
    public var end: UInt64 { UInt64(start) + UInt64(count) }
}

/// What a fix may grant: subordinate ids nobody has. Never id 0, never an account's id (from
/// /etc/passwd or /etc/group), never ids of another line of the file: a suggested
/// `usermod --add-subuids` must not hand the caller root, another user, or another user's range.
public enum SubIDGrant {
    /// Why granting `start ..< start + count` to `user` (uid `uid`) would give away more than
    /// ids nobody has; nil when it is safe.
    public static func problem(start: UInt64, count: UInt64, user: String, uid: UInt32,
                               existing: [SubIDRange], accounts: [UInt32]) -> String? {
        let end = start + count
        if start == 0 { return "it includes id 0 (root)" }
        if end > UInt64(UInt32.max) { return "it passes the last id 4294967294" }
        if let a = accounts.first(where: { $0 != uid && UInt64($0) >= start && UInt64($0) < end }) {
            return "it includes id \(a), which belongs to an account"
        }
        if let other = existing.first(where: { $0.owner != user && $0.owner != String(uid) && UInt64($0.start) < end && $0.end > start }) {
            return "it overlaps \(other.owner)'s range \(other.start)-\(other.end - 1)"
        }
        return nil
    }

    /// A range of `count` ids that overlaps no line of the file and no account id: the first
    /// multiple of `count` at or above 100000 past every existing line (what useradd picks,
    /// roughly), moved further up past any account inside it.
    public static func free(count: UInt32 = 65536, existing: [SubIDRange], accounts: [UInt32] = []) -> SubIDRange? {
        let c = UInt64(max(count, 1))
        var start: UInt64 = 100_000
        let end = existing.map(\.end).max() ?? 0
        if end > start { start = (end + c - 1) / c * c }
        let sorted = accounts.map(UInt64.init).sorted()
        while let a = sorted.first(where: { $0 >= start && $0 < start + c }) {
            start = (a + 1 + c - 1) / c * c
        }
        guard start + c <= UInt64(UInt32.max) else { return nil }
        return SubIDRange(owner: "", start: UInt32(start), count: UInt32(c))
    }
}

/// A parsed security.capability extended attribute (struct vfs_cap_data / vfs_ns_cap_data).
public struct FileCapability: Sendable, Equatable {
    public var revision: Int
    public var effective: Bool
    public var permitted: UInt64
    public var inheritable: UInt64
    /// Revision 3 only: the namespace root the capability applies to.
    public var rootID: UInt32?

    public func has(_ capability: Int) -> Bool { permitted & (UInt64(1) << UInt64(capability)) != 0 }
}

/// newuidmap or newgidmap as found on disk, and the result of really using it.
public struct IDHelperFacts: Sendable, Equatable {
    public var name: String
    /// nil: not found in PATH or the usual directories.
    public var path: String?
    public var mode: UInt32 = 0
    public var ownerUID: UInt32 = 0
    /// The raw security.capability extended attribute (nil: none).
    public var fileCapability: [UInt8]?
    /// Running it on a probe child: nil when not tried; else the exit status, what it printed,
    /// and the map the child ended up with.
    public var trialStatus: Int32?
    public var trialOutput: String = ""
    public var trialMap: String = ""
    public var trialSkipped: String?

    public init(name: String, path: String? = nil) {
        self.name = name
        self.path = path
    }
}

/// A kernel release ("6.18.44-fc-v669") as numbers. The one reader of `uname -r` is in the
/// engine (SystemCalls.kernelRelease); prefer probing a feature over comparing releases.
public struct KernelRelease: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var major: Int
    public var minor: Int
    public var patch: Int

    /// nil without a leading number; missing parts are 0.
    public init?(_ release: String) {
        guard let v = LinuxFormats.parseKernelRelease(release) else { return nil }
        text = release
        (major, minor, patch) = (v.major, v.minor, v.patch)
    }

    public func atLeast(_ major: Int, _ minor: Int) -> Bool {
        self.major > major || (self.major == major && self.minor >= minor)
    }

    public var description: String { text }
}

public enum LinuxFormats {
    /// Every well-formed line of a subuid/subgid file, in order. Blank lines, `#` comments and
    /// malformed lines (wrong field count, non-numbers, count 0) are skipped, as shadow does.
    public static func parseSubIDFile(_ text: String) -> [SubIDRange] {
        var out: [SubIDRange] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = trimmed(Substring(raw))
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count == 3, !fields[0].isEmpty,
                  let start = UInt32(trimmed(fields[1])), let count = UInt32(trimmed(fields[2])), count > 0
            else { continue }
            out.append(SubIDRange(owner: String(fields[0]), start: start, count: count))
        }
        return out
    }

    /// The numeric ids (third field) of /etc/passwd or /etc/group lines.
    public static func accountIDs(_ text: String) -> [UInt32] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            return f.count >= 3 ? UInt32(f[2]) : nil
        }
    }

    /// The ranges of one user, matched by name or by numeric uid.
    public static func subIDRanges(in text: String, user: String, uid: UInt32) -> [SubIDRange] {
        parseSubIDFile(text).filter { $0.owner == user || $0.owner == String(uid) }
    }

    /// The integer in a sysctl file ("1\n"); nil when empty or not a number.
    public static func parseSysctlInteger(_ text: String) -> Int? {
        let t = trimmed(Substring(text))
        return t.isEmpty ? nil : Int(t)
    }

    /// A field of /proc/PID/status as its whitespace-separated words ("NSpid" -> ["7", "1"]);
    /// ProcStatus holds the one parser of that format.
    public static func statusField(_ status: String, _ key: String) -> [String]? {
        ProcStatus.field(key, in: status)
    }

    /// `NSpid:` of a status text as numbers, outermost first.
    public static func parseNSpid(_ status: String) -> [Int32] {
        (statusField(status, "NSpid") ?? []).compactMap { Int32($0) }
    }

    /// A hexadecimal capability mask field such as `CapEff:\t000001ffffffffff`.
    public static func parseCapabilityMask(_ status: String, _ key: String = "CapEff") -> UInt64? {
        guard let word = statusField(status, key)?.first else { return nil }
        return UInt64(word, radix: 16)
    }

    /// "6.18.44-fc-v669" -> (6, 18, 44); missing parts are 0; nil without a leading number.
    public static func parseKernelRelease(_ release: String) -> (major: Int, minor: Int, patch: Int)? {
        var numbers: [Int] = []
        var current = ""
        for ch in release {
            if ch.isASCII && ch.isNumber {
                current.append(ch)
            } else {
                if !current.isEmpty { numbers.append(Int(current) ?? 0); current = "" }
                if ch != "." || numbers.count >= 3 { break }
            }
        }
        if !current.isEmpty && numbers.count < 3 { numbers.append(Int(current) ?? 0) }
        guard let major = numbers.first else { return nil }
        return (major, numbers.count > 1 ? numbers[1] : 0, numbers.count > 2 ? numbers[2] : 0)
    }

    public static func kernelAtLeast(_ release: String, _ major: Int, _ minor: Int) -> Bool? {
        guard let v = parseKernelRelease(release) else { return nil }
        return v.major > major || (v.major == major && v.minor >= minor)
    }

    /// Whether a uid_map text is the initial namespace's identity map of every id.
    public static func isInitialUserNamespaceMap(_ uidMap: String) -> Bool {
        let lines = uidMap.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }) }
        return lines.count == 1 && lines[0] == ["0", "0", "4294967295"]
    }

    /// Decodes security.capability: little-endian magic_etc, then {permitted, inheritable}
    /// pairs (one for revision 1, two for 2 and 3), then rootid for revision 3.
    public static func parseFileCapability(_ bytes: [UInt8]) -> FileCapability? {
        func le32(_ at: Int) -> UInt32? {
            guard at + 4 <= bytes.count else { return nil }
            return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        guard let magic = le32(0) else { return nil }
        let revision = Int(magic >> 24)
        let effective = magic & 0x1 != 0
        switch revision {
        case 1:
            guard bytes.count == 12, let p = le32(4), let i = le32(8) else { return nil }
            return FileCapability(revision: 1, effective: effective, permitted: UInt64(p), inheritable: UInt64(i), rootID: nil)
        case 2, 3:
            guard bytes.count == (revision == 2 ? 20 : 24),
                  let p0 = le32(4), let i0 = le32(8), let p1 = le32(12), let i1 = le32(16) else { return nil }
            return FileCapability(revision: revision, effective: effective,
                                  permitted: UInt64(p0) | UInt64(p1) << 32, inheritable: UInt64(i0) | UInt64(i1) << 32,
                                  rootID: revision == 3 ? le32(20) : nil)
        default:
            return nil
        }
    }

    public static func trimmed(_ s: Substring) -> String {
        var t = s
        while let f = t.first, f == " " || f == "\t" || f == "\r" || f == "\n" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" || l == "\r" || l == "\n" { t = t.dropLast() }
        return String(t)
    }
}
