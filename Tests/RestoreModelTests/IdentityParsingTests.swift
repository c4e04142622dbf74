// process.user (umask), process.capabilities, process.noNewPrivileges, process.rlimits and
// process.seccomp (OCI runtime-spec names): parsing, validation, encoding, the schema's
// lists; and the id map checks (--map-users / --map-groups / uidMappings, /etc/subuid,
// newuidmap) with their messages.

import Foundation
import RestoreModel
import Testing

// MARK: - Helpers

/// A tree of one process (pid 1) whose `process` object is `spec`, plus a second entry.
private func tree(_ spec: String, top: String = "") -> String {
    "{\"version\": 1,\(top) \"processes\": [\n"
        + "{\"pid\": 1, \"ppid\": 0, \"pgid\": 1, \"sid\": 1, \"process\": \(spec)}\n]}"
}

private func parse(_ json: String) throws -> ProcessTree {
    try TreeParser.parse(Array(json.utf8))
}

/// The parse error's description (records an issue when the file parses).
private func parseError(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        _ = try parse(json)
        Issue.record("accepted: \(json)", sourceLocation: sourceLocation)
        return ""
    } catch let e as RestoreError {
        #expect(e.kind == .invalidTree, sourceLocation: sourceLocation)
        return e.description
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        return ""
    }
}

/// The validator's problems of a tree that parses.
private func problems(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
    do {
        return TreeValidator.problems(in: try parse(json)).map(\.description)
    } catch {
        Issue.record("does not parse: \(error)", sourceLocation: sourceLocation)
        return []
    }
}

private func expectOne(_ found: [String], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(found.count == 1 && found[0].contains(fragment), "expected one problem containing \(fragment), got \(found)",
            sourceLocation: sourceLocation)
}

// MARK: - Parsing

@Suite struct IdentityParsingTests {
    @Test func everyFieldParses() throws {
        let t = try parse(tree("""
            {"args": ["/bin/true"], "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 18},
             "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                              "permitted": ["CAP_KILL"], "inheritable": [], "ambient": []},
             "noNewPrivileges": true,
             "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 18446744073709551615}],
             "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                         "architectures": ["SCMP_ARCH_X86_64"],
                         "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                      {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 25,
                                       "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"},
                                                {"index": 2, "value": 255, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]}}
            """))
        let p = try #require(t.processes[0].process)
        #expect(p.user == UserSpec(uid: 1000, gid: 100, additionalGids: [5, 6], umask: 18))
        #expect(p.capabilities == CapabilitySpec(bounding: ["CAP_KILL", "CAP_CHOWN"], effective: ["CAP_KILL"],
                                                 permitted: ["CAP_KILL"], inheritable: [], ambient: []))
        #expect(p.noNewPrivileges == true)
        #expect(p.rlimits == [RlimitSpec(type: "RLIMIT_NOFILE", soft: 10, hard: RlimitSpec.unlimited)])
        #expect(p.seccomp == SeccompSpec(
            defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 38, architectures: ["SCMP_ARCH_X86_64"],
            syscalls: [SeccompSyscall(names: ["read"], action: "SCMP_ACT_ALLOW"),
                       SeccompSyscall(names: ["ioctl"], action: "SCMP_ACT_ERRNO", errnoRet: 25,
                                      args: [SeccompArg(index: 1, value: 21505, op: "SCMP_CMP_EQ"),
                                             SeccompArg(index: 2, value: 255, valueTwo: 1, op: "SCMP_CMP_MASKED_EQ")])]))
        #expect(TreeValidator.problems(in: t).isEmpty)
    }

    @Test func absentFieldsStayNil() throws {
        let p = try #require(try parse(tree("{\"args\": [\"/bin/true\"]}")).processes[0].process)
        #expect(p.capabilities == nil && p.noNewPrivileges == nil && p.rlimits == nil && p.seccomp == nil)
    }

    @Test func unknownCapabilityName() {
        let text = parseError(tree("{\"capabilities\": {\"bounding\": [\"CAP_KILL\", \"CAP_SYS_ADMN\"]}}"))
        #expect(text.hasPrefix("process #0 (pid 1), line 2, column "))
        #expect(text.hasSuffix("process.capabilities.bounding[1] \"CAP_SYS_ADMN\" is not a Linux capability (did you mean \"CAP_SYS_ADMIN\"?); names are CAP_CHOWN ... CAP_CHECKPOINT_RESTORE, in capitals"))
    }

    @Test func capabilityWithoutPrefixOrCapitals() {
        #expect(parseError(tree("{\"capabilities\": {\"ambient\": [\"net_raw\"]}}"))
            .contains("process.capabilities.ambient[0] \"net_raw\" is not a Linux capability (did you mean \"CAP_NET_RAW\"?)"))
    }

    @Test func capabilitySetMisspelt() {
        #expect(parseError(tree("{\"capabilities\": {\"amibent\": []}}"))
            .contains("unknown key \"amibent\" in process.capabilities (did you mean \"ambient\"?)"))
    }

    @Test func capabilitiesNotObject() {
        #expect(parseError(tree("{\"capabilities\": [\"CAP_KILL\"]}"))
            .contains("process.capabilities must be an object such as {\"bounding\": [\"CAP_KILL\"]}, found an array"))
    }

    @Test func unknownRlimitType() {
        #expect(parseError(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NOFLIE\", \"soft\": 1, \"hard\": 1}]}"))
            .contains("process.rlimits[0].type \"RLIMIT_NOFLIE\" is not a Linux resource limit (did you mean \"RLIMIT_NOFILE\"?); types are RLIMIT_CPU, "))
        #expect(parseError(tree("{\"rlimits\": [{\"type\": \"nproc\", \"soft\": 1, \"hard\": 1}]}"))
            .contains("(did you mean \"RLIMIT_NPROC\"?)"))
    }

    @Test func rlimitValues() {
        #expect(parseError(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"soft\": -1, \"hard\": 1}]}"))
            .contains("process.rlimits[0].soft is -1, out of range for a 64-bit unsigned integer (0...18446744073709551615)"))
        #expect(parseError(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"soft\": 18446744073709551616, \"hard\": 1}]}"))
            .contains("out of range for a 64-bit unsigned integer"))
        #expect(parseError(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"soft\": 1}]}"))
            .contains("missing required key \"hard\" in process.rlimits[0]"))
        #expect(parseError(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"soft\": \"unlimited\", \"hard\": 1}]}"))
            .contains("process.rlimits[0].soft must be an integer, found \"unlimited\""))
    }

    @Test func unknownSeccompAction() {
        let text = parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERNO\"}]}}"))
        #expect(text.contains("process.seccomp.syscalls[0].action \"SCMP_ACT_ERNO\" is not a seccomp action (did you mean \"SCMP_ACT_ERRNO\"?); actions are SCMP_ACT_KILL, "))
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"allow\"}}"))
            .contains("process.seccomp.defaultAction \"allow\" is not a seccomp action (did you mean \"SCMP_ACT_ALLOW\"?)"))
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_NOTIFY\"}}"))
            .contains("process.seccomp.defaultAction \"SCMP_ACT_NOTIFY\" is not supported: it needs a seccomp agent (listenerPath), which rootless-restore does not run"))
        #expect(parseError(tree("{\"seccomp\": {\"syscalls\": []}}"))
            .contains("missing required key \"defaultAction\" in process.seccomp"))
    }

    @Test func unknownArchitectureAndOperator() {
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [\"SCMP_ARCH_X86_46\"]}}"))
            .contains("process.seccomp.architectures[0] \"SCMP_ARCH_X86_46\" is not an architecture of the OCI runtime spec (did you mean \"SCMP_ARCH_X86_64\"?)"))
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"kill\"], \"action\": \"SCMP_ACT_ERRNO\", \"args\": [{\"index\": 1, \"value\": 9, \"op\": \"SCMP_CMP_EQUAL\"}]}]}}"))
            .contains("process.seccomp.syscalls[0].args[0].op \"SCMP_CMP_EQUAL\" is not a comparison (did you mean \"SCMP_CMP_EQ\"?)"))
    }

    @Test func seccompKeys() {
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrno\": 1}}"))
            .contains("unknown key \"defaultErrno\" in process.seccomp (did you mean \"defaultErrnoRet\"?)"))
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"name\": [\"kill\"], \"action\": \"SCMP_ACT_ERRNO\"}]}}"))
            .contains("unknown key \"name\" in process.seccomp.syscalls[0] (did you mean \"names\"?)"))
        #expect(parseError(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": \"kill\", \"action\": \"SCMP_ACT_ERRNO\"}]}}"))
            .contains("process.seccomp.syscalls[0].names must be an array, found \"kill\""))
    }

    @Test func largeArgumentValuesParse() throws {
        let t = try parse(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"kill\"], \"action\": \"SCMP_ACT_ERRNO\", \"args\": [{\"index\": 0, \"value\": 18446744073709551615, \"valueTwo\": 9223372036854775808, \"op\": \"SCMP_CMP_MASKED_EQ\"}]}]}}"))
        let arg = try #require(t.processes[0].process?.seccomp?.syscalls?.first?.args?.first)
        #expect(arg.value == UInt64.max && arg.valueTwo == UInt64(1) << 63)
    }

    @Test func misplacedKeys() {
        #expect(parseError("{\"version\": 1, \"processes\": [{\"pid\": 1, \"ppid\": 0, \"pgid\": 1, \"sid\": 1, \"rlimits\": []}]}")
            .contains("unknown key \"rlimits\" (it belongs inside \"process\")"))
        #expect(parseError(tree("{\"umask\": 18}")).contains("unknown key \"umask\" in process (it belongs inside \"process\": {\"user\": {...}})"))
        #expect(parseError(tree("{\"user\": {\"uid\": 0, \"gid\": 0, \"umask\": \"022\"}}"))
            .contains("process.user.umask must be an integer, found \"022\""))
    }

    // MARK: - Validation

    @Test func duplicateRlimitType() {
        expectOne(problems(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"soft\": 1, \"hard\": 2}, {\"type\": \"RLIMIT_NPROC\", \"soft\": 1, \"hard\": 2}, {\"type\": \"RLIMIT_NOFILE\", \"soft\": 1, \"hard\": 2}]}")),
                  "process #0 (pid 1), line 2: process.rlimits[2] sets RLIMIT_NOFILE again (first in process.rlimits[0]); each type may appear once")
    }

    @Test func softAboveHard() {
        expectOne(problems(tree("{\"rlimits\": [{\"type\": \"RLIMIT_NPROC\", \"soft\": 18446744073709551615, \"hard\": 100}]}")),
                  "process.rlimits[0] (RLIMIT_NPROC) has soft unlimited above hard 100; the soft limit cannot exceed the hard one")
    }

    @Test func capabilitySubsets() {
        expectOne(problems(tree("{\"capabilities\": {\"effective\": [\"CAP_KILL\", \"CAP_CHOWN\"], \"permitted\": [\"CAP_KILL\"]}}")),
                  "process.capabilities.effective has CAP_CHOWN, which permitted lacks; the effective set is a subset of the permitted set")
        expectOne(problems(tree("{\"capabilities\": {\"permitted\": [\"CAP_KILL\", \"CAP_NET_RAW\"], \"inheritable\": [\"CAP_NET_RAW\"], \"ambient\": [\"CAP_KILL\", \"CAP_NET_RAW\"]}}")),
                  "process.capabilities.ambient has CAP_KILL, which must also be in both permitted and inheritable")
        expectOne(problems(tree("{\"capabilities\": {\"bounding\": [\"CAP_KILL\", \"CAP_KILL\"]}}")),
                  "process.capabilities.bounding lists CAP_KILL twice")
    }

    @Test func seccompRules() {
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"kill\"], \"action\": \"SCMP_ACT_ALLOW\", \"errnoRet\": 1}]}}")),
                  "process.seccomp.syscalls[0].errnoRet is set but the action is SCMP_ACT_ALLOW; it applies only to SCMP_ACT_ERRNO and SCMP_ACT_TRACE")
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_KILL\", \"defaultErrnoRet\": 1}}")),
                  "process.seccomp.defaultErrnoRet is set but defaultAction is SCMP_ACT_KILL")
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [], \"action\": \"SCMP_ACT_ERRNO\"}]}}")),
                  "process.seccomp.syscalls[0].names is empty: list at least one system call")
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"kill\"], \"action\": \"SCMP_ACT_ERRNO\", \"args\": [{\"index\": 6, \"value\": 9, \"op\": \"SCMP_CMP_EQ\"}]}]}}")),
                  "process.seccomp.syscalls[0].args[0].index is 6; arguments are numbered 0...5")
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [\"SCMP_ARCH_X86\", \"SCMP_ARCH_X86\"]}}")),
                  "process.seccomp.architectures lists SCMP_ARCH_X86 twice")
        // Values the kernel would mask or clamp: a deny rule must not become a fake success.
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 65536}]}}")),
                  "process.seccomp.syscalls[0].errnoRet is 65536; SCMP_ACT_ERRNO takes at most 4095 (the kernel's MAX_ERRNO)")
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 4096}]}}")),
                  "errnoRet is 4096; SCMP_ACT_ERRNO takes at most 4095")
        #expect(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 4095}, {\"names\": [\"rmdir\"], \"action\": \"SCMP_ACT_TRACE\", \"errnoRet\": 65535}]}}")).isEmpty)
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_TRACE\", \"defaultErrnoRet\": 65536}}")),
                  "process.seccomp.defaultErrnoRet is 65536; SCMP_ACT_TRACE takes at most 65535")
        expectOne(problems(tree("{\"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"mkdir\\u0000x\"], \"action\": \"SCMP_ACT_ERRNO\"}]}}")),
                  "process.seccomp.syscalls[0].names[0] \"mkdir\\u0000x\" contains a NUL character")
    }

    @Test func umaskRange() {
        expectOne(problems(tree("{\"user\": {\"uid\": 0, \"gid\": 0, \"umask\": 512}}")),
                  "process.user.umask is 512 (0o1000); a umask is 0...511 (0o777)")
        #expect(problems(tree("{\"user\": {\"uid\": 0, \"gid\": 0, \"umask\": 511}}")).isEmpty)
    }

    // MARK: - Encoding, /proc/PID/limits, names

    @Test func encoderRoundTrip() throws {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/valid-identity", withExtension: "json"))
        let original = try TreeParser.parse(Array(try Data(contentsOf: url)))
        let again = try TreeParser.parse(Array(TreeEncoder.encode(original).utf8))
        #expect(again.processes.map(\.process) == original.processes.map(\.process))
        #expect(again.uidMappings == original.uidMappings && again.gidMappings == original.gidMappings)
    }

    @Test func procLimits() {
        let text = """
            Limit                     Soft Limit           Hard Limit           Units     
            Max cpu time              unlimited            unlimited            seconds   
            Max processes             500                  600                  processes 
            Max open files            100                  200                  files     
            Max realtime timeout      unlimited            unlimited            us        

            """
        #expect(ResourceLimits.parseProcLimits(text) == [
            RlimitSpec(type: "RLIMIT_CPU", soft: .max, hard: .max),
            RlimitSpec(type: "RLIMIT_NPROC", soft: 500, hard: 600),
            RlimitSpec(type: "RLIMIT_NOFILE", soft: 100, hard: 200),
            RlimitSpec(type: "RLIMIT_RTTIME", soft: .max, hard: .max),
        ])
    }

    @Test func capabilityMasks() {
        #expect(Capabilities.names.count == 41 && Capabilities.number(named: "CAP_CHECKPOINT_RESTORE") == 40)
        let (names, unknown) = Capabilities.names(of: 0x0000_0400 | 0x20 | (UInt64(1) << 45))
        #expect(names == ["CAP_KILL", "CAP_NET_BIND_SERVICE"] && unknown == [45])
        #expect(CapabilitySpec.mask(["CAP_CHOWN", "CAP_SYS_ADMIN"]) == (1 | UInt64(1) << 21))
        #expect(ResourceLimits.names.count == ResourceLimits.procLabels.count)
    }

    /// The schema's enums are the parser's lists.
    @Test func schemaListsEqualModel() throws {
        let data = try Data(contentsOf: SchemaTests.schemaURL)
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let defs = try #require(schema["$defs"] as? [String: Any])
        func enumAt(_ path: [String]) -> [String]? {
            var node: Any? = defs
            for key in path { node = (node as? [String: Any])?[key] }
            return (node as? [String: Any])?["enum"] as? [String]
        }
        #expect(enumAt(["capabilityName"]) == Capabilities.names)
        #expect(enumAt(["rlimit", "properties", "type"]) == ResourceLimits.names)
        #expect(enumAt(["seccompAction"]) == SeccompSpec.actions)
        #expect(enumAt(["seccomp", "properties", "architectures", "items"]) == SeccompSpec.architectureNames)
        #expect(enumAt(["seccompArg", "properties", "op"]) == SeccompSpec.operators)
    }
}

// MARK: - Id maps

private let ownUID: UInt32 = 1001
private let ownGID: UInt32 = 1001

private func helper(_ name: String, path: String? = "/usr/bin/", mode: UInt32 = 0o104755, owner: UInt32 = 0,
                    fileCapability: [UInt8]? = nil) -> IDHelperFacts {
    var h = IDHelperFacts(name: name, path: path.map { $0 + name })
    h.mode = mode
    h.ownerUID = owner
    h.fileCapability = fileCapability
    return h
}

private func facts(subuid: String? = "rrtest:100000:65536\nother:165536:65536\n",
                   subgid: String? = "rrtest:100000:65536\n",
                   newuidmap: IDHelperFacts = helper("newuidmap"),
                   newgidmap: IDHelperFacts = helper("newgidmap")) -> IDMapFacts {
    IDMapFacts(uid: ownUID, gid: ownGID, userName: "rrtest", subuidText: subuid, subgidText: subgid,
               newuidmap: newuidmap, newgidmap: newgidmap, searchPath: "/usr/bin:/bin")
}

/// Processes as `uid:gid` pairs (nil: no process.user), pids 1, 2, ...
private func users(_ ids: [(UInt32, UInt32, [UInt32])?], uidMappings: [IDMapping]? = nil,
                   gidMappings: [IDMapping]? = nil) -> ProcessTree {
    ProcessTree(processes: ids.enumerated().map { i, id in
        ProcessEntry(index: i, pid: Int32(i + 1), ppid: 0, pgid: 1, sid: 1,
                     process: ProcessSpec(user: id.map { UserSpec(uid: $0.0, gid: $0.1, additionalGids: $0.2) }))
    }, uidMappings: uidMappings, gidMappings: gidMappings)
}

private func planError(_ body: () throws -> IDMapPlan, sourceLocation: SourceLocation = #_sourceLocation) -> RestoreError? {
    do {
        let plan = try body()
        Issue.record("accepted: \(plan)", sourceLocation: sourceLocation)
        return nil
    } catch let e as RestoreError {
        return e
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite struct IDMapPlanTests {
    @Test func requestSyntax() throws {
        #expect(try IDMapRequest.parse("1:100000:65536") == .range(IDMapping(containerID: 1, hostID: 100000, size: 65536)))
        #expect(try IDMapRequest.parse("auto") == .auto)
        for (bad, fragment) in [("1:2", "expected inner:outer:count (e.g. 1:100000:65536) or auto"),
                                ("a:2:3", "inner \"a\" is not a number 0...4294967295"),
                                ("1:-2:3", "outer \"-2\" is not a number"),
                                ("1:2:4294967296", "count \"4294967296\" is not a number"),
                                ("AUTO", "expected inner:outer:count")] {
            #expect(throws: RestoreError.self) { try IDMapRequest.parse(bad) }
            do { _ = try IDMapRequest.parse(bad) } catch let e as RestoreError {
                #expect(e.message.contains(fragment), "\(bad): \(e.message)")
            }
        }
    }

    @Test func explicitLinesOverlap() {
        let found = IDMapRequest.problems([.range(IDMapping(containerID: 0, hostID: 100000, size: 10)),
                                           .range(IDMapping(containerID: 5, hostID: 200000, size: 10))],
                                          option: "--map-users")
        #expect(found == ["--map-users 5:200000:10: inner ids 5...14 overlap --map-users 0:100000:10 (0...9)"])
        let outer = IDMapRequest.problems([.range(IDMapping(containerID: 0, hostID: 100000, size: 10)),
                                           .range(IDMapping(containerID: 20, hostID: 100009, size: 1))],
                                          option: "--map-groups")
        #expect(outer == ["--map-groups 20:100009:1: outer ids 100009...100009 overlap --map-groups 0:100000:10 (100000...100009)"])
        #expect(IDMapRequest.problems([.auto, .auto], option: "--map-users") == ["--map-users auto is given 2 times"])
        #expect(IDMapRequest.problems([.range(IDMapping(containerID: 0, hostID: 1, size: 0))], option: "--map-users")
                == ["--map-users 0:1:0: size is 0: a mapping covers at least one id"])
    }

    @Test func defaultMapNeedsNoHelper() throws {
        let plan = try IDMapPlan.make(tree: users([nil, (0, 0, [])]), facts: facts(newuidmap: helper("newuidmap", path: nil)))
        #expect(plan.uid.lines == [IDMapping(containerID: 0, hostID: ownUID, size: 1)] && plan.uid.helper == nil)
        #expect(plan.gid.helper == nil && !plan.setgroupsAllowed)
        #expect(plan.runtimeUID == 0 && plan.defaultUID == 0)
        #expect(plan.uid.mapFileText == "0 1001 1\n")
    }

    @Test("maps of the caller's own ids only do not depend on /etc/subuid, the accounts or the helpers")
    func ownIDMapsNeedNoSystemFacts() throws {
        let own = IDMapping(containerID: 0, hostID: ownUID, size: 1)
        let ownGid = IDMapping(containerID: 7, hostID: ownGID, size: 1)
        let lean = IDMapFacts(uid: ownUID, gid: ownGID, userName: String(ownUID), subuidText: nil, subgidText: nil,
                              newuidmap: IDHelperFacts(name: "newuidmap"), newgidmap: IDHelperFacts(name: "newgidmap"),
                              searchPath: "")
        let trees = [users([nil, (0, 0, [])]), users([(0, 7, [])], uidMappings: [own], gidMappings: [ownGid]),
                     users([(5, 0, [])]), users([(0, 0, [3])]), users([(0, 0, [])], gidMappings: [ownGid])]
        for tree in trees {
            #expect(IDMapPlan.mapsOnlyOwnIDs(tree: tree, users: [], groups: [], uid: ownUID, gid: ownGID))
            func outcome(_ f: IDMapFacts) -> String {
                do { return "\(try IDMapPlan.make(tree: tree, facts: f))" } catch { return "error: \(error)" }
            }
            #expect(outcome(lean) == outcome(facts()), "\(tree.processes.map(\.process?.user))")
        }
        let range = [IDMapping(containerID: 0, hostID: 100000, size: 10)]
        for (tree, u, g) in [(users([nil]), [IDMapRequest.auto], [IDMapRequest]()), (users([nil]), [], [.range(own)]),
                             (users([nil], uidMappings: range), [], []), (users([nil], gidMappings: []), [], []),
                             (users([nil], uidMappings: [own, IDMapping(containerID: 1, hostID: 100000, size: 1)]), [], []),
                             (users([nil], uidMappings: [IDMapping(containerID: 0, hostID: ownUID + 1, size: 1)]), [], [])] {
            #expect(!IDMapPlan.mapsOnlyOwnIDs(tree: tree, users: u, groups: g, uid: ownUID, gid: ownGID))
        }
    }

    @Test func autoMapsOwnIdAndFirstRange() throws {
        let plan = try IDMapPlan.make(tree: users([(0, 0, []), (1000, 1000, [100]), (65534, 65534, [])]),
                                      users: [.auto], groups: [.auto], facts: facts())
        #expect(plan.uid.lines == [IDMapping(containerID: 0, hostID: ownUID, size: 1),
                                   IDMapping(containerID: 1, hostID: 100000, size: 65536)])
        #expect(plan.uid.helper == "/usr/bin/newuidmap" && plan.gid.helper == "/usr/bin/newgidmap")
        #expect(plan.setgroupsAllowed && plan.runtimeUID == 0 && plan.runtimeGID == 0)
        #expect(plan.uid.text == "0:1001:1, 1:100000:65536" && plan.uid.source == "--map-users")
    }

    @Test func treeRangeMapUsesHelper() throws {
        let plan = try IDMapPlan.make(tree: users([(5, 0, [])], uidMappings: [IDMapping(containerID: 0, hostID: 100000, size: 10)]),
                                      facts: facts())
        #expect(plan.uid.helper == "/usr/bin/newuidmap" && plan.uid.source == "uidMappings")
        #expect(plan.runtimeUID == nil && plan.defaultUID == 0)
    }

    @Test func rangeNotInSubuid() {
        let e = planError { try IDMapPlan.make(tree: users([nil]), users: [.range(IDMapping(containerID: 0, hostID: ownUID, size: 1)),
                                                                            .range(IDMapping(containerID: 1, hostID: 300000, size: 10))],
                                               facts: facts()) }
        #expect(e?.kind == .environment)
        #expect(e?.description == "--map-users 1:300000:10: outer uids 300000...300009 are not yours in /etc/subuid (rrtest has 100000...165535); map only your own uid (1001) and ids inside your ranges (--map-users auto picks the first), or as root: usermod --add-subuids 300000-300009 rrtest")
        // Another user's range is not yours either.
        let other = planError { try IDMapPlan.make(tree: users([nil]), users: [.range(IDMapping(containerID: 0, hostID: 165536, size: 10))],
                                                   facts: facts()) }
        #expect(other?.message.contains("outer uids 165536...165545 are not yours in /etc/subuid") == true)
    }

    @Test("fix suggestions never grant uid 0, an account's id, or another user's range")
    func suggestionsGrantNothingTaken() {
        var f = facts()
        f.accountUIDs = [0, 1001, 1002, 65534]
        func message(_ m: IDMapping, _ facts: IDMapFacts) -> String {
            planError { try IDMapPlan.make(tree: users([nil]), users: [.range(m)], facts: facts) }?.message ?? "no error"
        }
        let root = message(IDMapping(containerID: 1, hostID: 0, size: 1), f)
        #expect(!root.contains("--add-subuids 0-") && root.contains("includes id 0 (root)") && root.contains("usermod --add-subuids 231072-231072 rrtest"), "\(root)")
        let account = message(IDMapping(containerID: 1, hostID: 1002, size: 1), f)
        #expect(!account.contains("--add-subuids 1002") && account.contains("id 1002, which belongs to an account"), "\(account)")
        let others = message(IDMapping(containerID: 1, hostID: 165000, size: 1000), f)
        #expect(!others.contains("--add-subuids 165000") && others.contains("overlaps other's range 165536-231071"), "\(others)")
        #expect(others.contains("then map onto it (--map-users 1:232000:1000)"), "\(others)")
        // auto without a range: a free range, past every line, never the fixed 100000-165535.
        var none = facts(subuid: "other:100000:65536\n")
        none.accountUIDs = [0, 1001]
        let auto = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto], facts: none) }?.message ?? ""
        #expect(auto.contains("usermod --add-subuids 196608-262143 rrtest"), "\(auto)")
        // Inside a user namespace (unshare -Urpf, a container) the grant is the host's business.
        var inside = f
        inside.inInitialUserNamespace = false
        let nested = message(IDMapping(containerID: 1, hostID: 300000, size: 10), inside)
        #expect(!nested.contains("usermod --add-subuids 300000") && nested.contains("granted on the host"), "\(nested)")
    }

    @Test("no_new_privs and an empty bounding set are named: newuidmap cannot work under them")
    func noNewPrivsAndBoundingSet() {
        var f = facts()
        f.noNewPrivs = true
        let nnp = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto], facts: f) }
        #expect(nnp?.message.contains("no_new_privs") == true, "\(String(describing: nnp))")
        f.noNewPrivs = false
        f.capBnd = 0
        let bnd = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto], facts: f) }
        #expect(bnd?.message.contains("CAP_SETUID is not in this process's capability bounding set (CapBnd: 0, empty)") == true,
                "\(String(describing: bnd))")
        f.capBnd = 0x1ff_ffff_ffff
        #expect(throws: Never.self) { try IDMapPlan.make(tree: users([nil]), users: [.auto], facts: f) }
    }

    @Test func adjacentSubuidRangesJoin() throws {
        let plan = try IDMapPlan.make(tree: users([nil]), users: [.range(IDMapping(containerID: 0, hostID: 100000, size: 20))],
                                      facts: facts(subuid: "rrtest:100010:10\n1001:100000:10\n"))
        #expect(plan.uid.helper != nil)
    }

    @Test func subuidMissing() {
        let e = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto], facts: facts(subuid: nil)) }
        #expect(e?.kind == .environment && e?.entry == "--map-users auto")
        #expect(e?.message.contains("/etc/subuid is missing or unreadable, so there is no range of yours to map; as root: usermod --add-subuids 100000-165535 rrtest") == true)
        let none = planError { try IDMapPlan.make(tree: users([nil]), groups: [.auto], facts: facts(subgid: "other:1:2\n")) }
        #expect(none?.message.contains("/etc/subgid has no range for rrtest (gid 1001)") == true)
    }

    @Test func autoOverlapsExplicitLine() {
        let e = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto, .range(IDMapping(containerID: 5, hostID: 100100, size: 1))],
                                               facts: facts()) }
        #expect(e?.kind == .environment)
        #expect(e?.description.contains("--map-users 5:100100:1: inner ids 5...5 overlap --map-users auto (1:100000:65536, your first /etc/subuid range) (1...65536)") == true)
    }

    @Test func treeUidNotCovered() {
        let e = planError { try IDMapPlan.make(tree: users([(0, 0, []), (70000, 0, [])]), users: [.auto], facts: facts()) }
        #expect(e?.kind == .invalidTree)
        #expect(e?.description == "process #1 (pid 2): runs as uid 70000, which no line of the uid map covers (--map-users: 0:1001:1, 1:100000:65536); map it with --map-users or uidMappings, or change process.user.uid")
        let g = planError { try IDMapPlan.make(tree: users([(0, 7, [])]), facts: facts()) }
        #expect(g?.description == "process #0 (pid 1): runs as gid 7, which no line of the gid map covers (the default map: 0:1001:1); map it with --map-groups or gidMappings, or change process.user.gid")
        let many = planError { try IDMapPlan.make(tree: users([(1, 0, []), (2, 0, [])]), facts: facts()) }
        #expect(many?.message.hasSuffix("(and 1 more such problems)") == true)
    }

    @Test func defaultIdWhenCallerUnmapped() {
        let e = planError { try IDMapPlan.make(tree: users([nil]), users: [.range(IDMapping(containerID: 1, hostID: 100000, size: 10))],
                                               facts: facts()) }
        #expect(e?.description == "process #0 (pid 1): runs as uid 0 (the default without process.user, since your uid 1001 is not mapped), which no line of the uid map covers (--map-users: 1:100000:10); map it with --map-users or uidMappings, or change process.user.uid")
    }

    @Test func helperMissing() {
        let e = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto], facts: facts(newuidmap: helper("newuidmap", path: nil))) }
        #expect(e?.kind == .environment && e?.operation == "newuidmap")
        #expect(e?.description == "--map-users: the uid map 0:1001:1, 1:100000:65536 maps more than your own uid, which needs newuidmap, but it was not found in PATH=/usr/bin:/bin; install it (Debian and Ubuntu: apt-get install uidmap; Fedora: dnf install shadow-utils) or map only your own uid")
    }

    @Test func helperWithoutPrivilege() throws {
        let e = planError { try IDMapPlan.make(tree: users([nil]), groups: [.auto],
                                               facts: facts(newgidmap: helper("newgidmap", mode: 0o100755))) }
        #expect(e?.kind == .environment)
        #expect(e?.description == "/usr/bin/newgidmap: has neither the setuid bit (mode 755, owner uid 0) nor the cap_setgid file capability, so it cannot write the gid map 0:1001:1, 1:100000:65536; as root: apt-get install --reinstall uidmap, or chown root /usr/bin/newgidmap && chmod u+s /usr/bin/newgidmap")
        let notRoot = planError { try IDMapPlan.make(tree: users([nil]), users: [.auto],
                                                     facts: facts(newuidmap: helper("newuidmap", mode: 0o104755, owner: 1001))) }
        #expect(notRoot?.message.contains("has neither the setuid bit (mode 4755, owner uid 1001)") == true)
        // VFS_CAP_REVISION_2 with CAP_SETUID (7) permitted is enough.
        let cap: [UInt8] = [0x01, 0x00, 0x00, 0x02, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        let plan = try IDMapPlan.make(tree: users([nil]), users: [.auto],
                                      facts: facts(newuidmap: helper("newuidmap", mode: 0o100755, fileCapability: cap)))
        #expect(plan.uid.helper == "/usr/bin/newuidmap")
    }

    @Test func additionalGidsNeedGidRange() throws {
        let e = planError { try IDMapPlan.make(tree: users([(0, 0, [100])]), users: [.auto], facts: facts()) }
        #expect(e?.kind == .invalidTree)
        #expect(e?.description == "process #0 (pid 1): has additionalGids 100, which need a gid range map written by newgidmap from your /etc/subgid range (e.g. --map-groups auto); with the default map (0:1001:1) the kernel denies setgroups")
        let unmapped = planError { try IDMapPlan.make(tree: users([(0, 0, [100, 70000])]), groups: [.auto], facts: facts()) }
        #expect(unmapped?.message.hasPrefix("has additionalGids 70000 that no line of the gid map covers") == true)
        let ok = try IDMapPlan.make(tree: users([(0, 0, [100])]), groups: [.auto], facts: facts())
        #expect(ok.setgroupsAllowed)
    }

    @Test func zombiesNeedNoIds() throws {
        var t = users([(70000, 70000, [])])
        t.processes[0].state = .zombie
        t.processes[0].exitStatus = .code(0)
        _ = try IDMapPlan.make(tree: t, facts: facts())
    }
}
