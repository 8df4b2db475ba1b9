import Foundation
import Mustache

/// A rule's prompt: a mustache template (content type TEXT: nothing is HTML-escaped) over `PromptContext`.
///
/// Most prompts are text with plain `{{name}}` variables. Those render by concatenation, which gives the same text as
/// swift-mustache at a fraction of its cost (no dynamic casts or name splitting per variable); a template with
/// anything else — sections, partials, dotted names, comments, delimiters — renders through swift-mustache.
struct PromptTemplate: @unchecked Sendable {  // MustacheTemplate is immutable after parsing
    enum Segment: Equatable {
        case text(String)
        case variable(String)
    }

    let source: String
    private let template: MustacheTemplate
    /// Set when the template is only text and plain variables.
    let plain: [Segment]?

    init(_ source: String) throws {
        self.source = source
        self.template = try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + source)
        self.plain = Self.plainSegments(source)
    }

    func render(_ context: EventRouter.PromptContext) -> String {
        guard let plain else { return template.render(context) }
        var out = ""
        for segment in plain {
            switch segment {
            case .text(let text): out += text
            case .variable(let name): if let value = context.child(named: name) { out += "\(value)" }
            }
        }
        return out
    }

    /// The variables a plain template reads (none known for other templates).
    var variables: [String] {
        plain?.compactMap { if case .variable(let name) = $0 { name } else { nil } } ?? []
    }

    /// The mustache render, for tests that compare it with the plain one.
    func renderWithMustache(_ context: EventRouter.PromptContext) -> String { template.render(context) }

    /// Splits `{{name}}`, `{{{name}}}` and `{{& name}}` tags (spaces allowed around the name, which is a plain
    /// identifier) from the text; nil if the template has any other tag.
    static func plainSegments(_ source: String) -> [Segment]? {
        var segments: [Segment] = []
        var rest = Substring(source)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { segments.append(.text(String(rest[..<open.lowerBound]))) }
            rest = rest[open.upperBound...]
            var close = "}}"
            if rest.first == "{" {
                rest = rest.dropFirst()
                close = "}}}"
            } else if rest.first == "&" {
                rest = rest.dropFirst()
            }
            guard let end = rest.range(of: close) else { return nil }
            let name = rest[..<end.lowerBound].trimmingCharacters(in: .whitespaces)
            guard Self.isIdentifier(name) else { return nil }
            segments.append(.variable(name))
            rest = rest[end.upperBound...]
        }
        if !rest.isEmpty { segments.append(.text(String(rest))) }
        return segments
    }

    private static func isIdentifier(_ name: String) -> Bool {
        let letter: (UInt8) -> Bool = { (65...90).contains($0) || (97...122).contains($0) || $0 == UInt8(ascii: "_") }
        guard let first = name.utf8.first, letter(first) else { return false }
        return name.utf8.allSatisfy { letter($0) || (48...57).contains($0) }
    }
}
