import Foundation

/// The fields of `GET /containers/{id}/json` the worker reads, decoded leniently: a field Docker leaves out or sends
/// as null reads as empty, so a version difference never fails a reconcile.
package struct ContainerDetails: Decodable, Sendable {
    package struct State: Sendable {
        package var running = false
        package var status = ""
        package var pid = 0
    }

    package struct Config: Sendable {
        package var image = ""
        package var user = ""
        package var env: [String] = []
        package var labels: [String: String] = [:]
    }

    package struct HostConfig: Sendable {
        package var capDrop: [String] = []
        package var capAdd: [String] = []
        package var securityOpt: [String] = []
        package var privileged = false
        package var initProcess: Bool?
        package var deviceCount = 0
        /// `PidMode`, `IpcMode`, `UsernsMode`, `UTSMode`, by those names.
        package var namespaceModes: [String: String] = [:]
        package var pidsLimit: Int?
        package var memory: Int64?
        package var nanoCPUs: Int64?
        /// `Ulimits` as `name=soft:hard`, sorted.
        package var ulimits: [String] = []
    }

    package struct Mount: Sendable {
        package var type = ""
        package var name = ""
        package var source = ""
        package var destination = ""
        package var readWrite = true
    }

    package var id = ""
    package var name = ""
    /// The image id the container runs.
    package var image = ""
    package var state = State()
    package var config = Config()
    package var hostConfig = HostConfig()
    package var mounts: [Mount] = []
    package var execIDs: [String] = []

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func get<T: Decodable>(_ c: KeyedDecodingContainer<Key>, _ key: String, _ type: T.Type = T.self) -> T? {
            (try? c.decodeIfPresent(T.self, forKey: Key(key))) ?? nil
        }
        func nested(_ c: KeyedDecodingContainer<Key>, _ key: String) -> KeyedDecodingContainer<Key>? {
            guard (try? c.decodeNil(forKey: Key(key))) == false else { return nil }
            return try? c.nestedContainer(keyedBy: Key.self, forKey: Key(key))
        }
        id = get(c, "Id") ?? ""
        name = get(c, "Name") ?? ""
        image = get(c, "Image") ?? ""
        execIDs = get(c, "ExecIDs") ?? []
        if let s = nested(c, "State") {
            state = State(running: get(s, "Running") ?? false, status: get(s, "Status") ?? "", pid: get(s, "Pid") ?? 0)
        }
        if let s = nested(c, "Config") {
            config = Config(image: get(s, "Image") ?? "", user: get(s, "User") ?? "", env: get(s, "Env") ?? [], labels: get(s, "Labels") ?? [:])
        }
        if let h = nested(c, "HostConfig") {
            var host = HostConfig()
            host.capDrop = get(h, "CapDrop") ?? []
            host.capAdd = get(h, "CapAdd") ?? []
            host.securityOpt = get(h, "SecurityOpt") ?? []
            host.privileged = get(h, "Privileged") ?? false
            host.initProcess = get(h, "Init")
            if let devices = try? h.nestedUnkeyedContainer(forKey: Key("Devices")) { host.deviceCount = devices.count ?? 0 }
            for key in ["PidMode", "IpcMode", "UsernsMode", "UTSMode"] { if let mode: String = get(h, key) { host.namespaceModes[key] = mode } }
            host.pidsLimit = get(h, "PidsLimit")
            host.memory = get(h, "Memory")
            host.nanoCPUs = get(h, "NanoCpus")
            if var list = try? h.nestedUnkeyedContainer(forKey: Key("Ulimits")) {
                while !list.isAtEnd {
                    guard let u = try? list.nestedContainer(keyedBy: Key.self) else { break }
                    let (name, soft, hard): (String?, Int64?, Int64?) = (get(u, "Name"), get(u, "Soft"), get(u, "Hard"))
                    host.ulimits.append("\(name ?? "?")=\(soft ?? -1):\(hard ?? -1)")
                }
                host.ulimits.sort()
            }
            hostConfig = host
        }
        if var list = try? c.nestedUnkeyedContainer(forKey: Key("Mounts")) {
            while !list.isAtEnd {
                guard let m = try? list.nestedContainer(keyedBy: Key.self) else { break }
                mounts.append(
                    Mount(
                        type: get(m, "Type") ?? "", name: get(m, "Name") ?? "", source: get(m, "Source") ?? "",
                        destination: get(m, "Destination") ?? "", readWrite: get(m, "RW") ?? true))
            }
        }
    }

    /// Decodes an inspect answer's body.
    package init(json: [UInt8]) throws { self = try JSONDecoder().decode(Self.self, from: Data(json)) }
}

/// One row of `GET /containers/json`.
package struct ContainerSummary: Decodable, Sendable {
    package var id: String
    package var names: [String]
    package var labels: [String: String]
    package var state: String

    private enum CodingKeys: String, CodingKey {
        case id = "Id", names = "Names", labels = "Labels", state = "State"
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        names = (try? c.decodeIfPresent([String].self, forKey: .names)) ?? []
        labels = ((try? c.decodeIfPresent([String: String].self, forKey: .labels)) ?? nil) ?? [:]
        state = ((try? c.decodeIfPresent(String.self, forKey: .state)) ?? nil) ?? ""
    }

    /// The first name without Docker's leading `/`.
    package var name: String {
        let first = names.first ?? id
        return first.hasPrefix("/") ? String(first.dropFirst()) : first
    }
}
