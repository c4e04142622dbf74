import CLibseccomp

/// Versions of the system libraries the engine links, for `--version` and `check`.
public enum EngineInfo {
    public static var libseccompVersion: String {
        guard let v = seccomp_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)"
    }
}
