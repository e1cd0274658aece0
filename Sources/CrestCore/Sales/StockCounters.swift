/// The four stock numbers of a sale. Their promise: `available + reserved + sold == total`, none negative.
///
/// `reserved` is stock held by orders awaiting payment; `sold` is stock of paid orders.
public struct StockCounters: Codable, Sendable, Hashable {
    public var total: Int64
    public var available: Int64
    public var reserved: Int64
    public var sold: Int64

    public init(total: Int64, available: Int64, reserved: Int64, sold: Int64) {
        self.total = total
        self.available = available
        self.reserved = reserved
        self.sold = sold
    }

    /// A fresh sale: everything available.
    public init(total: Int64) {
        self.init(total: total, available: total, reserved: 0, sold: 0)
    }

    /// Whether the conservation promise holds.
    public var isConserved: Bool {
        available >= 0 && reserved >= 0 && sold >= 0 && available + reserved + sold == total
    }
}
