//! Stores behind the `Store` port.

pub mod sqlite;
pub mod table_client;
pub mod tables;
