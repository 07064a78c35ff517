//! How many ID tokens one core verifies per second: a token seen before
//! (the common case: a shopper's token on every request) and tokens never
//! seen (full Ed25519 signature check).
//!
//! `cargo bench -p ecom-runtime --bench verify`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ecom_runtime::auth::{Claims, TokenClaims, Verifier, ALGORITHM};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, OctetKeyPairParameters,
    OctetKeyPairType,
};
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::time::{Duration, Instant};

fn main() {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwks = JwkSet {
        keys: vec![Jwk {
            common: CommonParameters {
                key_id: Some("k1".into()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }],
    };
    let key = EncodingKey::from_ed_der(pkcs8.as_ref());
    let mut header = Header::new(ALGORITHM);
    header.kid = Some("k1".into());
    let sign = |i: usize| {
        let claims = TokenClaims::issue(
            Claims {
                sub: format!("2f0c6a8e-3b1d-4c55-9a7e-{i:012}"),
                email: format!("shopper{i}@example.com"),
                groups: vec!["warehouse".into()],
            },
            Duration::from_secs(3600),
        );
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();

    // Never seen: distinct tokens, fewer than the cache holds.
    let fresh: Vec<String> = (0..5_000).map(sign).collect();
    let verifier = Verifier::from_jwks(&jwks);
    let start = Instant::now();
    runtime.block_on(async {
        for t in &fresh {
            verifier.verify(t).await.unwrap();
        }
    });
    report("full check (token never seen)", fresh.len(), start.elapsed());

    // Seen before: the same tokens again, now remembered.
    let rounds = 40;
    let start = Instant::now();
    runtime.block_on(async {
        for _ in 0..rounds {
            for t in &fresh {
                verifier.verify(t).await.unwrap();
            }
        }
    });
    report(
        "cached (token seen before)",
        fresh.len() * rounds,
        start.elapsed(),
    );
}

fn report(what: &str, n: usize, took: Duration) {
    let per_second = n as f64 / took.as_secs_f64();
    let micros = took.as_secs_f64() * 1e6 / n as f64;
    println!("{what:<32} {n:>8} verifications in {took:>10.2?}: {per_second:>10.0}/s ({micros:.2} µs each)");
}
