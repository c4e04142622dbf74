/// The one error type of rootless-restore. It carries what was being done, the errno if the
/// kernel said no, and the entry of the tree it concerns; `description` is what the user reads.
public struct RestoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The tree file is malformed or describes something no system can produce.
        case invalidTree
        /// The tree file cannot be read.
        case input
        /// The machine or the caller's rights do not allow the restore (user namespaces, maps).
        case environment
        /// A step of the restore failed; everything was torn down.
        case restoreFailed
        /// A payload could not be executed (permission, format).
        case cannotExecute
        /// A payload's executable was not found.
        case notFound
        /// The restore was interrupted by this signal; everything was torn down.
        case interrupted(signal: Int32)
    }

    public var kind: Kind
    /// What was being done: "parse", "validate", "clone3", "write uid_map", ...
    public var operation: String
    /// The errno the kernel returned, if any.
    public var errno: Int32?
    /// The entry concerned, e.g. `process #3 (pid 17)` or `line 4, column 9`.
    public var entry: String?
    /// Human-readable detail.
    public var message: String

    public init(_ kind: Kind, operation: String, errno: Int32? = nil, entry: String? = nil,
                message: String) {
        self.kind = kind
        self.operation = operation
        self.errno = errno
        self.entry = entry
        self.message = message
    }

    /// Shorthand for validation failures.
    public static func invalid(_ entry: String?, _ message: String) -> RestoreError {
        RestoreError(.invalidTree, operation: "validate", entry: entry, message: message)
    }

    /// Process exit codes, documented in `--help` and README.md.
    public enum ExitCode {
        public static let invalidTree: Int32 = 65
        public static let input: Int32 = 66
        public static let environment: Int32 = 77
        public static let restoreFailed: Int32 = 125
        public static let cannotExecute: Int32 = 126
        public static let notFound: Int32 = 127
    }

    public var exitCode: Int32 {
        switch kind {
        case .invalidTree: return ExitCode.invalidTree
        case .input: return ExitCode.input
        case .environment: return ExitCode.environment
        case .restoreFailed: return ExitCode.restoreFailed
        case .cannotExecute: return ExitCode.cannotExecute
        case .notFound: return ExitCode.notFound
        case .interrupted(let sig): return 128 + sig
        }
    }

    public var description: String {
        var text = ""
        if let entry { text += "\(entry): " }
        text += message
        if let errno {
            text += " (\(operation): \(ErrnoName.describe(errno)))"
        }
        return text
    }
}

/// errno values by name, so messages say `EEXIST` rather than 17.
public enum ErrnoName {
    static let names: [Int32: (String, String)] = [
        1: ("EPERM", "Operation not permitted"), 2: ("ENOENT", "No such file or directory"),
        3: ("ESRCH", "No such process"), 4: ("EINTR", "Interrupted system call"),
        5: ("EIO", "Input/output error"), 7: ("E2BIG", "Argument list too long"),
        8: ("ENOEXEC", "Exec format error"), 9: ("EBADF", "Bad file descriptor"),
        10: ("ECHILD", "No child processes"), 11: ("EAGAIN", "Resource temporarily unavailable"),
        12: ("ENOMEM", "Cannot allocate memory"), 13: ("EACCES", "Permission denied"),
        14: ("EFAULT", "Bad address"), 16: ("EBUSY", "Device or resource busy"),
        17: ("EEXIST", "File exists"), 20: ("ENOTDIR", "Not a directory"),
        21: ("EISDIR", "Is a directory"), 22: ("EINVAL", "Invalid argument"),
        24: ("EMFILE", "Too many open files"), 26: ("ETXTBSY", "Text file busy"),
        28: ("ENOSPC", "No space left on device"), 30: ("EROFS", "Read-only file system"),
        36: ("ENAMETOOLONG", "File name too long"), 38: ("ENOSYS", "Function not implemented"),
        40: ("ELOOP", "Too many levels of symbolic links"), 62: ("ETIME", "Timer expired"),
        95: ("EOPNOTSUPP", "Operation not supported"), 110: ("ETIMEDOUT", "Connection timed out"),
    ]

    public static func describe(_ errno: Int32) -> String {
        if let (name, text) = names[errno] { return "\(name), \(text)" }
        return "errno \(errno)"
    }
}
