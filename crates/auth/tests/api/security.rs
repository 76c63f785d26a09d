//! Tokens that must never be accepted, brute force, and organisation walls.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use metrix_core::authn::{AccessClaims, Role as ClaimRole};
use metrix_proto::auth::v1::{
    CreateApiKeyRequest, GetCurrentUserRequest, GetJwksRequest, InviteUserRequest, ListApiKeysRequest,
    ListUsersRequest, RevokeApiKeyRequest, Role, SignInRequest, UpdateUserRoleRequest,
};
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, TestApp, assert_code, authorized, spawn_app, unique_email};
use metrix_core::both_backends;

/// Claims like the service's own, for a subject of the app's organisation.
async fn genuine_claims(app: &TestApp) -> AccessClaims {
    let tokens = app.admin_tokens().await;
    app.state
        .verifier
        .verify(&tokens.access_token)
        .await
        .expect("a genuine token verifies")
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

async fn signed(app: &TestApp, claims: &AccessClaims) -> String {
    let key = app.state.keys.active().await.expect("active key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.key_id);
    jsonwebtoken::encode(&header, claims, &key.encoding_key).expect("signs")
}

async fn refused(app: &TestApp, token: &str, what: &str) {
    let result = app
        .client
        .clone()
        .get_current_user(authorized(GetCurrentUserRequest {}, token))
        .await;
    match result {
        Ok(_) => panic!("{what}: a forged token was accepted"),
        Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}"),
    }
}

async fn forged_and_stale_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let claims = genuine_claims(&app).await;
    let genuine = signed(&app, &claims).await;
    app.client
        .clone()
        .get_current_user(authorized(GetCurrentUserRequest {}, &genuine))
        .await
        .expect("the control token works");
    let key_id = app.state.keys.active().await.expect("key").key_id;
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));

    // `alg: none`, no signature.
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{key_id}"}}"#));
    refused(&app, &format!("{header}.{payload}."), "alg none").await;

    // HS256 keyed with the published public key (the classic confusion attack).
    let jwks = app
        .client
        .clone()
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner();
    let public_key = URL_SAFE_NO_PAD.decode(&jwks.keys[0].x).expect("x is base64url");
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some(jwks.keys[0].kid.clone());
    let confused = jsonwebtoken::encode(&hmac_header, &claims, &EncodingKey::from_secret(&public_key)).expect("signs");
    refused(&app, &confused, "HS256 with the public key").await;

    // Expired (beyond the leeway).
    let now = now_seconds();
    let expired = AccessClaims {
        iat: now - 3600,
        nbf: now - 3600,
        exp: now - 600,
        ..claims.clone()
    };
    refused(&app, &signed(&app, &expired).await, "expired").await;

    // Wrong issuer, wrong audience.
    refused(
        &app,
        &signed(
            &app,
            &AccessClaims {
                iss: "someone-else".into(),
                ..claims.clone()
            },
        )
        .await,
        "wrong iss",
    )
    .await;
    refused(
        &app,
        &signed(
            &app,
            &AccessClaims {
                aud: "another-app".into(),
                ..claims.clone()
            },
        )
        .await,
        "wrong aud",
    )
    .await;

    // Tampered: the role raised after signing.
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let raised = AccessClaims {
        role: ClaimRole::Service,
        ..claims.clone()
    };
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raised).expect("claims serialise"));
    refused(&app, &parts.join("."), "tampered payload").await;

    // A flipped signature byte.
    let mut signature = URL_SAFE_NO_PAD
        .decode(genuine.rsplit('.').next().expect("signature"))
        .expect("base64url");
    signature[0] ^= 0x01;
    let (signed_part, _) = genuine.rsplit_once('.').expect("three parts");
    refused(
        &app,
        &format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(signature)),
        "tampered signature",
    )
    .await;

    // Signed by a key nobody published.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&stranger).expect("der");
    let mut unknown_header = Header::new(Algorithm::EdDSA);
    unknown_header.kid = Some("k-unknown".into());
    let unknown =
        jsonwebtoken::encode(&unknown_header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).expect("signs");
    refused(&app, &unknown, "unknown kid").await;

    // Garbage and a wrong scheme.
    refused(&app, "not-a-jwt", "garbage").await;
}

async fn brute_force_locks_the_account_whether_or_not_it_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    app.sign_up(&email).await;
    let mut client = app.client.clone();
    for _ in 0..5 {
        assert_code(
            client
                .sign_in(SignInRequest {
                    email: email.clone(),
                    password: "guess guess guess".into(),
                })
                .await,
            Code::Unauthenticated,
        );
    }
    let locked = assert_code(
        client
            .sign_in(SignInRequest {
                email: email.clone(),
                password: PASSWORD.into(),
            })
            .await,
        Code::ResourceExhausted,
    );
    use tonic_types::StatusExt as _;
    assert!(
        locked
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .is_some(),
        "says when to retry"
    );

    let ghost = unique_email();
    for _ in 0..5 {
        assert_code(
            client
                .sign_in(SignInRequest {
                    email: ghost.clone(),
                    password: "guess guess guess".into(),
                })
                .await,
            Code::Unauthenticated,
        );
    }
    let ghost_locked = assert_code(
        client
            .sign_in(SignInRequest {
                email: ghost,
                password: PASSWORD.into(),
            })
            .await,
        Code::ResourceExhausted,
    );
    assert_eq!(
        locked.message(),
        ghost_locked.message(),
        "a lockout does not reveal whether the account exists"
    );
}

async fn one_organisation_cannot_touch_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let alpha = app.sign_up(&unique_email()).await;
    let alpha_admin = alpha.tokens.expect("tokens").access_token;
    let alpha_user = alpha.user.expect("user");
    let beta_admin = app.admin_tokens().await.access_token;

    let alpha_key = client
        .create_api_key(authorized(
            CreateApiKeyRequest {
                display_name: "ingest".into(),
                scopes: vec!["events:write".into()],
                expire_time: None,
            },
            &alpha_admin,
        ))
        .await
        .expect("create key")
        .into_inner()
        .api_key
        .expect("key");

    assert_code(
        client
            .update_user_role(authorized(
                UpdateUserRoleRequest {
                    user_id: alpha_user.user_id.clone(),
                    role: Role::CompanyUser.into(),
                },
                &beta_admin,
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .revoke_api_key(authorized(
                RevokeApiKeyRequest {
                    api_key_id: alpha_key.api_key_id.clone(),
                },
                &beta_admin,
            ))
            .await,
        Code::NotFound,
    );
    let beta_users = client
        .list_users(authorized(ListUsersRequest::default(), &beta_admin))
        .await
        .expect("list")
        .into_inner()
        .users;
    assert!(beta_users.iter().all(|user| user.user_id != alpha_user.user_id));
    let beta_keys = client
        .list_api_keys(authorized(ListApiKeysRequest::default(), &beta_admin))
        .await
        .expect("list")
        .into_inner()
        .api_keys;
    assert!(beta_keys.is_empty());
}

async fn company_users_cannot_administer(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let admin = app.admin_tokens().await.access_token;
    let member = app.invite_and_join(&admin, &unique_email(), Role::CompanyUser).await;
    let member_token = member.tokens.expect("tokens").access_token;
    assert_eq!(member.user.expect("user").role(), Role::CompanyUser);
    assert_code(
        client
            .list_users(authorized(ListUsersRequest::default(), &member_token))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client
            .create_api_key(authorized(
                CreateApiKeyRequest {
                    display_name: "x".into(),
                    scopes: vec!["read".into()],
                    expire_time: None,
                },
                &member_token,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client
            .invite_user(authorized(
                InviteUserRequest {
                    email: unique_email(),
                    role: Role::Admin.into(),
                },
                &member_token,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client.list_users(ListUsersRequest::default()).await,
        Code::Unauthenticated,
    );
}

both_backends!(
    forged_and_stale_tokens_are_refused,
    brute_force_locks_the_account_whether_or_not_it_exists,
    one_organisation_cannot_touch_another,
    company_users_cannot_administer,
);
