import CRestoreShim
import Glibc
import RestoreModel

// Recording terminals: per process its controlling terminal (tty_nr in /proc/PID/stat) and
// which of descriptors 0-2 are on a terminal; per terminal its session and foreground group
// (tpgid), and the window size and termios read through a descriptor that has it open.

extension TreeRecorder {
    /// A character device as (major, minor).
    struct Device: Hashable {
        var major: UInt32
        var minor: UInt32

        init(major: UInt32, minor: UInt32) {
            self.major = major
            self.minor = minor
        }

        /// tty_nr of /proc/PID/stat (the kernel's new_encode_dev).
        init(ttyNr v: UInt32) {
            major = (v >> 8) & 0xfff
            minor = (v & 0xff) | ((v >> 12) & 0xfff00)
        }

        /// st_rdev as glibc encodes it.
        init(rdev v: UInt64) {
            major = UInt32(truncatingIfNeeded: ((v >> 8) & 0xfff) | ((v >> 32) & ~UInt64(0xfff)))
            minor = UInt32(truncatingIfNeeded: (v & 0xff) | ((v >> 12) & ~UInt64(0xff)))
        }

        var isPtySlave: Bool { rr_is_pty_slave_major(major) != 0 }

        /// "pts3" for /dev/pts/3 (Unix98 slaves: majors 136-143, 256 minors each).
        var ptsNumber: UInt32? { isPtySlave ? (major - 136) * 256 + minor : nil }
    }

    /// Fills `terminal` and `stdio` of the entries (entry i is snapshot i) and returns the
    /// tree's terminals.
    static func recordTerminals(_ snaps: [Snapshot], _ entries: inout [ProcessEntry], level: Int, hold: Set<Int32>,
                                warnings: inout [String]) -> [TerminalSpec] {
        masterHolderWarning(snaps, entries, hold: hold, warnings: &warnings)
        // Descriptors 0-2 of every live process that are terminals: a pty slave, or the
        // device some process of the tree has as controlling terminal.
        let cttys = Set(snaps.filter { $0.ttyNr != 0 && $0.state != "Z" }.map { Device(ttyNr: $0.ttyNr) })
        var stdio: [[Device?]] = []
        var opened: [Device: (path: String, name: String)] = [:]
        for s in snaps {
            var row: [Device?] = []
            if s.state != "Z" {
                for fd in 0..<3 {
                    let path = "/proc/\(s.hostPid)/fd/\(fd)"
                    var st = stat()
                    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR else { row.append(nil); continue }
                    let dev = Device(rdev: UInt64(st.st_rdev))
                    guard dev.isPtySlave || cttys.contains(dev) else { row.append(nil); continue }
                    row.append(dev)
                    if opened[dev] == nil, let link = readLink(path) { opened[dev] = (path, link) }
                }
            }
            while row.last == .some(nil) { row.removeLast() }
            stdio.append(row)
        }
        var devices = Array(cttys)
        for row in stdio { for case let d? in row where !devices.contains(d) { devices.append(d) } }
        guard !devices.isEmpty else { return [] }
        devices.sort { ($0.major, $0.minor) < ($1.major, $1.minor) }

        var terminals: [TerminalSpec] = []
        var idOf: [Device: String] = [:]
        for dev in devices {
            let recordedAs = opened[dev]?.name ?? dev.ptsNumber.map { "/dev/pts/\($0)" } ?? "device \(dev.major):\(dev.minor)"
            var id = dev.ptsNumber.map { "pts\($0)" }
                ?? (recordedAs.hasPrefix("/dev/") ? recordedAs.dropFirst(5).split(separator: "/").joined(separator: "-") : "tty\(dev.major)-\(dev.minor)")
            if terminals.contains(where: { $0.id == id }) { id += "-\(dev.major)-\(dev.minor)" }
            idOf[dev] = id
            var t = TerminalSpec(id: id, recordedAs: recordedAs)
            // The window size, through a descriptor that has it open (O_NOCTTY: reading it never
            // makes it record's own controlling terminal).
            if let path = opened[dev]?.path {
                let fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
                if fd >= 0 {
                    var rows: UInt16 = 0, cols: UInt16 = 0
                    if rr_tty_get_winsize(fd, &rows, &cols) == 0 { t.rows = rows; t.columns = cols }
                    var tio = termios()
                    if tcgetattr(fd, &tio) == 0 {
                        let cc = withUnsafeBytes(of: tio.c_cc) { Array($0) }
                        t.modes = TerminalModes(iflag: tio.c_iflag, oflag: tio.c_oflag, cflag: tio.c_cflag, lflag: tio.c_lflag, cc: cc)
                    }
                    close(fd)
                }
            }
            terminals.append(t)
        }

        var orphaned: [String: [String]] = [:]
        for (i, s) in snaps.enumerated() {
            entries[i].stdio = stdio[i].map { $0.flatMap { idOf[$0] } }
            guard s.ttyNr != 0, s.state != "Z" else { continue }
            let dev = Device(ttyNr: s.ttyNr)
            guard let id = idOf[dev], let k = terminals.firstIndex(where: { $0.id == id }) else { continue }
            let sid = entries[i].sid
            // The session leader: the process of the tree that leads this session with it.
            if let leader = snaps.indices.first(where: { entries[$0].pid == sid && entries[$0].sid == sid && snaps[$0].ttyNr == s.ttyNr && snaps[$0].state != "Z" }) {
                terminals[k].session = sid
                entries[i].terminal = id
                if i == leader, s.tpgid > 0 {
                    // tpgid is in the reader's namespace: the tree's number of that group.
                    let fg = snaps.firstIndex { $0.nspgid.first == s.tpgid }.map { entries[$0].pgid }
                    if let fg, entries.contains(where: { $0.pgid == fg && $0.sid == sid }) {
                        terminals[k].foreground = fg
                    } else {
                        warnings.append("\(terminals[k].label(k)): its foreground group \(s.tpgid) (tpgid of process \(entries[i].pid)) has no process in the tree; restored with the session leader's group in the foreground")
                    }
                }
            } else {
                orphaned[id, default: []].append("\(entries[i].pid)")
            }
        }
        for (id, pids) in orphaned.sorted(by: { $0.key < $1.key }) {
            warnings.append("processes \(list(pids)) have terminal \(id) as controlling terminal, but the leader of their session is not in the tree (only a session leader can take a controlling terminal): restored without it (descriptors on it still get the restored pty)")
        }
        return terminals
    }

    /// A process that holds a pty master (script, tmux, sshd, a terminal emulator) is the
    /// other end of a terminal. Descriptors are not restored: restarted, such a program makes
    /// new terminals (script and tmux start a new shell), so say so, unless it is recorded
    /// holding.
    static func masterHolderWarning(_ snaps: [Snapshot], _ entries: [ProcessEntry], hold: Set<Int32>, warnings: inout [String]) {
        let ptmx = Device(major: 5, minor: 2)
        var holders: [String] = []
        for (i, s) in snaps.enumerated() where s.state != "Z" && !hold.contains(s.hostPid) && entries[i].process?.args != nil {
            guard let dir = opendir("/proc/\(s.hostPid)/fd") else { continue }
            defer { closedir(dir) }
            while let e = readdir(dir) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                guard Int(name) != nil else { continue }
                var st = stat()
                if stat("/proc/\(s.hostPid)/fd/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR, Device(rdev: UInt64(st.st_rdev)) == ptmx {
                    holders.append("\(entries[i].pid) (host pid \(s.hostPid))")
                    break
                }
            }
        }
        if !holders.isEmpty {
            warnings.append("processes \(list(holders)) hold the master side of a terminal (as script, tmux, sshd or a terminal emulator do): descriptors are not restored, so restarted they would make new terminals (and script or tmux a new shell) while the recorded ones come back as ptys run holds; record them holding (--hold PID), or record the session inside")
        }
    }
}
