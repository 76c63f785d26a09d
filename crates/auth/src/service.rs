//! The gRPC face of the auth service: requests are parsed into domain types
//! here, permissions are checked here, and errors become statuses here.
//! Handlers live with their section of the contract (`sessions`, `google`,
//! `users`, `api_keys`, `service_accounts`, `keys`); this module holds the
//! caller checks they share and the `AuthService` table that routes each RPC.
//! Application state and the operations the binary also runs are in
//! [`crate::app`], which knows nothing of gRPC.

mod api_keys;
mod google;
mod keys;
mod service_accounts;
mod sessions;
mod users;

use std::sync::Arc;

use metrix_core::authn::{Credential, Principal, Role, Scope, identity, principal};
use metrix_core::client::{ClientInfo, client_info};
use metrix_core::server::answer;
use metrix_proto::auth::v1::auth_service_server::AuthService;
use metrix_proto::auth::v1::*;
use tonic::{Request, Response, Status};

use crate::app::AuthState;
use crate::audit::{self, AuditEntry};
use crate::error::AuthError;
use crate::oauth::OidcProvider;
use crate::store::{RevocationRow, UserRow};

/// What WatchRevocations streams.
pub type RevocationStream = futures::stream::BoxStream<'static, Result<WatchRevocationsResponse, Status>>;

/// The `AuthService` implementation.
#[derive(Clone)]
pub struct AuthApi {
    state: Arc<AuthState>,
}

impl AuthApi {
    /// Handlers over `state`.
    pub fn new(state: Arc<AuthState>) -> Self {
        Self { state }
    }

    fn client<T>(&self, request: &Request<T>) -> ClientInfo {
        client_info(request, &self.state.trusted_proxies)
    }

    fn require_provider(&self) -> Result<&OidcProvider, AuthError> {
        self.state
            .google
            .as_ref()
            .ok_or(AuthError::FailedPrecondition("google sign-in is not configured"))
    }

    async fn audit(&self, entry: AuditEntry<'_>) -> Result<(), AuthError> {
        audit::record(&self.state.store, entry).await
    }

    /// Applies revocations just committed here and announces them to every
    /// other verifier.
    async fn announce(&self, revocations: &[RevocationRow]) {
        self.state.revocations.announce(&self.state.verifier, revocations).await;
    }

    /// The caller, if they are a person holding one of the `allowed` roles
    /// *now*. The token's role is not trusted for this, not even a current
    /// token's (another instance may not have heard of a change yet): the
    /// user must exist in the token's organisation, be active and hold the
    /// role in the store, and the token's session must be open. So a token
    /// whose authorization was superseded is judged by the store too: a
    /// demoted admin's is PERMISSION_DENIED, a deactivated user's
    /// UNAUTHENTICATED.
    async fn current_user<T>(&self, request: &Request<T>, allowed: &[Role]) -> Result<(Principal, UserRow), Status> {
        let caller = identity(request)?;
        let Credential::AccessToken {
            session_id: Some(session_id),
        } = &caller.credential
        else {
            return Err(Status::permission_denied("your role does not allow this"));
        };
        if !caller.is_user() {
            return Err(Status::permission_denied("your role does not allow this"));
        }
        let user = self
            .state
            .store
            .user_by_id(&caller.subject)
            .await?
            .filter(|user| user.organization_id == caller.organization_id)
            .ok_or(AuthError::Unauthenticated("the account no longer exists"))?;
        if user.deactivated_at.is_some() {
            return Err(AuthError::Unauthenticated("the account is deactivated").into());
        }
        if !self.state.tokens.session_is_open(session_id).await? {
            return Err(AuthError::Unauthenticated("the session was signed out or revoked").into());
        }
        let role: Role = user
            .role
            .parse()
            .map_err(|_| AuthError::Crypto("stored role is unknown"))?;
        if !allowed.contains(&role) {
            return Err(Status::permission_denied("your role does not allow this"));
        }
        let current = Principal { role, ..caller.clone() };
        Ok((current, user))
    }

    /// The caller, if they are an ADMIN of their organisation now.
    async fn current_admin<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        Ok(self.current_user(request, &[Role::Admin]).await?.0)
    }

    /// The caller, if they are an active platform service account holding
    /// `scope` in the store (not only in the token's claims). A superseded
    /// service token (its secret rotated, its account revoked) is refused.
    async fn current_service<T>(&self, request: &Request<T>, scope: Scope) -> Result<Principal, Status> {
        let caller = principal(request)?;
        caller.require_platform_scope(scope)?;
        let account = self
            .state
            .store
            .service_account(&caller.subject)
            .await?
            .filter(|account| account.organization_id == caller.organization_id && account.revoked_at.is_none())
            .ok_or(AuthError::Unauthenticated("the service account was revoked"))?;
        let scopes = Scope::parse_list(&account.scopes).map_err(|_| AuthError::Crypto("stored scopes are unknown"))?;
        if !scopes.contains(&scope) {
            return Err(Status::permission_denied(format!(
                "only platform services with the {} scope may do this",
                scope.as_str()
            )));
        }
        Ok(caller.clone())
    }
}

fn seconds_to_micros(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX).saturating_mul(1_000_000)
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn sign_up(&self, request: Request<SignUpRequest>) -> Result<Response<SignUpResponse>, Status> {
        answer(AuthApi::sign_up(self, request).await)
    }
    async fn sign_in(&self, request: Request<SignInRequest>) -> Result<Response<SignInResponse>, Status> {
        answer(AuthApi::sign_in(self, request).await)
    }
    async fn get_auth_url(&self, request: Request<GetAuthUrlRequest>) -> Result<Response<GetAuthUrlResponse>, Status> {
        answer(AuthApi::get_auth_url(self, request).await)
    }
    async fn handle_o_auth_callback(
        &self,
        request: Request<HandleOAuthCallbackRequest>,
    ) -> Result<Response<HandleOAuthCallbackResponse>, Status> {
        answer(AuthApi::handle_oauth_callback(self, request).await)
    }
    async fn sign_in_with_id_token(
        &self,
        request: Request<SignInWithIdTokenRequest>,
    ) -> Result<Response<SignInWithIdTokenResponse>, Status> {
        answer(AuthApi::sign_in_with_id_token(self, request).await)
    }
    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<RefreshTokenResponse>, Status> {
        answer(AuthApi::refresh_token(self, request).await)
    }
    async fn sign_out(&self, request: Request<SignOutRequest>) -> Result<Response<SignOutResponse>, Status> {
        answer(AuthApi::sign_out(self, request).await)
    }
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        answer(AuthApi::validate_token(self, request).await)
    }
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<GetJwksResponse>, Status> {
        answer(self.state.keys.published().await.map(|keys| GetJwksResponse { keys }))
    }
    async fn get_current_user(
        &self,
        request: Request<GetCurrentUserRequest>,
    ) -> Result<Response<GetCurrentUserResponse>, Status> {
        answer(AuthApi::get_current_user(self, request).await)
    }
    async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        answer(AuthApi::list_users(self, request).await)
    }
    async fn update_user_role(
        &self,
        request: Request<UpdateUserRoleRequest>,
    ) -> Result<Response<UpdateUserRoleResponse>, Status> {
        answer(AuthApi::update_user_role(self, request).await)
    }
    async fn invite_user(&self, request: Request<InviteUserRequest>) -> Result<Response<InviteUserResponse>, Status> {
        answer(AuthApi::invite_user(self, request).await)
    }
    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        answer(AuthApi::create_api_key(self, request).await)
    }
    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        answer(AuthApi::list_api_keys(self, request).await)
    }
    async fn revoke_api_key(
        &self,
        request: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<RevokeApiKeyResponse>, Status> {
        answer(AuthApi::revoke_api_key(self, request).await)
    }
    async fn verify_api_key(
        &self,
        request: Request<VerifyApiKeyRequest>,
    ) -> Result<Response<VerifyApiKeyResponse>, Status> {
        answer(AuthApi::verify_api_key(self, request).await)
    }
    async fn create_service_account(
        &self,
        request: Request<CreateServiceAccountRequest>,
    ) -> Result<Response<CreateServiceAccountResponse>, Status> {
        answer(AuthApi::create_service_account(self, request).await)
    }
    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<Response<IssueServiceTokenResponse>, Status> {
        answer(AuthApi::issue_service_token(self, request).await)
    }
    async fn rotate_signing_keys(
        &self,
        request: Request<RotateSigningKeysRequest>,
    ) -> Result<Response<RotateSigningKeysResponse>, Status> {
        answer(AuthApi::rotate_signing_keys(self, request).await)
    }
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        answer(AuthApi::list_audit_events(self, request).await)
    }
    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<DeactivateUserResponse>, Status> {
        answer(AuthApi::deactivate_user(self, request).await)
    }
    async fn list_service_accounts(
        &self,
        request: Request<ListServiceAccountsRequest>,
    ) -> Result<Response<ListServiceAccountsResponse>, Status> {
        answer(AuthApi::list_service_accounts(self, request).await)
    }
    async fn rotate_service_account_secret(
        &self,
        request: Request<RotateServiceAccountSecretRequest>,
    ) -> Result<Response<RotateServiceAccountSecretResponse>, Status> {
        answer(AuthApi::rotate_service_account_secret(self, request).await)
    }
    async fn revoke_service_account(
        &self,
        request: Request<RevokeServiceAccountRequest>,
    ) -> Result<Response<RevokeServiceAccountResponse>, Status> {
        answer(AuthApi::revoke_service_account(self, request).await)
    }
    type WatchRevocationsStream = RevocationStream;
    async fn watch_revocations(
        &self,
        _request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        answer(AuthApi::watch_revocations(self).await)
    }
}
