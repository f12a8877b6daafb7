//! What evaluating one request produces. Decisions borrow names from the compiled policy, so
//! evaluating allocates only the decision list.

/// Why a flag served what it served. Names follow OpenFeature's reasons, plus `CONSENT_DENIED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An override or a rule that serves a fixed variation.
    TargetingMatch,
    /// A split, from a rule or the default.
    Split,
    /// The default serves a fixed variation.
    Default,
    /// The kill switch (`"enabled": false`).
    Disabled,
    /// The tenant has not consented to the flag's feature class.
    ConsentDenied,
    /// Something prevented a normal evaluation; see [`ErrorCode`].
    Error,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::TargetingMatch,
        Reason::Split,
        Reason::Default,
        Reason::Disabled,
        Reason::ConsentDenied,
        Reason::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::ConsentDenied => "CONSENT_DENIED",
            Reason::Error => "ERROR",
        }
    }
}

/// The error code that goes with [`Reason::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A split needed the flag's assignment unit and the request had none.
    TargetingKeyMissing,
    /// The policy's or the consent records' remote source has not delivered a first document
    /// ([`crate::Awaiting`]): the flag served the safe answer.
    ProviderNotReady,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::ProviderNotReady => "PROVIDER_NOT_READY",
        }
    }
}

/// Which rule decided: its name if it has one, else its index in the flag's `rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef<'p> {
    Name(&'p str),
    Index(usize),
}

impl<'p> RuleRef<'p> {
    /// The rule at `index`, named `name` or unnamed.
    pub fn of(name: Option<&'p str>, index: usize) -> RuleRef<'p> {
        match name {
            Some(name) => RuleRef::Name(name),
            None => RuleRef::Index(index),
        }
    }
}

/// One flag's decision for one request. Flags out of scope make no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Index of the flag in the policy's `flags`.
    pub flag_index: usize,
    pub flag: &'p str,
    /// Index into the flag's variations (in document order); `None` for a consent reject.
    pub variation_index: Option<usize>,
    pub variation: Option<&'p str>,
    pub cluster: Option<&'p str>,
    pub reason: Reason,
    pub error: Option<ErrorCode>,
    pub rule: Option<RuleRef<'p>>,
    /// The deciding rule's index in the flag's `rules` (with or without a name), so renderers
    /// use the rule's fragments rendered at load instead of finding the rule by name.
    pub rule_index: Option<usize>,
    /// The split point (`0 <= bucket < total`) where a split decided.
    pub bucket: Option<u64>,
    /// The served variation's exposure attributes, in document order.
    pub attributes: &'p [(String, String)],
    /// The flag's assignment unit (an attribute name), if it has one.
    pub unit: Option<&'p str>,
    /// The assignment unit's raw value, only when the policy sets `expose_unit_ids`.
    pub unit_id: Option<String>,
    /// A keyed pseudonym of the unit value (SipHash-2-4, 128 bits, keyed by the policy's or the
    /// proxy's pseudonym key), so exposure can be joined per unit without the raw id. `None`
    /// without a key or without a unit value.
    pub unit_pseudonym: Option<u128>,
}

/// A consent reject: a local reply that never goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject<'p> {
    /// Index of the rejecting flag in the policy's `flags`.
    pub flag_index: usize,
    pub status: u16,
    pub flag: &'p str,
    pub reason: Reason,
}

/// Everything one request gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome<'p> {
    /// The route: the cluster of the first decision (document order) whose variation names one.
    /// `None` when rejected, or when no decision names a cluster.
    pub cluster: Option<&'p str>,
    /// The first consent reject in document order; when set, nothing goes upstream.
    pub reject: Option<Reject<'p>>,
    /// One decision per flag in scope, in document order.
    pub decisions: Vec<Decision<'p>>,
    /// Index into `decisions` of the decision that chose `cluster`.
    pub route_decision: Option<usize>,
}
