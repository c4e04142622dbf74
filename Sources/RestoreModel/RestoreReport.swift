/// What `--report` writes: the restored tree as read back from /proc (the verification's
/// pass), the helpers used, and where the time went.
public struct RestoreReport: Sendable {
    public struct Process: Sendable, Equatable {
        public var index: Int
        public var hostPid: Int32
        public var nspid: [Int32]
        public var ppid: Int32
        public var pgid: Int32
        public var sid: Int32
        public var nspgid: [Int32]
        public var nssid: [Int32]
        public var state: String
        public var threads: Int

        public init(index: Int, hostPid: Int32, nspid: [Int32], ppid: Int32, pgid: Int32, sid: Int32,
                    nspgid: [Int32], nssid: [Int32], state: String, threads: Int) {
            self.index = index
            self.hostPid = hostPid
            self.nspid = nspid
            self.ppid = ppid
            self.pgid = pgid
            self.sid = sid
            self.nspgid = nspgid
            self.nssid = nssid
            self.state = state
            self.threads = threads
        }
    }

    public struct Helper: Sendable, Equatable {
        public var nspid: [Int32]
        public var purpose: String

        public init(nspid: [Int32], purpose: String) {
            self.nspid = nspid
            self.purpose = purpose
        }
    }

    public var processes: [Process] = []
    public var helpers: [Helper] = []
    /// Phase name and milliseconds, in order.
    public var phases: [(String, Double)] = []
    public var treeHasInit = false

    public init() {}

    /// The helpers of a plan, as the report lists them.
    public static func helpers(of plan: RestorePlan) -> [Helper] {
        plan.nodes.compactMap { n in
            if case .helper(let purpose) = n.role { return Helper(nspid: n.nspid, purpose: purpose.description) }
            return nil
        }
    }

    public func json() -> String {
        JSONOutput.object([
            ("version", .int(1)),
            ("treeHasInit", .bool(treeHasInit)),
            ("processes", .array(processes.map { p in
                .object([("index", .int(p.index)), ("pid", .int(p.nspid.first ?? 0)), ("nspid", .ints(p.nspid)),
                         ("hostPid", .int(p.hostPid)), ("ppid", .int(p.ppid)), ("pgid", .int(p.pgid)), ("sid", .int(p.sid)),
                         ("nspgid", .ints(p.nspgid)), ("nssid", .ints(p.nssid)), ("state", .string(p.state)),
                         ("threads", .int(p.threads))])
            }, layout: .lines)),
            ("helpers", .array(helpers.map { h in .object([("nspid", .ints(h.nspid)), ("purpose", .string(h.purpose))]) },
                               layout: .lines)),
            ("phases", .object(phases.map { name, ms in (name, .double((ms * 1000).rounded() / 1000)) })),
        ], layout: .lines).document()
    }
}
