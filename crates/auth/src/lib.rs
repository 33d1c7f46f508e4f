//! Who may do what.
//!
//! * [`token`]: a bearer token (JWT) is verified against the configured keys
//!   at a given instant and becomes a [`Principal`]: subject, role,
//!   organisation and territory. Nothing in a request body can change who the
//!   caller is.
//! * [`apikey`]: a partner system's API key, checked against the stored
//!   digests, becomes a [`Principal`] of role `partner` the same way.
//! * [`policy`]: the one authorization function, [`authorize`], pure and
//!   table-tested: may this principal do this operation on this target?
//!   Every service asks it, through the layer in `gridcase-grpc`, and
//!   nothing else decides.
//!
//! Like the domain crate, this one does no IO and reads no clock.

pub mod apikey;
pub mod policy;
pub mod principal;
pub mod token;

pub use apikey::{ApiKeyError, ApiKeys};
pub use policy::{CaseScope, ContactView, Decision, ListScope, Operation, Target, authorize, contact_view, list_scope};
pub use principal::{Principal, PrincipalError, Territory, TokenRole};
pub use token::{Claims, DevIssuer, KeyError, KeySet, TokenAlgorithm, TokenError, Verified, VerifierSettings};
