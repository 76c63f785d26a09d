//! Property-based fuzzing of access-token verification (`authn::jwks`:
//! the JWT verifier and the JWKS key parsing) and of the claims a token
//! must carry (`authn::claims`).
//!
//! What the properties assert:
//! - no text is ever accepted as a token unless signed by a published key:
//!   arbitrary strings, JWT-shaped garbage, truncated or garbled base64,
//!   huge or deeply nested headers never panic and are always refused;
//! - a valid token changed in any one place (a character replaced,
//!   removed or added, truncated, segments swapped) is refused;
//! - any algorithm but EdDSA is refused, even when the signature is a
//!   genuine Ed25519 signature or an HMAC keyed with the public key;
//! - a genuinely signed token is accepted exactly when its claims are (the
//!   model: required claims present and well-typed, issuer and audience
//!   right, `exp` and `nbf` within 30 s of leeway, a known role), and
//!   becomes a principal exactly when its scopes parse and its subject and
//!   organisation are not empty;
//! - a published key is used exactly when it is a well-formed Ed25519 JWK,
//!   and a token verifies exactly when the last usable key of its `kid` is
//!   the key that signed it.
//!
//! CI runs a bounded number of cases; set `PROPTEST_CASES` for a long run
//! (`docs/security.md`, "Fuzzing").

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use metrix_core::authn::jwks::decoding_key;
use metrix_core::authn::{JwksSource, TokenError, TokenVerifier};
use metrix_proto::auth::v1::JsonWebKey;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value as Json, json};
use tonic::Status;

/// `PROPTEST_CASES` when set (long runs), else `ci_cases`; a case a
/// property skips (`prop_assume!`) may be skipped as often as cases run.
fn cases(ci_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(ci_cases);
    Config {
        cases,
        max_global_rejects: cases.max(1_024),
        ..Config::default()
    }
}

const ISSUER: &str = "metrix";
const KID: &str = "k1";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn attacker_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn jwk(kid: &str, key: &SigningKey) -> JsonWebKey {
    JsonWebKey {
        kty: "OKP".into(),
        kid: kid.into(),
        alg: "EdDSA".into(),
        r#use: "sig".into(),
        crv: "Ed25519".into(),
        x: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
    }
}

/// A fixed key set that never revokes.
struct StaticKeys(Vec<JsonWebKey>);

#[async_trait]
impl JwksSource for StaticKeys {
    async fn fetch(&self) -> Result<Vec<JsonWebKey>, Status> {
        Ok(self.0.clone())
    }
}

fn verifier(keys: Vec<JsonWebKey>) -> TokenVerifier {
    TokenVerifier::new(Arc::new(StaticKeys(keys)), ISSUER, ISSUER)
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    verifier: TokenVerifier,
}

impl Harness {
    fn new() -> Self {
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            verifier: verifier(vec![jwk(KID, &signing_key())]),
        }
    }

    fn verify(&self, token: &str) -> Result<metrix_core::authn::AccessClaims, TokenError> {
        self.runtime.block_on(self.verifier.verify(token))
    }
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.signature`, signed with `key` over the exact text.
fn sign_with(header: &Json, claims: &Json, key: &SigningKey) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(serde_json::to_vec(header).expect("JSON")),
        b64(serde_json::to_vec(claims).expect("JSON"))
    );
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(signature.to_bytes()))
}

fn header() -> Json {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": KID})
}

fn good_claims() -> Json {
    let now = now();
    json!({
        "iss": ISSUER, "aud": ISSUER, "sub": "user-1", "org": "org-1", "role": "analyst",
        "sid": "session-1", "iat": now, "nbf": now, "exp": now + 600, "jti": "j-1",
    })
}

fn valid_token() -> String {
    sign_with(&header(), &good_claims(), &signing_key())
}

// ---------------------------------------------------------------------------
// Garbage and tampering.

fn base64url_text(range: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect::<Vec<_>>(),
        ),
        range,
    )
    .prop_map(String::from_iter)
}

/// Text that is not a token signed by a published key.
fn not_a_token() -> impl Strategy<Value = String> {
    let valid = valid_token();
    let parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let (real_header, real_claims) = (parts[0].clone(), parts[1].clone());
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
        "[ -~]{0,80}",
        (base64url_text(0..40), base64url_text(0..200), base64url_text(0..100))
            .prop_map(|(header, claims, signature)| format!("{header}.{claims}.{signature}")),
        // The real header and claims with any signature.
        base64url_text(0..120).prop_map(move |signature| format!("{real_header}.{real_claims}.{signature}")),
        // JSON segments of any shape, unsigned.
        (any_json(), any_json(), base64url_text(0..90)).prop_map(|(header, claims, signature)| {
            format!("{}.{}.{signature}", b64(header.to_string()), b64(claims.to_string()))
        }),
        // Dots in every number.
        "[A-Za-z0-9_.-]{0,60}",
    ]
}

fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        "[ -~]{0,10}".prop_map(Json::String),
        prop::sample::select(vec!["EdDSA", "none", "HS256", KID, ISSUER]).prop_map(Json::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::hash_map(
                prop::sample::select(vec![
                    "alg", "kid", "typ", "iss", "aud", "sub", "exp", "nbf", "role", "x"
                ]),
                inner,
                0..5
            )
            .prop_map(|entries| Json::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect()
            )),
        ]
    })
}

/// A change of the valid token in one place.
#[derive(Debug, Clone)]
enum Change {
    Replace(prop::sample::Index, char),
    Remove(prop::sample::Index),
    Insert(prop::sample::Index, char),
    Truncate(prop::sample::Index),
    SwapSegments(usize, usize),
    Append(&'static str),
}

fn change() -> impl Strategy<Value = Change> {
    let character = prop_oneof![
        8 => prop::sample::select("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars().collect::<Vec<_>>()),
        1 => prop::sample::select(vec!['.', '=', '+', '/', ' ', '\0', 'é', '\u{feff}']),
    ];
    prop_oneof![
        6 => (any::<prop::sample::Index>(), character.clone()).prop_map(|(at, with)| Change::Replace(at, with)),
        2 => any::<prop::sample::Index>().prop_map(Change::Remove),
        2 => (any::<prop::sample::Index>(), character).prop_map(|(at, with)| Change::Insert(at, with)),
        2 => any::<prop::sample::Index>().prop_map(Change::Truncate),
        1 => (0..3_usize, 0..3_usize).prop_map(|(first, second)| Change::SwapSegments(first, second)),
        1 => prop::sample::select(vec![".", "=", "==", ".x", "A", " "]).prop_map(Change::Append),
    ]
}

/// The token changed, or `None` when the change leaves it as it was.
fn apply(token: &str, change: &Change) -> Option<String> {
    let mut characters: Vec<char> = token.chars().collect();
    match change {
        Change::Replace(at, with) => {
            let at = at.index(characters.len());
            if characters[at] == *with {
                return None;
            }
            characters[at] = *with;
        }
        Change::Remove(at) => {
            characters.remove(at.index(characters.len()));
        }
        Change::Insert(at, with) => characters.insert(at.index(characters.len() + 1), *with),
        Change::Truncate(at) => characters.truncate(at.index(characters.len())),
        Change::SwapSegments(first, second) => {
            let mut segments: Vec<&str> = token.split('.').collect();
            if segments[*first] == segments[*second] {
                return None;
            }
            segments.swap(*first, *second);
            return Some(segments.join("."));
        }
        Change::Append(suffix) => return Some(format!("{token}{suffix}")),
    }
    Some(characters.into_iter().collect())
}

// ---------------------------------------------------------------------------
// Algorithms.

#[derive(Debug, Clone)]
enum ForgedSignature {
    Empty,
    /// A real Ed25519 signature by the published key: valid if the
    /// algorithm were ignored.
    Genuine,
    /// HMAC-SHA256 keyed with the public key's bytes or its text.
    HmacWithPublicKey {
        as_text: bool,
    },
    Random(Vec<u8>),
}

fn forged_signature() -> impl Strategy<Value = ForgedSignature> {
    prop_oneof![
        Just(ForgedSignature::Empty),
        Just(ForgedSignature::Genuine),
        any::<bool>().prop_map(|as_text| ForgedSignature::HmacWithPublicKey { as_text }),
        prop::collection::vec(any::<u8>(), 0..96).prop_map(ForgedSignature::Random),
    ]
}

fn algorithm() -> impl Strategy<Value = Json> {
    prop_oneof![
        prop::sample::select(vec![
            "none",
            "None",
            "NONE",
            "HS256",
            "HS384",
            "HS512",
            "RS256",
            "RS384",
            "RS512",
            "ES256",
            "ES384",
            "PS256",
            "PS384",
            "PS512",
            "eddsa",
            "EDDSA",
            "Ed25519",
            "ED25519",
            "EdDSA ",
            " EdDSA",
            "",
            "EdDSA\u{0}",
        ])
        .prop_map(Json::from),
        "[A-Za-z0-9]{0,8}".prop_map(Json::from),
        Just(Json::Null),
        Just(json!(["EdDSA"])),
        Just(json!(1)),
    ]
}

fn forge(alg: &Json, signature: &ForgedSignature) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": KID});
    let claims = good_claims();
    let signing_input = format!(
        "{}.{}",
        b64(serde_json::to_vec(&header).expect("JSON")),
        b64(serde_json::to_vec(&claims).expect("JSON"))
    );
    let public = signing_key().verifying_key().to_bytes();
    let bytes = match signature {
        ForgedSignature::Empty => Vec::new(),
        ForgedSignature::Genuine => signing_key().sign(signing_input.as_bytes()).to_bytes().to_vec(),
        ForgedSignature::HmacWithPublicKey { as_text } => {
            let secret = if *as_text {
                b64(public).into_bytes()
            } else {
                public.to_vec()
            };
            let mac = jsonwebtoken::crypto::sign(
                signing_input.as_bytes(),
                &jsonwebtoken::EncodingKey::from_secret(&secret),
                jsonwebtoken::Algorithm::HS256,
            )
            .expect("an HMAC signs");
            URL_SAFE_NO_PAD.decode(mac).expect("base64url")
        }
        ForgedSignature::Random(bytes) => bytes.clone(),
    };
    format!("{signing_input}.{}", b64(bytes))
}

// ---------------------------------------------------------------------------
// Claims, against a model.

/// A claim: left out, or given (possibly wrong).
type Claim = Option<Json>;

#[derive(Debug, Clone)]
struct ClaimsCase {
    iss: Claim,
    aud: Claim,
    sub: Claim,
    org: Claim,
    role: Claim,
    sid: Claim,
    scope: Claim,
    iat: Claim,
    /// Seconds from now, far from the leeway's edge.
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Claim,
}

fn claim(
    right: impl Strategy<Value = Json> + 'static,
    wrong: impl Strategy<Value = Json> + 'static,
) -> BoxedStrategy<Claim> {
    prop_oneof![
        18 => right.prop_map(Some),
        1 => wrong.prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn claims_case() -> impl Strategy<Value = ClaimsCase> {
    let issuer = claim(
        prop_oneof![9 => Just(json!(ISSUER)), 1 => "[a-z]{0,8}".prop_map(Json::from)],
        prop_oneof![Just(json!([ISSUER])), Just(json!(1)), Just(Json::Null)],
    );
    let text = || {
        claim(
            prop_oneof![4 => "[a-z0-9-]{1,12}".prop_map(Json::from), 1 => Just(json!(""))],
            prop_oneof![Just(json!(7)), Just(json!({})), Just(json!(["x"]))],
        )
    };
    let role = claim(
        prop_oneof![
            9 => prop::sample::select(vec!["company_user", "analyst", "admin", "service"]).prop_map(Json::from),
            1 => prop::sample::select(vec!["Admin", "root", "", "owner", "admin "]).prop_map(Json::from),
        ],
        prop_oneof![Just(json!(1)), Just(Json::Null)],
    );
    let scope = claim(
        prop_oneof![
            Just(json!("")),
            prop::sample::select(vec![
                "read",
                "events:write metrics:write",
                "read,peers:read",
                "keys:rotate"
            ])
            .prop_map(Json::from),
            prop::sample::select(vec!["admin", "read write", "READ", "read;events:write"]).prop_map(Json::from),
        ],
        prop_oneof![Just(json!(["read"])), Just(json!(3))],
    );
    let sid = claim(
        "[a-z0-9-]{1,12}".prop_map(Json::from),
        prop_oneof![Just(json!(1)), Just(Json::Null)],
    );
    let iat = claim(
        (0_u64..=4_000_000_000).prop_map(Json::from),
        prop_oneof![Just(json!("now")), Just(json!(-1))],
    );
    let offset = |valid_low: i64, valid_high: i64| {
        prop::option::weighted(
            0.9,
            prop_oneof![4 => valid_low..=valid_high, 1 => -1_000_000_i64..=-60, 1 => 60_i64..=1_000_000],
        )
    };
    (
        (issuer.clone(), issuer, text(), text(), role, sid),
        (scope, iat, offset(-5, 5), offset(-5, 5), text()),
    )
        .prop_map(
            |((iss, aud, sub, org, role, sid), (scope, iat, nbf, exp, jti))| ClaimsCase {
                iss,
                aud,
                sub,
                org,
                role,
                sid,
                scope,
                iat,
                nbf,
                exp,
                jti,
            },
        )
}

impl ClaimsCase {
    fn json(&self, now: u64) -> Json {
        let mut object = serde_json::Map::new();
        let mut put = |name: &str, value: &Claim| {
            if let Some(value) = value {
                object.insert(name.to_owned(), value.clone());
            }
        };
        put("iss", &self.iss);
        put("aud", &self.aud);
        put("sub", &self.sub);
        put("org", &self.org);
        put("role", &self.role);
        put("sid", &self.sid);
        put("scope", &self.scope);
        put("iat", &self.iat);
        put("jti", &self.jti);
        let at = |offset: i64| json!(now.saturating_add_signed(offset));
        put("nbf", &self.nbf.map(at));
        put("exp", &self.exp.map(at));
        Json::Object(object)
    }

    /// Whether the verifier must accept the token, by the model.
    fn verifies(&self) -> bool {
        let string = |claim: &Claim| matches!(claim, Some(Json::String(_)));
        let is = |claim: &Claim, wanted: &str| matches!(claim, Some(Json::String(text)) if text == wanted);
        let role_known = matches!(&self.role, Some(Json::String(role)) if ["company_user", "analyst", "admin", "service"].contains(&role.as_str()));
        let sid_ok = matches!(&self.sid, None | Some(Json::String(_)) | Some(Json::Null));
        let scope_ok = matches!(&self.scope, None | Some(Json::String(_)));
        let iat_ok = matches!(&self.iat, Some(Json::Number(number)) if number.is_u64());
        // Offsets were drawn far from the 30 s leeway's edges.
        let exp_ok = self.exp.is_some_and(|offset| offset > -30);
        let nbf_ok = self.nbf.is_some_and(|offset| offset < 30);
        is(&self.iss, ISSUER)
            && is(&self.aud, ISSUER)
            && string(&self.sub)
            && string(&self.org)
            && role_known
            && sid_ok
            && scope_ok
            && iat_ok
            && exp_ok
            && nbf_ok
            && string(&self.jti)
    }

    /// Whether the verified claims describe a principal.
    fn is_principal(&self) -> bool {
        let non_empty = |claim: &Claim| matches!(claim, Some(Json::String(text)) if !text.is_empty());
        let scopes_parse = match &self.scope {
            None => true,
            Some(Json::String(scope)) => metrix_core::authn::Scope::parse_list(scope).is_ok(),
            Some(_) => false,
        };
        non_empty(&self.sub) && non_empty(&self.org) && scopes_parse
    }
}

// ---------------------------------------------------------------------------
// Key sets.

fn any_jwk() -> impl Strategy<Value = JsonWebKey> {
    let pick = |right: &'static str, wrong: Vec<&'static str>| prop_oneof![4 => Just(right.to_owned()), 1 => prop::sample::select(wrong).prop_map(str::to_owned)];
    let kty = pick("OKP", vec!["okp", "EC", "RSA", "oct", "", "OKP "]);
    let crv = pick("Ed25519", vec!["ed25519", "X25519", "Ed448", "P-256", ""]);
    let alg = prop_oneof![
        2 => Just("EdDSA".to_owned()),
        1 => Just(String::new()),
        1 => prop::sample::select(vec!["ES256", "none", "HS256", "eddsa", "EdDSA "]).prop_map(str::to_owned),
    ];
    let kid =
        prop_oneof![4 => prop::sample::select(vec![KID, "k2", "k3"]).prop_map(str::to_owned), 1 => Just(String::new())];
    let x = prop_oneof![
        // The signing key itself, under any kid.
        2 => Just(URL_SAFE_NO_PAD.encode(signing_key().verifying_key().to_bytes())),
        2 => Just(URL_SAFE_NO_PAD.encode(attacker_key().verifying_key().to_bytes())),
        2 => prop::collection::vec(any::<u8>(), 32).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        1 => prop::sample::select(vec![0_usize, 1, 16, 31, 33, 64]).prop_map(|length| URL_SAFE_NO_PAD.encode(vec![0x42; length])),
        // Standard base64 with padding is not base64url.
        1 => Just(STANDARD.encode(signing_key().verifying_key().to_bytes())),
        1 => "[ -~]{0,50}",
    ];
    (kty, crv, alg, kid, x, "[a-z]{0,4}").prop_map(|(kty, crv, alg, kid, x, r#use)| JsonWebKey {
        kty,
        kid,
        alg,
        r#use,
        crv,
        x,
    })
}

/// Whether a JWK must be usable, by the model (RFC 8037 OKP keys).
fn usable(jwk: &JsonWebKey) -> bool {
    jwk.kty == "OKP"
        && jwk.crv == "Ed25519"
        && (jwk.alg.is_empty() || jwk.alg == "EdDSA")
        && !jwk.kid.is_empty()
        && URL_SAFE_NO_PAD.decode(&jwk.x).is_ok_and(|bytes| bytes.len() == 32)
}

proptest! {
    #![proptest_config(cases(10_000))]

    #[test]
    fn text_that_is_not_a_signed_token_is_refused(token in not_a_token()) {
        HARNESS.with(|harness| -> Result<(), TestCaseError> {
            let outcome = harness.verify(&token);
            prop_assert!(outcome.is_err(), "{token:?} accepted");
            Ok(())
        })?;
    }

    #[test]
    fn a_valid_token_changed_in_one_place_is_refused(change in change()) {
        HARNESS.with(|harness| -> Result<(), TestCaseError> {
            let token = valid_token();
            prop_assert!(harness.verify(&token).is_ok(), "the genuine token verifies");
            let Some(changed) = apply(&token, &change) else { return Ok(()) };
            let outcome = harness.verify(&changed);
            prop_assert!(outcome.is_err(), "{change:?} gave {changed:?}, accepted");
            Ok(())
        })?;
    }

    #[test]
    fn only_eddsa_is_accepted(alg in algorithm(), signature in forged_signature()) {
        HARNESS.with(|harness| -> Result<(), TestCaseError> {
            let outcome = harness.verify(&forge(&alg, &signature));
            if alg == json!("EdDSA") && matches!(signature, ForgedSignature::Genuine) {
                prop_assert!(outcome.is_ok(), "{outcome:?}");
            } else {
                prop_assert!(outcome.is_err(), "alg {alg} with {signature:?} accepted");
                // `none` and unknown names are not algorithms jsonwebtoken
                // reads, so their header is malformed; the others it knows.
                let known_other = matches!(
                    alg.as_str(),
                    Some("HS256" | "HS384" | "HS512" | "RS256" | "RS384" | "RS512" | "ES256" | "ES384"
                        | "PS256" | "PS384" | "PS512")
                );
                if known_other {
                    prop_assert_eq!(outcome.err(), Some(TokenError::Algorithm));
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_signed_token_is_accepted_exactly_when_its_claims_are(case in claims_case()) {
        HARNESS.with(|harness| -> Result<(), TestCaseError> {
            let now = now();
            let claims = case.json(now);
            let outcome = harness.verify(&sign_with(&header(), &claims, &signing_key()));
            prop_assert_eq!(outcome.is_ok(), case.verifies(), "{} gave {:?}", claims, outcome);
            if let Ok(verified) = outcome {
                prop_assert_eq!(Some(json!(verified.sub)), case.sub.clone());
                prop_assert_eq!(Some(json!(verified.org)), case.org.clone());
                prop_assert_eq!(Some(json!(verified.role.as_str())), case.role.clone());
                prop_assert_eq!(verified.principal().is_ok(), case.is_principal(), "{}", claims);
            }
            Ok(())
        })?;
    }
}

#[test]
fn the_claims_generator_reaches_both_outcomes() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = claims_case();
    let cases: Vec<ClaimsCase> = (0..1_000)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect();
    let verifying = cases.iter().filter(|case| case.verifies()).count();
    let principals = cases
        .iter()
        .filter(|case| case.verifies() && case.is_principal())
        .count();
    assert!((100..=900).contains(&verifying), "{verifying} of 1,000 verify");
    assert!(
        principals >= 50 && principals < verifying,
        "{principals} of {verifying} are principals"
    );
}

proptest! {
    #![proptest_config(cases(4_000))]

    #[test]
    fn a_key_is_used_exactly_when_it_is_a_well_formed_ed25519_jwk(
        keys in prop::collection::vec(any_jwk(), 0..5),
    ) {
        for key in &keys {
            prop_assert_eq!(decoding_key(key).is_ok(), usable(key), "{:?}", key);
        }
        // A token of `KID` signed by the real key verifies exactly when the
        // last usable key published under `KID` is the real key.
        let real = URL_SAFE_NO_PAD.encode(signing_key().verifying_key().to_bytes());
        let expected = keys
            .iter()
            .rfind(|key| usable(key) && key.kid == KID)
            .is_some_and(|key| key.x == real);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let verifier = verifier(keys.clone());
        let outcome = runtime.block_on(verifier.verify(&valid_token()));
        prop_assert_eq!(outcome.is_ok(), expected, "{:?} with {:?}", outcome, keys);
        if let Err(error) = outcome {
            // A published key that is not a curve point reads as a malformed token.
            prop_assert!(
                matches!(error, TokenError::UnknownKey | TokenError::Signature | TokenError::Malformed),
                "{error:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(cases(1_000))]

    #[test]
    fn huge_and_deep_headers_are_refused(
        padding in prop_oneof![20 => 0..10_000_usize, 1 => 10_000..2_000_000_usize],
        depth in prop_oneof![4 => 0..200_usize, 1 => 200..5_000_usize],
        signer in prop_oneof![Just(None), Just(Some(attacker_key()))],
    ) {
        HARNESS.with(|harness| -> Result<(), TestCaseError> {
            let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let header_text = format!(
                r#"{{"alg":"EdDSA","kid":"{KID}","pad":"{}","deep":{nested}}}"#,
                "A".repeat(padding)
            );
            let signing_input = format!("{}.{}", b64(&header_text), b64(good_claims().to_string()));
            let signature = match &signer {
                Some(key) => b64(key.sign(signing_input.as_bytes()).to_bytes()),
                None => b64([0_u8; 64]),
            };
            let outcome = harness.verify(&format!("{signing_input}.{signature}"));
            prop_assert!(outcome.is_err());
            Ok(())
        })?;
    }
}
