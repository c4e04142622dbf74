// The fast path for plain process entries, the bulk of a large tree:
//   {"pid": 17, "ppid": 1, "pgid": 17, "sid": 17}
// plus the other keys whose values are integers, booleans, a state name or arrays of
// integers (nspid, threads, state, newPidNamespace, childSubreaper). Such an entry is read
// straight from the UTF-8 bytes into a ProcessEntry: no JSONValue, no String per key or number.
//
// It only ever accepts. Anything else (another key, an escape or non-ASCII byte in a key or
// string, a fraction or exponent, a leading zero, a number out of Int32's range, a duplicate or
// missing key, nspid[0] != pid, a syntax error) makes it give up without moving, and the
// general reader and TreeParser.decodeProcess read the entry instead, with their positions and
// messages. So the set of accepted files, the entries and every error stay what they were.

extension JSONReader {
    /// The plain process entry at the current position, with the reader moved past it (lines
    /// and columns counted); nil, with nothing moved, when the entry is not plain.
    mutating func scanPlainProcessEntry(index: Int) -> ProcessEntry? {
        let scanned: (ProcessEntry, PlainEntryScanner)? = bytes.withUnsafeBufferPointer { buffer in
            var scanner = PlainEntryScanner(bytes: buffer, pos: pos, line: line, column: column)
            return scanner.entry(index: index).map { ($0, scanner) }
        }
        guard let (entry, scanner) = scanned else { return nil }
        pos = scanner.pos
        line = scanner.line
        column = scanner.column
        return entry
    }
}

private struct PlainEntryScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var pos: Int
    var line: Int
    var column: Int

    /// The keys the fast path knows, as bit positions (a second occurrence gives up).
    private enum Key: Int {
        case pid, ppid, pgid, sid, nspid, state, threads, newPidNamespace, childSubreaper
    }

    mutating func entry(index: Int) -> ProcessEntry? {
        let startLine = line
        guard take(UInt8(ascii: "{")) else { return nil }
        var seen: UInt32 = 0
        var pid: Int32 = 0, ppid: Int32 = 0, pgid: Int32 = 0, sid: Int32 = 0
        var nspid: [Int32]?
        var state = ProcessState.running
        var threads: [Int32] = []
        var newPidNamespace = false, childSubreaper = false
        skipWhitespace()
        while true {
            guard let key = key() else { return nil }
            let bit: UInt32 = 1 << UInt32(key.rawValue)
            guard seen & bit == 0 else { return nil }
            seen |= bit
            skipWhitespace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipWhitespace()
            switch key {
            case .pid: guard let v = int32() else { return nil }; pid = v
            case .ppid: guard let v = int32() else { return nil }; ppid = v
            case .pgid: guard let v = int32() else { return nil }; pgid = v
            case .sid: guard let v = int32() else { return nil }; sid = v
            case .nspid: guard let v = int32Array(), !v.isEmpty else { return nil }; nspid = v
            case .threads: guard let v = int32Array() else { return nil }; threads = v
            case .state: guard let v = stateName() else { return nil }; state = v
            case .newPidNamespace: guard let v = bool() else { return nil }; newPidNamespace = v
            case .childSubreaper: guard let v = bool() else { return nil }; childSubreaper = v
            }
            skipWhitespace()
            if take(UInt8(ascii: ",")) {
                skipWhitespace()
                continue
            }
            guard take(UInt8(ascii: "}")) else { return nil }
            break
        }
        let required: UInt32 = 1 << UInt32(Key.pid.rawValue) | 1 << UInt32(Key.ppid.rawValue)
            | 1 << UInt32(Key.pgid.rawValue) | 1 << UInt32(Key.sid.rawValue)
        guard seen & required == required else { return nil }
        if let nspid, nspid[0] != pid { return nil }
        return ProcessEntry(index: index, line: startLine, pid: pid, ppid: ppid, pgid: pgid, sid: sid,
                            nspid: nspid, state: state, exitStatus: nil, threads: threads,
                            newPidNamespace: newPidNamespace, childSubreaper: childSubreaper, process: nil)
    }

    // MARK: bytes

    private mutating func skipWhitespace() { skipJSONWhitespace(bytes, &pos, &line, &column) }

    /// Consumes `byte` (ASCII, not a line feed) if it is next.
    private mutating func take(_ byte: UInt8) -> Bool {
        guard pos < bytes.count, bytes[pos] == byte else { return false }
        pos += 1
        column += 1
        return true
    }

    /// A key made of ASCII letters only, one of `Key`.
    private mutating func key() -> Key? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = pos
        while pos < bytes.count, case let b = bytes[pos] | 0x20, b >= UInt8(ascii: "a"), b <= UInt8(ascii: "z") {
            pos += 1
        }
        let end = pos
        guard take(UInt8(ascii: "\"")) else { return nil }
        column += end - start
        let k = UnsafeBufferPointer(rebasing: bytes[start..<end])
        func isKey(_ name: StaticString) -> Bool {
            name.utf8CodeUnitCount == k.count && name.withUTF8Buffer { $0.elementsEqual(k) }
        }
        switch k.count {
        case 3: return isKey("pid") ? .pid : isKey("sid") ? .sid : nil
        case 4: return isKey("ppid") ? .ppid : isKey("pgid") ? .pgid : nil
        case 5: return isKey("nspid") ? .nspid : isKey("state") ? .state : nil
        case 7: return isKey("threads") ? .threads : nil
        case 14: return isKey("childSubreaper") ? .childSubreaper : nil
        case 15: return isKey("newPidNamespace") ? .newPidNamespace : nil
        default: return nil
        }
    }

    /// A JSON integer in Int32's range, without fraction, exponent or leading zero.
    private mutating func int32() -> Int32? {
        var i = pos
        let negative = i < bytes.count && bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        let first = i
        var value: Int64 = 0
        while i < bytes.count, case let d = bytes[i] &- UInt8(ascii: "0"), d < 10 {
            // 10 digits hold every Int32; an 11th gives up (before Int64 could overflow).
            guard i - first < 10 else { return nil }
            value = value * 10 + Int64(d)
            i += 1
        }
        let digits = i - first
        guard digits > 0, !(digits > 1 && bytes[first] == UInt8(ascii: "0")) else { return nil }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] | 0x20 == UInt8(ascii: "e") { return nil }
        guard let result = Int32(exactly: negative ? -value : value) else { return nil }
        column += i - pos
        pos = i
        return result
    }

    /// `[` integers separated by commas `]`, possibly empty.
    private mutating func int32Array() -> [Int32]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var out: [Int32] = []
        skipWhitespace()
        if take(UInt8(ascii: "]")) { return out }
        while true {
            guard let v = int32() else { return nil }
            out.append(v)
            skipWhitespace()
            if take(UInt8(ascii: "]")) { return out }
            guard take(UInt8(ascii: ",")) else { return nil }
            skipWhitespace()
        }
    }

    private mutating func bool() -> Bool? {
        if literal("true") { return true }
        if literal("false") { return false }
        return nil
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard pos + n <= bytes.count,
              word.withUTF8Buffer({ $0.elementsEqual(UnsafeBufferPointer(rebasing: bytes[pos..<pos + n])) })
        else { return false }
        pos += n
        column += n
        return true
    }

    /// "running", "stopped" or "zombie".
    private mutating func stateName() -> ProcessState? {
        if literal("\"running\"") { return .running }
        if literal("\"stopped\"") { return .stopped }
        if literal("\"zombie\"") { return .zombie }
        return nil
    }
}
