// Which uid_map and gid_map the new user namespace gets, and whether the caller may write
// them: the default single-id map, `--map-users` / `--map-groups`, or the tree's
// `uidMappings` / `gidMappings`. Pure: the facts about the system (ids, /etc/subuid,
// newuidmap on disk) come in as values, so every check is unit-testable. Everything here runs
// before any process exists.

/// One `--map-users` / `--map-groups` value: `inner:outer:count` (util-linux unshare's form)
/// or `auto`: your own id as 0 plus your first /etc/subuid (/etc/subgid) range from 1 up.
public enum IDMapRequest: Sendable, Equatable, CustomStringConvertible {
    case range(IDMapping)
    case auto

    /// Parses `inner:outer:count` or `auto`; the error says what is wrong.
    public static func parse(_ text: String) throws -> IDMapRequest {
        if text == "auto" { return .auto }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw RestoreError(.invalidTree, operation: "parse", entry: text,
                               message: "expected inner:outer:count (e.g. 1:100000:65536) or auto")
        }
        var numbers: [UInt32] = []
        for (part, what) in zip(parts, ["inner", "outer", "count"]) {
            guard !part.isEmpty, part.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let n = UInt32(part) else {
                throw RestoreError(.invalidTree, operation: "parse", entry: text,
                                   message: "\(what) \"\(part)\" is not a number 0...4294967295 (expected inner:outer:count)")
            }
            numbers.append(n)
        }
        return .range(IDMapping(containerID: numbers[0], hostID: numbers[1], size: numbers[2]))
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .range(let m): return "\(m.containerID):\(m.hostID):\(m.size)"
        }
    }

    /// The shape problems of the explicit lines of one option (`--map-users`): overlaps, size 0,
    /// ranges past the largest id. `auto` lines are checked once /etc/subuid is read.
    public static func problems(_ requests: [IDMapRequest], option: String) -> [String] {
        var lines: [IDMapping] = [], labels: [String] = []
        var autos = 0
        for r in requests {
            switch r {
            case .auto: autos += 1
            case .range(let m):
                lines.append(m)
                labels.append("\(option) \(r)")
            }
        }
        var out: [String] = []
        if autos > 1 { out.append("\(option) auto is given \(autos) times") }
        if lines.isEmpty { return out }
        for p in TreeValidator.mappingProblems(lines, field: option, words: .commandLine, name: { labels[$0] }) {
            out.append((p.entry.map { "\($0): " } ?? "") + p.message)
        }
        return out
    }
}

/// What the map checks need to know about the system.
public struct IDMapFacts: Sendable, Equatable {
    /// The caller's effective ids and login name.
    public var uid: UInt32
    public var gid: UInt32
    public var userName: String
    /// /etc/subuid and /etc/subgid (nil: missing or unreadable).
    public var subuidText: String?
    public var subgidText: String?
    /// The helpers as found in `searchPath` (path nil: not found).
    public var newuidmap: IDHelperFacts
    public var newgidmap: IDHelperFacts
    public var searchPath: String
    /// Ids of the accounts in /etc/passwd and /etc/group: a suggested grant never includes one.
    public var accountUIDs: [UInt32] = []
    public var accountGIDs: [UInt32] = []
    /// False inside a user namespace (a container): subordinate ids are then the host's business.
    public var inInitialUserNamespace = true
    /// NoNewPrivs and CapBnd of this process: either one stops newuidmap from gaining the
    /// capability its setuid bit or file capability would give.
    public var noNewPrivs = false
    public var capBnd: UInt64?

    public init(uid: UInt32, gid: UInt32, userName: String, subuidText: String?, subgidText: String?,
                newuidmap: IDHelperFacts, newgidmap: IDHelperFacts, searchPath: String) {
        self.uid = uid
        self.gid = gid
        self.userName = userName
        self.subuidText = subuidText
        self.subgidText = subgidText
        self.newuidmap = newuidmap
        self.newgidmap = newgidmap
        self.searchPath = searchPath
    }
}

/// The maps to write and how.
public struct IDMapPlan: Sendable, Equatable {
    public struct Side: Sendable, Equatable {
        /// "uid" or "gid".
        public var kind: String
        public var lines: [IDMapping]
        /// How messages name each line: `--map-users 1:100000:65536`, `uidMappings[1]`, ...
        public var labels: [String]
        /// newuidmap / newgidmap to run; nil: the runtime writes the one line itself (it maps
        /// only the caller's own id, which the kernel allows an ordinary user).
        public var helper: String?
        /// Where the lines come from: "--map-users", "uidMappings" or "the default map".
        public var source: String

        public func covers(_ id: UInt32) -> Bool {
            lines.contains { id >= $0.containerID && UInt64(id) < UInt64($0.containerID) + UInt64($0.size) }
        }

        /// The inner id that outer id `id` maps to, if any.
        public func inner(ofOuter id: UInt32) -> UInt32? {
            for m in lines where id >= m.hostID && UInt64(id) < UInt64(m.hostID) + UInt64(m.size) {
                return m.containerID + (id - m.hostID)
            }
            return nil
        }

        /// `0:1000:1, 1:100000:65536`
        public var text: String {
            lines.map { "\($0.containerID):\($0.hostID):\($0.size)" }.joined(separator: ", ")
        }

        /// The map file's content, one `inner outer count` line each.
        public var mapFileText: String {
            lines.map { "\($0.containerID) \($0.hostID) \($0.size)\n" }.joined()
        }
    }

    public var uid: Side
    public var gid: Side
    /// setgroups(2) works in the namespace: newgidmap wrote a /etc/subgid range. Otherwise
    /// setgroups is denied (the kernel requires it for an unprivileged gid_map).
    public var setgroupsAllowed: Bool
    /// The runtime's own ids inside the namespace (nil: the map leaves them out).
    public var runtimeUID: UInt32?
    public var runtimeGID: UInt32?

    /// The ids a process without `process.user` runs as: the runtime's own inside, or 0 when
    /// the map leaves them out.
    public var defaultUID: UInt32 { runtimeUID ?? 0 }
    public var defaultGID: UInt32 { runtimeGID ?? 0 }

    /// Builds and checks the maps. Throws RestoreError: `.environment` when the system does not
    /// allow them (/etc/subuid, newuidmap), `.invalidTree` when a process runs as an id no
    /// line maps.
    public static func make(tree: ProcessTree, users: [IDMapRequest] = [], groups: [IDMapRequest] = [],
                            facts: IDMapFacts) throws -> IDMapPlan {
        let uid = try side("uid", requests: users, option: "--map-users", treeLines: tree.uidMappings,
                           treeField: "uidMappings", own: facts.uid, subText: facts.subuidText,
                           helper: facts.newuidmap, facts: facts)
        let gid = try side("gid", requests: groups, option: "--map-groups", treeLines: tree.gidMappings,
                           treeField: "gidMappings", own: facts.gid, subText: facts.subgidText,
                           helper: facts.newgidmap, facts: facts)
        let setgroups = gid.helper != nil && gid.lines.contains { !($0.size == 1 && $0.hostID == facts.gid) }
        let plan = IDMapPlan(uid: uid, gid: gid, setgroupsAllowed: setgroups,
                             runtimeUID: uid.inner(ofOuter: facts.uid), runtimeGID: gid.inner(ofOuter: facts.gid))
        try plan.checkCoverage(tree, facts: facts)
        return plan
    }

    /// Whether the maps are one line each of the caller's own uid and gid (no --map-users or
    /// --map-groups, the tree's maps absent or exactly that): the runtime then writes them
    /// itself, and nothing of /etc/subuid, /etc/subgid, the accounts or the helpers is
    /// consulted, so the caller need not gather those facts (IDMapPlanTests checks that the
    /// plan does not change with them).
    public static func mapsOnlyOwnIDs(tree: ProcessTree, users: [IDMapRequest], groups: [IDMapRequest],
                                      uid: UInt32, gid: UInt32) -> Bool {
        func ownOnly(_ lines: [IDMapping]?, _ own: UInt32) -> Bool {
            guard let lines else { return true }
            return lines == [IDMapping(containerID: lines.first?.containerID ?? 0, hostID: own, size: 1)]
        }
        return users.isEmpty && groups.isEmpty && ownOnly(tree.uidMappings, uid) && ownOnly(tree.gidMappings, gid)
    }

    // MARK: - One map

    static func side(_ kind: String, requests: [IDMapRequest], option: String, treeLines: [IDMapping]?,
                     treeField: String, own: UInt32, subText: String?, helper: IDHelperFacts,
                     facts: IDMapFacts) throws -> Side {
        let subFile = "/etc/sub\(kind)"
        let ranges = subText.map { LinuxFormats.subIDRanges(in: $0, user: facts.userName, uid: facts.uid) } ?? []
        let allLines = subText.map(LinuxFormats.parseSubIDFile) ?? []
        let accounts = kind == "uid" ? facts.accountUIDs : facts.accountGIDs
        /// "as root: usermod ..." for a range nobody has, or where to ask when that is the host.
        func grant(_ count: UInt32) -> (text: String, range: SubIDRange?) {
            guard facts.inInitialUserNamespace else {
                return ("subordinate ids are granted on the host, not in this user namespace: ask the host's administrator for a range of the host user", nil)
            }
            guard let free = SubIDGrant.free(count: count, existing: allLines, accounts: accounts) else {
                return ("no range of \(count) ids is free in \(subFile); free one, then as root: usermod --add-sub\(kind)s START-END \(facts.userName)", nil)
            }
            return ("as root: usermod --add-sub\(kind)s \(free.start)-\(free.end - 1) \(facts.userName)", free)
        }
        var lines: [IDMapping] = [], labels: [String] = []
        let source: String
        if !requests.isEmpty {
            source = option
            for r in requests {
                switch r {
                case .range(let m):
                    lines.append(m)
                    labels.append("\(option) \(r)")
                case .auto:
                    guard let first = ranges.first else {
                        throw RestoreError(.environment, operation: "read \(subFile)", entry: "\(option) auto",
                                           message: subText == nil
                                               ? "\(subFile) is missing or unreadable, so there is no range of yours to map; \(grant(65536).text)"
                                               : "\(subFile) has no range for \(facts.userName) (\(kind) \(own)); \(grant(65536).text), or give explicit \(option) inner:outer:count lines")
                    }
                    let size = min(first.count, UInt32.max - 1)
                    lines.append(IDMapping(containerID: 0, hostID: own, size: 1))
                    labels.append("\(option) auto (0:\(own):1, your own \(kind))")
                    lines.append(IDMapping(containerID: 1, hostID: first.start, size: size))
                    labels.append("\(option) auto (1:\(first.start):\(size), your first \(subFile) range)")
                }
            }
            let problems = TreeValidator.mappingProblems(lines, field: option, words: .commandLine, name: { labels[$0] })
            if let p = problems.first {
                throw RestoreError(.environment, operation: "validate", entry: p.entry,
                                   message: p.message + (problems.count > 1 ? " (and \(problems.count - 1) more problems)" : ""))
            }
        } else if let treeLines {
            source = treeField
            lines = treeLines
            labels = treeLines.indices.map { "\(treeField)[\($0)]" }
        } else {
            source = "the default map"
            lines = [IDMapping(containerID: 0, hostID: own, size: 1)]
            labels = ["the default map (0:\(own):1)"]
        }
        var result = Side(kind: kind, lines: lines, labels: labels, helper: nil, source: source)
        let ownOnly = lines.count == 1 && lines[0].size == 1 && lines[0].hostID == own
        if ownOnly { return result }

        // A range map: newuidmap writes it, if /etc/subuid allows every line.
        for (k, m) in lines.enumerated() where !(m.size == 1 && m.hostID == own) {
            if covered(m, by: ranges) { continue }
            let last = UInt64(m.hostID) + UInt64(m.size) - 1
            let yours = ranges.isEmpty ? "\(facts.userName) has none"
                : "\(facts.userName) has " + ranges.map { "\($0.start)...\($0.end - 1)" }.joined(separator: ", ")
            // Grant exactly these ids only if nobody has them; else a free range to map onto.
            let unsafe = SubIDGrant.problem(start: UInt64(m.hostID), count: UInt64(m.size), user: facts.userName,
                                            uid: facts.uid, existing: allLines, accounts: accounts)
            var fix: String
            if let unsafe {
                let (text, free) = grant(m.size)
                fix = "granting \(m.hostID)-\(last) would give you ids that are not free (\(unsafe)); "
                    + (free.map { "\(text), then map onto it (\(option == source ? option : "\(treeField): hostID") \(m.containerID):\($0.start):\(m.size))" } ?? text)
            } else if !facts.inInitialUserNamespace {
                fix = grant(m.size).text
                if source == treeField {
                    // `record` run outside this namespace (from the host, of a container's
                    // processes) writes the outer view of the container's map.
                    fix += "; or, if \(treeField) are the host's view of a container's map (record run from the host), restore with this namespace's own ids instead: \(option) 0:\(own):1 (add ranges this namespace maps, as in /proc/self/\(kind)_map, for processes running as other \(kind)s)"
                }
            } else {
                fix = "as root: usermod --add-sub\(kind)s \(m.hostID)-\(last) \(facts.userName)"
            }
            let how = subText == nil
                ? "\(subFile) is missing or unreadable; \(fix)"
                : "map only your own \(kind) (\(own)) and ids inside your ranges (\(option) auto picks the first), or \(fix)"
            throw RestoreError(.environment, operation: "new\(kind)map", entry: labels[k],
                               message: "outer \(kind)s \(m.hostID)...\(last) are not yours in \(subFile) (\(yours)); \(how)")
        }
        guard let path = helper.path else {
            throw RestoreError(.environment, operation: "new\(kind)map", entry: source,
                               message: "the \(kind) map \(result.text) maps more than your own \(kind), which needs new\(kind)map, but it was not found in PATH=\(facts.searchPath); install it (Debian and Ubuntu: apt-get install uidmap; Fedora: dnf install shadow-utils) or map only your own \(kind)")
        }
        let capability = kind == "uid" ? LinuxNumbers.CAP_SETUID : LinuxNumbers.CAP_SETGID
        if facts.noNewPrivs {
            throw RestoreError(.environment, operation: "new\(kind)map", entry: source,
                               message: "the \(kind) map \(result.text) needs \(path), but this process has no_new_privs set (NoNewPrivs: 1 in /proc/self/status), so the kernel ignores its setuid bit and file capabilities and it cannot write the map; start rootless-restore without no_new_privs (not under setpriv --no-new-privs, systemd NoNewPrivileges=yes or a container's no-new-privileges), or map only your own \(kind)")
        }
        if let bounding = facts.capBnd, bounding & (UInt64(1) << UInt64(capability)) == 0 {
            throw RestoreError(.environment, operation: "new\(kind)map", entry: source,
                               message: "the \(kind) map \(result.text) needs \(path), but CAP_SET\(kind.uppercased()) is not in this process's capability bounding set (CapBnd: \(String(bounding, radix: 16))\(bounding == 0 ? ", empty" : "")), so \(path) cannot gain it; start rootless-restore from a process whose bounding set keeps cap_set\(kind) (e.g. not under setpriv --bounding-set=-all or capsh --drop), or map only your own \(kind)")
        }
        let setuidRoot = helper.mode & 0o4000 != 0 && helper.ownerUID == 0
        let fileCap = helper.fileCapability.flatMap { LinuxFormats.parseFileCapability($0) }?.has(capability) ?? false
        guard setuidRoot || fileCap else {
            let mode = String(helper.mode & 0o7777, radix: 8)
            throw RestoreError(.environment, operation: "new\(kind)map", entry: path,
                               message: "has neither the setuid bit (mode \(mode), owner uid \(helper.ownerUID)) nor the cap_set\(kind) file capability, so it cannot write the \(kind) map \(result.text); as root: apt-get install --reinstall uidmap, or chown root \(path) && chmod u+s \(path)")
        }
        result.helper = path
        return result
    }

    /// Whether the outer ids of `m` lie in the union of the user's ranges (adjacent ranges
    /// join, as shadow's check allows).
    static func covered(_ m: IDMapping, by ranges: [SubIDRange]) -> Bool {
        var next = UInt64(m.hostID)
        let end = UInt64(m.hostID) + UInt64(m.size)
        var progressed = true
        while next < end && progressed {
            progressed = false
            for r in ranges where UInt64(r.start) <= next && next < r.end {
                next = r.end
                progressed = true
            }
        }
        return next >= end
    }

    // MARK: - The tree's ids

    /// Every id a process of the tree runs as must be mapped; additionalGids need setgroups.
    func checkCoverage(_ tree: ProcessTree, facts: IDMapFacts) throws {
        var problems: [(String, String)] = []
        for e in tree.processes where e.state != .zombie {
            let user = e.process?.user
            let uidValue = user?.uid ?? defaultUID
            let gidValue = user?.gid ?? defaultGID
            let why = user == nil ? " (the default without process.user\(runtimeUID == nil ? ", since your uid \(facts.uid) is not mapped" : ""))" : ""
            if !uid.covers(uidValue) {
                problems.append((e.label, "runs as uid \(uidValue)\(why), which no line of the uid map covers (\(uid.source): \(uid.text)); map it with --map-users or uidMappings, or change process.user.uid"))
            }
            if !gid.covers(gidValue) {
                let gwhy = user == nil ? " (the default without process.user\(runtimeGID == nil ? ", since your gid \(facts.gid) is not mapped" : ""))" : ""
                problems.append((e.label, "runs as gid \(gidValue)\(gwhy), which no line of the gid map covers (\(gid.source): \(gid.text)); map it with --map-groups or gidMappings, or change process.user.gid"))
            }
            guard let groups = user?.additionalGids, !groups.isEmpty else { continue }
            if !setgroupsAllowed {
                problems.append((e.label, "has additionalGids \(groups.map(String.init).joined(separator: ", ")), which need a gid range map written by newgidmap from your /etc/subgid range (e.g. --map-groups auto); with \(gid.source) (\(gid.text)) the kernel denies setgroups"))
                continue
            }
            let unmapped = groups.filter { !gid.covers($0) }
            if !unmapped.isEmpty {
                problems.append((e.label, "has additionalGids \(unmapped.map(String.init).joined(separator: ", ")) that no line of the gid map covers (\(gid.source): \(gid.text))"))
            }
        }
        guard let (entry, message) = problems.first else { return }
        let more = problems.count > 1 ? " (and \(problems.count - 1) more such problems)" : ""
        throw RestoreError(.invalidTree, operation: "validate", entry: entry, message: message + more)
    }
}
