import Glibc
import RestoreModel

/// Writes the user namespace's uid_map and gid_map from outside, as the namespace's creator.
/// An ordinary user may map exactly its own euid/egid, one id; larger maps need newuidmap
/// (not yet supported: the message says so).
public struct IDMapWriter {
    public var uidMap: IDMapping
    public var gidMap: IDMapping

    /// The maps for a tree: its single-id `uidMappings`/`gidMappings`, or the caller's ids -> 0.
    public init(tree: ProcessTree, euid: UInt32 = UInt32(geteuid()), egid: UInt32 = UInt32(getegid())) throws {
        uidMap = try Self.single(tree.uidMappings, own: euid, kind: "uid")
        gidMap = try Self.single(tree.gidMappings, own: egid, kind: "gid")
        for e in tree.processes {
            guard let user = e.process?.user else { continue }
            if !Self.covers(uidMap, user.uid) {
                throw RestoreError(.invalidTree, operation: "validate", entry: e.label,
                                   message: "runs as uid \(user.uid), but the namespace maps only uid \(uidMap.containerID) (to your uid \(uidMap.hostID)); ranges via newuidmap are not supported yet")
            }
            if !Self.covers(gidMap, user.gid) {
                throw RestoreError(.invalidTree, operation: "validate", entry: e.label,
                                   message: "runs as gid \(user.gid), but the namespace maps only gid \(gidMap.containerID) (to your gid \(gidMap.hostID))")
            }
            if !user.additionalGids.isEmpty {
                throw RestoreError(.invalidTree, operation: "validate", entry: e.label,
                                   message: "has additionalGids \(user.additionalGids), which need a gid range map (newgidmap); with the single-id map setgroups() is denied")
            }
        }
    }

    static func covers(_ m: IDMapping, _ id: UInt32) -> Bool {
        id >= m.containerID && UInt64(id) < UInt64(m.containerID) + UInt64(m.size)
    }

    static func single(_ maps: [IDMapping]?, own: UInt32, kind: String) throws -> IDMapping {
        guard let maps else { return IDMapping(containerID: 0, hostID: own, size: 1) }
        guard maps.count == 1, maps[0].size == 1, maps[0].hostID == own else {
            throw RestoreError(.environment, operation: "write \(kind)_map", entry: "\(kind)Mappings",
                               message: "only a single-id map of your own \(kind) (\(own)) is supported without newuidmap/newgidmap; got \(maps.map { "\($0.containerID):\($0.hostID):\($0.size)" }.joined(separator: ", "))")
        }
        return maps[0]
    }

    /// Writes setgroups=deny, uid_map and gid_map of `pid`.
    public func write(to pid: Int32) throws {
        let base = "/proc/\(pid)"
        let steps: [(String, String)] = [
            ("\(base)/setgroups", "deny"),
            ("\(base)/uid_map", "\(uidMap.containerID) \(uidMap.hostID) \(uidMap.size)\n"),
            ("\(base)/gid_map", "\(gidMap.containerID) \(gidMap.hostID) \(gidMap.size)\n"),
        ]
        for (path, text) in steps {
            let e = SystemCalls.writeFile(path, text)
            if e != 0 {
                throw RestoreError(.environment, operation: "write \(path)", errno: e, entry: nil,
                                   message: "cannot write the user namespace's id map \"\(text.trimmingSuffixNewline)\"\(e == EPERM ? "; the kernel or a security module (AppArmor's kernel.apparmor_restrict_unprivileged_userns) forbids it for ordinary users" : "")")
            }
        }
    }
}

extension String {
    var trimmingSuffixNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
