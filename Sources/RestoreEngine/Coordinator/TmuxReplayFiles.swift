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
}
