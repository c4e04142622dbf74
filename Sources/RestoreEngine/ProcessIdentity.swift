import CLibcap
import CLibseccomp
import CRestoreShim
import Glibc
import RestoreModel

/// One resource limit, ready for setrlimit.
struct PreparedRlimit {
    var resource: Int32
    var soft: UInt64
    var hard: UInt64
}

/// Everything a process's identity needs (uid/gid/groups, umask, rlimits, capabilities,
/// no_new_privs, seccomp), prepared in the coordinator before any clone so that the child
/// only makes system calls on ready buffers.
struct PreparedIdentity {
    /// The process ends with other ids than the namespace's init, whose address space puppets
    /// share: it must make that address space undumpable.
    var lowersPrivilege = false
    var changeIDs = false
    var uid: uid_t = 0
    var gid: gid_t = 0
    /// setgroups(groups) first; only where the gid map allows setgroups.
    var setGroups = false
    var groups: UnsafeMutablePointer<gid_t>? = nil
    var groupCount = 0
    var setUmask = false
    var umask: mode_t = 0
    var rlimits: UnsafeMutablePointer<PreparedRlimit>? = nil
    var rlimitCount = 0
    /// PR_SET_KEEPCAPS around the uid change, so the permitted set survives it.
    var keepCaps = false
    /// Capability sets for capset: `raiseCaps` (E = P = every capability, I = the requested
    /// inheritable set) regains the effective set after the uid change; `finalCaps` is what
    /// the tree asks for. Without `setCaps` the process keeps what the kernel leaves it.
    var setCaps = false
    var raiseCaps = PreparedCapabilitySets()
    var finalCaps = PreparedCapabilitySets()
    /// Bit N: capability N stays in the bounding set / is raised in the ambient set.
    var bounding: UInt64 = 0
    var ambient: UInt64 = 0
    /// Capabilities this kernel knows (cap_last_cap + 1).
    var capCount: Int32 = 0
    var noNewPrivs = false
    /// Classic BPF of the seccomp profile, compiled and exported by libseccomp.
    var seccomp: UnsafeMutableRawPointer? = nil
    var seccompCount: UInt16 = 0
    /// Without no_new_privs the kernel accepts a filter only from a holder of CAP_SYS_ADMIN:
    /// when the final effective set lacks it, the filter is loaded before the final capset.
    var seccompEarly = false
}

/// The three sets one capset call gives (bit N = capability N).
struct PreparedCapabilitySets {
    var effective: UInt64 = 0
    var permitted: UInt64 = 0
    var inheritable: UInt64 = 0
}

enum ProcessIdentity {
    /// Prepares the identities of one restore, in the coordinator before any clone. Processes
    /// with equal seccomp profiles share one compiled filter (compiling takes milliseconds).
    final class Preparer {
        let maps: IDMapPlan
        let arena: Arena
        private var profiles: [(spec: SeccompSpec, instructions: UnsafeMutableRawPointer, count: UInt16)] = []

        init(maps: IDMapPlan, arena: Arena) {
            self.maps = maps
            self.arena = arena
        }

        deinit {
            for p in profiles { p.instructions.deallocate() }
        }

        /// nil when the entry asks for nothing beyond what the process already is. Throws
        /// RestoreError for what would only fail in the child.
        func prepare(_ entry: ProcessEntry) throws -> UnsafeMutablePointer<PreparedIdentity>? {
            try ProcessIdentity.prepare(entry, maps: maps, arena: arena, compile: compiled)
        }

        func compiled(_ spec: SeccompSpec, _ entry: String) throws -> (UnsafeMutableRawPointer, UInt16) {
            if let known = profiles.first(where: { $0.spec == spec }) { return (known.instructions, known.count) }
            let (instructions, count) = try SeccompCompiler.compile(spec, entry: entry)
            profiles.append((spec, instructions, count))
            return (instructions, count)
        }
    }

    static func prepare(_ entry: ProcessEntry, maps: IDMapPlan, arena: Arena,
                        compile: (SeccompSpec, String) throws -> (UnsafeMutableRawPointer, UInt16)) throws
        -> UnsafeMutablePointer<PreparedIdentity>? {
        guard entry.state != .zombie else { return nil }
        let spec = entry.process
        let where_ = entry.line.map { "\(entry.label), line \($0)" } ?? entry.label
        var id = PreparedIdentity()
        var needed = false

        if let user = spec?.user {
            id.changeIDs = true
            id.uid = user.uid
            id.gid = user.gid
            if maps.setgroupsAllowed {
                id.setGroups = true
                id.groupCount = user.additionalGids.count
                let groups = arena.allocate(gid_t.self, count: user.additionalGids.count)
                for (k, g) in user.additionalGids.enumerated() { groups[k] = g }
                id.groups = groups
            }
            if let mask = user.umask {
                id.setUmask = true
                id.umask = mode_t(mask)
            }
            needed = true
        } else if maps.runtimeUID == nil || maps.runtimeGID == nil {
            // The runtime's own ids are not mapped: run as 0 rather than the overflow ids.
            id.changeIDs = true
            id.uid = maps.defaultUID
            id.gid = maps.defaultGID
            needed = true
        }
        // Leaving uid 0 of the namespace for another uid clears every capability (unless
        // PR_SET_KEEPCAPS): the kernel's setuid rules.
        let dropsCaps = id.changeIDs && maps.runtimeUID == 0 && id.uid != 0

        if let limits = spec?.rlimits, !limits.isEmpty {
            let prepared = arena.allocate(PreparedRlimit.self, count: limits.count)
            for (k, l) in limits.enumerated() {
                guard let resource = ResourceLimits.number(named: l.type) else {
                    throw RestoreError.invalid(where_, "process.rlimits[\(k)]: unknown type \(l.type)")
                }
                var own = rlimit()
                if getrlimit(__rlimit_resource_t(UInt32(resource)), &own) == 0, l.hard > UInt64(own.rlim_max) {
                    throw RestoreError(.environment, operation: "setrlimit", errno: EPERM, entry: where_,
                                       message: "process.rlimits[\(k)] asks for a hard \(l.type) of \(limitText(l.hard)), above the runtime's own hard limit \(limitText(UInt64(own.rlim_max))); raising a hard limit needs CAP_SYS_RESOURCE on the host, which a user namespace does not give. Raise it before running (e.g. ulimit -H, /etc/security/limits.conf) or lower it in the tree")
                }
                prepared[k] = PreparedRlimit(resource: Int32(resource), soft: l.soft, hard: l.hard)
            }
            id.rlimits = prepared
            id.rlimitCount = limits.count
            needed = true
        }

        let noNewPrivs = spec?.noNewPrivileges ?? false
        id.noNewPrivs = noNewPrivs
        if noNewPrivs { needed = true }

        var caps = spec?.capabilities
        if let seccomp = spec?.seccomp {
            (id.seccomp, id.seccompCount) = try compile(seccomp, where_)
            let adminAtTheEnd = caps.map { CapabilitySpec.mask($0.effective) & (UInt64(1) << UInt64(Capabilities.sysAdmin)) != 0 }
                ?? !dropsCaps
            id.seccompEarly = !noNewPrivs && !adminAtTheEnd
            // The final capset then runs under the filter: a profile that refuses capset would
            // kill the process (SIGSYS) or fail it during setup, with nothing the user can read.
            if id.seccompEarly, let refusal = seccomp.refusal(of: "capset") {
                throw RestoreError(.invalidTree, operation: "validate", entry: where_,
                                   message: "\(refusal) refuses capset, which the runtime must call after loading this profile: without noNewPrivileges the kernel accepts a filter only from a holder of CAP_SYS_ADMIN, and the final capabilities drop it, so the filter goes first. Set \"noNewPrivileges\": true (the filter is then loaded last, as runc does), or allow capset in the profile")
            }
            if id.seccompEarly && caps == nil {
                // Hold on to the capabilities through the uid change to load the filter, then
                // end as the kernel would have left the process: with none.
                caps = CapabilitySpec(bounding: Array(Capabilities.names.prefix(Int(cap_max_bits()))))
            }
            needed = true
        }

        if let caps {
            let count = cap_max_bits()
            id.capCount = count
            let known = count >= 64 ? UInt64.max : (UInt64(1) << UInt64(count)) - 1
            for (name, list) in caps.sets {
                let extra = CapabilitySpec.mask(list) & ~known
                if extra != 0 {
                    throw RestoreError(.environment, operation: "capset", entry: where_,
                                       message: "process.capabilities.\(name) has \(Capabilities.names(of: extra).names.joined(separator: ", ")), which this kernel does not know (it has capabilities 0...\(count - 1))")
                }
            }
            id.keepCaps = true
            id.bounding = CapabilitySpec.mask(caps.bounding)
            id.ambient = CapabilitySpec.mask(caps.ambient)
            let inheritable = CapabilitySpec.mask(caps.inheritable)
            id.setCaps = true
            id.raiseCaps = PreparedCapabilitySets(effective: known, permitted: known, inheritable: inheritable)
            id.finalCaps = PreparedCapabilitySets(effective: CapabilitySpec.mask(caps.effective),
                                                  permitted: CapabilitySpec.mask(caps.permitted),
                                                  inheritable: inheritable)
            needed = true
        }

        guard needed else { return nil }
        // The init runs as the ids the runtime's own map to. Fewer capabilities alone do not
        // count: a recording of an ordinary user's tree has none anywhere, and an undumpable
        // holder could not be recorded again (its /proc files become the host root's); the
        // limit this leaves is documented (docs/performance.md, dumpability).
        id.lowersPrivilege = id.changeIDs && (maps.runtimeUID.map { id.uid != $0 } ?? true || maps.runtimeGID.map { id.gid != $0 } ?? true)
        let p = arena.allocate(PreparedIdentity.self, count: 1)
        p.initialize(to: id)
        return p
    }

    static func limitText(_ v: UInt64) -> String { v == RlimitSpec.unlimited ? "unlimited" : String(v) }
}

/// Compiles an OCI seccomp profile with libseccomp and exports it as classic BPF, in the
/// coordinator; the child only loads the instructions.
public enum SeccompCompiler {
    /// The kernel's limit on a filter's length (BPF_MAXINSNS).
    static let maxInstructions = 4096

    /// Compiles every profile of the tree and throws the first problem (unknown syscall
    /// names, architectures libseccomp lacks), naming the entry; for `validate`.
    public static func check(_ tree: ProcessTree) throws {
        // A set: a list searched per process was quadratic in the number of distinct profiles.
        var done = Set<SeccompSpec>()
        for e in tree.processes {
            guard let s = e.process?.seccomp, !done.contains(s) else { continue }
            let (instructions, _) = try compile(s, entry: e.line.map { "\(e.label), line \($0)" } ?? e.label)
            instructions.deallocate()
            done.insert(s)
        }
    }

    static func action(_ name: String, errno: UInt32?) -> UInt32 {
        let e = (errno ?? UInt32(EPERM)) & 0xFFFF  // the validator refuses larger values
        switch name {
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | e
        case "SCMP_ACT_TRACE": return 0x7FF0_0000 | e
        case "SCMP_ACT_LOG": return 0x7FFC_0000
        case "SCMP_ACT_ALLOW": return 0x7FFF_0000
        default: return 0  // SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD
        }
    }

    /// "SCMP_ARCH_X86_64" -> libseccomp's "x86_64".
    static func archToken(_ name: String) -> String {
        String(name.dropFirst("SCMP_ARCH_".count)).lowercased()
    }

    static func compile(_ spec: SeccompSpec, entry: String) throws -> (UnsafeMutableRawPointer, UInt16) {
        let path = "process.seccomp"
        let defaultAction = action(spec.defaultAction, errno: spec.defaultErrnoRet)
        guard let ctx = seccomp_init(defaultAction) else {
            throw RestoreError(.invalidTree, operation: "seccomp_init", entry: entry,
                               message: "libseccomp \(EngineInfo.libseccompVersion) refused \(path).defaultAction \(spec.defaultAction) (the kernel may lack it: /proc/sys/kernel/seccomp/actions_avail)")
        }
        defer { seccomp_release(ctx) }
        for (k, name) in (spec.architectures ?? []).enumerated() {
            let token = seccomp_arch_resolve_name(archToken(name))
            guard token != 0 else {
                throw RestoreError(.invalidTree, operation: "validate", entry: entry,
                                   message: "\(path).architectures[\(k)] \(name) is not known to libseccomp \(EngineInfo.libseccompVersion)")
            }
            let r = seccomp_arch_add(ctx, token)
            if r < 0 && r != -EEXIST {
                throw RestoreError(.invalidTree, operation: "seccomp_arch_add", errno: -r, entry: entry,
                                   message: "libseccomp cannot add \(path).architectures[\(k)] \(name)")
            }
        }
        for (k, rule) in (spec.syscalls ?? []).enumerated() {
            let at = "\(path).syscalls[\(k)]"
            let act = action(rule.action, errno: rule.errnoRet)
            var numbers: [Int32] = []
            for (n, name) in rule.names.enumerated() {
                let nr = name.utf8.contains(0) ? __NR_SCMP_ERROR : seccomp_syscall_resolve_name(name)
                guard nr != __NR_SCMP_ERROR else {
                    throw RestoreError(.invalidTree, operation: "validate", entry: entry,
                                       message: "\(at).names[\(n)] \(JSONValue.quoted(name, limit: 40)) is not a system call libseccomp \(EngineInfo.libseccompVersion) knows\(TreeParser.didYouMean(name, knownSyscallNames()))")
                }
                numbers.append(nr)
            }
            // libseccomp refuses a rule whose action is the default one; it would change nothing.
            if act == defaultAction { continue }
            let args = rule.args ?? []
            let comparisons = args.map {
                scmp_arg_cmp(arg: $0.index, op: scmp_compare(UInt32(SeccompSpec.operators.firstIndex(of: $0.op)! + 1)),
                             datum_a: $0.value, datum_b: $0.valueTwo ?? 0)
            }
            // OCI semantics: comparisons on distinct arguments all must hold (one rule);
            // several on the same argument are alternatives (one rule each).
            let distinct = Set(args.map(\.index)).count == args.count
            let groups: [[scmp_arg_cmp]] = distinct ? [comparisons] : comparisons.map { [$0] }
            for (n, nr) in numbers.enumerated() {
                for group in groups {
                    let r = group.withUnsafeBufferPointer {
                        seccomp_rule_add_array(ctx, act, nr, UInt32($0.count), $0.baseAddress)
                    }
                    // A negative number is a syscall this architecture lacks (libseccomp's
                    // pseudo numbers): nothing to filter here.
                    if r < 0 && nr >= 0 {
                        throw RestoreError(.invalidTree, operation: "seccomp_rule_add", errno: -r, entry: entry,
                                           message: "libseccomp refused \(at) for \(rule.names[n]) (\(rule.action)\(args.isEmpty ? "" : " with \(args.count) argument comparisons"))")
                    }
                }
            }
        }
        let memfd = rr_memfd("rootless-restore-seccomp")
        guard memfd >= 0 else {
            throw RestoreError(.restoreFailed, operation: "memfd_create", errno: -memfd, entry: entry, message: "cannot export the seccomp profile")
        }
        defer { close(memfd) }
        let r = seccomp_export_bpf(ctx, memfd)
        guard r == 0 else {
            throw RestoreError(.restoreFailed, operation: "seccomp_export_bpf", errno: -r, entry: entry, message: "cannot export the seccomp profile")
        }
        let size = Int(lseek(memfd, 0, SEEK_END))
        guard size > 0, size % 8 == 0 else {
            throw RestoreError(.restoreFailed, operation: "seccomp_export_bpf", entry: entry, message: "unexpected filter size \(size)")
        }
        guard size / 8 <= maxInstructions else {
            throw RestoreError(.invalidTree, operation: "validate", entry: entry,
                               message: "\(path) compiles to \(size / 8) BPF instructions; the kernel accepts at most \(maxInstructions) per filter")
        }
        let instructions = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        let got = pread(memfd, instructions, size, 0)
        guard got == size else {
            let e = got < 0 ? Glibc.errno : EIO  // read before free(); a short read sets none
            instructions.deallocate()
            throw RestoreError(.restoreFailed, operation: "pread", errno: e, entry: entry, message: "cannot read the exported seccomp profile")
        }
        return (instructions, UInt16(size / 8))
    }

    /// Names of this architecture's system calls, for "did you mean" hints.
    static func knownSyscallNames() -> [String] {
        var names: [String] = []
        for nr in Int32(0)..<1024 {
            guard let p = seccomp_syscall_resolve_num_arch(UInt32(SCMP_ARCH_NATIVE), nr) else { continue }
            names.append(String(cString: p))
            free(p)
        }
        return names
    }
}
