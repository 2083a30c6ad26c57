//! Implementations of the service's ports: stores, access providers, identity.

pub mod access;
pub mod azure;
pub mod identity;
pub mod store;
