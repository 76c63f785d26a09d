//! Signing keys, the audit trail and the revocation feed.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use metrix_core::authn::Scope;
use metrix_core::error::FieldViolation;
use metrix_core::page_token::{self, PageLimits};
use metrix_core::time::{duration_micros, now_micros};
use metrix_proto::auth::v1::*;
use tonic::Request;

use crate::app::rotate_keys;
use crate::audit::{self, AuditEntry};
use crate::error::AuthError;
use crate::store::Cursor;

use super::{AuthApi, RevocationStream};

/// Signing keys rotate at most this often through the API.
const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(60);

impl AuthApi {
    pub(super) async fn rotate_signing_keys(
        &self,
        request: Request<RotateSigningKeysRequest>,
    ) -> Result<RotateSigningKeysResponse, AuthError> {
        let client = self.client(&request);
        let caller = self.current_service(&request, Scope::KeysRotate).await?;
        let recently = self
            .state
            .keys
            .last_rotation_at()
            .await?
            .is_some_and(|rotated| now_micros() - rotated < duration_micros(MIN_ROTATION_INTERVAL));
        if recently {
            return Err(AuthError::FailedPrecondition(
                "the signing keys were rotated less than a minute ago",
            ));
        }
        let rotation = rotate_keys(&self.state).await?;
        let details = BTreeMap::from([
            ("current_key_id", rotation.current_key_id.clone()),
            ("retired_key_id", rotation.retired_key_id.clone()),
        ]);
        self.audit(AuditEntry {
            kind: AuditEventKind::SigningKeysRotated,
            organization_id: &caller.organization_id,
            actor_id: &caller.subject,
            subject_id: &rotation.current_key_id,
            client: &client,
            details,
        })
        .await?;
        Ok(RotateSigningKeysResponse {
            current_key_id: rotation.current_key_id,
            next_key_id: rotation.next_key_id,
            retired_key_id: rotation.retired_key_id,
        })
    }

    pub(super) async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<ListAuditEventsResponse, AuthError> {
        let caller = self.current_admin(&request).await?;
        let request = request.get_ref();
        let kind = match AuditEventKind::try_from(request.kind) {
            Ok(AuditEventKind::Unspecified) => None,
            Ok(kind) => Some(audit::kind_name(kind)),
            Err(_) => {
                return Err(AuthError::from(FieldViolation::new(
                    "kind",
                    "is not a known audit event kind",
                )));
            }
        };
        let filters = format!("{}|{}", caller.organization_id, kind.unwrap_or(""));
        let (size, cursor) =
            page_token::page_request::<Cursor>(request.page_size, &request.page_token, &filters, PageLimits::STANDARD)
                .map_err(AuthError::from)?;
        let rows = self
            .state
            .store
            .list_audit(&caller.organization_id, kind, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &filters, |row| Cursor {
            created_at: row.created_at,
            id: row.audit_event_id.clone(),
        });
        Ok(ListAuditEventsResponse {
            audit_events: rows.into_iter().map(audit::to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn watch_revocations(&self) -> Result<RevocationStream, AuthError> {
        let feed = self.state.revocations.feed().await?;
        Ok(feed.map(|batch| batch.map(|batch| batch.to_proto())).boxed())
    }
}
