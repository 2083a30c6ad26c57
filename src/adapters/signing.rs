//! The confirmation-link signer: HMAC-SHA256 under a key derived from `ELEVATE_LINK_KEY` (or a
//! random per-process key), with its purpose mixed in so that a link signature is never valid
//! as anything else the same key signs (the pages' CSRF tokens).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::service::LinkSigner;

const PURPOSE: &[u8] = b"confirmation-link|";

pub struct HmacLinkSigner {
    key: [u8; 32],
}

impl HmacLinkSigner {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(PURPOSE);
        mac.update(payload);
        Some(mac)
    }
}

impl LinkSigner for HmacLinkSigner {
    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.mac(payload).map(|m| m.finalize().into_bytes().to_vec()).unwrap_or_default()
    }

    fn verify(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.mac(payload).is_some_and(|m| m.verify_slice(signature).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_its_payload_and_key() {
        let signer = HmacLinkSigner::new([7; 32]);
        let signature = signer.sign(b"payload");
        assert_eq!(signature.len(), 32);
        assert!(signer.verify(b"payload", &signature));
        assert!(!signer.verify(b"payload2", &signature));
        assert!(!signer.verify(b"payload", &signature[..31]));
        assert!(!HmacLinkSigner::new([8; 32]).verify(b"payload", &signature));
    }
}
