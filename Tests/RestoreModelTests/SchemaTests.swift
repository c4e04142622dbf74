import Foundation
import RestoreModel
import Testing

/// docs/tree.schema.json and TreeParser must describe the same format.
@Suite struct SchemaTests {
    /// The package root: this file is Tests/RestoreModelTests/SchemaTests.swift.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let schemaURL = root.appendingPathComponent("docs/tree.schema.json")

    /// examples/**/tree*.json (none yet is fine).
    static func exampleTrees() -> [URL] {
        let examples = root.appendingPathComponent("examples")
        guard let walker = FileManager.default.enumerator(at: examples, includingPropertiesForKeys: nil) else {
            return []
        }
        return walker.compactMap { $0 as? URL }
            .filter { $0.lastPathComponent.hasPrefix("tree") && $0.pathExtension == "json" }
            .sorted { $0.path < $1.path }
    }

    static func fixtures(prefix: String) throws -> [URL] {
        let dir = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasPrefix(prefix) && $0.pathExtension == "json" }
            .sorted { $0.path < $1.path }
    }

    /// Runs python3's jsonschema on `files`; returns each file's first error ("" when valid).
    /// Records a failure, not a skip, when python3 or its jsonschema module is missing.
    static func schemaErrors(_ files: [URL]) throws -> [String: String]? {
        let script = """
            import json, sys
            try:
                import jsonschema
            except ImportError:
                print("NO-JSONSCHEMA")
                sys.exit(3)
            schema = json.load(open(sys.argv[1], encoding="utf-8"))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            result = {}
            for path in sys.argv[2:]:
                with open(path, encoding="utf-8") as f:
                    errors = sorted(validator.iter_errors(json.load(f)), key=lambda e: list(e.path))
                result[path] = errors[0].message if errors else ""
            print(json.dumps(result))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, schemaURL.path] + files.map(\.path)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do {
            try process.run()
        } catch {
            Issue.record("cannot run python3 (\(error)): install python3-jsonschema (scripts/setup.sh does)")
            return nil
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: output, as: UTF8.self)
        if process.terminationStatus != 0 {
            if process.terminationStatus == 127 || process.terminationStatus == 3 || text.contains("NO-JSONSCHEMA") {
                Issue.record("python3 or its jsonschema module is missing: install python3-jsonschema (scripts/setup.sh does)")
            } else {
                Issue.record("python3 jsonschema failed (\(process.terminationStatus)): \(String(decoding: errors, as: UTF8.self))")
            }
            return nil
        }
        guard let decoded = try JSONSerialization.jsonObject(with: output) as? [String: String] else {
            Issue.record("unexpected output of python3: \(text)")
            return nil
        }
        return decoded
    }

    @Test func validTreesMatchSchemaAndParse() throws {
        let files = Self.exampleTrees() + (try Self.fixtures(prefix: "valid-"))
        #expect(files.count >= 3)
        guard let results = try Self.schemaErrors(files) else { return }
        for file in files {
            #expect(results[file.path] == "", "\(file.path) against docs/tree.schema.json: \(results[file.path] ?? "not checked")")
            do {
                let tree = try TreeParser.parse(Array(try Data(contentsOf: file)))
                try TreeValidator.validate(tree)
            } catch {
                Issue.record("\(file.path): \(error)")
            }
        }
    }

    /// Fixtures named reject-*.json break the shape rules: both the schema and the parser refuse them.
    @Test func shapeErrorsRejectedByBoth() throws {
        let files = try Self.fixtures(prefix: "reject-")
        #expect(!files.isEmpty)
        guard let results = try Self.schemaErrors(files) else { return }
        for file in files {
            #expect(results[file.path]?.isEmpty == false, "the schema accepts \(file.lastPathComponent)")
            #expect(throws: RestoreError.self, "the parser accepts \(file.lastPathComponent)") {
                try TreeParser.parse(Array(try Data(contentsOf: file)))
            }
        }
    }

    /// Every object of the schema has `additionalProperties: false`, and its property names are
    /// exactly TreeParser.knownKeys of the same section (top level: "tree"; else the $defs name).
    @Test func schemaKeysEqualParserKeys() throws {
        let data = try Data(contentsOf: Self.schemaURL)
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let defs = try #require(schema["$defs"] as? [String: Any])
        var sections: [String: Set<String>] = [:]
        func collect(_ name: String, _ node: [String: Any]) {
            guard let props = node["properties"] as? [String: Any] else { return }
            #expect(node["additionalProperties"] as? Bool == false, "\(name) lacks additionalProperties: false")
            sections[name] = Set(props.keys)
        }
        collect("tree", schema)
        for (name, node) in defs {
            if let node = node as? [String: Any] { collect(name, node) }
        }
        let parser = TreeParser.knownKeys.mapValues { Set($0) }
        #expect(sections == parser)
        let all = sections.values.reduce(into: Set<String>()) { $0.formUnion($1) }
        #expect(all == parser.values.reduce(into: Set<String>()) { $0.formUnion($1) })

        // Nested objects anywhere must also forbid unknown keys.
        func walk(_ node: Any, _ path: String) {
            if let dict = node as? [String: Any] {
                if dict["properties"] != nil || dict["type"] as? String == "object" {
                    #expect(dict["additionalProperties"] as? Bool == false, "\(path) lacks additionalProperties: false")
                }
                for (k, v) in dict { walk(v, path + "/" + k) }
            } else if let list = node as? [Any] {
                for (i, v) in list.enumerated() { walk(v, path + "/\(i)") }
            }
        }
        walk(schema, "#")
    }

    @Test func schemaSignalNamesEqualParserNames() throws {
        let data = try Data(contentsOf: Self.schemaURL)
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let defs = try #require(schema["$defs"] as? [String: Any])
        let signalName = try #require(defs["signalName"] as? [String: Any])
        let names = try #require(signalName["enum"] as? [String])
        #expect(names.sorted() == TreeParser.acceptedSignalNames)
        let states = ((defs["processEntry"] as? [String: Any])?["properties"] as? [String: Any])?["state"] as? [String: Any]
        #expect((states?["enum"] as? [String])?.sorted() == ProcessState.allCases.map(\.rawValue).sorted())
    }
}
