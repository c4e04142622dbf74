/// Writes a ProcessTree as tree.json version 1, one process per line group, in the field
/// order of docs/tree-format.md. Defaults are left out.
public enum TreeEncoder {
    public static func encode(_ tree: ProcessTree, comment: String? = nil) -> String {
        var out = "{\n  \"version\": \(tree.version)"
        if let comment { out += ",\n  \"comment\": \(quote(comment))" }
        if let m = tree.uidMappings { out += ",\n  \"uidMappings\": \(mappings(m))" }
        if let m = tree.gidMappings { out += ",\n  \"gidMappings\": \(mappings(m))" }
        out += ",\n  \"processes\": ["
        out += tree.processes.map { "\n    " + entry($0) }.joined(separator: ",")
        out += "\n  ]\n}\n"
        return out
    }

    static func mappings(_ m: [IDMapping]) -> String {
        "[" + m.map { "{\"containerID\": \($0.containerID), \"hostID\": \($0.hostID), \"size\": \($0.size)}" }.joined(separator: ", ") + "]"
    }

    static func entry(_ e: ProcessEntry) -> String {
        var fields = ["\"pid\": \(e.pid)", "\"ppid\": \(e.ppid)", "\"pgid\": \(e.pgid)", "\"sid\": \(e.sid)"]
        if e.nspid.count > 1 { fields.append("\"nspid\": \(ints(e.nspid))") }
        if e.state != .running { fields.append("\"state\": \"\(e.state.rawValue)\"") }
        switch e.exitStatus {
        case .code(let c)?: fields.append("\"exitStatus\": \(c)")
        case .signal(let s)?: fields.append("\"exitStatus\": {\"signal\": \(s)}")
        case nil: break
        }
        if !e.threadLevels.isEmpty && e.threads != [e.pid] {
            fields.append("\"threads\": [" + e.threadLevels.map(ints).joined(separator: ", ") + "]")
        } else if !e.threads.isEmpty && e.threads != [e.pid] {
            fields.append("\"threads\": \(ints(e.threads))")
        }
        if e.newPidNamespace { fields.append("\"newPidNamespace\": true") }
        if e.childSubreaper { fields.append("\"childSubreaper\": true") }
        if e.spawnedByPayload { fields.append("\"spawn\": \"payload\"") }
        if let p = e.process {
            var spec: [String] = []
            if let a = p.args { spec.append("\"args\": [" + a.map(quote).joined(separator: ", ") + "]") }
            if let env = p.env { spec.append("\"env\": [" + env.map(quote).joined(separator: ", ") + "]") }
            if let cwd = p.cwd { spec.append("\"cwd\": \(quote(cwd))") }
            if let u = p.user {
                var user = "\"uid\": \(u.uid), \"gid\": \(u.gid)"
                if !u.additionalGids.isEmpty { user += ", \"additionalGids\": [" + u.additionalGids.map(String.init).joined(separator: ", ") + "]" }
                if let mask = u.umask { user += ", \"umask\": \(mask)" }
                spec.append("\"user\": {\(user)}")
            }
            spec += confinement(p)
            if !spec.isEmpty { fields.append("\"process\": {" + spec.joined(separator: ", ") + "}") }
        }
        if let r = e.recorded {
            var members: [String] = []
            if let exe = r.exe { members.append("\"exe\": \(quote(exe))") }
            if let c = r.cmdline { members.append("\"cmdline\": [" + c.map(quote).joined(separator: ", ") + "]") }
            if r.titleRewritten { members.append("\"titleRewritten\": true") }
            if r.forkedNotExeced { members.append("\"forkedNotExeced\": true") }
            if let t = r.startTime { members.append("\"startTime\": \(t)") }
            if let n = r.forkOrder { members.append("\"forkOrder\": \(n)") }
            fields.append("\"recorded\": {" + members.joined(separator: ", ") + "}")
        }
        return "{" + fields.joined(separator: ", ") + "}"
    }

    /// capabilities, noNewPrivileges, rlimits and seccomp of a process spec, as members.
    static func confinement(_ p: ProcessSpec) -> [String] {
        var out: [String] = []
        func names(_ list: [String]) -> String { "[" + list.map(quote).joined(separator: ", ") + "]" }
        if let c = p.capabilities {
            let sets = c.sets.compactMap { set in set.names.map { "\(quote(set.name)): \(names($0))" } }
            out.append("\"capabilities\": {" + sets.joined(separator: ", ") + "}")
        }
        if let nnp = p.noNewPrivileges { out.append("\"noNewPrivileges\": \(nnp)") }
        if let limits = p.rlimits {
            out.append("\"rlimits\": [" + limits.map {
                "{\"type\": \(quote($0.type)), \"soft\": \($0.soft), \"hard\": \($0.hard)}"
            }.joined(separator: ", ") + "]")
        }
        if let s = p.seccomp {
            var members = ["\"defaultAction\": \(quote(s.defaultAction))"]
            if let e = s.defaultErrnoRet { members.append("\"defaultErrnoRet\": \(e)") }
            if let a = s.architectures { members.append("\"architectures\": \(names(a))") }
            if let calls = s.syscalls {
                members.append("\"syscalls\": [" + calls.map { rule in
                    var r = ["\"names\": \(names(rule.names))", "\"action\": \(quote(rule.action))"]
                    if let e = rule.errnoRet { r.append("\"errnoRet\": \(e)") }
                    if let args = rule.args {
                        r.append("\"args\": [" + args.map { a in
                            "{\"index\": \(a.index), \"value\": \(a.value)"
                                + (a.valueTwo.map { ", \"valueTwo\": \($0)" } ?? "") + ", \"op\": \(quote(a.op))}"
                        }.joined(separator: ", ") + "]")
                    }
                    return "{" + r.joined(separator: ", ") + "}"
                }.joined(separator: ", ") + "]")
            }
            out.append("\"seccomp\": {" + members.joined(separator: ", ") + "}")
        }
        return out
    }

    static func ints(_ a: [Int32]) -> String { "[" + a.map(String.init).joined(separator: ", ") + "]" }

    /// A JSON string literal (the parser's own quoting, without its length limit for messages).
    public static func quote(_ s: String) -> String { JSONValue.quoted(s, limit: Int.max) }
}
