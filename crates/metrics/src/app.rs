//! The metrics service's application state and the operations more than
//! one entry point shares (handlers, ingestion workers, demo data): nothing
//! here knows gRPC.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use ipnet::IpNet;
use metrix_core::cache::PubSub;
use metrix_core::notices::{KPI_CHANGES_CHANNEL, KpiChanges};
use secrecy::{ExposeSecret, SecretString};

use crate::store::{KpiRow, MetricsStore, RecordOutcome};

/// Everything the handlers share.
pub struct MetricsState {
    /// The relational store.
    pub store: MetricsStore,
    /// The key of the peer-key hash.
    pub peer_key_secret: SecretString,
    /// Announces stored events to every instance (live streams).
    pub pubsub: Arc<dyn PubSub>,
    /// The durable queue of the asynchronous ingestion path (Redis Streams,
    /// or the service's database without Redis).
    pub work_streams: Arc<dyn metrix_core::cache::WorkStream>,
    /// How the queue is bounded and worked.
    pub queue: crate::settings::QueueSettings,
    /// Peers whose client metadata is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long raw events are kept.
    pub event_retention: Duration,
}

/// The pub/sub channel on which an organisation's stored events are
/// announced (their ids: [`crate::ingest::stored_notice`]).
pub fn events_channel(organization_id: &str) -> String {
    format!("metrics:events:{organization_id}")
}

/// Tells every instance which periods' KPI values changed, so that the
/// benchmark service drops its computed slices of those periods. A lost
/// notice only delays that until the cached slices expire.
pub async fn announce_kpi_changes(pubsub: &dyn PubSub, recorded: &[(KpiRow, RecordOutcome)]) {
    let changed: Vec<&KpiRow> = recorded
        .iter()
        .filter(|(_, outcome)| *outcome != RecordOutcome::Unchanged)
        .map(|(row, _)| row)
        .collect();
    if changed.is_empty() {
        return;
    }
    let mut periods: Vec<String> = changed.iter().map(|row| row.period.clone()).collect();
    periods.sort();
    periods.dedup();
    let changes = KpiChanges {
        periods,
        revenue_bands_changed: changed.iter().any(|row| row.metric_id == "arr"),
    };
    if let Err(error) = pubsub.publish(KPI_CHANGES_CHANNEL, &changes.encode()).await {
        tracing::warn!(error = %metrix_core::error::error_chain(&error), "kpi changes not announced");
    }
}

/// The pseudonymous key of a company: a keyed hash of its id.
pub fn peer_key(secret: &SecretString, company_id: &str) -> String {
    let mut mac = metrix_core::mac::hmac_sha256(secret.expose_secret().as_bytes());
    mac.update(company_id.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_keys_are_stable_keyed_and_opaque() {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef");
        let other_secret = SecretString::from("fedcba9876543210fedcba9876543210");
        let key = peer_key(&secret, "company-1");
        assert_eq!(key, peer_key(&secret, "company-1"));
        assert_ne!(key, peer_key(&secret, "company-2"));
        assert_ne!(key, peer_key(&other_secret, "company-1"));
        assert_eq!(key.len(), 22);
        assert!(!key.contains("company"));
    }
}
