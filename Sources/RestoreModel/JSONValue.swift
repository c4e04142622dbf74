// A small strict JSON parser (RFC 8259) that remembers where every value and key starts.
//
// Strict means: no comments, no trailing commas, no single quotes, no NaN/Infinity, no leading
// zeros, no byte order mark, no raw control characters in strings, valid UTF-8 only, no lone
// UTF-16 surrogates in \u escapes, nothing after the document, and no duplicate key in one
// object. Errors are `RestoreError`s of kind `.invalidTree`, operation "parse", whose entry is
// the position: `line 4, column 9: expected ',' or '}' after object member, found '"'`.

/// Where a value or an object key starts: 1-based line and column. Lines end at LF; columns
/// count Unicode scalars (a tab counts as one), which is what most editors show.
public struct JSONPosition: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "line \(line), column \(column)" }
}

/// A JSON number kept as written, so integers and non-integers stay apart and a value too
/// large for the target type is detected rather than rounded.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The literal exactly as it appears in the text, e.g. `-12`, `1.5`, `2e9`.
    public var text: String
    /// True when the literal has neither a fraction nor an exponent (`1.0` and `1e3` are not).
    public var isInteger: Bool

    public init(text: String, isInteger: Bool) {
        self.text = text
        self.isInteger = isInteger
    }

    /// The value, when the literal is an integer that fits in Int64; nil otherwise.
    public var int64Value: Int64? { isInteger ? Int64(text) : nil }

    /// The nearest Double (possibly infinite for huge literals).
    public var doubleValue: Double? { Double(text) }

    public var description: String { text }
}

/// One member of a JSON object, with the position of its key.
public struct JSONMember: Sendable, Equatable {
    public var key: String
    public var keyPosition: JSONPosition
    public var value: JSONValue

    public init(key: String, keyPosition: JSONPosition, value: JSONValue) {
        self.key = key
        self.keyPosition = keyPosition
        self.value = value
    }
}

/// A JSON object: members in document order, keys unique (compared as code-point sequences,
/// not by Unicode canonical equivalence).
public struct JSONObject: Sendable, Equatable {
    public private(set) var members: [JSONMember] = []
    /// Built only for large objects; small ones are searched linearly.
    private var indexByKey: [[UInt8]: Int]?
    private static let linearLimit = 16

    public init() {}

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }

    /// The member named `key`, if present.
    public subscript(key: String) -> JSONMember? {
        position(of: key).map { members[$0] }
    }

    private func position(of key: String) -> Int? {
        if let indexByKey { return indexByKey[Array(key.utf8)] }
        return members.firstIndex { JSONObject.sameKey($0.key, key) }
    }

    /// Keys are equal when their UTF-8 bytes are (not by canonical equivalence); compared on
    /// contiguous storage, which the generic elementsEqual of two UTF8Views is not (it was a
    /// tenth of `validate`'s time on a 10^6-process tree).
    @inline(__always)
    public static func sameKey(_ a: String, _ b: String) -> Bool {
        let fast = a.utf8.withContiguousStorageIfAvailable { x in
            b.utf8.withContiguousStorageIfAvailable { y in x.count == y.count && x.elementsEqual(y) }
        }
        return (fast ?? nil) ?? a.utf8.elementsEqual(b.utf8)
    }

    /// Adds a member; returns the existing member instead if the key is already present.
    @discardableResult
    public mutating func insert(_ member: JSONMember) -> JSONMember? {
        if let i = position(of: member.key) { return members[i] }
        members.append(member)
        if indexByKey != nil {
            indexByKey![Array(member.key.utf8)] = members.count - 1
        } else if members.count > JSONObject.linearLimit {
            var index: [[UInt8]: Int] = [:]
            for (i, m) in members.enumerated() { index[Array(m.key.utf8)] = i }
            indexByKey = index
        }
        return nil
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool { a.members == b.members }
}

/// A parsed JSON value and the position of its first character.
public struct JSONValue: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case null
        case bool(Bool)
        case number(JSONNumber)
        case string(String)
        case array([JSONValue])
        case object(JSONObject)
    }

    public var kind: Kind
    public var position: JSONPosition

    public init(_ kind: Kind, at position: JSONPosition) {
        self.kind = kind
        self.position = position
    }

    /// How many arrays and objects may nest before the parser refuses the document.
    public static let maxNesting = 512

    /// Parses one JSON document (RFC 8259, UTF-8). Throws `RestoreError` (.invalidTree, "parse").
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var reader = JSONReader(bytes)
        return try reader.document()
    }

    /// "an object", "an array", "a string", "a number", "a boolean" or "null", for messages.
    public var typeName: String {
        switch kind {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// A short rendering for "found ..." in messages: `"abc"`, `1.5`, `true`, `null`,
    /// `an array`, `an object`. Long strings are cut.
    public var shortDescription: String {
        switch kind {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n.text.count > 24 ? String(n.text.prefix(24)) + "..." : n.text
        case .string(let s): return JSONValue.quoted(s, limit: 40)
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// `s` in double quotes with JSON escapes for quotes, backslashes and control characters,
    /// cut to `limit` characters.
    public static func quoted(_ s: String, limit: Int = 80) -> String {
        var out = "\""
        var n = 0
        for scalar in s.unicodeScalars {
            if n == limit {
                out += "..."
                break
            }
            n += 1
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u" + hex4(scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func hex4(_ v: UInt32) -> String {
        let digits = Array("0123456789ABCDEF")
        var s = ""
        for shift in stride(from: 12, through: 0, by: -4) {
            s.append(digits[Int((v >> UInt32(shift)) & 0xF)])
        }
        return s
    }
}

/// The recursive-descent reader behind `JSONValue.parse`.
struct JSONReader {
    // Internal rather than private for the plain-entry fast path (ProcessEntryScanner.swift),
    // which reads ahead on the same bytes and moves the position only when it accepts.
    let bytes: [UInt8]
    var pos = 0
    var line = 1
    var column = 1
    /// When set: the elements of the top-level object's array member `key` are handed to `sink`
    /// one by one (index, element) as they are parsed, and not kept: that member's value
    /// reads as an empty array. A large tree's `processes` thus never exists as a whole tree
    /// of JSONValues (TreeParser decodes each entry at once).
    var stream: (key: String, sink: (Int, JSONValue) -> Void)?
    /// Tried first on each streamed element (index): returns true when it consumed the
    /// element itself (and delivered it), false to leave the position untouched and have
    /// the element parsed and handed to `sink` as usual.
    var fastElement: ((inout JSONReader, Int) -> Bool)?

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    // MARK: positions and errors

    private var position: JSONPosition { JSONPosition(line: line, column: column) }

    private func error(_ message: String, at where_: JSONPosition? = nil) -> RestoreError {
        RestoreError(.invalidTree, operation: "parse", entry: (where_ ?? position).description,
                     message: message)
    }

    private var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    /// Consumes one byte that is not a line feed and not part of a multi-byte character.
    private mutating func advanceASCII() {
        pos += 1
        column += 1
    }

    /// What is at the current position, for "found ..." in messages.
    private func found() -> String {
        guard let b = peek else { return "the end of the file" }
        switch b {
        case 0x20...0x7E: return "'\(Character(Unicode.Scalar(b)))'"
        case 0x0A: return "a line break"
        case 0x00..<0x20, 0x7F: return "the control character U+\(JSONValue.hex4(UInt32(b)))"
        default:
            if let (scalar, _) = decodeUTF8(at: pos) {
                return "'\(Character(scalar))' (U+\(JSONValue.hex4(scalar.value)))"
            }
            return "the byte 0x\(String(b, radix: 16, uppercase: true)), which is not valid UTF-8"
        }
    }

    /// A hint for common non-JSON syntax at the current position, or "".
    private func hint() -> String {
        switch peek {
        case UInt8(ascii: "'"): return " (JSON strings use double quotes)"
        case UInt8(ascii: "/"), UInt8(ascii: "#"):
            return " (JSON has no comments; tree.json accepts a top-level \"comment\" string)"
        default: return ""
        }
    }

    private mutating func skipWhitespace() { skipJSONWhitespace(bytes, &pos, &line, &column) }

    // MARK: document

    mutating func document() throws -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            throw error("the file starts with a UTF-8 byte order mark, which JSON does not allow "
                        + "(save it as UTF-8 without BOM)")
        }
        skipWhitespace()
        if pos == bytes.count {
            throw error(bytes.isEmpty ? "the file is empty" : "the file contains only whitespace")
        }
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if pos < bytes.count {
            throw error("unexpected \(found()) after the end of the JSON document"
                        + " (a file holds exactly one value)")
        }
        return value
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard let b = peek else {
            throw error("expected a value, found the end of the file")
        }
        switch b {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""):
            let start = position
            return JSONValue(.string(try parseString()), at: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        case UInt8(ascii: "t"): return try parseLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try parseLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try parseLiteral("null", .null)
        default:
            throw error("expected a value, found \(found())\(hint())")
        }
    }

    private mutating func parseLiteral(_ word: StaticString, _ kind: JSONValue.Kind) throws -> JSONValue {
        let start = position
        let count = word.utf8CodeUnitCount
        let matches = word.withUTF8Buffer { w -> Bool in
            guard pos + count <= bytes.count else { return false }
            for i in 0..<count where bytes[pos + i] != w[i] { return false }
            return true
        }
        guard matches else {
            throw error("invalid literal: expected true, false or null, found \(found())", at: start)
        }
        pos += count
        column += count
        return JSONValue(kind, at: start)
    }

    // MARK: containers

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        let start = position
        if depth > JSONValue.maxNesting {
            throw error("arrays and objects nest deeper than \(JSONValue.maxNesting) levels")
        }
        advanceASCII()  // {
        var object = JSONObject()
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            advanceASCII()
            return JSONValue(.object(object), at: start)
        }
        while true {
            guard peek == UInt8(ascii: "\"") else {
                if peek == UInt8(ascii: "}") {
                    throw error("trailing comma before '}' is not allowed in JSON")
                }
                throw error("expected an object key in double quotes, found \(found())\(hint())")
            }
            let keyPosition = position
            let key = try parseString()
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else {
                throw error("expected ':' after object key \(JSONValue.quoted(key, limit: 40)), found \(found())")
            }
            advanceASCII()
            skipWhitespace()
            let value: JSONValue
            if depth == 1, let stream, peek == UInt8(ascii: "["), JSONObject.sameKey(key, stream.key) {
                value = try parseArray(depth: depth + 1, sink: stream.sink)
            } else {
                value = try parseValue(depth: depth)
            }
            if let first = object.insert(JSONMember(key: key, keyPosition: keyPosition, value: value)) {
                throw error("duplicate key \(JSONValue.quoted(key, limit: 40)) in one object "
                            + "(first at \(first.keyPosition))", at: keyPosition)
            }
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","):
                advanceASCII()
                skipWhitespace()
            case UInt8(ascii: "}"):
                advanceASCII()
                return JSONValue(.object(object), at: start)
            default:
                throw error("expected ',' or '}' after object member, found \(found())\(hint())")
            }
        }
    }

    private mutating func parseArray(depth: Int, sink: ((Int, JSONValue) -> Void)? = nil) throws -> JSONValue {
        let start = position
        if depth > JSONValue.maxNesting {
            throw error("arrays and objects nest deeper than \(JSONValue.maxNesting) levels")
        }
        advanceASCII()  // [
        var elements: [JSONValue] = []
        var streamed = 0
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            advanceASCII()
            return JSONValue(.array(elements), at: start)
        }
        while true {
            if peek == UInt8(ascii: "]") {
                throw error("trailing comma before ']' is not allowed in JSON")
            }
            if let sink {
                let index = elements.count + streamed
                if let fast = fastElement, fast(&self, index) {
                    // consumed and delivered by the fast path
                } else {
                    sink(index, try parseValue(depth: depth))
                }
                streamed += 1
            } else {
                elements.append(try parseValue(depth: depth))
            }
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","):
                advanceASCII()
                skipWhitespace()
            case UInt8(ascii: "]"):
                advanceASCII()
                return JSONValue(.array(elements), at: start)
            default:
                throw error("expected ',' or ']' after array element, found \(found())\(hint())")
            }
        }
    }

    // MARK: numbers

    private mutating func parseNumber() throws -> JSONValue {
        let start = position
        let startIndex = pos
        var isInteger = true
        if peek == UInt8(ascii: "-") { advanceASCII() }
        guard let first = peek, isDigit(first) else {
            throw error("expected a digit after '-', found \(found())")
        }
        advanceASCII()
        if first == UInt8(ascii: "0") {
            if let b = peek, isDigit(b) {
                throw error("numbers cannot have leading zeros", at: start)
            }
        } else {
            while let b = peek, isDigit(b) { advanceASCII() }
        }
        if peek == UInt8(ascii: ".") {
            isInteger = false
            advanceASCII()
            guard let b = peek, isDigit(b) else {
                throw error("expected a digit after the decimal point, found \(found())")
            }
            while let b = peek, isDigit(b) { advanceASCII() }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            isInteger = false
            advanceASCII()
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { advanceASCII() }
            guard let b = peek, isDigit(b) else {
                throw error("expected a digit in the exponent, found \(found())")
            }
            while let b = peek, isDigit(b) { advanceASCII() }
        }
        let text = String(decoding: bytes[startIndex..<pos], as: UTF8.self)
        return JSONValue(.number(JSONNumber(text: text, isInteger: isInteger)), at: start)
    }

    private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    // MARK: strings

    /// Parses a string starting at its opening quote; returns its decoded content.
    private mutating func parseString() throws -> String {
        let start = position
        advanceASCII()  // "
        var out: [UInt8] = []
        while true {
            guard let b = peek else {
                throw error("unterminated string (no closing '\"' before the end of the file)", at: start)
            }
            switch b {
            case UInt8(ascii: "\""):
                advanceASCII()
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            case 0x0A:
                throw error("line break inside a string (write it as \\n, or close the string)")
            case 0x00..<0x20:
                throw error("raw control character U+\(JSONValue.hex4(UInt32(b))) inside a string "
                            + "(write it as an escape such as \\t or \\u\(JSONValue.hex4(UInt32(b))))")
            case 0x20..<0x80:
                // A run of plain ASCII characters is copied at once.
                var end = pos + 1
                while end < bytes.count, bytes[end] >= 0x20, bytes[end] < 0x80,
                      bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\") {
                    end += 1
                }
                out.append(contentsOf: bytes[pos..<end])
                column += end - pos
                pos = end
            default:
                guard let (_, length) = decodeUTF8(at: pos) else {
                    throw error("invalid UTF-8 (byte 0x\(String(b, radix: 16, uppercase: true))) inside a string")
                }
                out.append(contentsOf: bytes[pos..<pos + length])
                pos += length
                column += 1
            }
        }
    }

    private mutating func parseEscape(into out: inout [UInt8]) throws {
        let escapeStart = position
        advanceASCII()  // backslash
        guard let c = peek else {
            throw error("unterminated string (no closing '\"' before the end of the file)")
        }
        let simple: UInt8?
        switch c {
        case UInt8(ascii: "\""): simple = 0x22
        case UInt8(ascii: "\\"): simple = 0x5C
        case UInt8(ascii: "/"): simple = 0x2F
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"): simple = nil
        default:
            throw error("invalid escape '\\' followed by \(found()) (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                        at: escapeStart)
        }
        advanceASCII()
        if let simple {
            out.append(simple)
            return
        }
        let unit = try hexQuad(escapeStart)
        var scalarValue = UInt32(unit)
        if (0xD800...0xDBFF).contains(unit) {
            // A high surrogate must be followed by an escaped low surrogate.
            guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                throw error("\\u\(JSONValue.hex4(UInt32(unit))) is a UTF-16 high surrogate without a low surrogate after it",
                            at: escapeStart)
            }
            let lowStart = position
            advanceASCII()
            advanceASCII()
            let low = try hexQuad(lowStart)
            guard (0xDC00...0xDFFF).contains(low) else {
                throw error("\\u\(JSONValue.hex4(UInt32(unit))) is a UTF-16 high surrogate but "
                            + "\\u\(JSONValue.hex4(UInt32(low))) after it is not a low surrogate",
                            at: escapeStart)
            }
            scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(unit) {
            throw error("\\u\(JSONValue.hex4(UInt32(unit))) is a lone UTF-16 low surrogate", at: escapeStart)
        }
        guard let scalar = Unicode.Scalar(scalarValue) else {
            throw error("\\u escape does not name a Unicode scalar", at: escapeStart)
        }
        UTF8.encode(scalar) { out.append($0) }
    }

    private mutating func hexQuad(_ escapeStart: JSONPosition) throws -> UInt16 {
        var v: UInt16 = 0
        for _ in 0..<4 {
            guard let b = peek else {
                throw error("\\u must be followed by 4 hex digits", at: escapeStart)
            }
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default:
                throw error("\\u must be followed by 4 hex digits, found \(found())", at: escapeStart)
            }
            v = v << 4 | UInt16(d)
            advanceASCII()
        }
        return v
    }

    /// Decodes one well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates,
    /// nothing above U+10FFFF) starting at `i`; nil if malformed.
    private func decodeUTF8(at i: Int) -> (Unicode.Scalar, Int)? {
        let b0 = bytes[i]
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> UInt32? {
            guard i + k < bytes.count else { return nil }
            let b = bytes[i + k]
            guard b >= lo && b <= hi else { return nil }
            return UInt32(b & 0x3F)
        }
        var value: UInt32
        var length: Int
        switch b0 {
        case 0xC2...0xDF:
            guard let c1 = cont(1) else { return nil }
            value = UInt32(b0 & 0x1F) << 6 | c1
            length = 2
        case 0xE0...0xEF:
            let lo: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80
            let hi: UInt8 = b0 == 0xED ? 0x9F : 0xBF
            guard let c1 = cont(1, lo, hi), let c2 = cont(2) else { return nil }
            value = UInt32(b0 & 0x0F) << 12 | c1 << 6 | c2
            length = 3
        case 0xF0...0xF4:
            let lo: UInt8 = b0 == 0xF0 ? 0x90 : 0x80
            let hi: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF
            guard let c1 = cont(1, lo, hi), let c2 = cont(2), let c3 = cont(3) else { return nil }
            value = UInt32(b0 & 0x07) << 18 | c1 << 12 | c2 << 6 | c3
            length = 4
        default:
            return nil
        }
        guard let scalar = Unicode.Scalar(value) else { return nil }
        return (scalar, length)
    }
}

/// Skips JSON's whitespace from `pos`, counting lines and columns: the one rule of both
/// readers (JSONReader and the plain-entry fast path of ProcessEntryScanner).
@inline(__always)
func skipJSONWhitespace<Bytes: RandomAccessCollection>(_ bytes: Bytes, _ pos: inout Int, _ line: inout Int, _ column: inout Int)
    where Bytes.Element == UInt8, Bytes.Index == Int {
    while pos < bytes.endIndex {
        switch bytes[pos] {
        case 0x20, 0x09, 0x0D:
            pos += 1
            column += 1
        case 0x0A:
            pos += 1
            line += 1
            column = 1
        default:
            return
        }
    }
}
