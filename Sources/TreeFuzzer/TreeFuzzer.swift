// Fuzz target for the tree parser, the validator, the planner and CRIU import: any input may be
// refused with a RestoreError, none may crash, hang or trap.
//
// Built with libFuzzer (scripts/fuzz.sh):
//   swift build --scratch-path .build-fuzz --product tree-fuzzer -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING
// libFuzzer's driver then runs it. A plain `swift build` makes the same code a replay harness:
// `tree-fuzzer FILE...` runs each file once, so the committed corpus (Fuzz/corpus) is also
// checked without libFuzzer.

import Glibc
import RestoreModel

/// One input, through everything that reads a tree. Errors are expected; only a crash is a bug.
func exercise(_ bytes: [UInt8]) {
    if CRIUImport.isPstree(bytes) {
        if let tree = try? CRIUImport.tree(pstree: bytes, cores: [:]) {
            _ = try? RestorePlanner.plan(tree)
        }
        return
    }
    // The plain-entry fast path must give what the general path gives: the same tree, or
    // the same error.
    let fast = Result { try TreeParser.parse(bytes) }
    let general = Result { try TreeParser.parse(bytes, plainEntryFastPath: false) }
    switch (fast, general) {
    case (.success(let a), .success(let b)) where a == b: break
    case (.failure(let a), .failure(let b)) where "\(a)" == "\(b)": break
    default: fatalError("the parser's fast path and general path disagree:\n\(fast)\n\(general)")
    }
    guard case .success(let tree) = fast else { return }
    _ = TreeValidator.problems(in: tree)
    guard (try? TreeValidator.validate(tree)) != nil else { return }
    guard let plan = try? RestorePlanner.plan(tree) else { return }
    _ = plan.describe(tree: tree, source: "fuzz")
    // What the encoder writes must parse again.
    let again = TreeEncoder.encode(tree)
    guard (try? TreeParser.parse(Array(again.utf8))) != nil else {
        fatalError("TreeEncoder wrote a tree the parser refuses:\n\(again)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    exercise(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

#if FUZZING
/// SwiftPM links an executable's entry point as `<module>_main`: hand over to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("tree_fuzzer_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput)
}
#else
@main
struct TreeFuzzerReplay {
    static func main() {
        var count = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { continue }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n == 0 { break }
                bytes += chunk[0..<n]
            }
            fclose(file)
            exercise(bytes)
            count += 1
        }
        print("tree-fuzzer: replayed \(count) inputs")
    }
}
#endif
