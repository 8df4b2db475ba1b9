import Foundation
import Shared

/// Jobs finished per bucket as an inline SVG bar chart: succeeded stacked under failed, one bar per bucket, a
/// tooltip (`<title>`) per bar. Pure markup with presentation attributes: no script, no inline style, so the
/// Content-Security-Policy needs no exception for it.
enum FinishedChart {
    static let width = 360
    static let height = 64

    /// - Parameters:
    ///   - label: what the chart shows, for screen readers (`aria-label`).
    ///   - bucketName: how a bucket's start is written in tooltips.
    static func svg(_ buckets: [FinishedBucket], label: String, bucketName: (Date) -> String) -> String {
        let peak = max(1, buckets.map { $0.succeeded + $0.failed }.max() ?? 0)
        let slot = Double(width) / Double(max(1, buckets.count))
        let barWidth = max(1, slot - 1)
        var out =
            "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(width) \(height + 12)\" width=\"\(width)\" "
            + "height=\"\(height + 12)\" role=\"img\" aria-label=\"\(HTML.escape(label))\">"
        out += "<line x1=\"0\" y1=\"\(height)\" x2=\"\(width)\" y2=\"\(height)\" stroke=\"#bbb\" stroke-width=\"1\"/>"
        for (index, bucket) in buckets.enumerated() {
            let x = Self.format(Double(index) * slot)
            let total = bucket.succeeded + bucket.failed
            guard total > 0 else { continue }
            let okHeight = Double(bucket.succeeded) / Double(peak) * Double(height)
            let failHeight = Double(bucket.failed) / Double(peak) * Double(height)
            let tip = "\(bucketName(bucket.start)): \(bucket.succeeded) succeeded, \(bucket.failed) failed"
            out += "<g class=\"bar\"><title>\(HTML.escape(tip))</title>"
            if bucket.succeeded > 0 {
                out +=
                    "<rect x=\"\(x)\" y=\"\(format(Double(height) - okHeight))\" width=\"\(format(barWidth))\" height=\"\(format(okHeight))\" fill=\"#2e7d32\"/>"
            }
            if bucket.failed > 0 {
                out +=
                    "<rect x=\"\(x)\" y=\"\(format(Double(height) - okHeight - failHeight))\" width=\"\(format(barWidth))\" "
                    + "height=\"\(format(failHeight))\" fill=\"#c62828\"/>"
            }
            out += "</g>"
        }
        out +=
            "<text x=\"0\" y=\"\(height + 11)\" font-size=\"10\" fill=\"#666\">\(HTML.escape(buckets.first.map { bucketName($0.start) } ?? ""))</text>"
        out += "<text x=\"\(width)\" y=\"\(height + 11)\" font-size=\"10\" fill=\"#666\" text-anchor=\"end\">peak \(peak)</text>"
        return out + "</svg>"
    }

    /// One decimal (`12.5`), without Foundation's `String(format:)`, which costs more than the whole chart.
    static func format(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        return "\(sign)\(abs(tenths) / 10).\(abs(tenths) % 10)"
    }
}

enum HTML {
    /// Escapes text for HTML element content and double- or single-quoted attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// `url` when it is an absolute http(s) URL, else nil: links from payloads (`html_url`) are attacker-controlled, and
    /// a `javascript:` one must never become a link.
    static func safeLink(_ url: String?) -> String? {
        guard let url, let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", components.host?.isEmpty == false
        else { return nil }
        return url
    }

    /// Percent-encodes a query parameter value.
    static func query(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
