import RestoreModel
import Testing

// The one JSON writer: what it writes must read back with the project's own parser.

@Suite("JSON writer")
struct JSONWriterTests {
    @Test("layouts, escapes, numbers JSON cannot hold")
    func layouts() throws {
        let v = JSONOutput.object([
            ("a", .ints([1, -2])),
            ("s", .string("q\"\\\n\u{1}é")),
            ("nan", .double(.nan)), ("inf", .double(.infinity)), ("x", .double(12.5)),
            ("rows", .array([.object([("k", .bool(true))]), .null], layout: .lines)),
            ("empty", .array([], layout: .lines)),
        ], layout: .lines)
        let text = v.document()
        #expect(text == """
            {
              "a": [1, -2],
              "s": "q\\"\\\\\\n\\u0001é",
              "nan": null,
              "inf": null,
              "x": 12.5,
              "rows": [
                {"k": true},
                null
              ],
              "empty": []
            }

            """)
        let back = try JSONValue.parse(Array(text.utf8))
        guard case .object(let o) = back.kind, case .string(let s)? = o["s"]?.value.kind else {
            Issue.record("not an object with a string s: \(back)")
            return
        }
        #expect(s == "q\"\\\n\u{1}é")
        #expect(o["nan"]?.value.kind == .null)
    }
}
