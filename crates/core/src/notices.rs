//! Notices that services publish to one another over pub/sub, with their
//! channel names and payloads in one place so publisher and subscriber can
//! never disagree.

use serde::{Deserialize, Serialize};

/// The channel on which the metrics service announces changed KPI values.
pub const KPI_CHANGES_CHANNEL: &str = "metrics:kpis:changed";

/// KPI values changed: the benchmark slices of these periods are stale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiChanges {
    /// The periods whose values changed, canonical text (`2026-Q3`).
    pub periods: Vec<String>,
    /// Whether a company's revenue band may have changed (an ARR value
    /// changed), which moves the company between slices of every period.
    pub revenue_bands_changed: bool,
}

impl KpiChanges {
    /// The payload as published.
    #[allow(clippy::expect_used, reason = "a list of strings and a flag always serialise")]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("kpi changes are plain serialisable data")
    }

    /// Reads a published payload; `None` for anything else.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        let changes = KpiChanges {
            periods: vec!["2026-Q3".into()],
            revenue_bands_changed: true,
        };
        assert_eq!(KpiChanges::decode(&changes.encode()), Some(changes));
        assert_eq!(KpiChanges::decode(b"not json"), None);
    }
}
