/// An error that is an answer about the domain — "sold out", "no such job", "the order already has
/// another payment" — rather than a failure of the machinery. The engine passes these through as
/// they are (each maps to its own problem in `CrestHTTP`); any other error from a store call is a
/// failure of the store and becomes `UnavailableError` (503, retry later).
///
/// A new domain error conforms to this; nothing else has to be told about it.
public protocol DomainError: Error, Sendable {}

extension OrderError: DomainError {}
extension UnavailableError: DomainError {}
extension JobError: DomainError {}
