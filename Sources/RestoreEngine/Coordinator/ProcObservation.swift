import Glibc
import RestoreModel

extension ProcStatus {
    /// Reads /proc/PID/status; nil when the process is gone.
    public static func read(_ pid: Int32, procRoot: String = "/proc") -> ProcStatus? {
        guard let bytes = SystemCalls.readFile("\(procRoot)/\(pid)/status") else { return nil }
        return parse(bytes, pid: pid)
    }

    /// The same through `buffer`, reused from one process to the next (the one /proc pass of
    /// a restore reads thousands): one open, one read, one close when the text fits.
    static func read(_ pid: Int32, buffer: UnsafeMutableBufferPointer<UInt8>) -> ProcStatus? {
        let fd = "/proc/\(pid)/status".withCString { open($0, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A /proc seq file hands over its whole text in one read when it fits: a short read is
        // all of it. A text that fills the buffer is read again the general way.
        let (n, e) = SystemCalls.retrying { Glibc.read(fd, buffer.baseAddress, buffer.count) }
        if e != 0 { return nil }
        if n < buffer.count { return parse(UnsafeBufferPointer(rebasing: buffer[0..<n]), pid: pid) }
        return read(pid)
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
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 16 * 1024)
        defer { buffer.deallocate() }
        for node in world.plan.nodeOfEntry where channel.hostPid[node] > 0 {
            statuses[node] = ProcStatus.read(channel.hostPid[node], buffer: buffer)
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
