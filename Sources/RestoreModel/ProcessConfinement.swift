// Capabilities, resource limits and seccomp profiles of a process: the OCI runtime-spec
// objects `process.capabilities`, `process.rlimits` and `linux.seccomp`, with the names
// they accept. Checked by TreeValidator; applied by the engine's ProcessIdentity.

/// OCI `process.capabilities`. Each set is a list of names such as "CAP_KILL"; a set left
/// out is empty (as in the OCI runtime spec).
public struct CapabilitySpec: Sendable, Equatable {
    public var bounding: [String]?
    public var effective: [String]?
    public var permitted: [String]?
    public var inheritable: [String]?
    public var ambient: [String]?

    public init(bounding: [String]? = nil, effective: [String]? = nil, permitted: [String]? = nil,
                inheritable: [String]? = nil, ambient: [String]? = nil) {
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient
    }

    /// The sets in the order of the OCI spec, with their key names.
    public var sets: [(name: String, names: [String]?)] {
        [("bounding", bounding), ("effective", effective), ("permitted", permitted),
         ("inheritable", inheritable), ("ambient", ambient)]
    }

    /// A set as a bit mask (bit N = capability N); unknown names are left out.
    public static func mask(_ names: [String]?) -> UInt64 {
        var m: UInt64 = 0
        for name in names ?? [] {
            if let n = Capabilities.number(named: name) { m |= UInt64(1) << UInt64(n) }
        }
        return m
    }
}

/// Linux capability names and numbers (include/uapi/linux/capability.h).
public enum Capabilities {
    /// Index = capability number.
    public static let names: [String] = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
        "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
        "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ]

    public static let sysAdmin: Int = 21

    /// The number of "CAP_SYS_ADMIN" (exact spelling); nil if unknown.
    public static func number(named name: String) -> Int? {
        names.firstIndex { $0.utf8.elementsEqual(name.utf8) }
    }

    /// The names of the bits set in `mask`, lowest first, and the bits no name is known for.
    public static func names(of mask: UInt64) -> (names: [String], unknownBits: [Int]) {
        var out: [String] = [], unknown: [Int] = []
        for bit in 0..<64 where mask & (UInt64(1) << UInt64(bit)) != 0 {
            if bit < names.count { out.append(names[bit]) } else { unknown.append(bit) }
        }
        return (out, unknown)
    }
}

/// One element of OCI `process.rlimits`.
public struct RlimitSpec: Sendable, Equatable {
    /// "RLIMIT_NOFILE", ...
    public var type: String
    public var soft: UInt64
    public var hard: UInt64

    public init(type: String, soft: UInt64, hard: UInt64) {
        self.type = type
        self.soft = soft
        self.hard = hard
    }

    /// RLIM_INFINITY: "unlimited".
    public static let unlimited = UInt64.max
}

/// Resource limit names, numbers (Linux x86_64 and aarch64) and their /proc/PID/limits labels.
public enum ResourceLimits {
    /// Index = resource number.
    public static let names: [String] = [
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
        "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
        "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    ]

    /// The row labels of /proc/PID/limits, same order.
    public static let procLabels: [String] = [
        "Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
        "Max resident set", "Max processes", "Max open files", "Max locked memory",
        "Max address space", "Max file locks", "Max pending signals", "Max msgqueue size",
        "Max nice priority", "Max realtime priority", "Max realtime timeout",
    ]

    public static func number(named name: String) -> Int? {
        names.firstIndex { $0.utf8.elementsEqual(name.utf8) }
    }

    /// Parses /proc/PID/limits into rlimits, in resource order ("unlimited" is UInt64.max).
    /// Rows that cannot be read are left out.
    public static func parseProcLimits(_ text: String) -> [RlimitSpec] {
        var out: [RlimitSpec] = []
        for line in text.split(separator: "\n") {
            guard let k = procLabels.firstIndex(where: { line.hasPrefix($0 + " ") }) else { continue }
            let words = line.dropFirst(procLabels[k].count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2 else { continue }
            func value(_ w: Substring) -> UInt64? { w == "unlimited" ? RlimitSpec.unlimited : UInt64(w) }
            guard let soft = value(words[0]), let hard = value(words[1]) else { continue }
            out.append(RlimitSpec(type: names[k], soft: soft, hard: hard))
        }
        return out
    }
}

/// The OCI `linux.seccomp` object.
public struct SeccompSpec: Sendable, Hashable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    /// "SCMP_ARCH_X86_64", ...; nil or empty: the native architecture only.
    public var architectures: [String]?
    public var syscalls: [SeccompSyscall]?

    /// What the profile does to `syscall` when it is not allowed outright: the rule (or the
    /// default action) that may refuse it, for messages; nil when it is always allowed.
    public func refusal(of syscall: String) -> String? {
        let passes: Set<String> = ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG"]
        for (k, rule) in (syscalls ?? []).enumerated() where rule.names.contains(syscall) {
            if passes.contains(rule.action) && (rule.args ?? []).isEmpty { return nil }
            if !passes.contains(rule.action) { return "process.seccomp.syscalls[\(k)] (\(rule.action))" }
        }
        return passes.contains(defaultAction) ? nil : "process.seccomp.defaultAction (\(defaultAction))"
    }

    public init(defaultAction: String, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil,
                syscalls: [SeccompSyscall]? = nil) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.syscalls = syscalls
    }

    /// The actions of the OCI runtime spec that rootless-restore can load.
    public static let actions: [String] = [
        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
    ]
    /// Actions of the spec that need something rootless-restore does not provide.
    public static let unsupportedActions: [String: String] = [
        "SCMP_ACT_NOTIFY": "it needs a seccomp agent (listenerPath), which rootless-restore does not run",
    ]
    /// Actions that take errnoRet (ERRNO: the errno returned; TRACE: the value the tracer sees).
    public static let actionsWithErrno: Set<String> = ["SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"]
    /// The largest errnoRet each action can carry: the kernel keeps 16 bits of a filter's
    /// return data (SECCOMP_RET_DATA) and clamps an errno to MAX_ERRNO (4095), so a larger
    /// value would silently become another errno, or with libseccomp's masking 0: a success.
    public static let maxErrnoRet: [String: UInt32] = ["SCMP_ACT_ERRNO": 4095, "SCMP_ACT_TRACE": 65535]

    /// The architectures of the OCI runtime spec.
    public static let architectureNames: [String] = [
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    ]

    /// Argument comparisons, in libseccomp's numbering (enum scmp_compare, 1...7).
    public static let operators: [String] = [
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ]

    /// Syscall arguments are numbered 0...5.
    public static let maxArguments = 6
}

/// One element of `linux.seccomp.syscalls`.
public struct SeccompSyscall: Sendable, Hashable {
    public var names: [String]
    public var action: String
    public var errnoRet: UInt32?
    public var args: [SeccompArg]?

    public init(names: [String], action: String, errnoRet: UInt32? = nil, args: [SeccompArg]? = nil) {
        self.names = names
        self.action = action
        self.errnoRet = errnoRet
        self.args = args
    }
}

/// One element of `syscalls[].args`: compare argument `index` with `value` (and `valueTwo`
/// for SCMP_CMP_MASKED_EQ: `(arg & value) == valueTwo`).
public struct SeccompArg: Sendable, Hashable {
    public var index: UInt32
    public var value: UInt64
    public var valueTwo: UInt64?
    public var op: String

    public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: String) {
        self.index = index
        self.value = value
        self.valueTwo = valueTwo
        self.op = op
    }
}
