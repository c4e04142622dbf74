import Glibc
import RestoreModel

/// A file the tool writes for its user: `run --report`, `run --pin-log`, `record -o`.
///
/// It is created new under a random name in the target's own directory, with
/// O_CREAT|O_EXCL|O_NOFOLLOW (so nothing planted there, symlink or file, is opened), every write
/// is checked, and only a complete file is renamed over the target. A symlink planted at the
/// target by someone else is therefore replaced, never followed; in a sticky directory such as
/// /tmp the kernel refuses to replace another user's entry, which is an error, not a clobber.
/// A failed write (full filesystem, quota) unlinks the temporary file and leaves the target as
/// it was.
public struct OutputFile {
    /// The open temporary file (close-on-exec).
    public let fd: Int32
    let directoryFD: Int32
    let temporaryName: String
    let finalName: String
    /// The target as the user wrote it, for messages.
    public let path: String
    /// What the file is, for messages: "the report", "the pin log", "the tree".
    let what: String
    /// The kind of every error: `run` fails as a restore (125, after tearing the tree down),
    /// `record` may choose its own.
    let kind: RestoreError.Kind

    /// Creates the temporary file next to `path`. Nothing is written to `path` yet.
    public static func create(_ path: String, mode: mode_t = 0o644, what: String,
                              kind: RestoreError.Kind = .restoreFailed) throws -> OutputFile {
        let (directory, name) = try split(path, what: what)
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirFD >= 0 else {
            throw RestoreError(kind, operation: "open", errno: Glibc.errno, entry: path,
                               message: "cannot write \(what): its directory \(directory) cannot be opened")
        }
        for _ in 0..<16 {
            let temporary = ".\(name).tmp-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
            let fd = openat(dirFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 {
                return OutputFile(fd: fd, directoryFD: dirFD, temporaryName: temporary, finalName: name,
                                  path: path, what: what, kind: kind)
            }
            let e = Glibc.errno
            if e == EEXIST { continue }
            close(dirFD)
            throw RestoreError(kind, operation: "open", errno: e, entry: path,
                               message: "cannot write \(what): cannot create a new file in \(directory)")
        }
        close(dirFD)
        throw RestoreError(kind, operation: "open", errno: EEXIST, entry: path,
                           message: "cannot write \(what): no fresh temporary name in \(directory)")
    }

    /// Appends `text`; a short or failed write is an error.
    public func write(_ text: String) throws {
        let e = Self.writeAll(fd, Array(text.utf8))
        if e != 0 {
            throw RestoreError(kind, operation: "write", errno: e, entry: path, message: "cannot write \(what)")
        }
    }

    /// Renames the file over the target; the file stays open when `keepOpen` (the pin log,
    /// written to while the tree runs), else it is closed first and its close checked (no
    /// fsync: the point is a complete file, not durability, and restores are timed to it).
    public func commit(keepOpen: Bool = false) throws {
        if !keepOpen && close(fd) != 0 {
            let e = Glibc.errno
            _ = unlinkat(directoryFD, temporaryName, 0)
            close(directoryFD)
            throw RestoreError(kind, operation: "close", errno: e, entry: path, message: "cannot write \(what)")
        }
        if renameat(directoryFD, temporaryName, directoryFD, finalName) != 0 {
            let e = Glibc.errno
            if keepOpen { close(fd) }
            _ = unlinkat(directoryFD, temporaryName, 0)
            close(directoryFD)
            let why = e == EPERM || e == EACCES
                ? ": \(path) exists and may not be replaced by you (another user's entry in a sticky directory?)"
                : e == EISDIR ? ": \(path) is a directory" : ""
            throw RestoreError(kind, operation: "rename", errno: e, entry: path, message: "cannot write \(what)\(why)")
        }
        close(directoryFD)
    }

    /// Closes and removes the temporary file; the target is untouched.
    public func discard() {
        close(fd)
        _ = unlinkat(directoryFD, temporaryName, 0)
        close(directoryFD)
    }

    /// Writes `text` to `path` as a new, complete file (see the type), or to standard output
    /// for "-". Every failure is a RestoreError naming `path`; the target is then unchanged.
    public static func write(_ text: String, to path: String, mode: mode_t = 0o644, what: String,
                             kind: RestoreError.Kind = .restoreFailed) throws {
        if path == "-" {
            let e = writeAll(1, Array(text.utf8))
            if e != 0 {
                throw RestoreError(kind, operation: "write", errno: e, entry: "standard output", message: "cannot write \(what)")
            }
            return
        }
        let file = try create(path, mode: mode, what: what, kind: kind)
        do { try file.write(text) } catch { file.discard(); throw error }
        try file.commit()
    }

    /// Refuses a target that cannot work, before anything is created: a missing or
    /// unwritable directory, or a directory where the file should be.
    public static func checkWritable(_ path: String, what: String) throws {
        if path == "-" { return }
        let (directory, name) = try split(path, what: what)
        var st = stat()
        let statResult = stat(directory, &st)
        // errno is only meaningful when stat failed; a non-directory is ENOTDIR whatever errno holds.
        let statErrno = statResult == 0 ? ENOTDIR : Glibc.errno
        guard statResult == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw RestoreError(.input, operation: "stat", errno: statErrno, entry: path,
                               message: "cannot write \(what): \(directory) is not a directory")
        }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw RestoreError(.input, operation: "access", errno: Glibc.errno, entry: path,
                               message: "cannot write \(what): no permission to create files in \(directory)")
        }
        if fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            throw RestoreError(.input, operation: "stat", errno: EISDIR, entry: path,
                               message: "cannot write \(what): \(name) is a directory")
        }
    }

    /// Writes all of `bytes`, retrying after EINTR; 0, or the errno of the failure (EIO for a
    /// write that made no progress).
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        var offset = 0
        while offset < bytes.count {
            let (n, e) = SystemCalls.retrying { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) } }
            if e != 0 { return e }
            if n == 0 { return EIO }
            offset += n
        }
        return 0
    }

    static func split(_ path: String, what: String) throws -> (directory: String, name: String) {
        guard !path.isEmpty, !path.hasSuffix("/"), !path.utf8.contains(0) else {
            throw RestoreError(.input, operation: "open", errno: EINVAL, entry: path.isEmpty ? "\"\"" : path,
                               message: "cannot write \(what): not a file name")
        }
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        guard name != "." && name != ".." else {
            throw RestoreError(.input, operation: "open", errno: EINVAL, entry: path, message: "cannot write \(what): not a file name")
        }
        return (directory, name)
    }
}
