import AsyncHTTPClient
import CrestConcurrency
import CrestCore
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import Synchronization

/// The orders the run chose to pay, and how that went.
struct PaymentRun: Sendable {
    var chosen: Set<String> = []
    var paid: Set<String> = []
    var failed: Set<String> = []
    /// Why the `failed` ones were not paid.
    var notPaid: [LoadReport.Payments.NotPaid: Int] = [:]
}

/// How paying one chosen order went.
enum PaymentAttempt: Sendable {
    case paid
    case notPaid(LoadReport.Payments.NotPaid)
}
