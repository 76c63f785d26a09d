//! The audit trail: security events, written beside the action they record.

use std::collections::BTreeMap;

use metrix_core::client::ClientInfo;
use metrix_core::time::now_micros;
use metrix_proto::auth::v1::AuditEventKind;

use crate::error::AuthError;
use crate::store::{AuditRow, AuthStore};

/// One event to record.
pub struct AuditEntry<'a> {
    /// What happened.
    pub kind: AuditEventKind,
    /// The organisation it happened in; empty when the account is unknown.
    pub organization_id: &'a str,
    /// Who acted: a user id or a client id; empty for anonymous callers.
    pub actor_id: &'a str,
    /// What it was done to: a user, key, service account or session id.
    pub subject_id: &'a str,
    /// The caller's address and user agent, as seen at the edge.
    pub client: &'a ClientInfo,
    /// Further facts, such as `old_role` and `new_role`; stored as a JSON object.
    pub details: BTreeMap<&'static str, String>,
}

/// The stored name of a kind.
pub fn kind_name(kind: AuditEventKind) -> &'static str {
    kind.as_str_name().trim_start_matches("AUDIT_EVENT_KIND_")
}

/// Records `entry`. A failure is logged and returned: an action whose audit
/// event cannot be written reports an internal error.
pub async fn record(store: &AuthStore, entry: AuditEntry<'_>) -> Result<(), AuthError> {
    #[allow(clippy::expect_used, reason = "a map of strings always serialises")]
    let details = serde_json::to_string(&entry.details).expect("a map of strings always serialises");
    let row = AuditRow {
        audit_event_id: uuid::Uuid::now_v7().to_string(),
        organization_id: entry.organization_id.to_owned(),
        kind: kind_name(entry.kind).to_owned(),
        actor_id: entry.actor_id.to_owned(),
        subject_id: entry.subject_id.to_owned(),
        ip_address: entry.client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: entry.client.user_agent.clone(),
        details,
        created_at: now_micros(),
    };
    tracing::info!(
        kind = row.kind,
        organization_id = row.organization_id,
        actor_id = row.actor_id,
        subject_id = row.subject_id,
        "audit event"
    );
    store.insert_audit(&row).await
}

/// The contract's form of a stored event.
pub fn to_proto(row: AuditRow) -> metrix_proto::auth::v1::AuditEvent {
    let kind =
        AuditEventKind::from_str_name(&format!("AUDIT_EVENT_KIND_{}", row.kind)).unwrap_or(AuditEventKind::Unspecified);
    let details: std::collections::HashMap<String, String> = serde_json::from_str(&row.details).unwrap_or_default();
    metrix_proto::auth::v1::AuditEvent {
        audit_event_id: row.audit_event_id,
        kind: kind.into(),
        organization_id: row.organization_id,
        actor_id: row.actor_id,
        subject_id: row.subject_id,
        ip_address: row.ip_address,
        user_agent: row.user_agent,
        details,
        create_time: Some(metrix_core::time::timestamp(row.created_at)),
    }
}
