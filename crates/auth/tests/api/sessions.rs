//! Sessions, roles and revocation, attacked as the attacker did: every
//! withdrawn credential is tried again, on this instance, on another
//! instance of the same deployment, and by a verifier as every other
//! service runs one (keys and revocations from auth over gRPC).

use std::time::Duration;

use metrix_core::authn::{
    ApiKeyVerifier as _, Authentication, Authenticator, RemoteApiKeyVerifier, Scope, ServiceTokenSource, TokenError,
};
use metrix_core::config::ServiceCredentials;
use metrix_proto::auth::v1::{
    AuditEventKind, CreateApiKeyRequest, CreateServiceAccountRequest, DeactivateUserRequest, GetCurrentUserRequest,
    InviteUserRequest, IssueServiceTokenRequest, ListApiKeysRequest, ListAuditEventsRequest,
    ListServiceAccountsRequest, ListUsersRequest, RefreshTokenRequest, RevokeApiKeyRequest,
    RevokeServiceAccountRequest, Role, RotateServiceAccountSecretRequest, SignInRequest, SignOutRequest,
    UpdateUserRoleRequest, ValidateTokenRequest, VerifyApiKeyRequest,
};
use tonic::Code;

use crate::helpers::{
    Backend, PASSWORD, TestApp, assert_code, authorized, eventually, spawn_app, spawn_app_with_pubsub, unique_email,
    violated_fields,
};
use metrix_core::both_backends;

/// The bound every other verifier keeps.
const BOUND: Duration = Duration::from_secs(2);

/// Polls `verifier` until it refuses `token`, within the bound; the reason.
async fn refused_elsewhere(verifier: &metrix_core::authn::TokenVerifier, token: &str, what: &str) -> TokenError {
    eventually(BOUND, what, || async { verifier.verify(token).await.err() }).await
}

async fn get_current_user(
    app: &TestApp,
    token: &str,
) -> Result<tonic::Response<metrix_proto::auth::v1::GetCurrentUserResponse>, tonic::Status> {
    app.client
        .clone()
        .get_current_user(authorized(GetCurrentUserRequest {}, token))
        .await
}

async fn signing_out_refuses_the_access_token_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let other_instance = app.another_instance().await;
    let elsewhere = app.remote_verifier();
    let tokens = app.admin_tokens().await;
    get_current_user(&app, &tokens.access_token).await.expect("signed in");
    get_current_user(&other_instance, &tokens.access_token)
        .await
        .expect("signed in, on the other instance too");
    elsewhere.verify(&tokens.access_token).await.expect("and elsewhere");

    app.client
        .clone()
        .sign_out(SignOutRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect("sign out");

    // At once on the instance that signed out…
    assert_code(
        get_current_user(&app, &tokens.access_token).await,
        Code::Unauthenticated,
    );
    assert_code(
        app.client
            .clone()
            .validate_token(ValidateTokenRequest {
                access_token: tokens.access_token.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    // …on the other instance (its own verifier hears of it through pub/sub,
    // or reads it from the store)…
    assert_code(
        get_current_user(&other_instance, &tokens.access_token).await,
        Code::Unauthenticated,
    );
    let heard = eventually(BOUND, "the other instance's verifier hears the sign-out", || async {
        other_instance.state.verifier.verify(&tokens.access_token).await.err()
    })
    .await;
    assert_eq!(heard, TokenError::SessionRevoked);
    // …and by every other service within the bound.
    assert_eq!(
        refused_elsewhere(&elsewhere, &tokens.access_token, "the sign-out reaches another service").await,
        TokenError::SessionRevoked
    );
    // A service that starts after the sign-out knows it before its first answer.
    let started_later = other_instance.remote_verifier();
    assert_eq!(
        started_later
            .verify(&tokens.access_token)
            .await
            .expect_err("revoked before it started"),
        TokenError::SessionRevoked
    );
}

async fn a_demoted_admin_loses_every_admin_right_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let other_instance = app.another_instance().await;
    let elsewhere = app.remote_verifier();
    let founder = app.admin_tokens().await;
    let email = unique_email();
    let joined = app.invite_and_join(&founder.access_token, &email, Role::Admin).await;
    let demoted_id = joined.user.expect("user").user_id;
    let stale = joined.tokens.expect("tokens");
    elsewhere.verify(&stale.access_token).await.expect("an admin's token");

    app.client
        .clone()
        .update_user_role(authorized(
            UpdateUserRoleRequest {
                user_id: demoted_id.clone(),
                role: Role::CompanyUser.into(),
            },
            &founder.access_token,
        ))
        .await
        .expect("demote");

    // The attack: every admin RPC with the token minted while an admin, on
    // both instances, right after the demotion.
    for instance in [&app, &other_instance] {
        let mut client = instance.client.clone();
        let token = stale.access_token.as_str();
        let attempts: Vec<(&str, Result<(), tonic::Status>)> = vec![
            (
                "UpdateUserRole (re-promoting themselves)",
                client
                    .update_user_role(authorized(
                        UpdateUserRoleRequest {
                            user_id: demoted_id.clone(),
                            role: Role::Admin.into(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "CreateApiKey",
                client
                    .create_api_key(authorized(
                        CreateApiKeyRequest {
                            display_name: "backdoor".into(),
                            scopes: vec!["read".into()],
                            expire_time: None,
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "ListUsers",
                client
                    .list_users(authorized(ListUsersRequest::default(), token))
                    .await
                    .map(drop),
            ),
            (
                "InviteUser",
                client
                    .invite_user(authorized(
                        InviteUserRequest {
                            email: unique_email(),
                            role: Role::Admin.into(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "ListApiKeys",
                client
                    .list_api_keys(authorized(ListApiKeysRequest::default(), token))
                    .await
                    .map(drop),
            ),
            (
                "CreateServiceAccount",
                client
                    .create_service_account(authorized(
                        CreateServiceAccountRequest {
                            display_name: "backdoor".into(),
                            scopes: vec!["read".into()],
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
            (
                "ListAuditEvents",
                client
                    .list_audit_events(authorized(ListAuditEventsRequest::default(), token))
                    .await
                    .map(drop),
            ),
            (
                "ListServiceAccounts",
                client
                    .list_service_accounts(authorized(ListServiceAccountsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, result) in attempts {
            match result {
                Ok(()) => panic!("{rpc} accepted a demoted admin's token"),
                Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}"),
            }
        }
    }
    // Other services refuse the stale token within the bound (its role
    // claim is a lie now); a refreshed token carries the new role.
    assert_eq!(
        refused_elsewhere(&elsewhere, &stale.access_token, "the demotion reaches another service").await,
        TokenError::Superseded
    );
    let refreshed = app
        .client
        .clone()
        .refresh_token(RefreshTokenRequest {
            refresh_token: stale.refresh_token,
        })
        .await
        .expect("the session goes on")
        .into_inner()
        .tokens
        .expect("tokens");
    let claims = elsewhere.verify(&refreshed.access_token).await.expect("current");
    assert_eq!(claims.role, metrix_core::authn::Role::CompanyUser);
    assert_code(
        app.client
            .clone()
            .create_api_key(authorized(
                CreateApiKeyRequest {
                    display_name: "backdoor".into(),
                    scopes: vec!["read".into()],
                    expire_time: None,
                },
                &refreshed.access_token,
            ))
            .await,
        Code::PermissionDenied,
    );
    // Nothing the attack tried happened.
    let users = app
        .client
        .clone()
        .list_users(authorized(ListUsersRequest::default(), &founder.access_token))
        .await
        .expect("list")
        .into_inner()
        .users;
    let demoted = users.iter().find(|user| user.user_id == demoted_id).expect("listed");
    assert_eq!(demoted.role(), Role::CompanyUser);
    let keys = app
        .client
        .clone()
        .list_api_keys(authorized(ListApiKeysRequest::default(), &founder.access_token))
        .await
        .expect("keys")
        .into_inner()
        .api_keys;
    assert!(keys.is_empty(), "no key was created: {keys:?}");
}

async fn a_deactivated_user_is_locked_out_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let elsewhere = app.remote_verifier();
    let founder = app.admin_tokens().await;
    let mut client = app.client.clone();
    let email = unique_email();
    let joined = app.invite_and_join(&founder.access_token, &email, Role::Admin).await;
    let user_id = joined.user.expect("user").user_id;
    let sessions = [
        joined.tokens.expect("tokens"),
        app.sign_in(&email).await,
        app.sign_in(&email).await,
    ];
    let key = client
        .create_api_key(authorized(
            CreateApiKeyRequest {
                display_name: "their key".into(),
                scopes: vec!["read".into()],
                expire_time: None,
            },
            &sessions[0].access_token,
        ))
        .await
        .expect("the user makes a key")
        .into_inner();
    for session in &sessions {
        elsewhere.verify(&session.access_token).await.expect("valid before");
    }

    assert_code(
        client
            .deactivate_user(authorized(
                DeactivateUserRequest { user_id: String::new() },
                &founder.access_token,
            ))
            .await,
        Code::InvalidArgument,
    );
    let deactivated = client
        .deactivate_user(authorized(
            DeactivateUserRequest {
                user_id: user_id.clone(),
            },
            &founder.access_token,
        ))
        .await
        .expect("deactivate")
        .into_inner();
    assert!(deactivated.user.expect("user").deactivate_time.is_some());
    assert_eq!(deactivated.revoked_session_count, 3);
    let revoked_keys: Vec<String> = deactivated
        .revoked_api_keys
        .iter()
        .map(|key| key.api_key_id.clone())
        .collect();
    assert_eq!(revoked_keys, [key.api_key.expect("record").api_key_id]);

    for session in &sessions {
        assert_code(
            get_current_user(&app, &session.access_token).await,
            Code::Unauthenticated,
        );
        assert_code(
            client
                .list_users(authorized(ListUsersRequest::default(), &session.access_token))
                .await,
            Code::Unauthenticated,
        );
        assert_code(
            client
                .refresh_token(RefreshTokenRequest {
                    refresh_token: session.refresh_token.clone(),
                })
                .await,
            Code::Unauthenticated,
        );
        assert_eq!(
            refused_elsewhere(
                &elsewhere,
                &session.access_token,
                "the deactivation reaches another service"
            )
            .await,
            TokenError::Superseded
        );
    }
    let sign_in = assert_code(
        client
            .sign_in(SignInRequest {
                email: email.clone(),
                password: PASSWORD.into(),
            })
            .await,
        Code::Unauthenticated,
    );
    assert!(sign_in.message().contains("deactivated"), "{sign_in:?}");
    let platform = app.platform_token(&[Scope::ApiKeysVerify]).await;
    assert_code(
        client
            .verify_api_key(authorized(VerifyApiKeyRequest { key: key.key }, &platform))
            .await,
        Code::Unauthenticated,
    );

    // Deactivating again changes nothing; the user can be neither changed
    // nor made the founder's way out.
    let again = client
        .deactivate_user(authorized(
            DeactivateUserRequest {
                user_id: user_id.clone(),
            },
            &founder.access_token,
        ))
        .await
        .expect("idempotent")
        .into_inner();
    assert_eq!(again.revoked_session_count, 0);
    assert_code(
        client
            .update_user_role(authorized(
                UpdateUserRoleRequest {
                    user_id: user_id.clone(),
                    role: Role::Analyst.into(),
                },
                &founder.access_token,
            ))
            .await,
        Code::FailedPrecondition,
    );
    let founder_id = elsewhere
        .verify(&founder.access_token)
        .await
        .expect("the founder goes on")
        .sub;
    assert_code(
        client
            .deactivate_user(authorized(
                DeactivateUserRequest {
                    user_id: founder_id.clone(),
                },
                &founder.access_token,
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        client
            .update_user_role(authorized(
                UpdateUserRoleRequest {
                    user_id: founder_id,
                    role: Role::Analyst.into(),
                },
                &founder.access_token,
            ))
            .await,
        Code::FailedPrecondition,
    );
    // Another organisation's admin sees nothing.
    let stranger = app.admin_tokens().await;
    assert_code(
        client
            .deactivate_user(authorized(DeactivateUserRequest { user_id }, &stranger.access_token))
            .await,
        Code::NotFound,
    );
    let audit = client
        .list_audit_events(authorized(
            ListAuditEventsRequest {
                kind: AuditEventKind::UserDeactivated.into(),
                ..Default::default()
            },
            &founder.access_token,
        ))
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["revoked_sessions"], "3");
}

async fn service_accounts_are_listed_rotated_and_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let elsewhere = app.remote_verifier();
    let admin = app.admin_tokens().await.access_token;
    let mut client = app.client.clone();
    let mut created = Vec::new();
    for name in ["ingest", "export"] {
        created.push(
            client
                .create_service_account(authorized(
                    CreateServiceAccountRequest {
                        display_name: name.into(),
                        scopes: vec!["read".into()],
                    },
                    &admin,
                ))
                .await
                .expect("create")
                .into_inner(),
        );
    }
    let first_page = client
        .list_service_accounts(authorized(
            ListServiceAccountsRequest {
                page_size: 1,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(first_page.service_accounts[0].display_name, "export", "newest first");
    let second_page = client
        .list_service_accounts(authorized(
            ListServiceAccountsRequest {
                page_size: 1,
                page_token: first_page.next_page_token,
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(second_page.service_accounts[0].display_name, "ingest");
    assert!(second_page.next_page_token.is_empty());

    let account = created[0].service_account.clone().expect("account");
    let issue = |secret: String| IssueServiceTokenRequest {
        client_id: account.client_id.clone(),
        client_secret: secret,
    };
    let old_token = client
        .issue_service_token(issue(created[0].client_secret.clone()))
        .await
        .expect("token")
        .into_inner()
        .access_token;
    elsewhere.verify(&old_token).await.expect("valid before the rotation");

    let rotated = client
        .rotate_service_account_secret(authorized(
            RotateServiceAccountSecretRequest {
                client_id: account.client_id.clone(),
            },
            &admin,
        ))
        .await
        .expect("rotate")
        .into_inner();
    assert!(rotated.service_account.expect("account").secret_rotate_time.is_some());
    assert_code(
        client
            .issue_service_token(issue(created[0].client_secret.clone()))
            .await,
        Code::Unauthenticated,
    );
    assert_code(
        client
            .validate_token(ValidateTokenRequest {
                access_token: old_token.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(
        refused_elsewhere(&elsewhere, &old_token, "a token of the rotated secret elsewhere").await,
        TokenError::Superseded
    );
    let new_token = client
        .issue_service_token(issue(rotated.client_secret.clone()))
        .await
        .expect("the new secret works")
        .into_inner()
        .access_token;
    elsewhere.verify(&new_token).await.expect("a token of the new secret");

    let revoked = client
        .revoke_service_account(authorized(
            RevokeServiceAccountRequest {
                client_id: account.client_id.clone(),
            },
            &admin,
        ))
        .await
        .expect("revoke")
        .into_inner();
    assert!(revoked.service_account.expect("account").revoke_time.is_some());
    assert_code(
        client.issue_service_token(issue(rotated.client_secret)).await,
        Code::Unauthenticated,
    );
    assert_eq!(
        refused_elsewhere(&elsewhere, &new_token, "a revoked account's token elsewhere").await,
        TokenError::Superseded
    );
    assert_code(
        client
            .rotate_service_account_secret(authorized(
                RotateServiceAccountSecretRequest {
                    client_id: account.client_id.clone(),
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
    );
    let missing = assert_code(
        client
            .rotate_service_account_secret(authorized(
                RotateServiceAccountSecretRequest { client_id: " ".into() },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&missing), ["client_id"]);
    let stranger = app.admin_tokens().await.access_token;
    let other = created[1].service_account.clone().expect("account");
    assert_code(
        client
            .revoke_service_account(authorized(
                RevokeServiceAccountRequest {
                    client_id: other.client_id.clone(),
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        client
            .rotate_service_account_secret(authorized(
                RotateServiceAccountSecretRequest {
                    client_id: other.client_id,
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    let kinds: Vec<AuditEventKind> = client
        .list_audit_events(authorized(ListAuditEventsRequest::default(), &admin))
        .await
        .expect("audit")
        .into_inner()
        .audit_events
        .iter()
        .map(|event| event.kind())
        .collect();
    assert_eq!(
        kinds[..2],
        [
            AuditEventKind::ServiceAccountRevoked,
            AuditEventKind::ServiceAccountSecretRotated
        ]
    );
}

async fn a_revoked_api_key_is_refused_elsewhere_despite_a_cached_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    let signed_up = app.sign_up(&unique_email()).await;
    let admin = signed_up.tokens.expect("tokens").access_token;
    let organization_id = signed_up.user.expect("user").organization_id;
    let mut client = app.client.clone();
    let key = client
        .create_api_key(authorized(
            CreateApiKeyRequest {
                display_name: "webhook".into(),
                scopes: vec!["events:write".into()],
                expire_time: None,
            },
            &admin,
        ))
        .await
        .expect("key")
        .into_inner();
    // Another service's authenticator, with the service's own account.
    let (account, secret) = metrix_auth::app::create_service_account(
        &app.state.store,
        &organization_id,
        "metrics",
        &[Scope::ApiKeysVerify],
    )
    .await
    .expect("service account");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.address))
        .expect("a url")
        .connect_lazy();
    let service_token = std::sync::Arc::new(ServiceTokenSource::new(
        channel.clone(),
        ServiceCredentials {
            client_id: account.client_id,
            client_secret: secret.into(),
        },
    ));
    let api_keys = std::sync::Arc::new(RemoteApiKeyVerifier::new(channel, service_token));
    api_keys.verify(&key.key).await.expect("verified, and now cached");
    let authenticator = Authenticator::new(std::sync::Arc::new(app.remote_verifier()), Some(api_keys));
    let mut headers = tonic::codegen::http::HeaderMap::new();
    headers.insert("x-api-key", key.key.parse().expect("header-safe"));
    assert!(matches!(
        authenticator.authenticate(&headers).await,
        Authentication::Authenticated(_)
    ));

    client
        .revoke_api_key(authorized(
            RevokeApiKeyRequest {
                api_key_id: key.api_key.expect("record").api_key_id,
            },
            &admin,
        ))
        .await
        .expect("revoke");
    let refusal = eventually(BOUND, "the key's revocation reaches another service", || async {
        match authenticator.authenticate(&headers).await {
            Authentication::Refused(status) => Some(status),
            _ => None,
        }
    })
    .await;
    assert_eq!(refusal.code(), Code::Unauthenticated);
}

/// A pub/sub that loses every message, as Redis does while it is
/// unreachable: publishing "works", nobody hears anything.
struct LosingPubSub;

#[async_trait::async_trait]
impl metrix_core::cache::PubSub for LosingPubSub {
    async fn publish(&self, _channel: &str, _payload: &[u8]) -> Result<(), metrix_core::cache::CacheError> {
        Ok(())
    }

    async fn subscribe(
        &self,
        _channel: &str,
    ) -> Result<metrix_core::cache::Subscription, metrix_core::cache::CacheError> {
        Ok(Box::pin(futures::stream::pending()))
    }
}

async fn a_revocation_lost_on_pub_sub_is_read_from_the_store(backend: Backend) {
    let app = spawn_app_with_pubsub(backend, std::sync::Arc::new(LosingPubSub)).await;
    let other_instance = app.another_instance().await;
    let elsewhere = other_instance.remote_verifier();
    let tokens = app.admin_tokens().await;
    elsewhere.verify(&tokens.access_token).await.expect("valid before");
    other_instance
        .state
        .verifier
        .verify(&tokens.access_token)
        .await
        .expect("valid before");
    app.client
        .clone()
        .sign_out(SignOutRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .expect("sign out");
    assert_eq!(
        app.state
            .verifier
            .verify(&tokens.access_token)
            .await
            .expect_err("here at once"),
        TokenError::SessionRevoked
    );
    // The other instance never hears the announcement; its feeds read the
    // store every RESYNC_INTERVAL.
    let bound = metrix_auth::revocations::RESYNC_INTERVAL + Duration::from_secs(1);
    let heard = eventually(
        bound,
        "the other instance reads the revocation from the store",
        || async { other_instance.state.verifier.verify(&tokens.access_token).await.err() },
    )
    .await;
    assert_eq!(heard, TokenError::SessionRevoked);
    let refused = eventually(
        bound,
        "a service fed by the other instance refuses the token",
        || async { elsewhere.verify(&tokens.access_token).await.err() },
    )
    .await;
    assert_eq!(refused, TokenError::SessionRevoked);
}

both_backends!(
    a_revocation_lost_on_pub_sub_is_read_from_the_store,
    signing_out_refuses_the_access_token_everywhere,
    a_demoted_admin_loses_every_admin_right_at_once,
    a_deactivated_user_is_locked_out_everywhere,
    service_accounts_are_listed_rotated_and_revoked,
    a_revoked_api_key_is_refused_elsewhere_despite_a_cached_verification,
);
