import Logging

/// The fields of a webhook's log line.
struct RequestLog {
    var forge: String
    var client = ""
    var event: String?
    var delivery: String?
    var repository = ""
    var number: Int?
    var jobIDs: [String] = []

    func metadata(outcome: String, status: Int) -> Logger.Metadata {
        var meta: Logger.Metadata = ["client": "\(client)", "forge": "\(forge)", "outcome": "\(outcome)", "status": "\(status)"]
        if let event { meta["event"] = "\(event)" }
        if let delivery { meta["delivery.id"] = "\(delivery)" }
        if !repository.isEmpty { meta["repo"] = "\(repository)" }
        if let number { meta["number"] = "\(number)" }
        if !jobIDs.isEmpty { meta["job.ids"] = "\(jobIDs.joined(separator: ","))" }
        return meta
    }
}
