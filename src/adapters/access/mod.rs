//! Access providers behind the `AccessProvider` port.

pub mod arm;
pub mod graph;
pub mod local;
pub mod routed;

use crate::adapters::azure::AzureError;
use crate::service::ports::AccessError;

/// A call that got no usable answer from Azure (after the client's own retries): worth trying
/// again later.
pub(crate) fn transient(e: AzureError) -> AccessError {
    AccessError::Transient(e.to_string())
}
