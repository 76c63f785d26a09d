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
//!
//! In front of the shared cache each instance keeps a small local memory:
//! computed figures by their versioned key (until the cache TTL), and the
//! version counters themselves for at most [`VERSION_REFRESH`]. A notice
//! this instance hears drops its local counters at once; a notice it missed
//! is seen within [`VERSION_REFRESH`]. A cached slice thus costs no round
//! trip to Redis at all. The peers rankings are computed against (sorted
//! values and figures) are kept in that local memory only, under versioned
//! keys too.
//!
//! Every slice is computed for the organisation asking: its own companies
//! are never among its peers, so values, figures and described peers are
//! kept per excluded organisation, and k counts the distinct organisations
//! of the retained values.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrix_core::authn::Principal;
use metrix_core::cache::{Cache, PubSub, Quota, RateDecision, RateLimiter};
use metrix_core::error::error_chain;
use metrix_core::notices::{KPI_CHANGES_CHANNEL, KpiChanges};
use metrix_core::period::Period;
use metrix_core::server::Shutdown;
use metrix_core::time::now_micros;

use crate::error::BenchmarkError;
use crate::figures::{Bootstrap, Origin, SliceFigures};
use crate::peers::{PeerQuery, PeerSource};
use crate::stats;
use crate::store::{BenchmarkStore, QueryRecord};

/// How long a version counter lives; far longer than any cached entry.
const VERSION_TTL: Duration = Duration::from_secs(30 * 86_400);

/// How long an instance trusts the version counters it read.
pub const VERSION_REFRESH: Duration = Duration::from_secs(1);

/// Entries of the local memory beyond which it starts afresh.
const LOCAL_ENTRIES: usize = 10_000;

/// Described peers the local memory keeps before it starts afresh (each
/// holds a slice's sorted values, so far fewer than figures).
const LOCAL_DESCRIBED_ENTRIES: usize = 1_000;

/// What an instance remembers in front of the shared cache.
#[derive(Default)]
pub struct LocalMemory {
    /// Version counters by key, with when they were read.
    versions: HashMap<String, (Instant, i64)>,
    /// Computed figures by versioned key, with when they were stored.
    figures: HashMap<String, (Instant, Arc<SliceFigures>)>,
    /// Described peers (what rankings are computed against) by versioned
    /// key, with when they were stored.
    described: HashMap<String, (Instant, DescribedPeers)>,
}

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

/// One peer value with the pseudonymous key of its organisation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerPoint {
    /// The organisation's pseudonymous key.
    pub organization_key: String,
    /// The value (noise-infused by the metrics service).
    pub value: f64,
}

/// Peer points by metric.
pub type PeerPoints = BTreeMap<String, Vec<PeerPoint>>;

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
    /// This instance's memory in front of the shared cache.
    pub local: Mutex<LocalMemory>,
    /// Counts each organisation's benchmark queries, across instances.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// How many benchmark queries an organisation may make.
    pub query_quota: Quota,
    /// How many bootstraps of a caller-chosen seed or resample count that
    /// the cache cannot answer an organisation may start.
    pub fresh_bootstrap_quota: Quota,
    /// Permits for CPU-bound work (sorting, bootstrapping): one per core, so
    /// a flood of uncached slices queues briefly, then is refused, instead
    /// of stalling every other request.
    pub cpu: Arc<tokio::sync::Semaphore>,
}

/// How long CPU-bound work waits for a core before it is refused.
const CPU_WAIT: Duration = Duration::from_secs(5);

/// The key of the version counter of every slice.
const GLOBAL_VERSION_KEY: &str = "benchmark:version:all";

/// The key of the version counter of every time series (which span many
/// periods, so any change moves it).
const SERIES_VERSION_KEY: &str = "benchmark:version:series";

fn period_version_key(period: &str) -> String {
    format!("benchmark:version:{period}")
}

impl Engine {
    /// The version tag of `period`'s slices, `None` when the cache cannot
    /// be read (then nothing is cached or served from the cache).
    async fn version_tag(&self, period: &Period) -> Option<String> {
        let global = self.version(GLOBAL_VERSION_KEY).await?;
        let of_period = self.version(&period_version_key(&period.to_string())).await?;
        Some(format!("{global}.{of_period}"))
    }

    /// One version counter: from the local memory when read within
    /// [`VERSION_REFRESH`], else from the shared cache.
    async fn version(&self, key: &str) -> Option<i64> {
        if let Some((read_at, version)) = self.local().versions.get(key)
            && read_at.elapsed() < VERSION_REFRESH
        {
            return Some(*version);
        }
        let version = match self.cache.get(key).await {
            Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())?,
            Ok(None) => 0,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "benchmark cache unreadable");
                return None;
            }
        };
        let mut local = self.local();
        if local.versions.len() >= LOCAL_ENTRIES {
            local.versions.clear();
        }
        local.versions.insert(key.to_owned(), (Instant::now(), version));
        Some(version)
    }

    fn local(&self) -> MutexGuard<'_, LocalMemory> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// the companies of `excluded_organization` (the caller's own).
    pub async fn peer_values(
        &self,
        scope: &Scope,
        excluded_organization: &str,
    ) -> Result<Arc<PeerPoints>, BenchmarkError> {
        let tag = self.version_tag(&scope.period).await;
        let key = tag
            .as_ref()
            .map(|tag| format!("benchmark:values:{tag}:{}:{excluded_organization}", scope.key()));
        if let Some(key) = &key
            && let Some(values) = self.cache_get::<PeerPoints>(key).await
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
                exclude_organization_id: excluded_organization.to_owned(),
            })
            .await?;
        let wanted = scope.period.to_string();
        let mut values = PeerPoints::new();
        for row in rows.into_iter().filter(|row| row.period == wanted) {
            values.entry(row.metric_id).or_default().push(PeerPoint {
                organization_key: row.organization_key,
                value: row.value,
            });
        }
        if let Some(key) = &key {
            self.cache_set(key, &values).await;
        }
        Ok(Arc::new(values))
    }

    /// Every figure of one metric's slice on the platform's data as
    /// `excluded_organization` sees it, computed with `bootstrap`, from the
    /// cache when possible.
    pub async fn platform_slice(
        &self,
        metric_id: &str,
        scope: &Scope,
        bootstrap: Bootstrap,
        excluded_organization: &str,
    ) -> Result<ComputedSlice, BenchmarkError> {
        let tag = self.version_tag(&scope.period).await;
        let key = tag.as_ref().map(|tag| {
            format!(
                "benchmark:figures:{tag}:{metric_id}:{}:{}:{}:{excluded_organization}",
                scope.key(),
                bootstrap.seed,
                bootstrap.resamples
            )
        });
        if let Some(key) = &key {
            let remembered = self
                .local()
                .figures
                .get(key)
                .filter(|(stored_at, _)| stored_at.elapsed() < self.cache_ttl)
                .map(|(_, figures)| figures.clone());
            if let Some(figures) = remembered {
                return Ok(ComputedSlice {
                    figures: figures.as_ref().clone(),
                    cached: true,
                });
            }
            if let Some(figures) = self.cache_get::<SliceFigures>(key).await {
                self.remember_figures(key, &figures);
                return Ok(ComputedSlice { figures, cached: true });
            }
        }
        if bootstrap != self.default_bootstrap {
            self.admit_fresh_bootstrap(excluded_organization).await?;
        }
        let values = self.peer_values(scope, excluded_organization).await?;
        let slice_values = values.get(metric_id).cloned().unwrap_or_default();
        let figures = self.compute(move || compute_figures(&slice_values, bootstrap)).await?;
        if let Some(key) = &key {
            self.cache_set(key, &figures).await;
            self.remember_figures(key, &figures);
        }
        Ok(ComputedSlice { figures, cached: false })
    }

    /// The peers of each of `metric_ids` in `scope` as
    /// `excluded_organization` sees them, described: what a ranking is
    /// computed against.
    pub async fn described_peers(
        &self,
        metric_ids: &[String],
        scope: &Scope,
        excluded_organization: &str,
    ) -> Result<BTreeMap<String, DescribedPeers>, BenchmarkError> {
        let tag = self.version_tag(&scope.period).await;
        let key_of = |metric_id: &str| {
            tag.as_ref().map(|tag| {
                format!(
                    "benchmark:described:{tag}:{metric_id}:{}:{excluded_organization}",
                    scope.key()
                )
            })
        };
        let mut described = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let local = self.local();
            for metric_id in metric_ids {
                let remembered = key_of(metric_id).and_then(|key| {
                    local
                        .described
                        .get(&key)
                        .filter(|(stored_at, _)| stored_at.elapsed() < self.cache_ttl)
                        .map(|(_, peers)| peers.clone())
                });
                match remembered {
                    Some(peers) => {
                        described.insert(metric_id.clone(), peers);
                    }
                    None => missing.push(metric_id.clone()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(described);
        }
        let values = self.peer_values(scope, excluded_organization).await?;
        let bootstrap = self.default_bootstrap;
        let computed: Vec<(String, DescribedPeers)> = self
            .compute(move || {
                missing
                    .into_iter()
                    .map(|metric_id| {
                        let slice_values = values.get(&metric_id).map(Vec::as_slice).unwrap_or_default();
                        (metric_id, describe_peers(slice_values, bootstrap))
                    })
                    .collect()
            })
            .await?;
        let mut local = self.local();
        for (metric_id, peers) in computed {
            if let Some(key) = key_of(&metric_id) {
                if local.described.len() >= LOCAL_DESCRIBED_ENTRIES {
                    local.described.clear();
                }
                local.described.insert(key, (Instant::now(), peers.clone()));
            }
            described.insert(metric_id, peers);
        }
        Ok(described)
    }

    /// The figures of each period of `query` (one metric), as its excluded
    /// organisation sees them, from the cache when possible.
    pub async fn series_figures(
        &self,
        query: &PeerQuery,
        bootstrap: Bootstrap,
    ) -> Result<BTreeMap<String, SliceFigures>, BenchmarkError> {
        let tag = match (
            self.version(GLOBAL_VERSION_KEY).await,
            self.version(SERIES_VERSION_KEY).await,
        ) {
            (Some(global), Some(series)) => Some(format!("{global}.{series}")),
            _ => None,
        };
        let key = tag.map(|tag| {
            format!(
                "benchmark:series:{tag}:{}:{}:{}:{}:{}:{}:{}",
                query.metric_ids.join(","),
                query.revenue_band_id,
                query.sector_id.as_deref().unwrap_or("*"),
                query.start.map(|period| period.to_string()).unwrap_or_default(),
                query.end.map(|period| period.to_string()).unwrap_or_default(),
                bootstrap.seed,
                query.exclude_organization_id
            )
        });
        if let Some(key) = &key
            && let Some(figures) = self.cache_get::<BTreeMap<String, SliceFigures>>(key).await
        {
            return Ok(figures);
        }
        let rows = self.peers.peer_values(query).await?;
        let mut values: BTreeMap<String, Vec<PeerPoint>> = BTreeMap::new();
        for row in rows.into_iter().filter(|row| query.metric_ids.contains(&row.metric_id)) {
            values.entry(row.period).or_default().push(PeerPoint {
                organization_key: row.organization_key,
                value: row.value,
            });
        }
        let figures = self
            .compute(move || {
                values
                    .into_iter()
                    .map(|(period, points)| (period, compute_figures(&points, bootstrap)))
                    .collect::<BTreeMap<_, _>>()
            })
            .await?;
        if let Some(key) = &key {
            self.cache_set(key, &figures).await;
        }
        Ok(figures)
    }

    /// Admits one benchmark query of `caller` asking for `slice`: counted
    /// against its organisation's quota (RESOURCE_EXHAUSTED beyond it) and
    /// written to the audit trail.
    pub async fn admit(&self, caller: &Principal, rpc: &'static str, slice: String) -> Result<(), BenchmarkError> {
        let key = format!("benchmark:queries:{}", caller.organization_id);
        if let Some(retry_after) = self.over_quota(&key, self.query_quota).await {
            tracing::warn!(organization_id = %caller.organization_id, rpc, slice, "benchmark queries throttled");
            return Err(BenchmarkError::Throttled(retry_after));
        }
        tracing::info!(organization_id = %caller.organization_id, subject = %caller.subject, rpc, slice, "benchmark query");
        let record = QueryRecord {
            query_id: uuid::Uuid::now_v7().to_string(),
            organization_id: caller.organization_id.clone(),
            subject: caller.subject.clone(),
            rpc,
            slice,
            asked_at: now_micros(),
        };
        // Written beside the answer, never in its way.
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.record_query(&record).await {
                tracing::warn!(error = %error_chain(&error), "benchmark query not audited");
            }
        });
        Ok(())
    }

    /// Counts one bootstrap of a caller-chosen seed or resample count that
    /// the cache could not answer against `organization_id`'s own quota: a
    /// new seed each call would otherwise make every call compute. Repeating
    /// a seed is answered from the cache and costs nothing here.
    async fn admit_fresh_bootstrap(&self, organization_id: &str) -> Result<(), BenchmarkError> {
        let key = format!("benchmark:fresh-bootstraps:{organization_id}");
        match self.over_quota(&key, self.fresh_bootstrap_quota).await {
            None => Ok(()),
            Some(retry_after) => {
                tracing::warn!(organization_id, "fresh bootstrap seeds throttled");
                Err(BenchmarkError::FreshBootstraps(retry_after))
            }
        }
    }

    /// Counts one use of `key` against `quota`: how long to wait when it is
    /// spent. A quota bounds cost; an unreachable counter must not take
    /// benchmarks down with it, so it admits.
    async fn over_quota(&self, key: &str, quota: Quota) -> Option<std::time::Duration> {
        match self.rate_limiter.check(key, quota).await {
            Ok(RateDecision::Allowed) => None,
            Ok(RateDecision::Limited { retry_after }) => Some(retry_after),
            Err(error) => {
                tracing::warn!(key, error = %error_chain(&error), "benchmark quota unreadable");
                None
            }
        }
    }

    /// Runs CPU-bound `work` on the blocking pool once a core is free;
    /// refused with [`BenchmarkError::Busy`] after [`CPU_WAIT`].
    pub async fn compute<T, F>(&self, work: F) -> Result<T, BenchmarkError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = tokio::time::timeout(CPU_WAIT, self.cpu.clone().acquire_owned())
            .await
            .map_err(|_| BenchmarkError::Busy)?
            .map_err(|_| BenchmarkError::Busy)?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await?;
        Ok(result)
    }

    fn remember_figures(&self, key: &str, figures: &SliceFigures) {
        let mut local = self.local();
        if local.figures.len() >= LOCAL_ENTRIES {
            local.figures.clear();
        }
        local
            .figures
            .insert(key.to_owned(), (Instant::now(), Arc::new(figures.clone())));
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
        keys.push(SERIES_VERSION_KEY.to_owned());
        for key in keys {
            if let Err(error) = self.cache.increment(&key, VERSION_TTL).await {
                tracing::warn!(error = %error_chain(&error), key, "benchmark cache not invalidated");
            }
            self.local().versions.remove(&key);
        }
    }
}

/// The description and figures of a slice's points; CPU-bound.
fn describe_peers(points: &[PeerPoint], bootstrap: Bootstrap) -> DescribedPeers {
    let computed_at = now_micros();
    let values: Vec<f64> = points.iter().map(|point| point.value).collect();
    match stats::describe_sorted(&values) {
        Some(description) => {
            // k counts the organisations whose values the figures are made of.
            let organizations: std::collections::BTreeSet<&str> = points
                .iter()
                .filter(|point| !description.statistics().is_outlier(point.value))
                .map(|point| point.organization_key.as_str())
                .collect();
            let mut figures = SliceFigures::compute(&description, bootstrap, computed_at);
            figures.organization_count = u32::try_from(organizations.len()).unwrap_or(u32::MAX);
            DescribedPeers {
                figures,
                description: Some(Arc::new(description)),
            }
        }
        None => DescribedPeers {
            description: None,
            figures: SliceFigures::empty(Origin::Computed, computed_at),
        },
    }
}

/// Every figure of a slice's points (an empty slice names the bootstrap
/// it would have used); CPU-bound.
pub fn compute_figures(points: &[PeerPoint], bootstrap: Bootstrap) -> SliceFigures {
    let peers = describe_peers(points, bootstrap);
    match peers.description {
        Some(_) => peers.figures,
        None => SliceFigures {
            bootstrap: Some(bootstrap),
            ..peers.figures
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
