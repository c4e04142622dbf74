/// Writes a ProcessTree as tree.json version 1, one process per line, in the field order of
/// docs/tree-format.md, through the one JSON writer. Defaults are left out.
public enum TreeEncoder {
    public static func encode(_ tree: ProcessTree, comment: String? = nil) -> String {
        var members: [(String, JSONOutput)] = [("version", .int(tree.version))]
        if let comment { members.append(("comment", .string(comment))) }
        if let m = tree.uidMappings { members.append(("uidMappings", mappings(m))) }
        if let m = tree.gidMappings { members.append(("gidMappings", mappings(m))) }
        if !tree.terminals.isEmpty { members.append(("terminals", .array(tree.terminals.map(terminal), layout: .lines))) }
        members.append(("processes", .array(tree.processes.map(entry), layout: .lines)))
        return JSONOutput.object(members, layout: .lines).document()
    }

    static func mappings(_ m: [IDMapping]) -> JSONOutput {
        .array(m.map { .object([("containerID", .int($0.containerID)), ("hostID", .int($0.hostID)), ("size", .int($0.size))]) })
    }

    static func terminal(_ t: TerminalSpec) -> JSONOutput {
        var fields: [(String, JSONOutput)] = [("id", .string(t.id))]
        if let s = t.session { fields.append(("session", .int(s))) }
        if let g = t.foreground { fields.append(("foreground", .int(g))) }
        if let r = t.recordedAs { fields.append(("recordedAs", .string(r))) }
        if let r = t.rows { fields.append(("rows", .int(r))) }
        if let c = t.columns { fields.append(("columns", .int(c))) }
        if let m = t.modes {
            fields.append(("modes", .object([("iflag", .int(m.iflag)), ("oflag", .int(m.oflag)), ("cflag", .int(m.cflag)),
                                             ("lflag", .int(m.lflag)), ("cc", .ints(m.cc))])))
        }
        return .object(fields)
    }

    static func entry(_ e: ProcessEntry) -> JSONOutput {
        var fields: [(String, JSONOutput)] = [("pid", .int(e.pid)), ("ppid", .int(e.ppid)), ("pgid", .int(e.pgid)), ("sid", .int(e.sid))]
        if e.nspid.count > 1 { fields.append(("nspid", .ints(e.nspid))) }
        if e.state != .running { fields.append(("state", .string(e.state.rawValue))) }
        switch e.exitStatus {
        case .code(let c)?: fields.append(("exitStatus", .int(c)))
        case .signal(let s)?: fields.append(("exitStatus", .object([("signal", .int(s))])))
        case nil: break
        }
        if !e.threadLevels.isEmpty && e.threads != [e.pid] {
            fields.append(("threads", .array(e.threadLevels.map { .ints($0) })))
        } else if !e.threads.isEmpty && e.threads != [e.pid] {
            fields.append(("threads", .ints(e.threads)))
        }
        if e.newPidNamespace { fields.append(("newPidNamespace", .bool(true))) }
        if e.childSubreaper { fields.append(("childSubreaper", .bool(true))) }
        if e.spawnedByPayload { fields.append(("spawn", .string("payload"))) }
        if let t = e.terminal { fields.append(("terminal", .string(t))) }
        if !e.stdio.isEmpty { fields.append(("stdio", .array(e.stdio.map { $0.map { JSONOutput.string($0) } ?? .null }))) }
        if !e.shellJobs.isEmpty {
            fields.append(("shellJobs", .array(e.shellJobs.map { job in
                var members: [(String, JSONOutput)] = [("pgid", .int(job.pgid)), ("state", .string(job.state.rawValue))]
                if let s = job.stopSignal { members.append(("stopSignal", .string("SIG" + (TreeParser.signalNames[s] ?? "TSTP")))) }
                members.append(("members", .ints(job.members)))
                return .object(members)
            })))
        }
        if let p = e.process {
            var spec: [(String, JSONOutput)] = []
            if let a = p.args { spec.append(("args", .strings(a))) }
            if let env = p.env { spec.append(("env", .strings(env))) }
            if let cwd = p.cwd { spec.append(("cwd", .string(cwd))) }
            if let u = p.user {
                var user: [(String, JSONOutput)] = [("uid", .int(u.uid)), ("gid", .int(u.gid))]
                if !u.additionalGids.isEmpty { user.append(("additionalGids", .ints(u.additionalGids))) }
                if let mask = u.umask { user.append(("umask", .int(mask))) }
                spec.append(("user", .object(user)))
            }
            spec += confinement(p)
            if !spec.isEmpty { fields.append(("process", .object(spec))) }
        }
        if let t = e.tmux { fields.append(("tmux", TmuxReplay.encode(t))) }
        if let r = e.recorded {
            var members: [(String, JSONOutput)] = []
            if let exe = r.exe { members.append(("exe", .string(exe))) }
            if let c = r.cmdline { members.append(("cmdline", .strings(c))) }
            if r.titleRewritten { members.append(("titleRewritten", .bool(true))) }
            if r.forkedNotExeced { members.append(("forkedNotExeced", .bool(true))) }
            if let t = r.startTime { members.append(("startTime", .int(t))) }
            if let n = r.forkOrder { members.append(("forkOrder", .int(n))) }
            fields.append(("recorded", .object(members)))
        }
        return .object(fields)
    }

    /// capabilities, noNewPrivileges, rlimits and seccomp of a process spec, as members.
    static func confinement(_ p: ProcessSpec) -> [(String, JSONOutput)] {
        var out: [(String, JSONOutput)] = []
        if let c = p.capabilities {
            out.append(("capabilities", .object(c.sets.compactMap { set in set.names.map { (set.name, .strings($0)) } })))
        }
        if let nnp = p.noNewPrivileges { out.append(("noNewPrivileges", .bool(nnp))) }
        if let limits = p.rlimits {
            out.append(("rlimits", .array(limits.map {
                .object([("type", .string($0.type)), ("soft", .int($0.soft)), ("hard", .int($0.hard))])
            })))
        }
        if let s = p.seccomp {
            var members: [(String, JSONOutput)] = [("defaultAction", .string(s.defaultAction))]
            if let e = s.defaultErrnoRet { members.append(("defaultErrnoRet", .int(e))) }
            if let a = s.architectures { members.append(("architectures", .strings(a))) }
            if let calls = s.syscalls {
                members.append(("syscalls", .array(calls.map { rule in
                    var r: [(String, JSONOutput)] = [("names", .strings(rule.names)), ("action", .string(rule.action))]
                    if let e = rule.errnoRet { r.append(("errnoRet", .int(e))) }
                    if let args = rule.args {
                        r.append(("args", .array(args.map { a in
                            var m: [(String, JSONOutput)] = [("index", .int(a.index)), ("value", .int(a.value))]
                            if let two = a.valueTwo { m.append(("valueTwo", .int(two))) }
                            m.append(("op", .string(a.op)))
                            return .object(m)
                        })))
                    }
                    return .object(r)
                })))
            }
            out.append(("seccomp", .object(members)))
        }
        return out
    }
}
