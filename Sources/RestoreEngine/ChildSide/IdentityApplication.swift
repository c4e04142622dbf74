import CRestoreShim
import Glibc

extension ProcessIdentity {
    /// Child side, after every fork is done and right before exec (or holding). System calls
    /// on prepared buffers only. Returns the failing stage and errno, or nil.
    ///
    /// Order (as OCI runtimes do it): setgroups, setresgid, setresuid (with PR_SET_KEEPCAPS so
    /// the permitted set survives), umask, rlimits, capabilities (regain the effective set,
    /// drop from the bounding set, capset, raise ambient), no_new_privs, seccomp last.
    static func apply(_ identity: UnsafeMutablePointer<PreparedIdentity>) -> (PuppetStage, Int32)? {
        let id = identity.pointee
        var r: Int32 = 0
        // Puppets share the init's address space, whose dumpability decides who may ptrace or
        // open /proc/PID/mem of any of them, and its memory is the init's. A process that ends
        // with other ids than the init makes it undumpable before they change (setresuid would
        // too), and nothing sets it back: a dumpable holder of uid 1000 could be opened by any
        // payload of uid 1000. An exec decides its own process's dumpability afresh.
        if id.lowersPrivilege {
            r = rr_prctl_set_dumpable(0)
            if r < 0 { return (.capabilities, -r) }
        }
        if id.setGroups {
            r = rr_setgroups(id.groupCount, id.groups)
            if r < 0 { return (.setgroups, -r) }
        }
        if id.keepCaps {
            r = rr_prctl_set_keepcaps(1)
            if r < 0 { return (.capabilities, -r) }
        }
        if id.changeIDs {
            r = rr_setresgid(id.gid)
            if r < 0 { return (.setgid, -r) }
            r = rr_setresuid(id.uid)
            if r < 0 { return (.setuid, -r) }
        }
        if id.setUmask { _ = Glibc.umask(id.umask) }
        if let limits = id.rlimits {
            for k in 0..<id.rlimitCount {
                r = rr_setrlimit(limits[k].resource, limits[k].soft, limits[k].hard)
                if r < 0 { return (.setrlimit, -r) }
            }
        }
        if id.setCaps {
            r = rr_capset(id.raiseCaps.effective, id.raiseCaps.permitted, id.raiseCaps.inheritable)
            if r < 0 { return (.capabilities, -r) }
            var c: Int32 = 0
            while c < id.capCount {
                if id.bounding & (UInt64(1) << UInt64(c)) == 0 {
                    r = rr_prctl_capbset_drop(c)
                    if r < 0 { return (.capabilities, -r) }
                }
                c += 1
            }
            if id.seccompEarly, let filter = id.seccomp {
                r = rr_seccomp_install_filter(filter, id.seccompCount)
                if r < 0 { return (.seccomp, -r) }
            }
            r = rr_capset(id.finalCaps.effective, id.finalCaps.permitted, id.finalCaps.inheritable)
            if r < 0 { return (.capabilities, -r) }
            r = rr_prctl_cap_ambient_clear_all()
            if r < 0 { return (.capabilities, -r) }
            c = 0
            while c < id.capCount {
                if id.ambient & (UInt64(1) << UInt64(c)) != 0 {
                    r = rr_prctl_cap_ambient_raise(c)
                    if r < 0 { return (.capabilities, -r) }
                }
                c += 1
            }
            r = rr_prctl_set_keepcaps(0)
            if r < 0 { return (.capabilities, -r) }
        }
        if id.noNewPrivs {
            r = rr_prctl_set_no_new_privs()
            if r < 0 { return (.noNewPrivileges, -r) }
        }
        if !id.seccompEarly, let filter = id.seccomp {
            r = rr_seccomp_install_filter(filter, id.seccompCount)
            if r < 0 { return (.seccomp, -r) }
        }
        return nil
    }
}
