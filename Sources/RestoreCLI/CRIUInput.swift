import Glibc
import RestoreModel

/// Tree files in either format: tree.json, or the pstree JSON crit prints for a CRIU dump
/// (recognised by `"magic": "PSTREE"`), with the dump's decoded core files when given.
extension LoadedTree {
    /// tree.json or a CRIU pstree -> ProcessTree. `criuCores` is the --criu-cores directory.
    static func decode(_ bytes: [UInt8], path: String, criuCores: String?) throws -> ProcessTree {
        if CRIUImport.isPstree(bytes) {
            return try CRIUImport.tree(pstree: bytes, cores: try criuCores.map(readCores) ?? [:])
        }
        if let criuCores {
            throw RestoreError(.input, operation: "read", entry: displayName(path),
                               message: "--criu-cores \(criuCores) was given, but this is not a CRIU pstree "
                                   + "(the output of `crit decode -i pstree.img --pretty`, with \"magic\": \"PSTREE\"); "
                                   + "tree.json files take no core files")
        }
        return try TreeParser.parse(bytes)
    }

    static func displayName(_ path: String) -> String { path == "-" ? "standard input" : path }

    /// Every `core-<PID>.json` of `dir` (the output of `crit decode -i core-PID.img --pretty`),
    /// keyed by PID. Other files are ignored; a directory without any core is an error.
    static func readCores(_ dir: String) throws -> [Int32: [UInt8]] {
        guard let d = opendir(dir) else {
            throw RestoreError(.input, operation: "opendir", errno: errno, entry: dir,
                               message: "cannot read the --criu-cores directory")
        }
        var names: [(Int32, String)] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasPrefix("core-"), name.hasSuffix(".json") else { continue }
            if let pid = Int32(name.dropFirst(5).dropLast(5)), pid > 0 { names.append((pid, name)) }
        }
        closedir(d)
        guard !names.isEmpty else {
            throw RestoreError(.input, operation: "read", entry: dir,
                               message: "no core-<PID>.json file here: decode each core-PID.img of the dump with "
                                   + "`crit decode -i core-PID.img --pretty -o core-PID.json`")
        }
        var cores: [Int32: [UInt8]] = [:]
        for (pid, name) in names {
            cores[pid] = try readTree(dir + "/" + name)
        }
        return cores
    }
}
