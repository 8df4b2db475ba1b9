/// One reply from Redis (RESP2), copied out of hiredis memory.
public enum RedisReply: Sendable, Equatable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case array([RedisReply])
    case null

    /// The reply as text: bulk strings (UTF-8, lossy), status lines and integers.
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .status(let s): return s
        case .integer(let i): return String(i)
        default: return nil
        }
    }

    public var int: Int? {
        switch self {
        case .integer(let i): return Int(i)
        case .bulk, .status: return string.flatMap { Int($0) }
        default: return nil
        }
    }

    public var bytes: [UInt8]? {
        if case .bulk(let b) = self { return b }
        return nil
    }

    public var array: [RedisReply]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// A flat `[field, value, field, value]` array (HGETALL) as a dictionary.
    public var hash: [String: String]? {
        guard let items = array else { return nil }
        var out: [String: String] = [:]
        out.reserveCapacity(items.count / 2)
        var i = 0
        while i + 1 < items.count {
            if let k = items[i].string { out[k] = items[i + 1].string ?? "" }
            i += 2
        }
        return out
    }

    /// An array of text values (LRANGE, SMEMBERS, ZRANGE…); nil entries become empty strings.
    public var strings: [String]? {
        array?.map { $0.string ?? "" }
    }
}
