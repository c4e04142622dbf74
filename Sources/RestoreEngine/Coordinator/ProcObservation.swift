import Glibc
import RestoreModel

extension ProcStatus {
    /// Reads /proc/PID/status; nil when the process is gone.
    public static func read(_ pid: Int32, procRoot: String = "/proc") -> ProcStatus? {
        guard let bytes = SystemCalls.readFile("\(procRoot)/\(pid)/status") else { return nil }
        return parse(bytes, pid: pid)
    }

    /// Number of PID-namespace levels above and including the reader's own.
    public static func ownLevelCount() -> Int {
        read(Int32(getpid()))?.nspid.count ?? 1
    }
}

/// Phase 4: the one /proc pass of a restore, read by verification and by the report.
enum ProcObservation {
    static func observe(_ world: PreparedWorld, _ channel: PuppetChannel) -> RestoreVerification.Observation {
        var statuses = [ProcStatus?](repeating: nil, count: channel.hostPid.count)
        for node in world.plan.nodeOfEntry where channel.hostPid[node] > 0 {
            statuses[node] = ProcStatus.read(channel.hostPid[node])
        }
        var terminals: [(ttyNr: UInt32, tpgid: Int32)?] = []
        if world.puppets.terminalCount > 0 {
            terminals = [(ttyNr: UInt32, tpgid: Int32)?](repeating: nil, count: channel.hostPid.count)
            for node in world.plan.nodeOfEntry where channel.hostPid[node] > 0 {
                terminals[node] = StatLine.read(channel.hostPid[node]).map { ($0.ttyNr, $0.tpgid) }
            }
        }
        return RestoreVerification.Observation(hostPids: channel.hostPid, statuses: statuses,
                                               runtimePid: Int32(getpid()), ownLevels: world.ownLevels, terminals: terminals)
    }
}
