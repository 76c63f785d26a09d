//! The auth service's application state and the operations its entry
//! points share (handlers, the `metrix` binary): nothing here knows gRPC.

use std::sync::Arc;

use ipnet::IpNet;
use metrix_core::authn::{Scope, TokenVerifier};
use metrix_core::cache::Cache;
use metrix_core::time::now_micros;

use crate::error::AuthError;
use crate::keys::KeyRing;
use crate::oauth::OidcProvider;
use crate::revocations::Revocations;
use crate::secrets::{digest, random_token};
use crate::store::{AuthStore, ServiceAccountRow};
use crate::throttle::Throttle;
use crate::tokens::TokenIssuer;

/// The channel on which a rotation tells every instance to reload keys.
pub const KEYS_ROTATED_CHANNEL: &str = "auth:keys-rotated";

/// The prefix of service account secrets.
pub const SERVICE_ACCOUNT_SECRET_PREFIX: &str = "mxs_";

/// Everything the handlers share.
pub struct AuthState {
    /// The auth service's tables: organisations, users, sessions, keys, accounts and the audit trail.
    pub store: AuthStore,
    /// The signing keys, which sign access tokens and are published for verifiers.
    pub keys: Arc<KeyRing>,
    /// Mints access tokens and the session pairs handed out by every sign-in.
    pub tokens: TokenIssuer,
    /// Checks callers' access tokens against this service's own keys and revocations.
    pub verifier: Arc<TokenVerifier>,
    /// What verifiers must refuse before it expires.
    pub revocations: Revocations,
    /// The shared cache, which holds the pending state of Google sign-ins.
    pub cache: Arc<dyn Cache>,
    /// The channel between instances, on which key rotations are announced.
    pub pubsub: Arc<dyn metrix_core::cache::PubSub>,
    /// Sign-in throttling: account lockouts and a limit of attempts per client address.
    pub throttle: Throttle,
    /// Google sign-in, when configured.
    pub google: Option<OidcProvider>,
    /// The peers whose `x-metrix-client-ip` header is believed as the caller's address.
    pub trusted_proxies: Vec<IpNet>,
}

/// Rotates the keys, reloads them here and tells every other instance.
pub async fn rotate_keys(state: &AuthState) -> Result<crate::keys::Rotation, AuthError> {
    let rotation = state.keys.rotate().await?;
    state.verifier.forget_keys().await;
    if let Err(error) = state
        .pubsub
        .publish(KEYS_ROTATED_CHANNEL, rotation.current_key_id.as_bytes())
        .await
    {
        // Other instances still pick the keys up within their reload interval.
        tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot announce the key rotation");
    }
    tracing::info!(current_key_id = %rotation.current_key_id, retired_key_id = %rotation.retired_key_id, "signing keys rotated");
    Ok(rotation)
}

/// Creates a service account with any scopes (the API restricts them to
/// organisation scopes before calling this); the account and its secret.
pub async fn create_service_account(
    store: &AuthStore,
    organization_id: &str,
    display_name: &str,
    scopes: &[Scope],
) -> Result<(ServiceAccountRow, String), AuthError> {
    let secret = random_token(SERVICE_ACCOUNT_SECRET_PREFIX);
    let account = ServiceAccountRow {
        client_id: format!("svc_{}", uuid::Uuid::new_v4().simple()),
        organization_id: organization_id.to_owned(),
        display_name: display_name.to_owned(),
        secret_hash: digest(&secret),
        scopes: Scope::join(scopes),
        created_at: now_micros(),
        authz_version: 0,
        revoked_at: None,
        secret_rotated_at: None,
    };
    store.create_service_account(&account).await?;
    Ok((account, secret))
}
