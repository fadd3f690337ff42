//! Tokens of the WHIP and WHEP URLs: the session id and a MAC over it, so a
//! URL is unguessable, stable for the session (a publisher that crashed
//! POSTs to the same URL) and checked without a lookup, also after a restart.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::Endpoint;

const MAC_BYTES: usize = 16;

#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// A key of its own, derived from the server's secret.
    pub fn derive(secret: &[u8; 32]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"lx media endpoint tokens v1");
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, endpoint: Endpoint, session_id: Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(endpoint.path().as_bytes());
        mac.update(session_id.as_bytes());
        mac
    }

    /// 64 hex digits: the session id, then the MAC.
    pub fn token(&self, endpoint: Endpoint, session_id: Uuid) -> String {
        let tag = self.mac(endpoint, session_id).finalize().into_bytes();
        format!("{}{}", session_id.simple(), hex::encode(&tag[..MAC_BYTES]))
    }

    /// The session a token stands for, if its MAC holds.
    pub fn verify(&self, endpoint: Endpoint, token: &str) -> Option<Uuid> {
        if token.len() != 64 || !token.is_ascii() {
            return None;
        }
        let (id, tag) = token.split_at(32);
        let session_id = Uuid::try_parse(id).ok()?;
        let tag = hex::decode(tag).ok()?;
        self.mac(endpoint, session_id)
            .verify_truncated_left(&tag)
            .ok()
            .map(|_| session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_for_its_endpoint_and_session_only() {
        let key = TokenKey::derive(&[7; 32]);
        let id = Uuid::new_v4();
        let whip = key.token(Endpoint::Whip, id);
        assert_eq!(whip.len(), 64);
        assert_eq!(key.verify(Endpoint::Whip, &whip), Some(id));
        assert_eq!(
            key.verify(Endpoint::Whep, &whip),
            None,
            "a WHIP token is no WHEP token"
        );
        assert_eq!(
            TokenKey::derive(&[8; 32]).verify(Endpoint::Whip, &whip),
            None
        );
        let mut forged = whip.clone();
        forged.replace_range(63..64, if whip.ends_with('0') { "1" } else { "0" });
        assert_eq!(key.verify(Endpoint::Whip, &forged), None);
        let other = Uuid::new_v4().simple().to_string();
        assert_eq!(
            key.verify(Endpoint::Whip, &format!("{other}{}", &whip[32..])),
            None
        );
        for junk in ["", "abc", &"é".repeat(32), &"z".repeat(64)] {
            assert_eq!(key.verify(Endpoint::Whip, junk), None);
        }
    }
}
