/// A request that breaks one or more input rules; every broken rule is listed.
public struct ValidationError: Error, Sendable, Hashable {
    /// One broken rule: which field (a dotted path) and what is wrong with it.
    public struct Issue: Sendable, Hashable, Codable {
        public var field: String
        public var message: String

        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    public var issues: [Issue]

    public init(issues: [Issue]) {
        self.issues = issues
    }

    public init(field: String, message: String) {
        self.issues = [Issue(field: field, message: message)]
    }
}
