//! The one integration test binary: API, bad input, sweeper recovery and host conformance.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

mod alert_notices;
mod api;
mod arm;
mod assignments_listing;
mod audit_chain;
mod bad_input;
mod browser;
mod cli;
mod crash;
mod digest;
mod directory;
mod eligibility;
mod fake_graph_selftest;
mod faults;
mod fuzz;
mod governance;
mod governance_graph;
mod graph;
mod graph_faults;
mod graph_lifecycle;
mod hardening;
mod host;
mod identity;
mod infra;
mod load;
mod load_processes;
mod multi_instance;
mod notify;
mod openapi;
mod paging;
mod portal;
mod portal_browser;
mod queue_client;
mod queues;
mod readme;
mod recovery;
mod reviews;
mod soak;
mod store_contract;
mod workflows;
