import Foundation

/// A forge's published API description (the vendored excerpts in `ForgeAPI/`: Gitea's Swagger 2.0, GitHub's OpenAPI
/// 3), used by the forge API double to check every request the real client sends: that the operation exists, its
/// path and query parameters are declared and typed as sent, and its JSON body matches the request schema.
package struct APIDescription: Sendable {
    package enum Dialect: Sendable { case swagger2, openAPI3 }

    let document: [String: any Sendable]
    package let dialect: Dialect
    /// `/api/v1` (Gitea), `` (GitHub).
    package let basePath: String

    /// Loads `Tests/TestSupport/ForgeAPI/<name>`.
    package init(file name: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("ForgeAPI/\(name)")
        let data = try Data(contentsOf: url)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw DescriptionError("\(name) is not a JSON object")
        }
        document = Self.sendable(object) as? [String: any Sendable] ?? [:]
        if object["swagger"] != nil {
            dialect = .swagger2
            basePath = object["basePath"] as? String ?? ""
        } else {
            dialect = .openAPI3
            let server = ((object["servers"] as? [[String: Any]])?.first?["url"] as? String).flatMap(URL.init(string:))
            basePath = server?.path ?? ""
        }
    }

    package static let gitea = Result { try APIDescription(file: "gitea-swagger-excerpt.json") }
    package static let github = Result { try APIDescription(file: "github-openapi-excerpt.json") }

    struct DescriptionError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// An operation that matched a request: its id and the path parameters' values.
    package struct Match: Sendable {
        package let template: String
        package let method: String
        package let operationID: String
        package let pathParameters: [String: String]
    }

    /// Checks a request against the description. Returns the operation and the problems found (empty = valid).
    package func check(method: String, path rawPath: String, query: [(String, String)], body: Data?, contentType: String?) -> (
        Match?, [String]
    ) {
        var problems: [String] = []
        guard rawPath.hasPrefix(basePath) else { return (nil, ["\(method) \(rawPath): outside the API base path \(basePath)"]) }
        let path = String(rawPath.dropFirst(basePath.count))
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { $0.removingPercentEncoding ?? String($0) }
        let paths = document["paths"] as? [String: any Sendable] ?? [:]
        var found: (String, [String: any Sendable], [String: String])?
        for (template, item) in paths {
            let parts = template.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
            guard parts.count == segments.count else { continue }
            var values: [String: String] = [:]
            var matches = true
            for (part, segment) in zip(parts, segments) {
                if part.hasPrefix("{") && part.hasSuffix("}") {
                    guard !segment.isEmpty else {
                        matches = false
                        break
                    }
                    values[String(part.dropFirst().dropLast())] = segment
                } else if part != segment {
                    matches = false
                    break
                }
            }
            if matches, let item = item as? [String: any Sendable] {
                // A literal segment beats a template one (`/issues/comments/1` is not issue "comments").
                if let current = found, current.0.filter({ $0 == "{" }).count <= template.filter({ $0 == "{" }).count { continue }
                found = (template, item, values)
            }
        }
        guard let (template, item, values) = found else { return (nil, ["\(method) \(path): no such path in the API description"]) }
        guard let operation = item[method.lowercased()] as? [String: any Sendable] else {
            return (nil, ["\(method) \(template): the API description has no \(method) here"])
        }
        let operationID = operation["operationId"] as? String ?? "\(method) \(template)"
        let parameters = ((item["parameters"] as? [any Sendable] ?? []) + (operation["parameters"] as? [any Sendable] ?? [])).compactMap {
            resolve($0) as? [String: any Sendable]
        }
        // Path parameters.
        for (name, value) in values {
            guard let parameter = parameters.first(where: { $0["name"] as? String == name && $0["in"] as? String == "path" }) else {
                problems.append("\(operationID): path parameter {\(name)} is not declared")
                continue
            }
            problems += checkScalar(value, parameter: parameter, what: "\(operationID): path parameter \(name)")
        }
        // Query parameters: every one sent must be declared, every required one sent.
        for (name, value) in query {
            guard let parameter = parameters.first(where: { $0["name"] as? String == name && $0["in"] as? String == "query" }) else {
                problems.append("\(operationID): query parameter '\(name)' is not declared")
                continue
            }
            problems += checkScalar(value, parameter: parameter, what: "\(operationID): query parameter \(name)")
        }
        for parameter in parameters where parameter["in"] as? String == "query" && parameter["required"] as? Bool == true {
            if let name = parameter["name"] as? String, !query.contains(where: { $0.0 == name }) {
                problems.append("\(operationID): required query parameter '\(name)' is missing")
            }
        }
        // Body.
        var schema: Any?
        var required = false
        switch dialect {
        case .swagger2:
            if let parameter = parameters.first(where: { $0["in"] as? String == "body" }) {
                schema = parameter["schema"]
                required = parameter["required"] as? Bool ?? false
            }
        case .openAPI3:
            if let requestBody = resolve(operation["requestBody"] as Any) as? [String: any Sendable] {
                let content = requestBody["content"] as? [String: any Sendable]
                schema = (content?["application/json"] as? [String: any Sendable])?["schema"]
                required = requestBody["required"] as? Bool ?? false
            }
        }
        if let schema {
            if let body, !body.isEmpty {
                if !(contentType ?? "").lowercased().hasPrefix("application/json") {
                    problems.append("\(operationID): a JSON body needs Content-Type: application/json, got '\(contentType ?? "")'")
                }
                if let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) {
                    problems += validate(value, schema: schema, at: "\(operationID): body")
                } else {
                    problems.append("\(operationID): the body is not JSON")
                }
            } else if required {
                problems.append("\(operationID): the request body is required")
            }
        } else if let body, !body.isEmpty {
            problems.append("\(operationID): takes no request body, got \(body.count) bytes")
        }
        return (Match(template: template, method: method, operationID: operationID, pathParameters: values), problems)
    }

    private func checkScalar(_ value: String, parameter: [String: any Sendable], what: String) -> [String] {
        let schema = (parameter["schema"] as? [String: any Sendable]) ?? parameter
        let type = schema["type"] as? String
        if type == "integer" && Int64(value) == nil { return ["\(what) must be an integer, got '\(value)'"] }
        if let allowed = schema["enum"] as? [Any], !allowed.contains(where: { "\($0)" == value }) {
            return ["\(what) must be one of \(allowed), got '\(value)'"]
        }
        if let format = schema["format"] as? String, format == "date-time", !Self.isDateTime(value) {
            return ["\(what) must be an ISO 8601 date-time, got '\(value)'"]
        }
        return []
    }

    static func isDateTime(_ text: String) -> Bool {
        text.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"#, options: .regularExpression) != nil
    }

    /// A JSON schema subset: $ref, type (one or a list), enum, required, properties, additionalProperties: false,
    /// items, allOf, anyOf, oneOf, nullable.
    func validate(_ value: Any, schema raw: Any, at path: String) -> [String] {
        guard let schema = resolve(raw) as? [String: any Sendable] else { return [] }
        if let all = schema["allOf"] as? [any Sendable] {
            let problems = all.flatMap { validate(value, schema: $0, at: path) }
            if !problems.isEmpty { return problems }
        }
        for key in ["anyOf", "oneOf"] {
            if let options = schema[key] as? [any Sendable], !options.isEmpty,
                !options.contains(where: { validate(value, schema: $0, at: path).isEmpty })
            {
                return ["\(path) matches none of the \(key) options"]
            }
        }
        if value is NSNull {
            let types = Self.types(schema)
            return schema["nullable"] as? Bool == true || types.contains("null") || types.isEmpty ? [] : ["\(path) must not be null"]
        }
        let types = Self.types(schema)
        if !types.isEmpty && !types.contains(where: { Self.matches(value, type: $0) }) {
            return ["\(path) must be \(types.joined(separator: " or ")), got \(Swift.type(of: value))"]
        }
        if let allowed = schema["enum"] as? [Any], !allowed.contains(where: { "\($0)" == "\(value)" }) {
            return ["\(path) must be one of \(allowed.map { "\($0)" }), got '\(value)'"]
        }
        var problems: [String] = []
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: any Sendable] ?? [:]
            for name in schema["required"] as? [String] ?? [] where object[name] == nil {
                problems.append("\(path).\(name) is required")
            }
            for (name, member) in object {
                if let property = properties[name] {
                    problems += validate(member, schema: property, at: "\(path).\(name)")
                } else if schema["additionalProperties"] as? Bool == false {
                    problems.append("\(path).\(name) is not a property of this request")
                } else if properties.isEmpty == false && schema["additionalProperties"] == nil && dialect == .swagger2 {
                    // Gitea's structs take named fields only; an unknown one is silently ignored by the server, which
                    // is a client bug all the same.
                    problems.append("\(path).\(name) is not a property of this request")
                }
            }
        }
        if let list = value as? [Any], let items = schema["items"] {
            for (i, member) in list.enumerated() { problems += validate(member, schema: items, at: "\(path)[\(i)]") }
        }
        return problems
    }

    static func types(_ schema: [String: any Sendable]) -> [String] {
        if let one = schema["type"] as? String { return [one] }
        return schema["type"] as? [String] ?? []
    }

    static func matches(_ value: Any, type: String) -> Bool {
        switch type {
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "boolean": return isBool(value)
        case "integer":
            guard let n = value as? NSNumber, !isBool(value) else { return false }
            return n.doubleValue == n.doubleValue.rounded()
        case "number": return value is NSNumber && !isBool(value)
        case "null": return value is NSNull
        default: return true
        }
    }

    /// JSONSerialization gives true/false as a boolean NSNumber, which `is Bool` cannot tell from 1 and 0.
    static func isBool(_ value: Any) -> Bool { String(describing: Swift.type(of: value)).contains("Boolean") }

    /// Follows `$ref: '#/a/b'` within the document.
    func resolve(_ value: Any) -> Any? {
        guard let object = value as? [String: any Sendable], let ref = object["$ref"] as? String else { return value }
        guard ref.hasPrefix("#/") else { return nil }
        var current: Any? = document
        for part in ref.dropFirst(2).split(separator: "/") {
            let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            current = (current as? [String: any Sendable])?[key]
        }
        return current.flatMap { resolve($0) }
    }

    /// JSONSerialization's tree as Sendable values (it is immutable once loaded).
    static func sendable(_ value: Any) -> any Sendable {
        switch value {
        case let object as [String: Any]: return object.mapValues { sendable($0) } as [String: any Sendable]
        case let list as [Any]: return list.map { sendable($0) } as [any Sendable]
        case let string as String: return string
        case let number as NSNumber:
            if isBool(number) { return number.boolValue }
            return number.doubleValue == number.doubleValue.rounded() && abs(number.doubleValue) < 1e15 ? number.intValue : number.doubleValue
        default: return JSONNull()
        }
    }
}

/// `null` in a loaded description.
struct JSONNull: Sendable {}
