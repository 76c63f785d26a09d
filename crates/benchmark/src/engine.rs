//! The benchmark engine: peer values in, figures out, with a versioned cache
//! in between.
//!
//! A slice's peer values come from the metrics service; its figures are
//! computed on the blocking pool (sorting and bootstrapping are CPU work).
//! Both are cached under keys that carry two version counters, one for the
//! whole platform and one for the slice's period. When the metrics service
//! announces changed KPIs ([`metrix_core::notices::KpiChanges`]), the
//! counters move, so every stale key is simply never read again and expires
//! with its TTL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrix_core::cache::{Cache, PubSub};
use metrix_core::error::error_chain;
use metrix_core::notices::{KPI_CHANGES_CHANNEL, KpiChanges};
use metrix_core::period::Period;
use metrix_core::server::Shutdown;
use metrix_core::time::now_micros;

use crate::error::BenchmarkError;
use crate::figures::{Bootstrap, Origin, SliceFigures};
use crate::peers::{PeerQuery, PeerSource};
use crate::stats;
use crate::store::BenchmarkStore;

/// How long a version counter lives; far longer than any cached entry.
const VERSION_TTL: Duration = Duration::from_secs(30 * 86_400);

/// The peers of a slice, apart from its metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The revenue band.
    pub revenue_band_id: String,
    /// The sector; `None` for every sector of the band.
    pub sector_id: Option<String>,
    /// The period.
    pub period: Period,
}

impl Scope {
    fn key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.revenue_band_id,
            self.sector_id.as_deref().unwrap_or("*"),
            self.period
        )
    }
}

/// The figures of one slice and whether they came from the cache.
#[derive(Debug, Clone)]
pub struct ComputedSlice {
    /// Every figure, before anonymity is applied.
    pub figures: SliceFigures,
    /// Whether they were served from the cache.
    pub cached: bool,
}

/// The peers of one metric, described, for ranking against them.
#[derive(Debug, Clone)]
pub struct DescribedPeers {
    /// The description, `None` when there are no values.
    pub description: Option<Arc<stats::Description>>,
    /// The figures, before anonymity is applied.
    pub figures: SliceFigures,
}

/// The engine every handler uses.
pub struct Engine {
    /// Peer data.
    pub peers: Arc<dyn PeerSource>,
    /// The cache of values and figures.
    pub cache: Arc<dyn Cache>,
    /// Imported sources and reports.
    pub store: BenchmarkStore,
    /// The anonymity threshold k.
    pub min_peer_count: u32,
    /// The bootstrap of requests that name none.
    pub default_bootstrap: Bootstrap,
    /// How long cached entries live.
    pub cache_ttl: Duration,
}

/// The key of the version counter of every slice.
const GLOBAL_VERSION_KEY: &str = "benchmark:version:all";

fn period_version_key(period: &str) -> String {
    format!("benchmark:version:{period}")
}

impl Engine {
    /// The version tag of `period`'s slices, `None` when the cache cannot
    /// be read (then nothing is cached or served from the cache).
    async fn version_tag(&self, period: &Period) -> Option<String> {
        let read = |key: String| async move {
            match self.cache.get(&key).await {
                Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or(()),
                Ok(None) => Ok(0),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "benchmark cache unreadable");
                    Err(())
                }
            }
        };
        let global = read(GLOBAL_VERSION_KEY.to_owned()).await.ok()?;
        let of_period = read(period_version_key(&period.to_string())).await.ok()?;
        Some(format!("{global}.{of_period}"))
    }

    async fn cache_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "benchmark cache unreadable");
                None
            }
        }
    }

    async fn cache_set<T: serde::Serialize>(&self, key: &str, value: &T) {
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        if let Err(error) = self.cache.set(key, &bytes, self.cache_ttl).await {
            tracing::warn!(error = %error_chain(&error), "benchmark cache not written");
        }
    }

    /// The current value of every company in `scope`, by metric, leaving out
    /// `exclude_company_id`.
    pub async fn peer_values(
        &self,
        scope: &Scope,
        exclude_company_id: Option<&str>,
    ) -> Result<Arc<BTreeMap<String, Vec<f64>>>, BenchmarkError> {
        let tag = self.version_tag(&scope.period).await;
        let key = tag.as_ref().map(|tag| {
            format!(
                "benchmark:values:{tag}:{}:{}",
                scope.key(),
                exclude_company_id.unwrap_or("-")
            )
        });
        if let Some(key) = &key
            && let Some(values) = self.cache_get::<BTreeMap<String, Vec<f64>>>(key).await
        {
            return Ok(Arc::new(values));
        }
        let rows = self
            .peers
            .peer_values(&PeerQuery {
                metric_ids: Vec::new(),
                revenue_band_id: scope.revenue_band_id.clone(),
                sector_id: scope.sector_id.clone(),
                start: Some(scope.period),
                end: Some(scope.period),
                exclude_company_ids: exclude_company_id.map(str::to_owned).into_iter().collect(),
            })
            .await?;
        let wanted = scope.period.to_string();
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for row in rows.into_iter().filter(|row| row.period == wanted) {
            values.entry(row.metric_id).or_default().push(row.value);
        }
        if let Some(key) = &key {
            self.cache_set(key, &values).await;
        }
        Ok(Arc::new(values))
    }

    /// Every figure of one metric's slice on the platform's data, computed
    /// with `bootstrap`, from the cache when possible.
    pub async fn platform_slice(
        &self,
        metric_id: &str,
        scope: &Scope,
        bootstrap: Bootstrap,
    ) -> Result<ComputedSlice, BenchmarkError> {
        let tag = self.version_tag(&scope.period).await;
        let key = tag.as_ref().map(|tag| {
            format!(
                "benchmark:figures:{tag}:{metric_id}:{}:{}:{}",
                scope.key(),
                bootstrap.seed,
                bootstrap.resamples
            )
        });
        if let Some(key) = &key
            && let Some(figures) = self.cache_get::<SliceFigures>(key).await
        {
            return Ok(ComputedSlice { figures, cached: true });
        }
        let values = self.peer_values(scope, None).await?;
        let slice_values = values.get(metric_id).cloned().unwrap_or_default();
        let figures = tokio::task::spawn_blocking(move || compute_figures(&slice_values, bootstrap)).await?;
        if let Some(key) = &key {
            self.cache_set(key, &figures).await;
        }
        Ok(ComputedSlice { figures, cached: false })
    }

    /// The peers of each of `metric_ids` in `scope`, described, leaving out
    /// `exclude_company_id`: what a ranking is computed against.
    pub async fn described_peers(
        &self,
        metric_ids: &[String],
        scope: &Scope,
        exclude_company_id: Option<&str>,
    ) -> Result<BTreeMap<String, DescribedPeers>, BenchmarkError> {
        let values = self.peer_values(scope, exclude_company_id).await?;
        let metric_ids = metric_ids.to_vec();
        let bootstrap = self.default_bootstrap;
        let described = tokio::task::spawn_blocking(move || {
            metric_ids
                .into_iter()
                .map(|metric_id| {
                    let slice_values = values.get(&metric_id).map(Vec::as_slice).unwrap_or_default();
                    let computed_at = now_micros();
                    let peers = match stats::describe_sorted(slice_values) {
                        Some(description) => DescribedPeers {
                            figures: SliceFigures::compute(&description, bootstrap, computed_at),
                            description: Some(Arc::new(description)),
                        },
                        None => DescribedPeers {
                            description: None,
                            figures: SliceFigures::empty(Origin::Computed, computed_at),
                        },
                    };
                    (metric_id, peers)
                })
                .collect()
        })
        .await?;
        Ok(described)
    }

    /// Marks the slices touched by `changes` stale.
    pub async fn invalidate(&self, changes: &KpiChanges) {
        let mut keys: Vec<String> = changes
            .periods
            .iter()
            .map(|period| period_version_key(period))
            .collect();
        if changes.revenue_bands_changed {
            keys.push(GLOBAL_VERSION_KEY.to_owned());
        }
        for key in keys {
            if let Err(error) = self.cache.increment(&key, VERSION_TTL).await {
                tracing::warn!(error = %error_chain(&error), key, "benchmark cache not invalidated");
            }
        }
    }
}

/// Every figure of a slice's values; CPU-bound.
pub fn compute_figures(values: &[f64], bootstrap: Bootstrap) -> SliceFigures {
    let computed_at = now_micros();
    match stats::describe_sorted(values) {
        Some(description) => SliceFigures::compute(&description, bootstrap, computed_at),
        None => SliceFigures {
            bootstrap: Some(bootstrap),
            ..SliceFigures::empty(Origin::Computed, computed_at)
        },
    }
}

/// Follows the metrics service's KPI change notices until `shutdown`,
/// invalidating the slices they touch; resubscribes when the channel drops.
pub fn spawn_invalidation(engine: Arc<Engine>, pubsub: Arc<dyn PubSub>, shutdown: Shutdown) {
    tokio::spawn(async move {
        use futures::StreamExt as _;
        let stopped = shutdown.triggered();
        tokio::pin!(stopped);
        loop {
            let mut subscription = match pubsub.subscribe(KPI_CHANGES_CHANNEL).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "cannot follow kpi changes, retrying");
                    tokio::select! {
                        () = &mut stopped => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
            };
            loop {
                tokio::select! {
                    () = &mut stopped => return,
                    message = subscription.next() => match message {
                        Some(payload) => {
                            if let Some(changes) = KpiChanges::decode(&payload) {
                                engine.invalidate(&changes).await;
                            }
                        }
                        None => break,
                    },
                }
            }
        }
    });
}
