import RestoreModel
import Testing

/// Process titles are told from argv by the bytes /proc shows, as nginx, PostgreSQL and
/// ordinary programs leave them.
@Suite struct CommandLineReadingTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
    let adjoining = CommandLineReading.Areas(argStart: 1000, argEnd: 1020, envStart: 1020, envEnd: 1100)

    @Test func ordinaryArgvAndEnvironmentAreKept() {
        let r = CommandLineReading.read(cmdline: bytes("sleep\u{0}1000\u{0}"), environ: bytes("PATH=/bin\u{0}HOME=/tmp\u{0}"),
                                        areas: adjoining, argv0IsProgram: true)
        #expect(r.args == ["sleep", "1000"] && r.env == ["PATH=/bin", "HOME=/tmp"] && !r.titleRewritten && !r.envRewritten)
    }

    @Test func anEmptyArgumentIsNotATitle() {
        let r = CommandLineReading.read(cmdline: bytes("printf\u{0}\u{0}"), environ: bytes("A=1\u{0}"), areas: adjoining, argv0IsProgram: true)
        #expect(r.args == ["printf", ""] && !r.titleRewritten)
    }

    @Test func nginxMasterTitleWithPaddedEnvironment() {
        // The title runs over the argument area into the environment area, padded with NULs.
        let r = CommandLineReading.read(cmdline: bytes("nginx: master process /usr/sbin/nginx -g daemon off;\u{0}\u{0}\u{0}"),
                                        environ: bytes("x.conf -g daemon off;\u{0}\u{0}\u{0}\u{0}"), areas: adjoining, argv0IsProgram: false)
        #expect(r.titleRewritten && r.envRewritten && r.env == nil)
        #expect(r.titleReason?.contains("names no program") == true)
    }

    @Test func postgresWorkerTitle() {
        let r = CommandLineReading.read(cmdline: bytes("postgres: checkpointer \u{0}\u{0}\u{0}\u{0}"), environ: bytes("\u{0}\u{0}\u{0}"),
                                        areas: adjoining, argv0IsProgram: false)
        #expect(r.titleRewritten && r.args == ["postgres: checkpointer "])
    }

    @Test func aCommandLineWithoutItsNulIsATitle() {
        // The kernel's proctitle path: the last byte of the area is not NUL.
        let r = CommandLineReading.read(cmdline: bytes("sshd: alice@pts/0"), environ: nil, areas: adjoining, argv0IsProgram: false)
        #expect(r.titleRewritten && r.titleReason?.contains("does not end in a NUL") == true)
    }

    @Test func aMovedArgumentAreaIsATitle() {
        let moved = CommandLineReading.Areas(argStart: 5000, argEnd: 5010, envStart: 1020, envEnd: 1100)
        let r = CommandLineReading.read(cmdline: bytes("systemd\u{0}"), environ: bytes("A=1\u{0}"), areas: moved, argv0IsProgram: true)
        #expect(r.titleRewritten && r.titleReason?.contains("PR_SET_MM") == true)
    }

    @Test func entriesThatAreNotKeyValueAreNeverKept() {
        let r = CommandLineReading.read(cmdline: bytes("prog\u{0}"), environ: bytes("A=1\u{0}/nginx/logs/error.log\u{0}=x\u{0}"),
                                        areas: adjoining, argv0IsProgram: true)
        #expect(r.envRewritten && r.env == nil)
        #expect(CommandLineReading.isKeyValue("A=") && !CommandLineReading.isKeyValue("=A") && !CommandLineReading.isKeyValue("A"))
    }

    @Test func execAWithAnotherNameIsNoTitle() {
        // `exec -a foo sleep 5`: argv[0] names no program, but nothing else looks rewritten.
        let r = CommandLineReading.read(cmdline: bytes("foo\u{0}5\u{0}"), environ: bytes("A=1\u{0}"), areas: adjoining, argv0IsProgram: false)
        #expect(!r.titleRewritten && r.args == ["foo", "5"])
    }
}

@Suite("where a recorded program is restarted")
struct LaunchDirectoryTests {
    let files: Set<String> = ["/home/u/pgdata", "/home/u/pgdata/PG_VERSION", "/home/u/conf/app.ini"]
    func exists(_ path: String) -> Bool { files.contains(path) }

    @Test("postgres -D pgdata, now in its data directory: restarted in PWD, where pgdata is")
    func relativeDataDirectory() {
        let found = CommandLineReading.launchDirectory(cwd: "/home/u/pgdata", env: ["PATH=/bin", "PWD=/home/u"],
                                                       args: ["/usr/lib/postgresql/15/bin/postgres", "-D", "pgdata", "-p", "5432"], exists: exists)
        #expect(found?.dir == "/home/u" && found?.argument == "pgdata")
        #expect(CommandLineReading.launchDirectory(cwd: "/", env: ["PWD=/home/u"], args: ["app", "--config=conf/app.ini"], exists: exists)?.argument == "conf/app.ini")
    }

    @Test("no evidence, no move: absolute paths, paths that exist from the cwd too, no PWD, PWD the cwd")
    func staysInCwd() {
        #expect(CommandLineReading.launchDirectory(cwd: "/home/u/pgdata", env: ["PWD=/home/u"], args: ["postgres", "-D", "/home/u/pgdata"], exists: exists) == nil)
        #expect(CommandLineReading.launchDirectory(cwd: "/home/u/pgdata", env: ["PWD=/home/u"], args: ["cat", "PG_VERSION"], exists: exists) == nil)
        #expect(CommandLineReading.launchDirectory(cwd: "/home/u/pgdata", env: [], args: ["postgres", "-D", "pgdata"], exists: exists) == nil)
        #expect(CommandLineReading.launchDirectory(cwd: "/home/u", env: ["PWD=/home/u"], args: ["postgres", "-D", "pgdata"], exists: exists) == nil)
        #expect(CommandLineReading.launchDirectory(cwd: "/home/u/pgdata", env: ["PWD=/home/u"], args: ["pgdata"], exists: exists) == nil, "argv[0] is the program")
    }
}
