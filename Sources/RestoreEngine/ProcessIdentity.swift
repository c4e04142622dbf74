import CRestoreShim
import Glibc
import RestoreModel

/// Everything a process's identity needs (uid/gid/groups, umask, capabilities,
/// no_new_privs, rlimits, seccomp), prepared in the coordinator before any clone so that the
/// child only makes system calls on ready buffers.
struct PreparedIdentity {
    var uid: uid_t
    var gid: gid_t
    var changeIDs: Bool
}

enum ProcessIdentity {
    /// Coordinator side: nil when the entry asks for nothing beyond the defaults.
    static func prepare(_ entry: ProcessEntry) throws -> UnsafeMutablePointer<PreparedIdentity>? {
        guard let user = entry.process?.user else { return nil }
        let p = UnsafeMutablePointer<PreparedIdentity>.allocate(capacity: 1)
        p.initialize(to: PreparedIdentity(uid: user.uid, gid: user.gid, changeIDs: true))
        return p
    }

    /// Child side, after every fork is done and right before exec (or holding).
    /// Returns the failing stage and errno, or nil.
    static func apply(_ identity: UnsafeMutablePointer<PreparedIdentity>) -> (PuppetStage, Int32)? {
        let id = identity.pointee
        if id.changeIDs {
            var r = rr_setresgid(id.gid)
            if r < 0 { return (.setgid, -r) }
            r = rr_setresuid(id.uid)
            if r < 0 { return (.setuid, -r) }
        }
        return nil
    }
}
