import AsyncHTTPClient
import CrestTestSupport
import Foundation
import Testing

/// `/dashboard` in a real headless Chromium (chromedriver): signed in with the admin token typed
/// into the page, it shows the sale's counters as the API gives them, follows an order placed
/// after it loaded, logs nothing to the console, and never puts the token in a URL.
@Suite("The live dashboard in a real browser", .serialized)
struct DashboardBrowserTests {
    /// Set to a path (e.g. docs/dashboard.png) to save the signed-in page's screenshot there.
    static let screenshotPath = ProcessInfo.processInfo.environment["CREST_DASHBOARD_SCREENSHOT"]

    @Test(
        "signed in, it shows the API's counters, follows a new order, and logs no console error",
        .enabled(if: Browser.available, "chromium and chromium-driver are not installed"))
    func liveCounters() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-dashboard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory)
        let client = CrestClient(http: .crest, port: crest.port)
        let browser = try await Browser()
        do {
            let sale = try await client.createSale(stock: 5, adminToken: CrestProcess.adminToken)
            #expect(try await client.order(sale: sale, key: "k-ana", buyer: "ana").status == 201)
            let page = "http://127.0.0.1:\(crest.port)/dashboard"
            try await browser.open(page)

            // A wrong token is refused on the page, and it asks again.
            try await browser.type("not-the-token", into: "#token")
            try await browser.click("#open")
            #expect(
                try await eventually(timeout: .seconds(20)) {
                    try await browser.run("return document.getElementById('sign-in-error').textContent") as? String
                        == "The token was refused."
                })
            #expect(try await browser.run("return document.getElementById('board').hidden") as? Bool == true)

            try await browser.type(CrestProcess.adminToken, into: "#token")
            try await browser.click("#open")
            let expected = try await client.stock(sale: sale)
            #expect(expected == ["total": 5, "available": 4, "reserved": 1, "sold": 0])
            let shown = try await eventually(timeout: .seconds(20)) {
                try await Self.counters(of: sale, in: browser) == expected
            }
            let page1 = try await Self.counters(of: sale, in: browser)
            #expect(shown, "page: \(String(describing: page1))")
            #expect(try await Self.text("orders-total", in: browser) == "1")

            // An order placed now shows within a few polls, with its stages' latencies.
            #expect(try await client.order(sale: sale, key: "k-bob", buyer: "bob").status == 201)
            let after = try await client.stock(sale: sale)
            #expect(after["available"] == 3)
            #expect(
                try await eventually(timeout: .seconds(20)) {
                    let (counters, placed) = (
                        try await Self.counters(of: sale, in: browser), try await Self.text("orders-total", in: browser)
                    )
                    return counters == after && placed == "2"
                })
            #expect(
                try await eventually(timeout: .seconds(20)) {
                    try await browser.run(
                        """
                        const row = [...document.querySelectorAll('#stages td')].find(c => c.dataset.stage === 'commit');
                        return row ? row.parentElement.cells[3].textContent : null
                        """) as? String == "1"
                }, "the commit stage counts the new order in its window")
            let ready = try await Self.text("readiness", in: browser)
            #expect(ready == "ready")

            if let path = Self.screenshotPath {
                try await browser.screenshot().write(to: URL(fileURLWithPath: path))
            }

            // The token stays out of every URL the page asked for, and out of the address.
            let urls =
                try await browser.run(
                    "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]") as? [String] ?? []
            #expect(urls.count >= 3 && urls.allSatisfy { !$0.contains(CrestProcess.adminToken) }, "\(urls)")

            let console = try await browser.consoleEntries()
            // The one expected entry, which also shows the console is read: the wrong token's 401.
            #expect(console.contains { $0.level == "SEVERE" && $0.message.contains("/v1/sales") && $0.message.contains("401") })
            let errors = console.filter { $0.level == "SEVERE" && !$0.message.contains("401") }
            #expect(errors.isEmpty, "\(console)")

            // Signing out forgets the token.
            try await browser.click("#sign-out")
            #expect(try await browser.run("return sessionStorage.length") as? Int == 0)
            #expect(try await browser.run("return document.getElementById('sign-in').hidden") as? Bool == false)
        } catch {
            await browser.close()
            _ = await crest.stop()
            throw error
        }
        await browser.close()
        _ = await crest.stop()
    }

    /// The sale's row on the page, as numbers.
    static func counters(of sale: String, in browser: Browser) async throws -> [String: Int]? {
        let cells = try await browser.run(
            """
            const row = document.querySelector('tr[data-sale="\(sale)"]');
            if (!row) return null;
            return Object.fromEntries([...row.querySelectorAll('[data-field]')]
                .map(c => [c.dataset.field, Number(c.textContent.replaceAll(',', ''))]));
            """)
        return cells as? [String: Int]
    }

    static func text(_ id: String, in browser: Browser) async throws -> String? {
        try await browser.run("return document.getElementById('\(id)').textContent") as? String
    }
}
