import HTTPTypes
import Hummingbird
import NIOCore

extension HTTPField.Name {
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}

/// `/dashboard`: the operators' live page — plain HTML, CSS and JavaScript checked in under
/// `Sources/CrestHTTP/Dashboard` and compiled into the binary (no build step, no files to ship).
///
/// The page and its two files hold no data and need no credential. The data comes from the
/// operators' API (`/v1/sales`, with the admin token the operator types in, kept in the tab's
/// session storage and sent in the `Authorization` header, never in a URL) and from `/metrics`.
/// A content security policy lets the page run only its own script and talk only to its origin.
struct DashboardRoutes {
    private static let page = Asset(PackageResources.dashboard_html, contentType: "text/html; charset=utf-8")
    private static let script = Asset(PackageResources.dashboard_js, contentType: "text/javascript; charset=utf-8")
    private static let style = Asset(PackageResources.dashboard_css, contentType: "text/css; charset=utf-8")

    func add(to router: Router<CrestRequestContext>) {
        router.get("dashboard") { _, _ in Self.page.response }
        router.get("dashboard/dashboard.js") { _, _ in Self.script.response }
        router.get("dashboard/dashboard.css") { _, _ in Self.style.response }
    }

    private struct Asset: Sendable {
        let bytes: ByteBuffer
        let contentType: String

        init(_ bytes: [UInt8], contentType: String) {
            self.bytes = ByteBuffer(bytes: bytes)
            self.contentType = contentType
        }

        var response: Response {
            Response(
                status: .ok,
                headers: [
                    .contentType: contentType,
                    .contentSecurityPolicy:
                        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
                        + " form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
                    .xContentTypeOptions: "nosniff",
                    .referrerPolicy: "no-referrer",
                    .cacheControl: "no-cache",
                ],
                body: ResponseBody(byteBuffer: bytes))
        }
    }
}
