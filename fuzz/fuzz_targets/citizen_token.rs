//! Any `Authorization: Bearer` token a client may send to the citizen API: verifying it never
//! panics. Random bytes seldom get past the signature, so each input is also signed with the
//! verifier's own key as a token's claims: that reaches the claims' parsing and the fiscal
//! code's.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use citizen::auth::{JwtKey, JwtVerifier};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "a fuzzing secret of at least 32 bytes";
/// `{"alg":"HS256","typ":"JWT"}`, base64url.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

fuzz_target!(|data: &[u8]| {
    let Ok(verifier) = JwtVerifier::new(&JwtKey::Hs256Secret(SECRET.into()), None, None) else {
        return;
    };
    // The input as a token.
    if let Ok(token) = std::str::from_utf8(data) {
        check(&verifier, token);
    }
    // The input as a signed token's claims.
    let claims = URL_SAFE_NO_PAD.encode(data);
    let signed = format!("{HEADER}.{claims}");
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    if let Ok(signature) = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256) {
        check(&verifier, &format!("{signed}.{signature}"));
    }
});

fn check(verifier: &JwtVerifier, token: &str) {
    if let Ok(fc) = verifier.verify(token) {
        // What it accepts is a fiscal code that parses again to itself.
        assert!(model::FiscalCode::parse("sub", fc.as_str()).is_ok());
    }
}
