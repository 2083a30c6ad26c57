//! Identity adapters: JWT validation (shared by Entra and the dev issuer) and the dev issuer.

pub mod dev;
pub mod jwt;
