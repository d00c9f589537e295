//! Citizen authentication: a bearer JWT whose `sub` is the fiscal code. Development uses
//! HS256 with a shared secret; production verifies RS256 or ES256 tokens from the identity
//! provider with its public key, so this service never holds a signing key.

use std::path::PathBuf;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use model::secret::Secret;
use model::FiscalCode;
use problem::Problem;
use serde::{Deserialize, Serialize};

use crate::CitizenState;

/// Which key verifies citizen tokens. Its `Debug` never shows the HS256 secret (the public
/// keys are public, but long, so they are not shown either).
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret: development and tests.
    Hs256Secret(String),
    /// RS256 with a PEM public key.
    Rs256PublicKeyPem(String),
    /// ES256 with a PEM public key.
    Es256PublicKeyPem(String),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (variant, shown) = match self {
            Self::Hs256Secret(_) => ("Hs256Secret", "<redacted>"),
            Self::Rs256PublicKeyPem(_) => ("Rs256PublicKeyPem", "<PEM>"),
            Self::Es256PublicKeyPem(_) => ("Es256PublicKeyPem", "<PEM>"),
        };
        f.debug_tuple(variant)
            .field(&format_args!("{shown}"))
            .finish()
    }
}

/// The `[jwt]` settings: how citizen tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// HS256 secret of development tokens (at least 32 bytes). When neither it nor
    /// `public_key_file` is set, one is generated under the data directory.
    pub secret: Option<Secret>,
    /// PEM public key verifying production tokens (RS256 or ES256), with `algorithm`.
    pub public_key_file: Option<PathBuf>,
    pub algorithm: Option<JwtAlgorithm>,
    /// Required `iss` of citizen tokens, if set.
    pub issuer: Option<String>,
    /// Required `aud` of citizen tokens, if set.
    pub audience: Option<String>,
    /// `public_key_file`'s contents, read once by [`JwtSettings::read_files`].
    #[serde(skip)]
    public_key_pem: Option<String>,
}

/// The algorithms of production tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    RS256,
    ES256,
}

impl JwtSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        match (self.public_key_file.is_some(), self.algorithm.is_some()) {
            (true, false) => {
                Err("jwt.algorithm must be RS256 or ES256 when jwt.public_key_file is set".into())
            }
            (false, true) => Err("jwt.algorithm is set but jwt.public_key_file is not".into()),
            _ => Ok(()),
        }
    }

    /// Reads `public_key_file` once, at start, so that a missing key stops Postino there.
    pub fn read_files(&mut self) -> Result<(), String> {
        self.public_key_pem = match &self.public_key_file {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                format!("jwt.public_key_file: cannot read {}: {e}", path.display())
            })?),
        };
        Ok(())
    }

    /// The production key, when one is configured.
    pub fn public_key(&self) -> Option<JwtKey> {
        let pem = self.public_key_pem.clone()?;
        Some(match self.algorithm? {
            JwtAlgorithm::RS256 => JwtKey::Rs256PublicKeyPem(pem),
            JwtAlgorithm::ES256 => JwtKey::Es256PublicKeyPem(pem),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("the JWT public key is not a valid PEM key: {0}")]
    BadKey(String),
    #[error("the HS256 secret must be at least 32 bytes long")]
    ShortSecret,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

impl JwtVerifier {
    /// `issuer` and `audience`, when given, must match the token's `iss` and `aud`.
    pub fn new(
        key: &JwtKey,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, JwtConfigError> {
        let (key, alg) = match key {
            JwtKey::Hs256Secret(s) if s.len() < 32 => return Err(JwtConfigError::ShortSecret),
            JwtKey::Hs256Secret(s) => (DecodingKey::from_secret(s.as_bytes()), Algorithm::HS256),
            JwtKey::Rs256PublicKeyPem(pem) => (
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| JwtConfigError::BadKey(e.to_string()))?,
                Algorithm::RS256,
            ),
            JwtKey::Es256PublicKeyPem(pem) => (
                DecodingKey::from_ec_pem(pem.as_bytes())
                    .map_err(|e| JwtConfigError::BadKey(e.to_string()))?,
                Algorithm::ES256,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The fiscal code a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<FiscalCode, String> {
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        FiscalCode::parse("sub", &data.claims.sub).map_err(|e| format!("invalid token: {e}"))
    }
}

/// A development token for `fc`, signed HS256 with `secret`, valid for `ttl_secs`.
pub fn mint_hs256(secret: &str, fc: &FiscalCode, ttl_secs: u64) -> Result<String, String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let claims = Claims {
        sub: fc.as_str().to_string(),
        exp: now + ttl_secs,
        iat: Some(now),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// The authenticated citizen.
#[derive(Debug)]
pub struct Citizen(pub FiscalCode);

impl FromRequestParts<CitizenState> for Citizen {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &CitizenState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Problem::unauthorized("the Authorization header is missing"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            Problem::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        state
            .jwt
            .verify(token.trim())
            .map(Citizen)
            .map_err(Problem::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::keys::{key_pair, KeyKind};

    const SECRET: &str = "a development secret of 32+ bytes!";

    fn fc() -> FiscalCode {
        FiscalCode::parse("fc", "RSSMRA85T10A562S").expect("valid")
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_fiscal_code() {
        let v =
            JwtVerifier::new(&JwtKey::Hs256Secret(SECRET.into()), None, None).expect("verifier");
        let token = mint_hs256(SECRET, &fc(), 60).expect("mint");
        assert_eq!(v.verify(&token), Ok(fc()));
    }

    #[test]
    fn the_hs256_secret_never_prints() {
        let key = JwtKey::Hs256Secret(SECRET.into());
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("development secret"), "{shown}");
        assert!(shown.contains("Hs256Secret") && shown.contains("<redacted>"));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let v =
            JwtVerifier::new(&JwtKey::Hs256Secret(SECRET.into()), None, None).expect("verifier");
        let other = mint_hs256("another secret that is 32+ bytes long", &fc(), 60).expect("mint");
        assert!(v.verify(&other).is_err(), "wrong signature");
        assert!(v.verify("not.a.token").is_err());
        assert!(v.verify("").is_err());
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: fc().as_str().into(),
                exp: 1,
                iat: None,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode");
        assert!(v.verify(&expired).unwrap_err().contains("Expired"));
        let far = 4_000_000_000;
        let bad_sub = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "RSSMRA85T10A562T".into(),
                exp: far,
                iat: None,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode");
        assert!(v.verify(&bad_sub).unwrap_err().contains("check character"));
    }

    /// A key pair made by openssl: (private key PKCS#8 PEM, public key PEM).
    fn openssl_key_pair(kind: &str) -> (String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kind = if kind == "ec" {
            KeyKind::Ec
        } else {
            KeyKind::Rsa
        };
        let pair = key_pair(dir.path(), "token", kind);
        (pair.private_key(), pair.public_key())
    }

    #[test]
    fn production_tokens_verify_with_the_public_key_and_pin_issuer_and_audience() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = |iss: &str, aud: &str| serde_json::json!({"sub": fc().as_str(), "exp": now + 60, "iss": iss, "aud": aud});
        for (kind, alg) in [("ec", Algorithm::ES256), ("rsa", Algorithm::RS256)] {
            let (private, public) = openssl_key_pair(kind);
            let (signing, key) = if kind == "ec" {
                (
                    EncodingKey::from_ec_pem(private.as_bytes()).expect("ec key"),
                    JwtKey::Es256PublicKeyPem(public),
                )
            } else {
                (
                    EncodingKey::from_rsa_pem(private.as_bytes()).expect("rsa key"),
                    JwtKey::Rs256PublicKeyPem(public),
                )
            };
            let v = JwtVerifier::new(&key, Some("https://idp.example"), Some("postino"))
                .expect("verifier");
            let sign =
                |c: serde_json::Value| encode(&Header::new(alg), &c, &signing).expect("sign");
            assert_eq!(
                v.verify(&sign(claims("https://idp.example", "postino"))),
                Ok(fc()),
                "{kind}"
            );
            assert!(
                v.verify(&sign(claims("https://other.example", "postino")))
                    .is_err(),
                "{kind}: wrong issuer"
            );
            assert!(
                v.verify(&sign(claims("https://idp.example", "another-app")))
                    .is_err(),
                "{kind}: wrong audience"
            );
            let hs = mint_hs256(SECRET, &fc(), 60).expect("mint");
            assert!(
                v.verify(&hs).is_err(),
                "{kind}: an HS256 token must not pass a public-key verifier"
            );
        }
    }

    #[test]
    fn configuration_errors_are_clear() {
        assert!(matches!(
            JwtVerifier::new(&JwtKey::Hs256Secret("short".into()), None, None),
            Err(JwtConfigError::ShortSecret)
        ));
        assert!(matches!(
            JwtVerifier::new(&JwtKey::Rs256PublicKeyPem("not pem".into()), None, None),
            Err(JwtConfigError::BadKey(_))
        ));
    }
}
