//! Service accounts and the tokens they are issued.

use std::collections::BTreeMap;

use metrix_core::authn::{Role, Scope};
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token::{self, PageLimits};
use metrix_core::time::timestamp;
use metrix_proto::auth::v1::*;
use tonic::Request;

use crate::app::{SERVICE_ACCOUNT_SECRET_PREFIX, create_service_account};
use crate::audit::AuditEntry;
use crate::domain::DisplayName;
use crate::error::AuthError;
use crate::secrets::{constant_time_eq, digest, random_token};
use crate::store::{Cursor, ServiceAccountRow};
use crate::tokens::Subject;

use super::AuthApi;

pub(super) fn organization_scopes(field: &str, requested: &[String]) -> Result<Vec<Scope>, FieldViolation> {
    if requested.is_empty() {
        return Err(FieldViolation::new(
            field,
            "must name at least one of events:write, metrics:write, read",
        ));
    }
    let scopes = Scope::parse_list(&requested.join(" ")).map_err(|problem| FieldViolation::new(field, problem))?;
    if scopes.iter().any(|scope| !Scope::ORGANIZATION.contains(scope)) {
        return Err(FieldViolation::new(
            field,
            "may only contain events:write, metrics:write and read",
        ));
    }
    Ok(scopes)
}

fn service_account_to_proto(row: ServiceAccountRow) -> ServiceAccount {
    ServiceAccount {
        client_id: row.client_id,
        display_name: row.display_name,
        scopes: row
            .scopes
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
        organization_id: row.organization_id,
        create_time: Some(timestamp(row.created_at)),
        revoke_time: row.revoked_at.map(timestamp),
        secret_rotate_time: row.secret_rotated_at.map(timestamp),
    }
}

impl AuthApi {
    pub(super) async fn create_service_account(
        &self,
        request: Request<CreateServiceAccountRequest>,
    ) -> Result<CreateServiceAccountResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let display_name = violations.check(DisplayName::parse("display_name", &request.display_name));
        let scopes = violations.check(organization_scopes("scopes", &request.scopes));
        let (Some(display_name), Some(scopes)) = (display_name, scopes) else {
            return Err(AuthError::from(violations.into_vec()));
        };
        let (account, secret) = create_service_account(
            &self.state.store,
            &caller.organization_id,
            display_name.as_str(),
            &scopes,
        )
        .await?;
        let details = BTreeMap::from([("scopes", account.scopes.clone())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::ServiceAccountCreated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &account.client_id,
            client: &client,
            details,
        })
        .await?;
        Ok(CreateServiceAccountResponse {
            service_account: Some(service_account_to_proto(account)),
            client_secret: secret,
        })
    }

    pub(super) async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<IssueServiceTokenResponse, AuthError> {
        let client = self.client(&request);
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.client_id.trim().is_empty() {
            violations.push(FieldViolation::new("client_id", "is required"));
        }
        if request.client_secret.trim().is_empty() {
            violations.push(FieldViolation::new("client_secret", "is required"));
        }
        violations.finish()?;
        self.state.throttle.check_ip("service-token", client.ip).await?;
        const INVALID: AuthError = AuthError::Unauthenticated("invalid client credentials");
        let account = self
            .state
            .store
            .service_account(request.client_id.trim())
            .await?
            .ok_or(INVALID)?;
        if !constant_time_eq(&digest(request.client_secret.trim()), &account.secret_hash)
            || account.revoked_at.is_some()
        {
            return Err(INVALID);
        }
        let scopes = Scope::parse_list(&account.scopes).map_err(|_| AuthError::Crypto("stored scopes are unknown"))?;
        let (access_token, expires) = self
            .state
            .tokens
            .access_token(Subject {
                subject: &account.client_id,
                organization_id: &account.organization_id,
                role: Role::Service,
                session_id: None,
                scopes: &scopes,
                authorization_version: account.authz_version,
            })
            .await?;
        Ok(IssueServiceTokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expire_time: Some(timestamp(expires)),
        })
    }

    pub(super) async fn list_service_accounts(
        &self,
        request: Request<ListServiceAccountsRequest>,
    ) -> Result<ListServiceAccountsResponse, AuthError> {
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
            .list_service_accounts(&caller.organization_id, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &caller.organization_id, |row| Cursor {
            created_at: row.created_at,
            id: row.client_id.clone(),
        });
        Ok(ListServiceAccountsResponse {
            service_accounts: rows.into_iter().map(service_account_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn rotate_service_account_secret(
        &self,
        request: Request<RotateServiceAccountSecretRequest>,
    ) -> Result<RotateServiceAccountSecretResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let client_id = request.into_inner().client_id;
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(AuthError::from(FieldViolation::new("client_id", "is required")));
        }
        let secret = random_token(SERVICE_ACCOUNT_SECRET_PREFIX);
        let (account, revocation) = self
            .state
            .store
            .rotate_service_account_secret(
                &caller.organization_id,
                client_id,
                &digest(&secret),
                self.state.revocations.expires_at(),
            )
            .await?;
        self.announce(&[revocation]).await;
        self.audit(AuditEntry {
            kind: AuditEventKind::ServiceAccountSecretRotated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: client_id,
            client: &client,
            details: BTreeMap::new(),
        })
        .await?;
        Ok(RotateServiceAccountSecretResponse {
            service_account: Some(service_account_to_proto(account)),
            client_secret: secret,
        })
    }

    pub(super) async fn revoke_service_account(
        &self,
        request: Request<RevokeServiceAccountRequest>,
    ) -> Result<RevokeServiceAccountResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let client_id = request.into_inner().client_id;
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(AuthError::from(FieldViolation::new("client_id", "is required")));
        }
        let (account, revocation) = self
            .state
            .store
            .revoke_service_account(&caller.organization_id, client_id, self.state.revocations.expires_at())
            .await?
            .ok_or(AuthError::NotFound("service account"))?;
        if let Some(revocation) = revocation {
            self.announce(&[revocation]).await;
            self.audit(AuditEntry {
                kind: AuditEventKind::ServiceAccountRevoked,
                organization_id: &caller.organization_id,
                actor_id: &caller.subject,
                subject_id: client_id,
                client: &client,
                details: BTreeMap::new(),
            })
            .await?;
        }
        Ok(RevokeServiceAccountResponse {
            service_account: Some(service_account_to_proto(account)),
        })
    }
}
