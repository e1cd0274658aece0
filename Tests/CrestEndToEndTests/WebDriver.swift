import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1

/// A headless Chromium driven through chromedriver's W3C WebDriver protocol (JSON over HTTP):
/// just what the page tests need — open a URL, find and type into elements, click, run a script,
/// read the console, take a screenshot.
final class Browser: Sendable {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Chromium and chromedriver are on the machine (`.ci/run` installs Debian's); outside CI a
    /// machine without them skips, in CI the test runs and fails.
    static var available: Bool {
        (chromium != nil && chromedriver != nil) || ProcessInfo.processInfo.environment["CI"] != nil
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let driver: ChildProcess
    private let base: String
    private let session: String

    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    init() async throws {
        guard let chromium = Self.chromium, let chromedriver = Self.chromedriver else {
            throw Failure(description: "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
        }
        let port = freeLoopbackPort()
        driver = ChildProcess(executable: chromedriver, arguments: ["--port=\(port)", "--allowed-ips=127.0.0.1"])
        try driver.run()
        base = "http://127.0.0.1:\(port)"
        let base = base
        let driver = driver
        let up = try await eventually(timeout: .seconds(30), every: .milliseconds(100)) {
            let status = try? await Self.send(.GET, base + "/status")
            return (status?["ready"] as? Bool) == true || !driver.isRunning
        }
        guard up, driver.isRunning else {
            Self.stop(driver)
            throw Failure(description: "chromedriver did not start")
        }
        do {
            let created = try await Self.send(
                .POST, base + "/session",
                [
                    "capabilities": [
                        "alwaysMatch": [
                            "browserName": "chrome",
                            "goog:chromeOptions": [
                                "binary": chromium,
                                "args": [
                                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                                ],
                            ],
                            "goog:loggingPrefs": ["browser": "ALL"],
                        ]
                    ]
                ])
            guard let session = created?["sessionId"] as? String else {
                throw Failure(description: "no session: \(String(describing: created))")
            }
            self.session = session
        } catch {
            Self.stop(driver)
            throw error
        }
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    func close() async {
        _ = try? await Self.send(.DELETE, "\(base)/session/\(session)")
        Self.stop(driver)
        let driver = driver
        await offPool { driver.waitUntilExit() }
    }

    /// SIGKILL: chromedriver holds nothing that needs a clean exit once its session has ended.
    /// (It once had to be: children inherited the test threads' blocked SIGTERM, which
    /// `ChildProcess` now clears.)
    private static func stop(_ driver: ChildProcess) {
        let pid = driver.processIdentifier
        if pid > 0, driver.isRunning { kill(pid, SIGKILL) }
    }

    func open(_ url: String) async throws {
        _ = try await call(.POST, "url", ["url": url])
    }

    /// The first element matching a CSS selector (WebDriver's element reference).
    func element(_ selector: String) async throws -> String {
        let found = try await call(.POST, "element", ["using": "css selector", "value": selector])
        guard let reference = (found as? [String: Any])?.values.first as? String else {
            throw Failure(description: "no element \(selector)")
        }
        return reference
    }

    func type(_ text: String, into selector: String) async throws {
        _ = try await call(.POST, "element/\(try await element(selector))/value", ["text": text])
    }

    func click(_ selector: String) async throws {
        _ = try await call(.POST, "element/\(try await element(selector))/click", [:])
    }

    /// Runs `script` (a function body) in the page and returns its value as JSON decodes it.
    func run(_ script: String) async throws -> Any? {
        try await call(.POST, "execute/sync", ["script": script, "args": []])
    }

    /// The browser console's entries since the last call: level (`SEVERE`, `WARNING`, `INFO`…)
    /// and message.
    func consoleEntries() async throws -> [(level: String, message: String)] {
        let entries = try await call(.POST, "se/log", ["type": "browser"]) as? [[String: Any]] ?? []
        return entries.map { ($0["level"] as? String ?? "", $0["message"] as? String ?? "") }
    }

    /// A PNG of the window.
    func screenshot() async throws -> Data {
        guard let base64 = try await call(.GET, "screenshot") as? String, let data = Data(base64Encoded: base64) else {
            throw Failure(description: "no screenshot")
        }
        return data
    }

    private func call(_ method: HTTPMethod, _ command: String, _ body: [String: Any]? = nil) async throws -> Any? {
        let answer = try await Self.send(method, "\(base)/session/\(session)/\(command)", body, whole: true)
        return answer?["value"] ?? nil
    }

    /// Sends a WebDriver command; the answer's `value` (or, with `whole`, the whole answer). A
    /// WebDriver error answer throws with its message.
    private static func send(
        _ method: HTTPMethod, _ url: String, _ body: [String: Any]? = nil, whole: Bool = false
    ) async throws -> [String: Any]? {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        let response = try await HTTPClient.crest.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 32 << 20)
        let object = try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        if let value = object?["value"] as? [String: Any], let error = value["error"] as? String {
            throw Failure(description: "\(error): \(value["message"] as? String ?? "")")
        }
        return whole ? object : object?["value"] as? [String: Any]
    }
}
