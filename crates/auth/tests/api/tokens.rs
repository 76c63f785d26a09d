use std::time::Duration;

use metrix_core::authn::TokenError;
use metrix_proto::auth::v1::{
    AuditEventKind, GetCurrentUserRequest, GetJwksRequest, ListAuditEventsRequest, RefreshTokenRequest,
    RotateSigningKeysRequest, SignOutRequest, ValidateTokenRequest,
};
use tonic::Code;

use crate::helpers::{Backend, assert_code, authorized, eventually, spawn_app, spawn_app_with};
use metrix_core::both_backends;

async fn refresh_rotates_and_a_retry_within_the_grace_window_gets_the_same_pair(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.admin_tokens().await;
    let mut client = app.client.clone();
    let second = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect("refresh succeeds")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_ne!(second.refresh_token, first.refresh_token, "refresh tokens rotate");
    // A client that lost the answer retries with the same token: within the
    // grace window it gets the very same pair, not a second live branch.
    for _ in 0..2 {
        let retried = client
            .refresh_token(RefreshTokenRequest {
                refresh_token: first.refresh_token.clone(),
            })
            .await
            .expect("retry within grace")
            .into_inner()
            .tokens
            .expect("tokens");
        assert_eq!(retried, second, "a retry is answered with the same pair");
    }
    let third = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .expect("the successor works")
        .into_inner()
        .tokens
        .expect("tokens");
    client
        .get_current_user(authorized(GetCurrentUserRequest {}, &third.access_token))
        .await
        .expect("new access token works");

    // Once the successor was used, the first token coming back is no retry
    // (the client that lost the answer never had the successor): the
    // session ends, its access tokens with it.
    let replay = assert_code(
        client
            .refresh_token(RefreshTokenRequest {
                refresh_token: first.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    assert!(replay.message().contains("reused"), "{replay:?}");
    assert_code(
        client
            .get_current_user(authorized(GetCurrentUserRequest {}, &third.access_token))
            .await,
        Code::Unauthenticated,
    );
    assert_code(
        client
            .refresh_token(RefreshTokenRequest {
                refresh_token: third.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
}

async fn a_replay_after_the_grace_window_revokes_the_whole_family(backend: Backend) {
    let app = spawn_app_with(backend, &[("METRIX_AUTH__REFRESH_REUSE_GRACE_SECONDS", "1")]).await;
    let signed_up = app.sign_up(&crate::helpers::unique_email()).await;
    let first = signed_up.tokens.clone().expect("tokens");
    let mut client = app.client.clone();
    let second = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .expect("tokens");
    // Another service verifies the session's access token meanwhile.
    let elsewhere = app.remote_verifier();
    elsewhere
        .verify(&second.access_token)
        .await
        .expect("valid elsewhere before the replay");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let replay = assert_code(
        client
            .refresh_token(RefreshTokenRequest {
                refresh_token: first.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    assert!(replay.message().contains("reused"), "{replay:?}");
    // The legitimate successor dies with its family…
    assert_code(
        client
            .refresh_token(RefreshTokenRequest {
                refresh_token: second.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    // …the session's access tokens are refused at once here…
    assert_code(
        client
            .validate_token(ValidateTokenRequest {
                access_token: second.access_token.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    assert_code(
        client
            .get_current_user(authorized(GetCurrentUserRequest {}, &second.access_token))
            .await,
        Code::Unauthenticated,
    );
    // …and within two seconds by every other verifier…
    let refused = eventually(
        Duration::from_secs(2),
        "the reused session refused elsewhere",
        || async { elsewhere.verify(&second.access_token).await.err() },
    )
    .await;
    assert_eq!(refused, TokenError::SessionRevoked);
    // …and the reuse is in the audit trail.
    let admin = app
        .sign_in(&signed_up.user.as_ref().expect("user").email)
        .await
        .access_token;
    let events = client
        .list_audit_events(authorized(
            ListAuditEventsRequest {
                kind: AuditEventKind::RefreshTokenReused.into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("audit")
        .into_inner();
    assert_eq!(events.audit_events.len(), 1);
}

async fn sign_out_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.admin_tokens().await;
    let mut client = app.client.clone();
    let claims = client
        .validate_token(ValidateTokenRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .expect("valid")
        .into_inner();
    assert!(!claims.session_id.is_empty());
    client
        .sign_out(SignOutRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect("sign out");
    client
        .sign_out(SignOutRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect("signing out twice is fine");
    assert_code(
        client
            .validate_token(ValidateTokenRequest {
                access_token: tokens.access_token,
            })
            .await,
        Code::Unauthenticated,
    );
    assert_code(
        client
            .refresh_token(RefreshTokenRequest {
                refresh_token: tokens.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
}

async fn rotation_keeps_earlier_tokens_valid_and_publishes_three_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.admin_tokens().await;
    let mut client = app.client.clone();
    let before = client
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner()
        .keys;
    assert_eq!(before.len(), 2, "current and next are published");
    // An organisation's admin may not rotate the platform's keys.
    assert_code(
        client
            .rotate_signing_keys(authorized(RotateSigningKeysRequest {}, &tokens.access_token))
            .await,
        Code::PermissionDenied,
    );
    let operator = app.platform_token(&[metrix_core::authn::Scope::KeysRotate]).await;
    let rotation = client
        .rotate_signing_keys(authorized(RotateSigningKeysRequest {}, &operator))
        .await
        .expect("rotate")
        .into_inner();
    assert!(
        before.iter().any(|key| key.kid == rotation.current_key_id),
        "the promoted key was already published"
    );
    let after = client
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner()
        .keys;
    assert_eq!(after.len(), 3, "current, next and the retired key");
    assert!(
        after
            .iter()
            .all(|key| key.kty == "OKP" && key.crv == "Ed25519" && key.alg == "EdDSA")
    );
    client
        .get_current_user(authorized(GetCurrentUserRequest {}, &tokens.access_token))
        .await
        .expect("a token of the retired key still works");
    let fresh = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .expect("refresh")
        .into_inner()
        .tokens
        .expect("tokens");
    let claims = client
        .validate_token(ValidateTokenRequest {
            access_token: fresh.access_token,
        })
        .await
        .expect("valid")
        .into_inner();
    assert_eq!(
        claims.key_id, rotation.current_key_id,
        "new tokens are signed by the new key"
    );
    assert_code(
        client
            .rotate_signing_keys(authorized(RotateSigningKeysRequest {}, &operator))
            .await,
        Code::FailedPrecondition,
    );
}

both_backends!(
    refresh_rotates_and_a_retry_within_the_grace_window_gets_the_same_pair,
    a_replay_after_the_grace_window_revokes_the_whole_family,
    sign_out_ends_the_session,
    rotation_keeps_earlier_tokens_valid_and_publishes_three_keys,
);

mod concurrency {
    use metrix_proto::auth::v1::RefreshTokenRequest;

    use crate::helpers::{Backend, spawn_app};

    /// Two tabs refreshing the same token at once both get the same pair
    /// and the session survives.
    async fn concurrent_refreshes_of_one_token_do_not_revoke_the_session(backend: Backend) {
        let app = spawn_app(backend).await;
        let tokens = app.admin_tokens().await;
        let request = || RefreshTokenRequest {
            refresh_token: tokens.refresh_token.clone(),
        };
        let (mut first_client, mut second_client) = (app.client.clone(), app.client.clone());
        let (first, second) = tokio::join!(
            first_client.refresh_token(request()),
            second_client.refresh_token(request())
        );
        let first = first.expect("first tab").into_inner().tokens.expect("tokens");
        let second = second.expect("second tab").into_inner().tokens.expect("tokens");
        assert_eq!(first, second, "one successor, never two live branches");
        app.client
            .clone()
            .refresh_token(RefreshTokenRequest {
                refresh_token: first.refresh_token,
            })
            .await
            .expect("the successor works");
    }

    metrix_core::both_backends!(concurrent_refreshes_of_one_token_do_not_revoke_the_session);
}
