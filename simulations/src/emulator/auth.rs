//! Auth tokens as go-livepeer's orchestrator issues them:
//! `token = HMAC-SHA256(secret, session_id ‖ big-endian minimal bytes of expiration)`,
//! valid 30 minutes, with a secret that is random per process start.

use hmac::{Hmac, Mac};
use livepeer::proto;
use rand::Rng;
use sha2::Sha256;

/// How long an issued token is valid, seconds.
pub const AUTH_TOKEN_VALIDITY_S: i64 = 30 * 60;

type HmacSha256 = Hmac<Sha256>;

/// The orchestrator's token secret; a new one on every (re)start.
#[derive(Clone)]
pub struct AuthSecret([u8; 32]);

impl std::fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSecret(..)")
    }
}

/// Why a token was refused; the `Display` text is what go-livepeer answers with 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The segment credentials carry no token.
    #[error("missing auth token")]
    Missing,
    /// The HMAC does not match this process's secret.
    #[error("invalid auth token")]
    Invalid,
    /// The expiration has passed.
    #[error("expired auth token")]
    Expired,
}

impl AuthSecret {
    /// A fresh random secret.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A fixed secret (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, session_id: &str, expiration_unix_s: i64) -> HmacSha256 {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(session_id.as_bytes());
        mac.update(&big_endian_minimal(expiration_unix_s));
        mac
    }

    /// The token bytes for (session id, expiration).
    pub fn token(&self, session_id: &str, expiration_unix_s: i64) -> Vec<u8> {
        self.mac(session_id, expiration_unix_s)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// A new token for `session_id`, expiring [`AUTH_TOKEN_VALIDITY_S`] after `now_unix_s`.
    pub fn issue(&self, session_id: String, now_unix_s: i64) -> proto::AuthToken {
        let expiration = now_unix_s.saturating_add(AUTH_TOKEN_VALIDITY_S);
        proto::AuthToken {
            token: self.token(&session_id, expiration),
            session_id,
            expiration,
        }
    }

    /// go-livepeer's check: HMAC first, then expiry.
    pub fn verify(
        &self,
        token: Option<&proto::AuthToken>,
        now_unix_s: i64,
    ) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        self.mac(&token.session_id, token.expiration)
            .verify_slice(&token.token)
            .map_err(|_| TokenError::Invalid)?;
        if now_unix_s > token.expiration {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// Go's `new(big.Int).SetInt64(x).Bytes()`: the absolute value, big-endian,
/// without leading zero bytes (empty for 0).
pub fn big_endian_minimal(value: i64) -> Vec<u8> {
    let bytes = value.unsigned_abs().to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_bytes_match_go_big_int() {
        assert_eq!(big_endian_minimal(0), Vec::<u8>::new());
        assert_eq!(big_endian_minimal(1), vec![1]);
        assert_eq!(big_endian_minimal(256), vec![1, 0]);
        assert_eq!(
            big_endian_minimal(1_700_000_000),
            vec![0x65, 0x53, 0xf1, 0x00]
        );
        assert_eq!(big_endian_minimal(-5), vec![5]);
    }

    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let secret = AuthSecret::from_bytes([7; 32]);
        let token = secret.issue("abc".into(), 1_000);
        assert_eq!(token.expiration, 1_000 + AUTH_TOKEN_VALIDITY_S);
        assert_eq!(secret.verify(Some(&token), 1_001), Ok(()));
        assert_eq!(
            secret.verify(Some(&token), token.expiration + 1),
            Err(TokenError::Expired)
        );
        let other = AuthSecret::from_bytes([8; 32]);
        assert_eq!(other.verify(Some(&token), 1_001), Err(TokenError::Invalid));
        let mut forged = token.clone();
        forged.expiration += 60;
        assert_eq!(
            secret.verify(Some(&forged), 1_001),
            Err(TokenError::Invalid)
        );
        assert_eq!(secret.verify(None, 1_001), Err(TokenError::Missing));
    }
}
