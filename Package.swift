// swift-tools-version:6.0
import PackageDescription

// Concrete generic types (arrays, dictionaries, optionals of the model's types) get their
// metadata through compiled accessors instead of by mangled name: at run time the latter
// demangles each name and looks up its protocol conformances by scanning all ~3 700 records of
// the static binary: 14 % of a one-process `run`'s CPU time before (docs/performance.md).
let startUp: [SwiftSetting] = [.unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"])]

let package = Package(
    name: "rootless-restore",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rootless-restore", targets: ["rootless-restore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Thin C layer for what Glibc's Swift module lacks: clone3, CLONE_* constants,
        // variadic prctl/syscall, futex, cmsg macros. No logic lives here.
        .target(name: "CRestoreShim"),
        .systemLibrary(name: "CLibcap", pkgConfig: "libcap",
                       providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CLibseccomp", pkgConfig: "libseccomp",
                       providers: [.apt(["libseccomp-dev"])]),
        // Pure Swift: tree format, validation, planning. Unit-testable without a kernel.
        .target(name: "RestoreModel", dependencies: ["CErrnoNames"], swiftSettings: startUp),
        // errno names from the C library (strerrorname_np): a lookup the model's messages use.
        .target(name: "CErrnoNames"),
        // Kernel-facing: namespaces, id maps, the fork engine, the init loop, /proc.
        .target(name: "RestoreEngine",
                dependencies: ["RestoreModel", "CRestoreShim", "CLibcap", "CLibseccomp"], swiftSettings: startUp),
        // `check`: probes in throwaway children (EnvironmentCheck), and the judging and wording
        // of what they found (EnvironmentFacts, CheckOutput), testable without a kernel.
        .target(name: "RestoreCheck",
                dependencies: ["RestoreModel", "RestoreEngine", "CRestoreShim", "CLibseccomp"], swiftSettings: startUp),
        // Commands, kept in a library so they can be tested; the executable is a stub.
        .target(name: "RestoreCLI",
                dependencies: ["RestoreModel", "RestoreEngine", "RestoreCheck",
                               .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: startUp),
        .executableTarget(name: "rootless-restore", dependencies: ["RestoreCLI"], swiftSettings: startUp),
        // Fuzz target for the parser, validator and planner (scripts/fuzz.sh builds it with
        // libFuzzer; a plain build makes it a replay harness for Fuzz/corpus).
        .executableTarget(name: "tree-fuzzer", dependencies: ["RestoreModel"], path: "Sources/TreeFuzzer",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        // Test code the binary does not link: the kernel model that checks plans step by step
        // (PlanSimulator) and the random-history tree generator (TreeGenerator).
        .target(name: "RestoreTestSupport", dependencies: ["RestoreModel"]),
        .testTarget(name: "RestoreModelTests", dependencies: ["RestoreModel", "RestoreTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "RestoreCheckTests", dependencies: ["RestoreModel", "RestoreCheck"]),
        .testTarget(name: "RestoreCLITests", dependencies: ["RestoreCLI",
                                                            .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "IntegrationTests", dependencies: ["RestoreModel", "RestoreEngine", "RestoreTestSupport"],
                    exclude: ["Fixtures"]),
    ]
)
