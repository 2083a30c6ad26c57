//! The OpenAPI 3 document of the public HTTP API, served at `GET /api/openapi.json`.
//! Tests check that every path here is routed and declared in `functions/*/function.json`.

pub const DOCUMENT: &str = include_str!("openapi.json");
