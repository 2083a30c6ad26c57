//! Identity adapters: JWT validation (shared by Entra and the dev issuer), Entra ID with OIDC
//! discovery, Easy Auth's client principal, and the dev issuer.

pub mod dev;
pub mod easyauth;
pub mod entra;
pub mod jwt;
