import Foundation
import Shared
import TestSupport
import Testing

@testable import Producer

/// The example config in deploy/ must stay loadable: README points users at it.
@Test func exampleConfigLoads() throws {
    let path = NginxServer.deployDirectory.appendingPathComponent("config.example.yaml").path
    let secretFile = FileManager.default.temporaryDirectory.appendingPathComponent("gitea-\(UUID().uuidString).secret")
    try "s".write(to: secretFile, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: secretFile) }
    var text = try String(contentsOfFile: path, encoding: .utf8)
    text = text.replacingOccurrences(of: "/etc/forge-hooks/gitea.secret", with: secretFile.path)
    let config = try AppConfig.parse(
        yaml: text, file: path,
        environment: ["FORGEJO_WEBHOOK_SECRET": "a", "GITHUB_WEBHOOK_SECRET": "b", "GITHUB_WEBHOOK_SECRET_NEXT": "c"])
    let router = try EventRouter(config: config)
    #expect(config.agents.keys.sorted() == ["boss", "dev", "reviewer"])
    #expect(config.rules.count == 5)
    #expect(config.forges[.github]?.secrets.count == 2)
    #expect(config.botLogins == ["forge-admin-bot", "forge-hooks-bot", "boss-bot", "dev-bot", "reviewer-bot"])
    #expect(config.forges[.forgejo]?.api?.url == "https://git.example.com/api/v1" && config.forges[.gitea]?.api == nil)
    #expect(config.forges[.github]?.api?.url == "https://api.github.com")
    #expect(config.rules[1].feedback.link(job: "j1", agent: "dev") == "https://hooks.example.com/dashboard/jobs/j1")
    #expect(config.rules[4].feedback.jobField == "reaction=eyes;comment=0;cost=1")
    #expect(config.producer.redisConnections == 2 && config.producer.trustedProxies == ["127.0.0.1", "::1"])
    #expect(config.worker.concurrency == 2 && config.worker.shutdownGrace == .seconds(60) && config.worker.containerPrefix == "hooks")
    #expect(config.queue.transcriptMaxBytes == 16 << 20 && config.queue.leaseDuration == .seconds(30))
    #expect(config.agents["dev"]?.timeout == .seconds(1800) && config.agents["dev"]?.concurrency == 2)
    #expect(config.agents["dev"]?.memoryBytes == 8 << 30 && config.agents["dev"]?.pidsLimit == 1024 && config.queue.logMaxBytes == 2 << 20)
    _ = router
    // The comment that lists the template variables is the list the router accepts.
    let listed = text.components(separatedBy: "\n").drop { !$0.contains("Prompt templates are mustache over:") }.prefix(2)
        .joined(separator: " ").replacingOccurrences(of: "# Prompt templates are mustache over:", with: "")
        .replacingOccurrences(of: "#", with: " ").split(separator: " ").map(String.init)
    #expect(listed == EventRouter.PromptContext.names)
}
