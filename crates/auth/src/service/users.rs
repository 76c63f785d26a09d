//! Users of an organisation: the current user, listing, roles, invitations
//! and deactivation.

use std::collections::BTreeMap;
use std::time::Duration;

use metrix_core::authn::Role;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token::{self, PageLimits};
use metrix_core::time::{duration_micros, now_micros, timestamp};
use metrix_proto::auth::v1::*;
use tonic::Request;

use crate::audit::AuditEntry;
use crate::domain::Email;
use crate::error::AuthError;
use crate::secrets::{digest, random_token};
use crate::store::{Cursor, UserRow};

use super::AuthApi;
use super::api_keys::api_key_to_proto;
use super::google::GOOGLE;

/// How long an invitation is valid.
const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn person_role(field: &str, value: i32) -> Result<Role, FieldViolation> {
    match metrix_proto::auth::v1::Role::try_from(value)
        .ok()
        .and_then(Role::from_proto)
    {
        Some(role @ (Role::CompanyUser | Role::Analyst | Role::Admin)) => Ok(role),
        _ => Err(FieldViolation::new(
            field,
            "must be ROLE_COMPANY_USER, ROLE_ANALYST or ROLE_ADMIN",
        )),
    }
}

pub(super) fn user_to_proto(row: UserRow) -> User {
    let mut sign_in_methods = Vec::new();
    if row.password_hash.is_some() {
        sign_in_methods.push("password".to_owned());
    }
    if row.has_google {
        sign_in_methods.push(GOOGLE.to_owned());
    }
    let role = row
        .role
        .parse::<Role>()
        .map(Role::to_proto)
        .unwrap_or(metrix_proto::auth::v1::Role::Unspecified);
    User {
        user_id: row.user_id,
        email: row.email,
        display_name: row.display_name,
        organization_id: row.organization_id,
        role: role.into(),
        sign_in_methods,
        create_time: Some(timestamp(row.created_at)),
        last_sign_in_time: row.last_sign_in_at.map(timestamp),
        deactivate_time: row.deactivated_at.map(timestamp),
    }
}

impl AuthApi {
    pub(super) async fn get_current_user(
        &self,
        request: Request<GetCurrentUserRequest>,
    ) -> Result<GetCurrentUserResponse, AuthError> {
        let (_, user) = self
            .current_user(&request, &[Role::CompanyUser, Role::Analyst, Role::Admin])
            .await?;
        let organization = self
            .state
            .store
            .organization(&user.organization_id)
            .await?
            .ok_or(AuthError::NotFound("organization"))?;
        Ok(GetCurrentUserResponse {
            user: Some(user_to_proto(user)),
            organization: Some(Organization {
                organization_id: organization.organization_id,
                display_name: organization.display_name,
                create_time: Some(timestamp(organization.created_at)),
            }),
        })
    }

    pub(super) async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<ListUsersResponse, AuthError> {
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
            .list_users(&caller.organization_id, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &caller.organization_id, |row| Cursor {
            created_at: row.created_at,
            id: row.user_id.clone(),
        });
        Ok(ListUsersResponse {
            users: rows.into_iter().map(user_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn update_user_role(
        &self,
        request: Request<UpdateUserRoleRequest>,
    ) -> Result<UpdateUserRoleResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.user_id.trim().is_empty() {
            violations.push(FieldViolation::new("user_id", "is required"));
        }
        let role = violations.check(person_role("role", request.role));
        let Some(role) = role.filter(|_| violations.is_empty()) else {
            return Err(AuthError::from(violations.into_vec()));
        };
        let change = self
            .state
            .store
            .update_role(
                &caller.organization_id,
                request.user_id.trim(),
                role.as_str(),
                self.state.revocations.expires_at(),
            )
            .await?;
        if let Some(revocation) = &change.revocation {
            self.announce(std::slice::from_ref(revocation)).await;
        }
        let details = BTreeMap::from([("old_role", change.old_role), ("new_role", role.as_str().to_owned())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::RoleChanged,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: request.user_id.trim(),
            client: &client,
            details,
        })
        .await?;
        let user = self
            .state
            .store
            .user_by_id(request.user_id.trim())
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        Ok(UpdateUserRoleResponse {
            user: Some(user_to_proto(user)),
        })
    }

    pub(super) async fn invite_user(
        &self,
        request: Request<InviteUserRequest>,
    ) -> Result<InviteUserResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let email = violations.check(Email::parse("email", &request.email));
        let role = violations.check(person_role("role", request.role));
        let (Some(email), Some(role)) = (email, role) else {
            return Err(AuthError::from(violations.into_vec()));
        };
        let token = random_token("mxi_");
        let expires_at = now_micros() + duration_micros(INVITATION_TTL);
        let invitation_id = self
            .state
            .store
            .create_invitation(
                &caller.organization_id,
                email.as_str(),
                role.as_str(),
                &digest(&token),
                &caller.subject,
                expires_at,
            )
            .await?;
        let details = BTreeMap::from([("email", email.to_string()), ("role", role.as_str().to_owned())]);
        self.audit(AuditEntry {
            kind: AuditEventKind::UserInvited,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &invitation_id,
            client: &client,
            details,
        })
        .await?;
        Ok(InviteUserResponse {
            invitation: Some(Invitation {
                invitation_id,
                email: email.to_string(),
                role: role.to_proto().into(),
                organization_id: caller.organization_id,
                expire_time: Some(timestamp(expires_at)),
            }),
            invitation_token: token,
        })
    }

    pub(super) async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<DeactivateUserResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_admin(&request).await?;
        let user_id = request.into_inner().user_id;
        let user_id = user_id.trim();
        if user_id.is_empty() {
            return Err(AuthError::from(FieldViolation::new("user_id", "is required")));
        }
        if user_id == caller.subject {
            return Err(AuthError::FailedPrecondition("you cannot deactivate yourself"));
        }
        let deactivation = self
            .state
            .store
            .deactivate_user(&caller.organization_id, user_id, self.state.revocations.expires_at())
            .await?;
        if !deactivation.revocations.is_empty() {
            self.announce(&deactivation.revocations).await;
            let revoked_keys: Vec<&str> = deactivation
                .revoked_api_keys
                .iter()
                .map(|key| key.api_key_id.as_str())
                .collect();
            let details = BTreeMap::from([
                ("revoked_sessions", deactivation.revoked_sessions.len().to_string()),
                ("revoked_api_keys", revoked_keys.join(" ")),
            ]);
            self.audit(AuditEntry {
                kind: AuditEventKind::UserDeactivated,
                organization_id: &caller.organization_id,
                actor_id: &caller.subject,
                subject_id: user_id,
                client: &client,
                details,
            })
            .await?;
            for family_id in &deactivation.revoked_sessions {
                self.state.tokens.close_session(family_id).await?;
            }
        }
        let user = self
            .state
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotFound("user"))?;
        Ok(DeactivateUserResponse {
            user: Some(user_to_proto(user)),
            revoked_session_count: i32::try_from(deactivation.revoked_sessions.len()).unwrap_or(i32::MAX),
            revoked_api_keys: deactivation
                .revoked_api_keys
                .into_iter()
                .map(api_key_to_proto)
                .collect(),
        })
    }
}
