/// The one JSON writer: tree.json (TreeEncoder), `run --report`, `check --json` and the pin log
/// build a `JSONOutput` and render it here. Strings are escaped by the parser's own quoting
/// (JSONValue.quoted), numbers that JSON cannot hold (NaN, infinities) become null, and each
/// container chooses its layout: on one line, or one element per line.
public struct JSONOutput: Sendable {
    public enum Layout: Sendable {
        /// `[1, 2]`, `{"a": 1}`.
        case inline
        /// One element per line, indented two spaces per level.
        case lines
    }

    enum Node: Sendable {
        case scalar(String)
        case array([JSONOutput], Layout)
        case object([(String, JSONOutput)], Layout)
    }

    let node: Node

    public static let null = JSONOutput(node: .scalar("null"))

    public static func bool(_ b: Bool) -> JSONOutput { JSONOutput(node: .scalar(b ? "true" : "false")) }

    public static func int<T: BinaryInteger>(_ v: T) -> JSONOutput { JSONOutput(node: .scalar(String(v))) }

    /// A finite number as Swift prints it, shortest round-trip ("12.5", "1e-05"); NaN, ±inf: null.
    public static func double(_ d: Double) -> JSONOutput {
        guard d.isFinite else { return .null }
        return JSONOutput(node: .scalar(d.description))
    }

    public static func string(_ s: String) -> JSONOutput { JSONOutput(node: .scalar(JSONValue.quoted(s, limit: Int.max))) }

    public static func array(_ items: [JSONOutput], layout: Layout = .inline) -> JSONOutput {
        JSONOutput(node: .array(items, layout))
    }

    /// Members in the order given (JSON objects here always keep their documented order).
    public static func object(_ members: [(String, JSONOutput)], layout: Layout = .inline) -> JSONOutput {
        JSONOutput(node: .object(members, layout))
    }

    public static func ints<T: BinaryInteger>(_ values: [T]) -> JSONOutput { .array(values.map { .int($0) }) }

    public static func strings(_ values: [String]) -> JSONOutput { .array(values.map { .string($0) }) }

    public static func optional(_ value: JSONOutput?) -> JSONOutput { value ?? .null }

    /// The JSON text, without a trailing newline.
    public func text() -> String {
        var out = ""
        write(into: &out, depth: 0)
        return out
    }

    /// The JSON text and a newline: a whole file, or one line of a JSON-lines log.
    public func document() -> String { text() + "\n" }

    func write(into out: inout String, depth: Int) {
        switch node {
        case .scalar(let s):
            out += s
        case .array(let items, let layout):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                separate(&out, layout, depth + 1, first: i == 0)
                item.write(into: &out, depth: depth + 1)
            }
            close(&out, layout, depth, empty: items.isEmpty)
            out += "]"
        case .object(let members, let layout):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                separate(&out, layout, depth + 1, first: i == 0)
                out += JSONValue.quoted(key, limit: Int.max)
                out += ": "
                value.write(into: &out, depth: depth + 1)
            }
            close(&out, layout, depth, empty: members.isEmpty)
            out += "}"
        }
    }

    private func separate(_ out: inout String, _ layout: Layout, _ depth: Int, first: Bool) {
        switch layout {
        case .inline: if !first { out += " " }
        case .lines: out += "\n" + String(repeating: "  ", count: depth)
        }
    }

    private func close(_ out: inout String, _ layout: Layout, _ depth: Int, empty: Bool) {
        if layout == .lines && !empty { out += "\n" + String(repeating: "  ", count: depth) }
    }
}
