//! Access providers behind the `AccessProvider` port.

pub mod local;
