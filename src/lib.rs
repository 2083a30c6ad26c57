//! Elevate: just-in-time privileged access for Azure RBAC.
//!
//! Layers point one way: `http` → `service` → `domain`; `adapters` implement the ports the
//! service declares. `main.rs` only reads settings and calls `startup`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod adapters;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod endpoint;
#[macro_use]
pub mod failpoint;
pub mod http;
pub mod service;
pub mod startup;
pub mod telemetry;
