import Foundation
import RestoreModel
import Testing

// MARK: - Helpers

/// A tree.json with one process per line: line 1 is the header, process #k is on line k + 2.
private func tree(_ processes: String...) -> String {
    "{\"version\": 1, \"processes\": [\n" + processes.joined(separator: ",\n") + "\n]}"
}

/// One process line with the required keys, plus `extra` members.
private func proc(_ pid: Int, ppid: Int = 0, _ extra: String = "") -> String {
    "{\"pid\": \(pid), \"ppid\": \(ppid), \"pgid\": 0, \"sid\": 0\(extra.isEmpty ? "" : ", " + extra)}"
}

/// Parses `json`, expects a parse error whose description contains every fragment, and
/// returns the description.
@discardableResult
private func rejects(_ json: String, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) -> String {
    rejects(bytes: Array(json.utf8), fragments, sourceLocation: sourceLocation)
}

@discardableResult
private func rejects(bytes: [UInt8], _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        let tree = try TreeParser.parse(bytes)
        Issue.record("accepted, expected an error containing \(fragments): \(tree)", sourceLocation: sourceLocation)
        return ""
    } catch let error as RestoreError {
        #expect(error.kind == .invalidTree, sourceLocation: sourceLocation)
        #expect(error.operation == "parse", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.description.contains(fragment), "\(error.description)", sourceLocation: sourceLocation)
        }
        return error.description
    } catch {
        Issue.record("not a RestoreError: \(error)", sourceLocation: sourceLocation)
        return ""
    }
}

private func parse(_ json: String) throws -> ProcessTree {
    try TreeParser.parse(Array(json.utf8))
}

private func fixture(_ name: String) throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
    return Array(try Data(contentsOf: url))
}

// MARK: - JSON syntax

@Suite struct JSONSyntaxTests {
    @Test func emptyFile() { rejects("", "line 1, column 1: the file is empty") }
    @Test func whitespaceOnly() { rejects(" \n\t", "line 2, column 2: the file contains only whitespace") }
    @Test func byteOrderMark() {
        rejects(bytes: [0xEF, 0xBB, 0xBF] + Array("{}".utf8), ["line 1, column 1: the file starts with a UTF-8 byte order mark"])
    }
    @Test func missingCommaBetweenMembers() {
        rejects("{\"version\": 1 \"processes\": []}",
                "line 1, column 15: expected ',' or '}' after object member, found '\"'")
    }
    @Test func missingCommaBetweenElements() {
        rejects("[1 2]", "line 1, column 4: expected ',' or ']' after array element, found '2'")
    }
    @Test func trailingCommaInObject() {
        rejects("{\"version\": 1,\n}", "line 2, column 1: trailing comma before '}' is not allowed in JSON")
    }
    @Test func trailingCommaInArray() {
        rejects("[1, 2, ]", "line 1, column 8: trailing comma before ']' is not allowed in JSON")
    }
    @Test func comment() {
        rejects("{\n  // a note\n  \"version\": 1}", "line 2, column 3: expected an object key in double quotes, found '/'",
                "JSON has no comments")
    }
    @Test func singleQuotes() {
        rejects("{'version': 1}", "line 1, column 2: expected an object key in double quotes, found ''' (JSON strings use double quotes)")
    }
    @Test func unquotedKey() {
        rejects("{version: 1}", "line 1, column 2: expected an object key in double quotes, found 'v'")
    }
    @Test func missingColon() {
        rejects("{\"version\" 1}", "line 1, column 12: expected ':' after object key \"version\", found '1'")
    }
    @Test func duplicateKey() {
        rejects("{\"version\": 1,\n \"processes\": [\n  {\"pid\": 1, \"ppid\": 0, \"pid\": 2}]}",
                "line 3, column 25: duplicate key \"pid\" in one object (first at line 3, column 4)")
    }
    @Test func duplicateKeyWrittenWithEscape() {
        rejects("{\"pid\": 1, \"p\\u0069d\": 2}", "line 1, column 12: duplicate key \"pid\"")
    }
    @Test func leadingZero() { rejects("[007]", "line 1, column 2: numbers cannot have leading zeros") }
    @Test func minusWithoutDigits() { rejects("[-]", "line 1, column 3: expected a digit after '-', found ']'") }
    @Test func fractionWithoutDigits() { rejects("[1.]", "line 1, column 4: expected a digit after the decimal point") }
    @Test func exponentWithoutDigits() { rejects("[1e+]", "line 1, column 5: expected a digit in the exponent") }
    @Test func nanIsNotJSON() { rejects("[NaN]", "line 1, column 2: expected a value, found 'N'") }
    @Test func plusSignIsNotJSON() { rejects("[+1]", "line 1, column 2: expected a value, found '+'") }
    @Test func badLiteral() {
        rejects("[tru]", "line 1, column 2: invalid literal: expected true, false or null")
    }
    @Test func unterminatedString() {
        rejects("[\"abc", "line 1, column 2: unterminated string")
    }
    @Test func lineBreakInString() {
        rejects("[\"a\nb\"]", "line 1, column 4: line break inside a string")
    }
    @Test func rawTabInString() {
        rejects("[\"a\tb\"]", "line 1, column 4: raw control character U+0009 inside a string")
    }
    @Test func invalidEscape() {
        rejects("[\"a\\x41\"]", "line 1, column 4: invalid escape '\\' followed by 'x'")
    }
    @Test func shortUnicodeEscape() {
        rejects("[\"\\u12\"]", "line 1, column 3: \\u must be followed by 4 hex digits")
    }
    @Test func loneHighSurrogate() {
        rejects("[\"\\uD83D\"]", "line 1, column 3: \\uD83D is a UTF-16 high surrogate without a low surrogate")
    }
    @Test func loneLowSurrogate() {
        rejects("[\"\\uDE00\"]", "line 1, column 3: \\uDE00 is a lone UTF-16 low surrogate")
    }
    @Test func invalidUTF8() {
        rejects(bytes: Array("[\"a".utf8) + [0xFF] + Array("\"]".utf8), ["line 1, column 4: invalid UTF-8 (byte 0xFF)"])
    }
    @Test func overlongUTF8() {
        rejects(bytes: Array("[\"".utf8) + [0xC0, 0xAF] + Array("\"]".utf8), ["line 1, column 3: invalid UTF-8"])
    }
    @Test func encodedSurrogateUTF8() {
        rejects(bytes: Array("[\"".utf8) + [0xED, 0xA0, 0x80] + Array("\"]".utf8), ["line 1, column 3: invalid UTF-8"])
    }
    @Test func contentAfterDocument() {
        rejects("{\"version\": 1}\n{}", "line 2, column 1: unexpected '{' after the end of the JSON document")
    }
    @Test func nestingTooDeep() {
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        rejects(deep, "line 1, column 513: arrays and objects nest deeper than 512 levels")
    }

    @Test func columnsCountCharactersNotBytes() {
        // "é" is two bytes but one column; the error is at the 'x'.
        rejects("[\"é\", x]", "line 1, column 7: expected a value, found 'x'")
    }

    @Test func positionsOfValuesAndKeys() throws {
        let value = try JSONValue.parse(Array("{\n  \"a\": [1, -2.5e3, \"\\u00e9\\uD83D\\uDE00\", true, null]\n}".utf8))
        #expect(value.position == JSONPosition(line: 1, column: 1))
        guard case .object(let o) = value.kind, let a = o["a"] else {
            Issue.record("not an object with a")
            return
        }
        #expect(a.keyPosition == JSONPosition(line: 2, column: 3))
        #expect(a.value.position == JSONPosition(line: 2, column: 8))
        guard case .array(let items) = a.value.kind else {
            Issue.record("not an array")
            return
        }
        #expect(items.map(\.position.column) == [9, 12, 20, 42, 48])
        #expect(items[0].kind == .number(JSONNumber(text: "1", isInteger: true)))
        #expect(items[1].kind == .number(JSONNumber(text: "-2.5e3", isInteger: false)))
        #expect(items[2].kind == .string("é😀"))
        #expect(items[3].kind == .bool(true))
        #expect(items[4].kind == .null)
    }

    @Test func numbersKeepTheirText() throws {
        let big = try JSONValue.parse(Array("123456789012345678901234567890".utf8))
        guard case .number(let n) = big.kind else {
            Issue.record("not a number")
            return
        }
        #expect(n.isInteger)
        #expect(n.int64Value == nil)
        #expect(n.text == "123456789012345678901234567890")
        let small = JSONNumber(text: "-9223372036854775808", isInteger: true)
        #expect(small.int64Value == Int64.min)
    }

    @Test func escapesDecode() throws {
        let v = try JSONValue.parse(Array(#"["\"\\\/\b\f\n\r\t\u0000"]"#.utf8))
        #expect(v.kind == .array([JSONValue(.string("\"\\/\u{08}\u{0C}\n\r\t\u{00}"), at: JSONPosition(line: 1, column: 2))]))
    }

    @Test func keysAreComparedByCodePoints() throws {
        // "é" precomposed and decomposed are different JSON keys, though Swift calls them equal.
        let v = try JSONValue.parse(Array("{\"\\u00e9\": 1, \"e\\u0301\": 2}".utf8))
        guard case .object(let o) = v.kind else {
            Issue.record("not an object")
            return
        }
        #expect(o.count == 2)
    }
}

// MARK: - Tree structure

@Suite struct TreeParserRejectionTests {
    @Test func fileTooLarge() {
        let bytes = [UInt8](repeating: 0x20, count: TreeParser.maxFileSize + 1)
        rejects(bytes: bytes, ["the tree file is 67108865 bytes, over the limit of 67108864 bytes (64 MiB)"])
    }
    @Test func topLevelNotObject() {
        rejects("[1]", "line 1, column 1: the top level must be an object", "found an array")
    }
    @Test func missingVersion() {
        rejects("{\"processes\": []}", "line 1, column 1: missing required key \"version\" (this runtime reads tree.json version 1)")
    }
    @Test func unsupportedVersion() {
        rejects("{\"version\": 2, \"processes\": []}", "line 1, column 13: unsupported version 2: this runtime reads tree.json version 1")
    }
    @Test func versionAsString() {
        rejects("{\"version\": \"1\", \"processes\": []}", "line 1, column 13: version must be an integer, found \"1\"")
    }
    @Test func versionAsFraction() {
        rejects("{\"version\": 1.0, \"processes\": []}",
                "line 1, column 13: version must be an integer, found 1.0 (write integers without a fraction or an exponent)")
    }
    @Test func unknownTopLevelKeyWithSuggestion() {
        rejects("{\"version\": 1, \"proceses\": []}", "line 1, column 16: unknown key \"proceses\" (did you mean \"processes\"?)")
    }
    @Test func processKeyAtTopLevel() {
        rejects("{\"version\": 1, \"pid\": 1, \"processes\": []}",
                "line 1, column 16: unknown key \"pid\" (it belongs in each element of \"processes\")")
    }
    @Test func commentNotString() {
        rejects("{\"version\": 1, \"comment\": 5, \"processes\": []}", "line 1, column 27: comment must be a string, found 5")
    }
    @Test func missingProcesses() {
        rejects("{\"version\": 1}", "line 1, column 1: missing required key \"processes\"")
    }
    @Test func processesNotArray() {
        rejects("{\"version\": 1, \"processes\": {}}", "line 1, column 29: processes must be an array, found an object")
    }
    @Test func emptyProcesses() {
        rejects("{\"version\": 1, \"processes\": []}", "line 1, column 29: processes is empty: a tree needs at least one process")
    }
    @Test func processNotObject() {
        rejects(tree(proc(1), "17"), "process #1, line 3, column 1: each element of processes must be an object, found 17")
    }

    // The example of the brief: an unknown key in the fourth process.
    @Test func unknownProcessKeyWithSuggestion() {
        let json = tree(proc(1), proc(5, ppid: 1), proc(9, ppid: 1),
                        "{\"pid\": 17, \"ppdi\": 1, \"ppid\": 1, \"pgid\": 0, \"sid\": 0}")
        rejects(json, "process #3 (pid 17), line 5, column 13: unknown key \"ppdi\" (did you mean \"ppid\"?)")
    }
    @Test func unknownKeyDifferentCase() {
        rejects(tree(proc(1, "\"NSpid\": [1]")), "process #0 (pid 1), line 2, column 44: unknown key \"NSpid\" (did you mean \"nspid\"?)")
    }
    @Test func unknownKeySnakeCase() {
        rejects(tree(proc(1, "\"exit_status\": 0")), "unknown key \"exit_status\" (did you mean \"exitStatus\"?)")
    }
    @Test func unknownKeyBelongsInsideProcess() {
        rejects(tree(proc(1, "\"args\": [\"/bin/true\"]")), "process #0 (pid 1), line 2, column 44: unknown key \"args\" (it belongs inside \"process\")")
    }
    @Test func unknownKeyCommentInProcess() {
        rejects(tree(proc(1, "\"comment\": \"init\"")), "unknown key \"comment\" (it belongs at the top level)")
    }
    @Test func unknownKeyWithoutSuggestion() {
        rejects(tree(proc(1, "\"colour\": \"red\"")),
                "unknown key \"colour\" (known keys: pid, ppid, pgid, sid, nspid, state, exitStatus, threads, newPidNamespace, childSubreaper, spawn, process, recorded, terminal, stdio, shellJobs, tmux)")
    }
    @Test func unknownKeyBeforeMissingPid() {
        // A misspelt pid is reported as such, not as a missing pid.
        rejects(tree("{\"PID\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}"),
                "process #0, line 2, column 2: unknown key \"PID\" (did you mean \"pid\"?)")
    }
    @Test func missingPid() {
        rejects(tree("{\"ppid\": 0, \"pgid\": 0, \"sid\": 0}"), "process #0, line 2, column 1: missing required key \"pid\"")
    }
    @Test func pidAsString() {
        rejects(tree("{\"pid\": \"17\", \"ppid\": 0, \"pgid\": 0, \"sid\": 0}"),
                "process #0, line 2, column 9: pid must be an integer, found \"17\"")
    }
    @Test func pidWithFraction() {
        rejects(tree("{\"pid\": 17.5, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}"),
                "process #0, line 2, column 9: pid must be an integer, found 17.5")
    }
    @Test func pidWithExponent() {
        rejects(tree("{\"pid\": 1e2, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}"),
                "process #0, line 2, column 9: pid must be an integer, found 1e2 (write integers without a fraction or an exponent)")
    }
    @Test func pidOutOfInt32() {
        rejects(tree("{\"pid\": 2147483648, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}"),
                "process #0, line 2, column 9: pid is 2147483648, out of range for a 32-bit signed integer (-2147483648...2147483647)")
    }
    @Test func pidFarOutOfRange() {
        rejects(tree("{\"pid\": 99999999999999999999999, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}"),
                "process #0, line 2, column 9: pid is 99999999999999999999999, out of range for a 32-bit signed integer")
    }
    @Test func missingPpid() {
        rejects(tree(proc(1), "{\"pid\": 2, \"pgid\": 0, \"sid\": 0}"), "process #1 (pid 2), line 3, column 1: missing required key \"ppid\"")
    }
    @Test func missingPgid() {
        rejects(tree("{\"pid\": 2, \"ppid\": 0, \"sid\": 0}"), "process #0 (pid 2), line 2, column 1: missing required key \"pgid\"")
    }
    @Test func missingSid() {
        rejects(tree("{\"pid\": 2, \"ppid\": 0, \"pgid\": 0}"), "process #0 (pid 2), line 2, column 1: missing required key \"sid\"")
    }
    @Test func ppidAsNull() {
        rejects(tree("{\"pid\": 2, \"ppid\": null, \"pgid\": 0, \"sid\": 0}"), "process #0 (pid 2), line 2, column 20: ppid must be an integer, found null")
    }
    @Test func nspidNotArray() {
        rejects(tree(proc(7, "\"nspid\": 7")), "process #0 (pid 7), line 2, column 53: nspid must be an array, found 7")
    }
    @Test func nspidEmpty() {
        rejects(tree(proc(7, "\"nspid\": []")), "process #0 (pid 7), line 2, column 53: nspid is empty (omit it to mean [pid]")
    }
    @Test func nspidFirstIsNotPid() {
        rejects(tree(proc(7, "\"nspid\": [8, 1]")),
                "process #0 (pid 7), line 2, column 54: nspid[0] is 8 but pid is 7 (nspid lists the PIDs outermost first, so its first element must equal pid)")
    }
    @Test func nspidElementNotInteger() {
        rejects(tree(proc(7, "\"nspid\": [7, \"1\"]")), "process #0 (pid 7), line 2, column 57: nspid[1] must be an integer, found \"1\"")
    }
    @Test func stateUnknown() {
        rejects(tree(proc(7, "\"state\": \"zombi\"")),
                "process #0 (pid 7), line 2, column 53: state must be \"running\", \"stopped\" or \"zombie\", found \"zombi\" (did you mean \"zombie\"?)")
    }
    @Test func stateNotString() {
        rejects(tree(proc(7, "\"state\": 1")), "process #0 (pid 7), line 2, column 53: state must be a string, found 1")
    }
    @Test func exitStatusString() {
        rejects(tree(proc(7, "\"exitStatus\": \"9\"")),
                "process #0 (pid 7), line 2, column 58: exitStatus must be an exit code (an integer) or an object such as {\"signal\": \"SIGKILL\"}, found \"9\"")
    }
    @Test func exitSignalUnknownName() {
        rejects(tree(proc(7, "\"exitStatus\": {\"signal\": \"SIGKIL\"}")),
                "process #0 (pid 7), line 2, column 69: exitStatus.signal \"SIGKIL\" is not a Linux signal name (did you mean \"SIGKILL\"?)")
    }
    @Test func exitSignalLowercaseName() {
        rejects(tree(proc(7, "\"exitStatus\": {\"signal\": \"kill\"}")), "exitStatus.signal \"kill\" is not a Linux signal name (did you mean \"KILL\"?)")
    }
    @Test func exitSignalRealtimeName() {
        rejects(tree(proc(7, "\"exitStatus\": {\"signal\": \"SIGRTMIN\"}")), "is not a Linux signal name", "realtime signals are given as numbers")
    }
    @Test func exitSignalKelvinSignIsNotK() {
        // U+212A KELVIN SIGN is canonically equivalent to "K" in Swift; the parser compares bytes.
        rejects(tree(proc(7, "\"exitStatus\": {\"signal\": \"SIG\u{212A}ILL\"}")), "is not a Linux signal name")
    }
    @Test func exitSignalWrongType() {
        rejects(tree(proc(7, "\"exitStatus\": {\"signal\": true}")),
                "process #0 (pid 7), line 2, column 69: exitStatus.signal must be a signal number or a name such as \"SIGKILL\", found true")
    }
    @Test func exitSignalMissing() {
        rejects(tree(proc(7, "\"exitStatus\": {}")), "process #0 (pid 7), line 2, column 58: missing required key \"signal\" in exitStatus")
    }
    @Test func exitSignalUnknownKey() {
        rejects(tree(proc(7, "\"exitStatus\": {\"sginal\": 9}")),
                "process #0 (pid 7), line 2, column 59: unknown key \"sginal\" in exitStatus (did you mean \"signal\"?)")
    }
    @Test func threadNotInteger() {
        rejects(tree(proc(7, "\"threads\": [7, 8.5]")), "process #0 (pid 7), line 2, column 59: threads[1] must be an integer, found 8.5")
    }
    @Test func newPidNamespaceNotBool() {
        rejects(tree(proc(7, "\"newPidNamespace\": \"yes\"")),
                "process #0 (pid 7), line 2, column 63: newPidNamespace must be true or false, found \"yes\"")
    }
    @Test func childSubreaperNotBool() {
        rejects(tree(proc(7, "\"childSubreaper\": 1")), "process #0 (pid 7), line 2, column 62: childSubreaper must be true or false, found 1")
    }
    @Test func spawnUnknownValue() {
        rejects(tree(proc(7, "\"spawn\": \"parent\"")),
                "process #0 (pid 7), line 2, column 53: spawn must be \"runtime\" (the runtime creates the process) or \"payload\"")
    }
    @Test func spawnNotString() {
        rejects(tree(proc(7, "\"spawn\": true")), "process #0 (pid 7), line 2, column 53: spawn must be a string, found true")
    }
    @Test func processSpecNotObject() {
        rejects(tree(proc(7, "\"process\": [\"/bin/true\"]")),
                "process #0 (pid 7), line 2, column 55: process must be an object such as {\"args\": [\"/bin/true\"]}, found an array")
    }
    @Test func processUnknownKey() {
        rejects(tree(proc(7, "\"process\": {\"agrs\": []}")),
                "process #0 (pid 7), line 2, column 56: unknown key \"agrs\" in process (did you mean \"args\"?)")
    }
    @Test func processKeyBelongsInEntry() {
        rejects(tree(proc(7, "\"process\": {\"pid\": 7}")), "unknown key \"pid\" in process (it belongs in each element of \"processes\")")
    }
    @Test func processUidBelongsInUser() {
        rejects(tree(proc(7, "\"process\": {\"uid\": 0}")), "unknown key \"uid\" in process (it belongs inside \"process\": {\"user\": {...}})")
    }
    @Test func argsNotArray() {
        rejects(tree(proc(7, "\"process\": {\"args\": \"/bin/true\"}")),
                "process #0 (pid 7), line 2, column 64: process.args must be an array, found \"/bin/true\"")
    }
    @Test func argNotString() {
        rejects(tree(proc(7, "\"process\": {\"args\": [\"/bin/sleep\", 5]}")),
                "process #0 (pid 7), line 2, column 79: process.args[1] must be a string, found 5")
    }
    @Test func envEntryNotString() {
        rejects(tree(proc(7, "\"process\": {\"env\": [{\"A\": \"1\"}]}")), "process.env[0] must be a string, found an object")
    }
    @Test func cwdNotString() {
        rejects(tree(proc(7, "\"process\": {\"cwd\": null}")), "process #0 (pid 7), line 2, column 63: process.cwd must be a string, found null")
    }
    @Test func userNotObject() {
        rejects(tree(proc(7, "\"process\": {\"user\": 0}")), "process.user must be an object such as {\"uid\": 0, \"gid\": 0}, found 0")
    }
    @Test func userMissingGid() {
        rejects(tree(proc(7, "\"process\": {\"user\": {\"uid\": 0}}")),
                "process #0 (pid 7), line 2, column 64: missing required key \"gid\" in process.user")
    }
    @Test func userUnknownKey() {
        rejects(tree(proc(7, "\"process\": {\"user\": {\"uid\": 0, \"gid\": 0, \"groups\": []}}")),
                "unknown key \"groups\" in process.user (known keys: uid, gid, additionalGids, umask)")
    }
    @Test func uidNegative() {
        rejects(tree(proc(7, "\"process\": {\"user\": {\"uid\": -1, \"gid\": 0}}")),
                "process #0 (pid 7), line 2, column 72: process.user.uid is -1, out of range for a 32-bit unsigned integer (0...4294967295)")
    }
    @Test func additionalGidNotInteger() {
        rejects(tree(proc(7, "\"process\": {\"user\": {\"uid\": 0, \"gid\": 0, \"additionalGids\": [\"wheel\"]}}")),
                "process.user.additionalGids[0] must be an integer, found \"wheel\"")
    }
    @Test func mappingsNotArray() {
        rejects("{\"version\": 1, \"uidMappings\": {}, \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}]}",
                "line 1, column 31: uidMappings must be an array, found an object")
    }
    @Test func mappingNotObject() {
        rejects("{\"version\": 1, \"gidMappings\": [0], \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}]}",
                "gidMappings[0], line 1, column 32: each element of gidMappings must be an object")
    }
    @Test func mappingUnknownKey() {
        rejects("{\"version\": 1,\n \"uidMappings\": [{\"containerID\": 0, \"hostId\": 1000, \"size\": 1}],\n \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}]}",
                "uidMappings[0], line 2, column 37: unknown key \"hostId\" (did you mean \"hostID\"?)")
    }
    @Test func mappingMissingSize() {
        rejects("{\"version\": 1, \"uidMappings\": [{\"containerID\": 0, \"hostID\": 1000}], \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}]}",
                "uidMappings[0], line 1, column 32: missing required key \"size\"")
    }
    @Test func mappingHostIDTooLarge() {
        rejects("{\"version\": 1, \"uidMappings\": [{\"containerID\": 0, \"hostID\": 4294967296, \"size\": 1}], \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}]}",
                "uidMappings[0], line 1, column 61: hostID is 4294967296, out of range for a 32-bit unsigned integer")
    }
    @Test func rejectFixtures() throws {
        let expected: [String: String] = [
            "reject-args-not-strings": "process.args[1] must be a string, found 5",
            "reject-comment-in-process": "unknown key \"comment\" (it belongs at the top level)",
            "reject-empty-processes": "processes is empty",
            "reject-mapping-key": "unknown key \"hostId\" (did you mean \"hostID\"?)",
            "reject-missing-sid": "process #0 (pid 1), line 1, column 30: missing required key \"sid\"",
            "reject-nspid-empty": "nspid is empty",
            "reject-pid-string": "process #0, line 1, column 38: pid must be an integer, found \"1\"",
            "reject-pid-too-large": "pid is 2147483648, out of range",
            "reject-signal-name": "exitStatus.signal \"SIGRTMIN\" is not a Linux signal name",
            "reject-state": "state must be \"running\", \"stopped\" or \"zombie\", found \"sleeping\"",
            "reject-uid-negative": "process.user.uid is -1, out of range",
            "reject-unknown-key": "process #0 (pid 1), line 1, column 41: unknown key \"ppdi\" (did you mean \"ppid\"?)",
            "reject-version-2": "unsupported version 2",
        ]
        for (name, fragment) in expected.sorted(by: { $0.key < $1.key }) {
            rejects(bytes: try fixture(name), [fragment])
        }
    }
}

// MARK: - Acceptance

@Suite struct TreeParserAcceptanceTests {
    @Test func minimalTreeGetsDefaults() throws {
        let t = try parse(tree(proc(1)))
        #expect(t.version == 1)
        #expect(t.uidMappings == nil && t.gidMappings == nil)
        #expect(t.processes == [ProcessEntry(index: 0, line: 2, pid: 1, ppid: 0, pgid: 0, sid: 0)])
        let e = t.processes[0]
        #expect(e.nspid == [1] && e.state == .running && e.exitStatus == nil && e.threads.isEmpty)
        #expect(!e.newPidNamespace && !e.childSubreaper && e.process == nil)
    }

    @Test func linesAndIndexesFollowTheFile() throws {
        let t = try parse(tree(proc(1), proc(5, ppid: 1), proc(9, ppid: 1)))
        #expect(t.processes.map(\.index) == [0, 1, 2])
        #expect(t.processes.map(\.line) == [2, 3, 4])
        #expect(t.processes.map(\.pid) == [1, 5, 9])
    }

    @Test func fullFixture() throws {
        let t = try TreeParser.parse(try fixture("valid-full"))
        #expect(t.uidMappings == [IDMapping(containerID: 0, hostID: 1000, size: 1),
                                  IDMapping(containerID: 1, hostID: 100000, size: 65536)])
        #expect(t.gidMappings == [IDMapping(containerID: 0, hostID: 1000, size: 1)])
        #expect(t.processes.count == 8)
        let initp = t.processes[0]
        #expect(initp.line == 12)
        #expect(initp.threads == [1, 2, 3])
        #expect(initp.childSubreaper)
        #expect(initp.process == ProcessSpec(args: ["/bin/sh", "-c", "exec sleep 1000"],
                                             env: ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], cwd: "/",
                                             user: UserSpec(uid: 0, gid: 0, additionalGids: [10, 20])))
        #expect(t.processes[1].state == .stopped)
        #expect(t.processes[2].exitStatus == .code(3))
        #expect(t.processes[3].exitStatus == .signal(9))
        #expect(t.processes[4].exitStatus == .signal(15))
        #expect(t.processes[5].exitStatus == .signal(34))
        #expect(t.processes[6].nspid == [30, 1] && t.processes[6].newPidNamespace)
        #expect(t.processes[6].process == ProcessSpec())
        #expect(t.processes[7].process == ProcessSpec(env: [], user: UserSpec(uid: 1, gid: 1)))
        try TreeValidator.validate(t)
    }

    @Test func escapedKeysAndValuesAreTheirCharacters() throws {
        let t = try parse(tree("{\"p\\u0069d\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0, \"process\": {\"args\": [\"/bin/echo\", \"caf\\u00e9 \\ud83d\\ude00\"]}}"))
        #expect(t.processes[0].pid == 1)
        #expect(t.processes[0].process?.args == ["/bin/echo", "café 😀"])
    }

    @Test func negativeZeroAndExtremes() throws {
        let t = try parse(tree("{\"pid\": 2147483647, \"ppid\": -0, \"pgid\": -2147483648, \"sid\": 0, \"process\": {\"user\": {\"uid\": 4294967295, \"gid\": 0}}}"))
        #expect(t.processes[0].pid == Int32.max)
        #expect(t.processes[0].ppid == 0)
        #expect(t.processes[0].pgid == Int32.min)
        #expect(t.processes[0].process?.user?.uid == UInt32.max)
    }

    @Test func crlfLineEndings() throws {
        let t = try parse("{\"version\": 1,\r\n \"processes\": [\r\n  {\"pid\": 1, \"ppid\": 0, \"pgid\": 0, \"sid\": 0}\r\n]}\r\n")
        #expect(t.processes[0].line == 3)
    }

    @Test func spawnValues() throws {
        let t = try parse(tree(proc(1, ppid: 0, "\"process\": {\"args\": [\"/bin/sh\"]}"),
                               proc(2, ppid: 1, "\"spawn\": \"payload\""), proc(3, ppid: 1, "\"spawn\": \"runtime\"")))
        #expect(t.processes.map(\.spawnedByPayload) == [false, true, false])
    }

    @Test func signalNames() {
        #expect(TreeParser.signalNumber(named: "SIGKILL") == 9)
        #expect(TreeParser.signalNumber(named: "KILL") == 9)
        #expect(TreeParser.signalNumber(named: "SIGIOT") == 6)
        #expect(TreeParser.signalNumber(named: "POLL") == 29)
        #expect(TreeParser.signalNumber(named: "SIGSYS") == 31)
        #expect(TreeParser.signalNumber(named: "sigkill") == nil)
        #expect(TreeParser.signalNumber(named: "SIGRTMIN") == nil)
        #expect(TreeParser.signalNumber(named: "SIG") == nil)
        #expect(TreeParser.acceptedSignalNames.count == 66)
    }

    @Test func validFixturesParseAndValidate() throws {
        for name in ["valid-minimal", "valid-full", "valid-nested"] {
            let t = try TreeParser.parse(try fixture(name))
            try TreeValidator.validate(t)
        }
    }
}
