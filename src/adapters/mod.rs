//! Implementations of the service's ports: stores, access providers, identity, notification sinks.

pub mod access;
pub mod azure;
pub mod blob;
pub mod directory;
pub mod identity;
pub mod notify;
pub mod queue;
pub mod signing;
pub mod store;
pub mod work_queue;
