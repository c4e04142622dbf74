import CErrnoNames

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

/// errno values by name, so messages say `EEXIST` rather than 17: the C library's names
/// (strerrorname_np, glibc 2.32+), every errno it knows.
public enum ErrnoName {
    public static func name(_ errno: Int32) -> String? {
        rr_errno_name(errno).map { String(cString: $0) }
    }

    public static func describe(_ errno: Int32) -> String {
        guard let name = name(errno) else { return "errno \(errno)" }
        let text = rr_errno_description(errno).map { String(cString: $0) } ?? ""
        return text.isEmpty ? name : "\(name), \(text)"
    }
}
