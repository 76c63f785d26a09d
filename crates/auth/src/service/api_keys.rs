//! API keys: creation, listing, revocation and verification.

use std::collections::BTreeMap;
use std::time::Duration;

use metrix_core::authn::Scope;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token::{self, PageLimits};
use metrix_core::time::{duration_micros, micros_of, now_micros, timestamp};
use metrix_proto::auth::v1::*;
use tonic::Request;

use crate::audit::AuditEntry;
use crate::domain::DisplayName;
use crate::error::AuthError;
use crate::secrets::{digest, random_token};
use crate::store::{ApiKeyRow, Cursor};

use super::AuthApi;
use super::service_accounts::organization_scopes;

/// `last_used_at` of an API key is written at most this often.
const API_KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn api_key_to_proto(row: ApiKeyRow) -> ApiKey {
    ApiKey {
        api_key_id: row.api_key_id,
        display_name: row.display_name,
        prefix: row.prefix,
        scopes: row
            .scopes
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
        organization_id: row.organization_id,
        create_time: Some(timestamp(row.created_at)),
        expire_time: row.expires_at.map(timestamp),
        last_use_time: row.last_used_at.map(timestamp),
        revoke_time: row.revoked_at.map(timestamp),
    }
}

impl AuthApi {
    pub(super) async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<CreateApiKeyResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let display_name = violations.check(DisplayName::parse("display_name", &request.display_name));
        let scopes = violations.check(organization_scopes("scopes", &request.scopes));
        let expires_at = match request.expire_time.as_ref().map(micros_of) {
            None => None,
            Some(Some(expires)) if expires > now_micros() => Some(expires),
            Some(_) => {
                violations.push(FieldViolation::new("expire_time", "must be a valid time in the future"));
                None
            }
        };
        let (Some(display_name), Some(scopes)) = (display_name, scopes) else {
            return Err(AuthError::from(violations.into_vec()));
        };
        violations.finish()?;
        let key = random_token("mx_");
        let prefix: String = key.chars().take(11).collect();
        let row = self
            .state
            .store
            .create_api_key(
                &caller.organization_id,
                display_name.as_str(),
                &prefix,
                &digest(&key),
                &Scope::join(&scopes),
                &caller.subject,
                expires_at,
            )
            .await?;
        let details = BTreeMap::from([("prefix", prefix), ("scopes", Scope::join(&scopes))]);
        self.audit(AuditEntry {
            kind: AuditEventKind::ApiKeyCreated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &row.api_key_id,
            client: &client,
            details,
        })
        .await?;
        Ok(CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(row)),
            key,
        })
    }

    pub(super) async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<ListApiKeysResponse, AuthError> {
        let caller = self.current_admin(&request).await?;
        let request = request.get_ref();
        let (size, cursor) = page_token::page_request::<Cursor>(
            request.page_size,
            &request.page_token,
            &caller.organization_id,
            PageLimits::STANDARD,
        )
        .map_err(AuthError::from)?;
        let rows = self
            .state
            .store
            .list_api_keys(&caller.organization_id, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &caller.organization_id, |row| Cursor {
            created_at: row.created_at,
            id: row.api_key_id.clone(),
        });
        Ok(ListApiKeysResponse {
            api_keys: rows.into_iter().map(api_key_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn revoke_api_key(
        &self,
        request: Request<RevokeApiKeyRequest>,
    ) -> Result<RevokeApiKeyResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let api_key_id = request.into_inner().api_key_id;
        if api_key_id.trim().is_empty() {
            return Err(AuthError::from(FieldViolation::new("api_key_id", "is required")));
        }
        let (row, revocation) = self
            .state
            .store
            .revoke_api_key(
                &caller.organization_id,
                api_key_id.trim(),
                self.state.revocations.expires_at(),
            )
            .await?
            .ok_or(AuthError::NotFound("api key"))?;
        let Some(revocation) = revocation else {
            // Revoking a revoked key changes nothing and records nothing.
            return Ok(RevokeApiKeyResponse {
                api_key: Some(api_key_to_proto(row)),
            });
        };
        self.announce(&[revocation]).await;
        self.audit(AuditEntry {
            kind: AuditEventKind::ApiKeyRevoked,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &row.api_key_id,
            client: &client,
            details: BTreeMap::new(),
        })
        .await?;
        Ok(RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(row)),
        })
    }

    pub(super) async fn verify_api_key(
        &self,
        request: Request<VerifyApiKeyRequest>,
    ) -> Result<VerifyApiKeyResponse, AuthError> {
        self.current_service(&request, Scope::ApiKeysVerify).await?;
        let key = request.into_inner().key;
        let key = key.trim();
        if key.is_empty() {
            return Err(AuthError::from(FieldViolation::new("key", "is required")));
        }
        let row = self.verified_api_key(key).await?;
        Ok(VerifyApiKeyResponse {
            api_key: Some(api_key_to_proto(row)),
        })
    }

    /// The record of a valid API key (not revoked, not expired), with its
    /// last use noted.
    pub async fn verified_api_key(&self, key: &str) -> Result<ApiKeyRow, AuthError> {
        const INVALID: AuthError = AuthError::Unauthenticated("invalid api key");
        let row = self.state.store.api_key_by_hash(&digest(key)).await?.ok_or(INVALID)?;
        let now = now_micros();
        if row.revoked_at.is_some() || row.expires_at.is_some_and(|expires| expires <= now) {
            return Err(INVALID);
        }
        if row
            .last_used_at
            .is_none_or(|last| now - last >= duration_micros(API_KEY_TOUCH_INTERVAL))
        {
            self.state.store.touch_api_key(&row.api_key_id, now).await?;
        }
        Ok(row)
    }
}
