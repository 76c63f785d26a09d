//! `spawn_app`: the benchmark service on 127.0.0.1:0 with a fresh database,
//! a stand-in issuer for callers' credentials, and an in-memory stand-in
//! for the metrics service's peer data that tests fill.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use metrix_benchmark::peers::{CallerCredentials, CompanyInfo, MetricInfo, PeerError, PeerQuery, PeerRow, PeerSource};
use metrix_benchmark::stats::Direction;
use metrix_benchmark::{BenchmarkServer, BenchmarkSettings};
use metrix_core::authn::Role;
use metrix_core::cache::Backends;
use metrix_core::config::Settings;
use metrix_core::notices::{KPI_CHANGES_CHANNEL, KpiChanges};
use metrix_core::period::Period;
use metrix_core::server::Shutdown;
use metrix_core::testing::TestIssuer;
use metrix_proto::benchmark::v1::benchmark_service_client::BenchmarkServiceClient;
use tonic::transport::Channel;

pub use metrix_core::testing::{assert_code, authorized, violated_fields};

pub use metrix_core::testing::Backend;
use metrix_core::testing::TestDatabase;

/// One company the stand-in knows.
#[derive(Debug, Clone)]
struct FakeCompany {
    info: CompanyInfo,
    /// Values by (metric, period).
    values: BTreeMap<(String, String), f64>,
}

/// The metrics service as the benchmark sees it, in memory: companies with
/// their organisation, sector, band and values, visible to their own
/// organisation only, exactly as the real service answers — except that the
/// peer values are sent as recorded, without the real feed's noise, so the
/// figures can be compared with numpy's on the same values.
#[derive(Default)]
pub struct FakePeers {
    companies: Mutex<Vec<FakeCompany>>,
    /// How many times peer values were read (to see the cache work).
    pub peer_reads: Mutex<usize>,
}

impl FakePeers {
    /// Adds a company and returns its id.
    pub fn add_company(&self, organization_id: &str, sector_id: &str, revenue_band_id: &str) -> String {
        let company_id = uuid::Uuid::now_v7().to_string();
        self.companies.lock().unwrap().push(FakeCompany {
            info: CompanyInfo {
                company_id: company_id.clone(),
                organization_id: organization_id.to_owned(),
                sector_id: sector_id.to_owned(),
                revenue_band_id: revenue_band_id.to_owned(),
            },
            values: BTreeMap::new(),
        });
        company_id
    }

    /// Records `value` for a company.
    pub fn set_value(&self, company_id: &str, metric_id: &str, period: &str, value: f64) {
        let mut companies = self.companies.lock().unwrap();
        let company = companies
            .iter_mut()
            .find(|company| company.info.company_id == company_id)
            .expect("a known company");
        company.values.insert((metric_id.to_owned(), period.to_owned()), value);
    }

    /// Adds one peer company per value, each in its own organisation, with
    /// `metric_id` set to the value in `period`.
    pub fn add_peers(&self, sector_id: &str, revenue_band_id: &str, metric_id: &str, period: &str, values: &[f64]) {
        for value in values {
            let company_id = self.add_company(&new_organization(), sector_id, revenue_band_id);
            self.set_value(&company_id, metric_id, period, *value);
        }
    }

    /// How many times peer values were read.
    pub fn peer_read_count(&self) -> usize {
        *self.peer_reads.lock().unwrap()
    }
}

/// The metrics the stand-in defines.
pub fn catalogue() -> Vec<MetricInfo> {
    let metric = |id: &str, name: &str, unit: &str, direction: Direction| MetricInfo {
        id: id.to_owned(),
        display_name: name.to_owned(),
        unit: unit.to_owned(),
        direction,
    };
    vec![
        metric("arr_growth_yoy", "ARR growth (YoY)", "%", Direction::HigherIsBetter),
        metric("burn_multiple", "Burn multiple", "×", Direction::LowerIsBetter),
        metric("cac_payback_months", "CAC payback", "months", Direction::LowerIsBetter),
        metric("gross_margin", "Gross margin", "%", Direction::HigherIsBetter),
        metric("grr", "Gross revenue retention", "%", Direction::HigherIsBetter),
        metric("ndr", "Net dollar retention", "%", Direction::HigherIsBetter),
    ]
}

#[async_trait]
impl PeerSource for FakePeers {
    async fn metrics(&self) -> Result<Arc<Vec<MetricInfo>>, PeerError> {
        Ok(Arc::new(catalogue()))
    }

    async fn peer_values(&self, query: &PeerQuery) -> Result<Vec<PeerRow>, PeerError> {
        *self.peer_reads.lock().unwrap() += 1;
        let companies = self.companies.lock().unwrap();
        let in_range = |period: &str| {
            let Ok(period) = Period::parse(period) else {
                return false;
            };
            let granularity = query.start.or(query.end).map(|bound| bound.granularity());
            granularity.is_none_or(|granularity| period.granularity() == granularity)
                && query
                    .start
                    .is_none_or(|start| period.start_month_index() >= start.start_month_index())
                && query
                    .end
                    .is_none_or(|end| period.end_month_index() <= end.end_month_index())
        };
        Ok(companies
            .iter()
            .filter(|company| company.info.revenue_band_id == query.revenue_band_id)
            .filter(|company| {
                query
                    .sector_id
                    .as_ref()
                    .is_none_or(|sector| *sector == company.info.sector_id)
            })
            .filter(|company| company.info.organization_id != query.exclude_organization_id)
            .flat_map(|company| {
                company
                    .values
                    .iter()
                    .filter(|((metric_id, period), _)| {
                        (query.metric_ids.is_empty() || query.metric_ids.contains(metric_id)) && in_range(period)
                    })
                    .map(|((metric_id, period), value)| PeerRow {
                        metric_id: metric_id.clone(),
                        period: period.clone(),
                        value: *value,
                        // The real service sends a keyed hash; the id is as good a key.
                        organization_key: company.info.organization_id.clone(),
                    })
            })
            .collect())
    }

    async fn company(&self, caller: &CallerCredentials, company_id: &str) -> Result<Option<CompanyInfo>, PeerError> {
        Ok(self
            .companies
            .lock()
            .unwrap()
            .iter()
            .find(|company| company.info.company_id == company_id)
            .filter(|company| company.info.organization_id == caller.organization_id)
            .map(|company| company.info.clone()))
    }

    async fn company_values(
        &self,
        caller: &CallerCredentials,
        company_id: &str,
        period: &Period,
    ) -> Result<BTreeMap<String, f64>, PeerError> {
        let wanted = period.to_string();
        Ok(self
            .companies
            .lock()
            .unwrap()
            .iter()
            .find(|company| {
                company.info.company_id == company_id && company.info.organization_id == caller.organization_id
            })
            .map(|company| {
                company
                    .values
                    .iter()
                    .filter(|((_, period), _)| *period == wanted)
                    .map(|((metric_id, _), value)| (metric_id.clone(), *value))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A running benchmark service, its client, the issuer of callers'
/// credentials and the stand-in peer data.
pub struct TestApp {
    pub client: BenchmarkServiceClient<Channel>,
    pub issuer: Arc<TestIssuer>,
    pub peers: Arc<FakePeers>,
    pub backends: Backends,
    /// The service's own database (the audit trail is read from it).
    pub database: TestDatabase,
    shutdown: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The service with default settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// The service with extra settings.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    metrix_core::telemetry::init_test_logging();
    let (database, backends) = backend.storage().await;
    let mut environment: HashMap<String, String> = HashMap::from([
        ("METRIX_BENCHMARK__LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("METRIX_BENCHMARK__DATABASE_URL".into(), database.url().to_owned()),
        // Fewer resamples keep debug builds quick; the figures are exact either way.
        ("METRIX_BENCHMARK__BOOTSTRAP_RESAMPLES".into(), "500".into()),
        ("METRIX_SHUTDOWN_GRACE_SECONDS".into(), "1".into()),
    ]);
    for (name, value) in extra {
        environment.insert((*name).to_owned(), (*value).to_owned());
    }
    let settings = BenchmarkSettings::load(&Settings::new(&environment)).expect("test settings are valid");
    let issuer = TestIssuer::new();
    let peers = Arc::new(FakePeers::default());
    let shutdown = Shutdown::new();
    let server = BenchmarkServer::build_with(
        settings,
        backends.clone(),
        issuer.authenticator(),
        peers.clone(),
        shutdown.clone(),
    )
    .await
    .expect("the benchmark service starts");
    let address = server.local_addr();
    tokio::spawn(server.run_until_stopped());
    let client = BenchmarkServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the client connects");
    TestApp {
        client,
        issuer,
        peers,
        backends,
        database,
        shutdown,
    }
}

impl TestApp {
    /// A client to call with.
    pub fn client(&self) -> BenchmarkServiceClient<Channel> {
        self.client.clone()
    }

    /// A token of a user with `role` in `organization_id`.
    pub fn user(&self, organization_id: &str, role: Role) -> String {
        self.issuer.user_token(organization_id, role)
    }

    /// Announces changed KPI values of `period`, as the metrics service does.
    pub async fn announce_kpi_changes(&self, period: &str) {
        let changes = KpiChanges {
            periods: vec![period.to_owned()],
            revenue_bands_changed: false,
        };
        self.backends
            .pubsub
            .publish(KPI_CHANGES_CHANNEL, &changes.encode())
            .await
            .expect("published");
    }
}

/// A fresh organisation id.
pub fn new_organization() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Asserts two figures agree to 1e-12 relative.
#[track_caller]
pub fn assert_close(actual: Option<f64>, expected: f64) {
    let actual = actual.unwrap_or_else(|| panic!("expected {expected}, the figure is unset"));
    let tolerance = 1e-12 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "expected {expected}, got {actual}"
    );
}
