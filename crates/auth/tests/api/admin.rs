//! Administration: invitations, roles, API keys, service accounts, audit.

use metrix_proto::auth::v1::{
    AuditEventKind, CreateApiKeyRequest, CreateServiceAccountRequest, InviteUserRequest, IssueServiceTokenRequest,
    ListApiKeysRequest, ListAuditEventsRequest, ListUsersRequest, RevokeApiKeyRequest, Role, SignInRequest,
    SignUpRequest, UpdateUserRoleRequest, ValidateTokenRequest, VerifyApiKeyRequest,
};
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, assert_code, authorized, spawn_app, unique_email, violated_fields};
use metrix_core::both_backends;

async fn an_invitation_is_used_once_and_only_by_its_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let founder = app.sign_up(&unique_email()).await;
    let admin = founder.tokens.expect("tokens").access_token;
    let invited_email = unique_email();
    let invitation = client
        .invite_user(authorized(
            InviteUserRequest {
                email: invited_email.clone(),
                role: Role::Analyst.into(),
            },
            &admin,
        ))
        .await
        .expect("invite")
        .into_inner();
    let token = invitation.invitation_token.clone();

    let wrong_email = assert_code(
        client
            .sign_up(SignUpRequest {
                email: unique_email(),
                password: PASSWORD.into(),
                invitation_token: token.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(crate::helpers::violated_fields(&wrong_email), ["invitation_token"]);
    // The failed attempt rolled back: the invitation still works for its address.
    let joined = client
        .sign_up(SignUpRequest {
            email: invited_email.clone(),
            password: PASSWORD.into(),
            invitation_token: token.clone(),
            ..Default::default()
        })
        .await
        .expect("join")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(joined.organization_id, founder.user.expect("founder").organization_id);
    assert_eq!(joined.role(), Role::Analyst);
    assert_code(
        client
            .sign_up(SignUpRequest {
                email: unique_email(),
                password: PASSWORD.into(),
                invitation_token: token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
}

async fn roles_change_but_the_last_admin_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let founder = app.sign_up(&unique_email()).await;
    let founder_id = founder.user.expect("user").user_id;
    let admin = founder.tokens.expect("tokens").access_token;
    assert_code(
        client
            .update_user_role(authorized(
                UpdateUserRoleRequest {
                    user_id: founder_id.clone(),
                    role: Role::Analyst.into(),
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
    );
    let invalid = assert_code(
        client
            .update_user_role(authorized(
                UpdateUserRoleRequest {
                    user_id: founder_id.clone(),
                    role: Role::Service.into(),
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&invalid), ["role"]);

    let email = unique_email();
    let member = app.invite_and_join(&admin, &email, Role::CompanyUser).await;
    let member_id = member.user.expect("user").user_id;
    let promoted = client
        .update_user_role(authorized(
            UpdateUserRoleRequest {
                user_id: member_id.clone(),
                role: Role::Admin.into(),
            },
            &admin,
        ))
        .await
        .expect("promote")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(promoted.role(), Role::Admin);
    // A fresh sign-in carries the new role.
    let tokens = app.sign_in(&email).await;
    let claims = client
        .validate_token(ValidateTokenRequest {
            access_token: tokens.access_token,
        })
        .await
        .expect("valid")
        .into_inner();
    assert_eq!(claims.role(), Role::Admin);
    // With two admins, the founder may step down.
    client
        .update_user_role(authorized(
            UpdateUserRoleRequest {
                user_id: founder_id,
                role: Role::Analyst.into(),
            },
            &admin,
        ))
        .await
        .expect("demote");

    let users = client
        .list_users(authorized(
            ListUsersRequest {
                page_size: 1,
                page_token: String::new(),
            },
            &app.sign_in(&promoted.email).await.access_token,
        ))
        .await;
    let page = users.expect("list").into_inner();
    assert_eq!(page.users.len(), 1);
    assert!(!page.next_page_token.is_empty(), "two users, pages of one");
}

async fn api_keys_verify_for_services_until_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let admin = app.admin_tokens().await.access_token;

    let bad = assert_code(
        client
            .create_api_key(authorized(
                CreateApiKeyRequest {
                    display_name: String::new(),
                    scopes: vec!["admin".into()],
                    expire_time: None,
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&bad), ["display_name", "scopes"]);

    let created = client
        .create_api_key(authorized(
            CreateApiKeyRequest {
                display_name: "webhook".into(),
                scopes: vec!["events:write".into(), "read".into()],
                expire_time: None,
            },
            &admin,
        ))
        .await
        .expect("create")
        .into_inner();
    assert!(created.key.starts_with("mx_"));
    let record = created.api_key.expect("record");
    assert!(created.key.starts_with(&record.prefix));

    let account = client
        .create_service_account(authorized(
            CreateServiceAccountRequest {
                display_name: "ingest worker".into(),
                scopes: vec!["read".into()],
            },
            &admin,
        ))
        .await
        .expect("service account")
        .into_inner();
    let service_account = account.service_account.expect("account");
    assert_code(
        client
            .issue_service_token(IssueServiceTokenRequest {
                client_id: service_account.client_id.clone(),
                client_secret: "mxs_wrong".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    let service_token = client
        .issue_service_token(IssueServiceTokenRequest {
            client_id: service_account.client_id,
            client_secret: account.client_secret,
        })
        .await
        .expect("service token")
        .into_inner()
        .access_token;
    let claims = client
        .validate_token(ValidateTokenRequest {
            access_token: service_token.clone(),
        })
        .await
        .expect("valid")
        .into_inner();
    assert_eq!(claims.role(), Role::Service);
    assert_eq!(claims.scopes, ["read"]);

    // Only platform services may verify keys: not admins, not an
    // organisation's own service accounts.
    for caller in [&admin, &service_token] {
        assert_code(
            client
                .verify_api_key(authorized(
                    VerifyApiKeyRequest {
                        key: created.key.clone(),
                    },
                    caller,
                ))
                .await,
            Code::PermissionDenied,
        );
    }
    let service_token = app.platform_token(&[metrix_core::authn::Scope::ApiKeysVerify]).await;
    let verified = client
        .verify_api_key(authorized(
            VerifyApiKeyRequest {
                key: created.key.clone(),
            },
            &service_token,
        ))
        .await
        .expect("verify")
        .into_inner();
    let verified = verified.api_key.expect("record");
    assert_eq!(verified.scopes, ["events:write", "read"]);
    assert_eq!(verified.organization_id, record.organization_id);
    assert_code(
        client
            .verify_api_key(authorized(
                VerifyApiKeyRequest {
                    key: "mx_forged".into(),
                },
                &service_token,
            ))
            .await,
        Code::Unauthenticated,
    );

    client
        .revoke_api_key(authorized(
            RevokeApiKeyRequest {
                api_key_id: record.api_key_id.clone(),
            },
            &admin,
        ))
        .await
        .expect("revoke");
    assert_code(
        client
            .verify_api_key(authorized(VerifyApiKeyRequest { key: created.key }, &service_token))
            .await,
        Code::Unauthenticated,
    );
    let listed = client
        .list_api_keys(authorized(ListApiKeysRequest::default(), &admin))
        .await
        .expect("list")
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoke_time.is_some());
    assert!(listed[0].last_use_time.is_some(), "verification records the last use");
}

async fn the_audit_trail_pages_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let founder = app.sign_up(&unique_email()).await;
    let email = founder.user.expect("user").email;
    let _ = client
        .sign_in(SignInRequest {
            email: email.clone(),
            password: "wrong wrong wrong".into(),
        })
        .await;
    let admin = client
        .sign_in(SignInRequest {
            email,
            password: PASSWORD.into(),
        })
        .await
        .expect("sign in")
        .into_inner()
        .tokens
        .expect("tokens")
        .access_token;

    let mut kinds = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_audit_events(authorized(
                ListAuditEventsRequest {
                    page_size: 1,
                    page_token: page_token.clone(),
                    kind: 0,
                },
                &admin,
            ))
            .await
            .expect("audit")
            .into_inner();
        kinds.extend(page.audit_events.iter().map(|event| event.kind()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        kinds,
        [
            AuditEventKind::SignInSucceeded,
            AuditEventKind::SignInFailed,
            AuditEventKind::SignUp
        ]
    );

    let tampered = assert_code(
        client
            .list_audit_events(authorized(
                ListAuditEventsRequest {
                    page_size: 1,
                    page_token: "bm9wZQ".into(),
                    kind: 0,
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&tampered), ["page_token"]);
    let failures = client
        .list_audit_events(authorized(
            ListAuditEventsRequest {
                kind: AuditEventKind::SignInFailed.into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    assert_eq!(failures.len(), 1);
}

both_backends!(
    an_invitation_is_used_once_and_only_by_its_email,
    roles_change_but_the_last_admin_stays,
    api_keys_verify_for_services_until_revoked,
    the_audit_trail_pages_newest_first,
);
