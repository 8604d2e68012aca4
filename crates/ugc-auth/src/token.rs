//! Signed play tokens.
//!
//! A play token is `base64url(payload || HMAC-SHA256(secret, payload))`
//! without padding, where the payload is
//!
//! ```text
//! version   u8      = 1
//! expires   u64 BE  unix seconds; the token is refused at and after it
//! session   [u8;16] the viewer session id (revocable)
//! ip_kind   u8      0 = not bound, 4 = IPv4 (4 bytes follow), 6 = IPv6 (16 bytes)
//! ip        [u8;0|4|16]
//! name_len  u8      1..=64
//! name      bytes   the control-plane stream name (`demo`, not `live/demo`)
//! ```
//!
//! Verification needs the secret only (no database): it checks the MAC in
//! constant time before it looks at any claim. Revocation and stream/IP
//! matching are the caller's ([`crate::ControlPlane`]'s authorizer) business.

use std::net::IpAddr;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::util::short_hex;

type HmacSha256 = Hmac<Sha256>;

/// Length of the MAC at the end of a token.
pub const MAC_LEN: usize = 32;
/// Longest token string accepted (longer ones are refused before decoding).
pub const MAX_TOKEN_LEN: usize = 256;
/// Token format version.
const VERSION: u8 = 1;
/// Longest stream name in a claim.
const MAX_NAME: usize = 64;

/// A viewer session id: 16 random bytes, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> crate::Result<Self> {
        crate::util::random_bytes::<16>().map(SessionId)
    }

    /// Parses 32 hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        crate::util::unhex::<16>(s).map(SessionId)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::util::hex(&self.0))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// What a play token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayClaims {
    /// The stream name (without the `live/` app).
    pub stream: String,
    /// Expiry, unix seconds (exclusive).
    pub expires_at: u64,
    /// The viewer session.
    pub session: SessionId,
    /// If set, only this client address may use the token.
    pub bind_ip: Option<IpAddr>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not base64url, too short or too long.
    #[error("malformed token ({len} chars)")]
    Malformed {
        /// Length of the token string.
        len: usize,
    },
    /// The MAC does not match (tampered, or signed with another secret).
    #[error("bad signature")]
    BadSignature,
    /// The MAC matched but the payload does not parse (a newer format?).
    #[error("bad payload at byte {offset}: {hex}")]
    BadPayload {
        /// Offset into the payload.
        offset: usize,
        /// Short hex of the payload.
        hex: String,
    },
    /// Past its expiry.
    #[error("expired at {expires_at} (now {now})")]
    Expired {
        /// The claim.
        expires_at: u64,
        /// The time checked against.
        now: u64,
    },
}

/// Signs and verifies play tokens with one secret. Cheap to clone.
#[derive(Clone)]
pub struct TokenKey {
    /// HMAC state with the key already absorbed; cloned per token so the
    /// key schedule is not recomputed on every request.
    keyed: HmacSha256,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from secret bytes (use at least 32 random bytes).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length, so this cannot fail.
        let keyed = match HmacSha256::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        TokenKey { keyed }
    }

    /// Encodes and signs `claims`. Fails if the stream name is empty or
    /// longer than 64 bytes.
    pub fn sign(&self, claims: &PlayClaims) -> Result<String, crate::Error> {
        let name = claims.stream.as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(crate::Error::Invalid {
                field: "stream",
                reason: format!("{} bytes (1..={MAX_NAME})", name.len()),
            });
        }
        let mut buf = Vec::with_capacity(1 + 8 + 16 + 1 + 16 + 1 + name.len() + MAC_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(&claims.expires_at.to_be_bytes());
        buf.extend_from_slice(&claims.session.0);
        match claims.bind_ip {
            None => buf.push(0),
            Some(IpAddr::V4(a)) => {
                buf.push(4);
                buf.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                buf.push(6);
                buf.extend_from_slice(&a.octets());
            }
        }
        // Checked above: 1..=64 fits a u8.
        buf.push(u8::try_from(name.len()).unwrap_or(0));
        buf.extend_from_slice(name);
        let mut mac = self.keyed.clone();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes());
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf))
    }

    /// Checks the signature of `token` (constant time) and decodes its
    /// claims, without checking expiry.
    pub fn decode(&self, token: &str) -> Result<PlayClaims, TokenError> {
        let malformed = TokenError::Malformed { len: token.len() };
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed);
        }
        let mut raw = [0u8; MAX_TOKEN_LEN];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(token.as_bytes(), &mut raw)
            .map_err(|_| malformed.clone())?;
        let raw = raw.get(..n).ok_or(malformed.clone())?;
        let split = n.checked_sub(MAC_LEN).ok_or(malformed)?;
        let (payload, tag) = raw.split_at(split);
        let mut mac = self.keyed.clone();
        mac.update(payload);
        // `verify_slice` compares in constant time (subtle).
        mac.verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;
        parse_payload(payload)
    }

    /// [`decode`](Self::decode) plus the expiry check against `now` (unix s).
    pub fn verify(&self, token: &str, now: u64) -> Result<PlayClaims, TokenError> {
        let claims = self.decode(token)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired {
                expires_at: claims.expires_at,
                now,
            });
        }
        Ok(claims)
    }
}

fn parse_payload(p: &[u8]) -> Result<PlayClaims, TokenError> {
    let bad = |offset: usize| TokenError::BadPayload {
        offset,
        hex: short_hex(p),
    };
    let mut at = 0usize;
    let mut take = |len: usize| -> Result<&[u8], TokenError> {
        let end = at.checked_add(len).ok_or_else(|| bad(at))?;
        let s = p.get(at..end).ok_or_else(|| bad(at))?;
        at = end;
        Ok(s)
    };
    if take(1)? != [VERSION] {
        return Err(bad(0));
    }
    let exp: [u8; 8] = take(8)?.try_into().map_err(|_| bad(1))?;
    let session: [u8; 16] = take(16)?.try_into().map_err(|_| bad(9))?;
    let bind_ip = match take(1)? {
        [0] => None,
        [4] => {
            let a: [u8; 4] = take(4)?.try_into().map_err(|_| bad(26))?;
            Some(IpAddr::from(a))
        }
        [6] => {
            let a: [u8; 16] = take(16)?.try_into().map_err(|_| bad(26))?;
            Some(IpAddr::from(a))
        }
        _ => return Err(bad(25)),
    };
    let len = usize::from(*take(1)?.first().ok_or_else(|| bad(0))?);
    if len == 0 || len > MAX_NAME {
        return Err(bad(0));
    }
    let name = take(len)?;
    let stream = std::str::from_utf8(name).map_err(|_| bad(0))?.to_owned();
    if at != p.len() {
        return Err(bad(at));
    }
    Ok(PlayClaims {
        stream,
        expires_at: u64::from_be_bytes(exp),
        session: SessionId(session),
        bind_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims() -> PlayClaims {
        PlayClaims {
            stream: "demo".into(),
            expires_at: 2_000_000_000,
            session: SessionId([7; 16]),
            bind_ip: Some("10.1.2.3".parse().unwrap_or(IpAddr::from([0u8; 4]))),
        }
    }

    #[test]
    fn valid_token_verifies() {
        let k = TokenKey::new(b"secret-secret-secret-secret-0000");
        let t = k.sign(&claims()).expect("sign");
        assert_eq!(k.verify(&t, 1_000).expect("verify"), claims());
    }

    #[test]
    fn tampered_token_is_refused() {
        let k = TokenKey::new(b"k1");
        let t = k.sign(&claims()).expect("sign");
        // Flip every character position in turn.
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).expect("ascii");
            if s != t {
                assert!(k.verify(&s, 0).is_err(), "position {i}");
            }
        }
        assert_eq!(
            TokenKey::new(b"k2").verify(&t, 0),
            Err(TokenError::BadSignature)
        );
    }

    /// The wire format is a contract between nodes: this token was made by
    /// an independent script (Python hmac/base64, also the fuzz seed
    /// `seed_unbound`) with an all-zero secret.
    #[test]
    fn decodes_independently_made_token() {
        let t =
            "AQAAAAB3NZQAAAECAwQFBgcICQoLDA0ODwAEZGVtbzpEu85m2oSZYS_t6PcRXjSPMV1wXysSoxL3KdP4NNdn";
        let k = TokenKey::new(&[0u8; 32]);
        let c = k.decode(t).expect("decode");
        let mut sid = [0u8; 16];
        for (i, b) in sid.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap_or(0);
        }
        assert_eq!(
            c,
            PlayClaims {
                stream: "demo".into(),
                expires_at: 2_000_000_000,
                session: SessionId(sid),
                bind_ip: None,
            }
        );
        assert_eq!(k.sign(&c).expect("sign"), t);
    }

    #[test]
    fn expired_token_is_refused() {
        let k = TokenKey::new(b"k");
        let t = k.sign(&claims()).expect("sign");
        assert!(matches!(
            k.verify(&t, 2_000_000_000),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn garbage_is_malformed_not_panic() {
        let k = TokenKey::new(b"k");
        for t in ["", "a", "!!!!", &"A".repeat(1000), "AAAA"] {
            assert!(k.verify(t, 0).is_err());
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            name in "[a-z0-9_-]{1,64}",
            exp in any::<u64>(),
            sid in any::<[u8; 16]>(),
            ip in proptest::option::of(any::<[u8; 4]>().prop_map(IpAddr::from)
                .boxed().prop_union(any::<[u8; 16]>().prop_map(IpAddr::from).boxed())),
            secret in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let k = TokenKey::new(&secret);
            let c = PlayClaims { stream: name, expires_at: exp, session: SessionId(sid), bind_ip: ip };
            let t = k.sign(&c).expect("sign");
            prop_assert!(t.len() <= MAX_TOKEN_LEN);
            prop_assert_eq!(k.decode(&t), Ok(c));
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,300}") {
            let _ = TokenKey::new(b"k").decode(&s);
        }
    }
}
