import Glibc
import RestoreModel

/// The generated configurations of the tree's tmux servers (TmuxReplay.config): written to a
/// directory of the runtime's own (mkdtemp, mode 0700, under $XDG_RUNTIME_DIR or /tmp), so no
/// file of the user's is touched, and removed when `run` ends. Each server's argv gets
/// `-f CONFIG`.
final class TmuxReplayFiles {
    private(set) var tree: ProcessTree
    private var directory: String?
    private var files: [String] = []

    init(tree original: ProcessTree, configs: [Int32: String]) throws {
        tree = original
        let servers = original.processes.indices.filter { configs[original.processes[$0].pid] != nil }
        guard !servers.isEmpty else { return }
        // A server still listening there would take the restored one for a client.
        for i in servers {
            let server = original.processes[i]
            if let socket = server.tmux?.socket, Self.accepts(socket) {
                throw RestoreError(.restoreFailed, operation: "connect", entry: server.label,
                                   message: "a tmux server already listens on \(socket): the restored server would only be a client of it; end that server first (tmux -S \(socket) kill-server)")
            }
        }
        var base = getenv("XDG_RUNTIME_DIR").map { String(cString: $0) } ?? "/tmp"
        if access(base, W_OK | X_OK) != 0 { base = "/tmp" }
        var template = Array((base + "/rootless-restore-tmux.XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else {
            throw RestoreError(.restoreFailed, operation: "mkdtemp", errno: Glibc.errno, entry: original.processes[servers[0]].label,
                               message: "cannot make a directory for the generated tmux configuration under \(base)")
        }
        let dir = String(cString: template)
        directory = dir
        do {
            for i in servers {
                let server = original.processes[i]
                let path = "\(dir)/server-\(server.pid).conf"
                try OutputFile.write(configs[server.pid]!, to: path, mode: 0o600,
                                     what: "the tmux configuration of \(server.label)")
                files.append(path)
                var spec = server.process ?? ProcessSpec()
                spec.args = TmuxReplay.serverArguments(server, configPath: path)
                tree.processes[i].process = spec
            }
        } catch {
            remove()
            throw error
        }
    }

    /// A tmux server started with -D loads its configuration only once a first client has
    /// connected: connect one per server from here (outside the namespace, as the caller:
    /// the caller's uid must map to the server's inside, as record's default map does),
    /// `tmux -N -S SOCKET start-server` (-N: never start a server of its own), retried until
    /// the server listens, for at most `timeout` seconds. Says so when it cannot.
    func connectFirstClients(timeout: Double = 10) {
        var callers: [String] = []
        var p = environ
        while let entry = p.pointee { callers.append(String(cString: entry)); p += 1 }
        let env = callers.filter { !$0.hasPrefix("TMUX=") && !$0.hasPrefix("TMUX_PANE=") }
        for server in tree.processes {
            guard let spec = server.tmux, let program = server.process?.args?.first else { continue }
            let exe = program.contains("/") ? program
                : (try? ExecutableResolver.resolve(program, env: server.process?.env ?? env, cwd: "/", entry: server.label)) ?? program
            let deadline = MonotonicClock.nanoseconds() + UInt64(timeout * 1e9)
            var last = CommandRunner.Result(status: nil, output: "", error: "")
            while true {
                last = CommandRunner.run([exe, "-N", "-S", spec.socket, "start-server"], environment: env, timeout: 5)
                if last.status == 0 || MonotonicClock.nanoseconds() >= deadline { break }
                var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
                nanosleep(&ts, nil)
            }
            if last.status != 0 {
                let why = last.timedOut ? "timed out" : last.error.split(separator: "\n").first.map(String.init) ?? "exit \(last.status.map(String.init) ?? "?")"
                SystemCalls.printError("rootless-restore: warning: \(server.label): could not connect to the restored tmux server at \(spec.socket) (\(why)); it creates its sessions and panes when its first client connects (the caller's uid must map to the server's inside the namespace)")
            }
        }
    }

    func remove() {
        for f in files { unlink(f) }
        files = []
        if let directory { rmdir(directory) }
        directory = nil
    }

    deinit { remove() }

    /// Whether something accepts connections on the unix socket `path`.
    static func accepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (k, b) in bytes.enumerated() { raw[k] = b }
            raw[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return r == 0
    }
}
