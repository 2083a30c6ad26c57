//! Access providers behind the `AccessProvider` port.

pub mod arm;
pub mod graph;
pub mod local;
pub mod routed;
