//! Stores behind the `Store` port.

pub mod sqlite;
