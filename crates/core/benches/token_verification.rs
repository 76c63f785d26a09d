//! How long local verification of one access token takes, the check every
//! Metrix service runs on every authenticated request.
//!
//! The benchmark signs realistic user access tokens with a fixed Ed25519
//! key, builds a [`TokenVerifier`] over an in-memory key set and verifies once
//! so the key is cached. It then times individual `verify` calls on a
//! current-thread Tokio runtime: of tokens it has never seen (a distinct
//! token per call, the full check: header, key, signature, claims), and of
//! one token verified before (remembered until it expires, as a session's
//! later calls are). In the same run it times the bare Ed25519 signature
//! check of a token's signing input and signature, the floor no full check
//! can go below. It prints p50, p90, p99 and mean in microseconds, the
//! throughput of one core, the ratio of the medians and whether the target
//! (p50 ≤ 100 µs for a token never seen) holds.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p metrix-core --bench token_verification
//! ```

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark stops at its first failure"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::{Signature, SigningKey, Verifier as _, VerifyingKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use metrix_core::authn::{AccessClaims, JwksSource, Role, TokenVerifier};
use metrix_proto::auth::v1::JsonWebKey;
use tonic::Status;

/// Calls run and discarded before measuring, so caches and branch predictors are warm.
const WARM_UP_CALLS: usize = 2_000;

/// Calls measured, each timed on its own.
const MEASURED_CALLS: usize = 20_000;

/// The median a verification may take.
const TARGET_P50: Duration = Duration::from_micros(100);

const SEED: [u8; 32] = [7; 32];
const KEY_ID: &str = "k0195f3a2c7d87b2e9a4f6c1d0e8b5a37";
const ISSUER: &str = "metrix";
const AUDIENCE: &str = "metrix";

/// A key set held in memory, standing in for the auth service.
struct StaticJwks {
    keys: Vec<JsonWebKey>,
}

#[async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
        Ok(self.keys.clone())
    }
}

/// Per-call durations, sorted, with the wall-clock time of the whole loop.
struct Timings {
    sorted_nanos: Vec<u64>,
    wall_clock: Duration,
}

impl Timings {
    fn from_nanos(mut nanos: Vec<u64>, wall_clock: Duration) -> Self {
        nanos.sort_unstable();
        Self {
            sorted_nanos: nanos,
            wall_clock,
        }
    }

    /// The nearest-rank percentile, in microseconds.
    fn percentile_micros(&self, percent: f64) -> f64 {
        let count = self.sorted_nanos.len();
        let rank = ((percent / 100.0) * count as f64).ceil() as usize;
        let index = rank.clamp(1, count) - 1;
        self.sorted_nanos[index] as f64 / 1_000.0
    }

    fn mean_micros(&self) -> f64 {
        let total: u64 = self.sorted_nanos.iter().sum();
        total as f64 / self.sorted_nanos.len() as f64 / 1_000.0
    }

    /// Calls per second of wall-clock time over the measured loop, on one core.
    fn throughput_per_second(&self) -> f64 {
        self.sorted_nanos.len() as f64 / self.wall_clock.as_secs_f64()
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<22} p50 {:>8.2} µs  p90 {:>8.2} µs  p99 {:>8.2} µs  mean {:>8.2} µs  {:>9.0} /s",
            self.percentile_micros(50.0),
            self.percentile_micros(90.0),
            self.percentile_micros(99.0),
            self.mean_micros(),
            self.throughput_per_second(),
        );
    }
}

fn unix_seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_secs()
}

/// A user access token as the auth service issues it: an admin with a session, valid for an hour.
fn signed_access_token(signing_key: &SigningKey) -> String {
    let now = unix_seconds_now();
    let claims = AccessClaims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: uuid::Uuid::now_v7().simple().to_string(),
        org: uuid::Uuid::now_v7().simple().to_string(),
        role: Role::Admin,
        sid: Some(uuid::Uuid::now_v7().simple().to_string()),
        scope: String::new(),
        iat: now,
        nbf: now,
        exp: now + 3_600,
        jti: uuid::Uuid::now_v7().simple().to_string(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KEY_ID.to_owned());
    let private_key_der = signing_key
        .to_pkcs8_der()
        .expect("an Ed25519 signing key always has a PKCS#8 encoding");
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(private_key_der.as_bytes()))
        .expect("an Ed25519 PKCS#8 key from ed25519-dalek signs claims that serialise")
}

/// The bytes the signature covers (`header.payload`) and the decoded signature.
fn signing_input_and_signature(token: &str) -> (&[u8], Signature) {
    let (signing_input, encoded_signature) = token
        .rsplit_once('.')
        .expect("a compact JWS has a dot before its signature");
    let signature_bytes = URL_SAFE_NO_PAD
        .decode(encoded_signature)
        .expect("jsonwebtoken encodes the signature as base64url without padding");
    let signature = Signature::from_slice(&signature_bytes).expect("an Ed25519 signature is 64 bytes");
    (signing_input.as_bytes(), signature)
}

/// Times one `verify` call per token of `tokens` (after `WARM_UP_CALLS`
/// discarded calls on the first tokens).
fn measure_verifier(runtime: &tokio::runtime::Runtime, verifier: &TokenVerifier, tokens: &[String]) -> Timings {
    runtime.block_on(async {
        let (warm_up, measured) = tokens.split_at(WARM_UP_CALLS.min(tokens.len() / 2));
        for token in warm_up {
            black_box(verifier.verify(black_box(token)).await).expect("the token stays valid for an hour");
        }
        let mut nanos = Vec::with_capacity(measured.len());
        let loop_started = Instant::now();
        for token in measured {
            let call_started = Instant::now();
            let outcome = black_box(verifier.verify(black_box(token)).await);
            let elapsed = call_started.elapsed();
            outcome.expect("the token stays valid for an hour");
            nanos.push(elapsed.as_nanos() as u64);
        }
        Timings::from_nanos(nanos, loop_started.elapsed())
    })
}

/// The same check jsonwebtoken makes for EdDSA, on a key parsed once.
fn measure_bare_signature(verifying_key: &VerifyingKey, signing_input: &[u8], signature: &Signature) -> Timings {
    for _ in 0..WARM_UP_CALLS {
        black_box(verifying_key.verify(black_box(signing_input), black_box(signature)))
            .expect("the token's own signature matches its signing input");
    }
    let mut nanos = Vec::with_capacity(MEASURED_CALLS);
    let loop_started = Instant::now();
    for _ in 0..MEASURED_CALLS {
        let call_started = Instant::now();
        let outcome = black_box(verifying_key.verify(black_box(signing_input), black_box(signature)));
        let elapsed = call_started.elapsed();
        outcome.expect("the token's own signature matches its signing input");
        nanos.push(elapsed.as_nanos() as u64);
    }
    Timings::from_nanos(nanos, loop_started.elapsed())
}

fn main() {
    let signing_key = SigningKey::from_bytes(&SEED);
    let verifying_key = signing_key.verifying_key();
    let jwks = StaticJwks {
        keys: vec![JsonWebKey {
            kty: "OKP".to_owned(),
            kid: KEY_ID.to_owned(),
            alg: "EdDSA".to_owned(),
            r#use: "sig".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(verifying_key.to_bytes()),
        }],
    };
    let verifier = TokenVerifier::new(Arc::new(jwks), ISSUER, AUDIENCE);
    let unseen: Vec<String> = (0..WARM_UP_CALLS + MEASURED_CALLS)
        .map(|_| signed_access_token(&signing_key))
        .collect();
    let token = signed_access_token(&signing_key);
    let (signing_input, signature) = signing_input_and_signature(&token);
    let same_token = vec![token.clone(); WARM_UP_CALLS + MEASURED_CALLS];

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime needs no resources that can be missing");

    println!(
        "token verification: {} bytes, {WARM_UP_CALLS} warm-up calls, {MEASURED_CALLS} measured calls each",
        token.len()
    );
    let unseen_timings = measure_verifier(&runtime, &verifier, &unseen);
    let remembered_timings = measure_verifier(&runtime, &verifier, &same_token);
    let baseline_timings = measure_bare_signature(&verifying_key, signing_input, &signature);
    unseen_timings.print("verify, unseen token");
    remembered_timings.print("verify, seen before");
    baseline_timings.print("ed25519 verify (base)");

    let unseen_p50 = unseen_timings.percentile_micros(50.0);
    let remembered_p50 = remembered_timings.percentile_micros(50.0);
    let baseline_p50 = baseline_timings.percentile_micros(50.0);
    println!("ratio unseen p50 / baseline p50: {:.2}", unseen_p50 / baseline_p50);
    println!(
        "ratio seen-before p50 / baseline p50: {:.2}",
        remembered_p50 / baseline_p50
    );
    let target_micros = TARGET_P50.as_secs_f64() * 1_000_000.0;
    let verdict = if unseen_p50 <= target_micros { "met" } else { "NOT met" };
    println!("target p50 ≤ {target_micros:.0} µs for an unseen token: {verdict}");
}
