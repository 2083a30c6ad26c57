//! The OpenAPI 3 document of the public HTTP API, served at `GET /api/openapi.json`. Logic Apps
//! custom connectors are generated from it, so it must say exactly what the server does:
//! `tests/openapi.rs` checks that every `/api` route is documented with its methods and every
//! status and content type an operation can answer, that its enums are the domain's and its
//! patterns what the parsers accept; `tests/host.rs` that every path is declared in
//! `functions/*/function.json`; `scripts/schemathesis` the running server against it.

pub const DOCUMENT: &str = include_str!("openapi.json");
