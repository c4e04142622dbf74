/// PIDs that the payloads' own forks must receive: the processes marked `"spawn": "payload"`
/// and the threads of processes that exec. The runtime does not create these; its fork
/// supervisor hands the recorded PIDs out, in fork order, as the payloads fork.
public struct PinnedForks: Sendable, Equatable {
    /// Forker's PID -> the PIDs its payload's forks get, in order.
    public var children: [Int32: [Int32]] = [:]
    /// Process's PID -> the TIDs its payload's thread creations get, in order.
    public var threads: [Int32: [Int32]] = [:]
    /// Pinned PID -> what the recording saw there and how messages name the entry (PinCheck).
    public var identities: [Int32: RecordedIdentity] = [:]
    public var labels: [Int32: String] = [:]

    public init() {}

    public var isEmpty: Bool { children.isEmpty }

    /// Every PID or TID the supervisor will hand out.
    public var allPinned: [Int32] { children.values.flatMap { $0 } + threads.values.flatMap { $0 } }

    /// Splits a tree into what the runtime creates and what the payloads fork. Checks that
    /// every payload-spawned process has a parent that runs a payload (or is payload-spawned
    /// itself), and that the tree is a single PID namespace. With the tree's own PID 1 the
    /// supervisor runs beside it (OutsideSupervisor).
    public static func split(_ tree: ProcessTree) throws -> (ProcessTree, PinnedForks) {
        var pinned = PinnedForks()
        guard tree.processes.contains(where: \.spawnedByPayload) else { return (tree, pinned) }
        var byPid: [Int32: ProcessEntry] = [:]
        for e in tree.processes { byPid[e.pid] = e }
        for e in tree.processes where e.spawnedByPayload {
            guard let parent = byPid[e.ppid], parent.pid != e.pid else {
                throw RestoreError.invalid(e.label, "is spawned by its parent's payload, but its parent \(e.ppid) is not in the tree")
            }
            let parentRuns = !(parent.process?.args ?? []).isEmpty
            guard parent.spawnedByPayload || parentRuns else {
                throw RestoreError.invalid(e.label, "is spawned by its parent's payload, but its parent \(parent.label) holds (has no args), so nothing would fork it")
            }
            guard e.nspid.count == 1, !e.newPidNamespace else {
                throw RestoreError.invalid(e.label, "is spawned by its parent's payload inside a nested PID namespace; pinned PIDs work in the tree's top namespace only")
            }
            pinned.children[parent.pid, default: []].append(e.pid)
            pinned.labels[e.pid] = e.label
            if let r = e.recorded { pinned.identities[e.pid] = r }
        }
        for e in tree.processes where !e.spawnedByPayload {
            if let parent = byPid[e.ppid], parent.spawnedByPayload {
                throw RestoreError.invalid(e.label, "would be created by the runtime, but its parent \(parent.label) is spawned by a payload: mark it \"spawn\": \"payload\" too")
            }
        }
        for e in tree.processes where e.spawnedByPayload || !(e.process?.args ?? []).isEmpty {
            let extra = e.threads.filter { $0 != e.pid }
            if !extra.isEmpty { pinned.threads[e.pid] = extra }
        }
        var rest = tree
        rest.processes = tree.processes.filter { !$0.spawnedByPayload }
        // A foreground group made only of payload forks (a shell's foreground job it starts
        // again) does not exist yet when the runtime sets foreground groups: the session
        // leader's group has the terminal until the payload gives it away.
        for k in rest.terminals.indices {
            if let fg = rest.terminals[k].foreground, !rest.processes.contains(where: { $0.pgid == fg }) {
                rest.terminals[k].foreground = nil
            }
        }
        return (rest, pinned)
    }
}
