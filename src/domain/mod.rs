//! Pure rules: identifiers, scopes, policy, the activation state machine, approvers, audit,
//! notifications.
//!
//! Must never do I/O, read the clock, or import warp, Azure, HTTP clients or tokio.

pub mod activation;
pub mod approver;
pub mod audit;
pub mod delegation;
pub mod duration;
pub mod governance;
pub mod ids;
pub mod notification;
pub mod policy;
pub mod review;
pub mod scope;
