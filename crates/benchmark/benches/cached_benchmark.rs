//! Throughput of a cached GetBenchmark against a bare tonic service, in one
//! run on one machine.
//!
//! The benchmark service runs exactly as in production (token verification,
//! request ids, metrics, the versioned cache) on a slice of 500 peers whose
//! figures are already cached. The baseline is a bare tonic server (no
//! layers, no authentication) whose GetBenchmark echoes back a prepared
//! answer of the same size. Both are driven by the same client: `CLIENTS`
//! calls in flight over `CHANNELS` HTTP/2 connections for `SECONDS` seconds,
//! alternating baseline and service for `ROUNDS` rounds; the table reports
//! the median requests per second of each and their ratio (target ≥ 0.7).
//!
//! `cargo bench -p metrix-benchmark --bench cached_benchmark`

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark stops at its first failure"
)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrix_benchmark::peers::{CallerCredentials, CompanyInfo, MetricInfo, PeerError, PeerQuery, PeerRow, PeerSource};
use metrix_benchmark::stats::Direction;
use metrix_benchmark::{BenchmarkServer, BenchmarkSettings};
use metrix_core::authn::Role;
use metrix_core::cache::Backends;
use metrix_core::config::Settings;
use metrix_core::period::Period;
use metrix_core::server::Shutdown;
use metrix_core::testing::TestIssuer;
use metrix_proto::benchmark::v1::benchmark_service_client::BenchmarkServiceClient;
use metrix_proto::benchmark::v1::benchmark_service_server::{BenchmarkService, BenchmarkServiceServer};
use metrix_proto::benchmark::v1::*;
use rand::{Rng as _, SeedableRng as _};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const CLIENTS: usize = 32;
const CHANNELS: usize = 4;
const SECONDS: u64 = 4;
const ROUNDS: usize = 3;

/// One slice of 500 peers.
struct StaticPeers {
    values: Vec<f64>,
}

#[async_trait]
impl PeerSource for StaticPeers {
    async fn metrics(&self) -> Result<Arc<Vec<MetricInfo>>, PeerError> {
        Ok(Arc::new(vec![MetricInfo {
            id: "ndr".into(),
            display_name: "Net dollar retention".into(),
            unit: "%".into(),
            direction: Direction::HigherIsBetter,
        }]))
    }

    async fn peer_values(&self, query: &PeerQuery) -> Result<Vec<PeerRow>, PeerError> {
        let period = query.start.map(|period| period.to_string()).unwrap_or_default();
        Ok(self
            .values
            .iter()
            .enumerate()
            .map(|(index, value)| PeerRow {
                metric_id: "ndr".into(),
                period: period.clone(),
                value: *value,
                organization_key: format!("organization-{index}"),
            })
            .collect())
    }

    async fn company(&self, _: &CallerCredentials, _: &str) -> Result<Option<CompanyInfo>, PeerError> {
        Ok(None)
    }

    async fn company_values(
        &self,
        _: &CallerCredentials,
        _: &str,
        _: &Period,
    ) -> Result<BTreeMap<String, f64>, PeerError> {
        Ok(BTreeMap::new())
    }
}

/// The baseline: answers GetBenchmark with a prepared response, nothing else.
struct Bare {
    answer: GetBenchmarkResponse,
}

#[tonic::async_trait]
impl BenchmarkService for Bare {
    async fn get_benchmark(&self, _: Request<GetBenchmarkRequest>) -> Result<Response<GetBenchmarkResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }
    async fn list_revenue_bands(
        &self,
        _: Request<ListRevenueBandsRequest>,
    ) -> Result<Response<ListRevenueBandsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn list_sectors(&self, _: Request<ListSectorsRequest>) -> Result<Response<ListSectorsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn list_benchmark_sources(
        &self,
        _: Request<ListBenchmarkSourcesRequest>,
    ) -> Result<Response<ListBenchmarkSourcesResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn import_benchmark_data(
        &self,
        _: Request<ImportBenchmarkDataRequest>,
    ) -> Result<Response<ImportBenchmarkDataResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn get_benchmark_time_series(
        &self,
        _: Request<GetBenchmarkTimeSeriesRequest>,
    ) -> Result<Response<GetBenchmarkTimeSeriesResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn rank_company(&self, _: Request<RankCompanyRequest>) -> Result<Response<RankCompanyResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn calculate_ranking(
        &self,
        _: Request<CalculateRankingRequest>,
    ) -> Result<Response<CalculateRankingResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn list_report_templates(
        &self,
        _: Request<ListReportTemplatesRequest>,
    ) -> Result<Response<ListReportTemplatesResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn generate_report(
        &self,
        _: Request<GenerateReportRequest>,
    ) -> Result<Response<GenerateReportResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn get_report(&self, _: Request<GetReportRequest>) -> Result<Response<GetReportResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn list_reports(&self, _: Request<ListReportsRequest>) -> Result<Response<ListReportsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
    async fn download_report(
        &self,
        _: Request<DownloadReportRequest>,
    ) -> Result<Response<DownloadReportResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

fn request(token: &str) -> Request<GetBenchmarkRequest> {
    let mut request = Request::new(GetBenchmarkRequest {
        metric_id: "ndr".into(),
        revenue_band_id: "arr_1m_5m".into(),
        period: "2026-Q2".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("tokens are header-safe"),
    );
    request
}

/// Requests per second of `CLIENTS` callers in flight against `address`.
async fn throughput(address: SocketAddr, token: &str) -> f64 {
    let mut channels = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        channels.push(
            Channel::from_shared(format!("http://{address}"))
                .expect("a valid address")
                .connect()
                .await
                .expect("the server accepts connections"),
        );
    }
    let completed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let mut callers = Vec::with_capacity(CLIENTS);
    for caller in 0..CLIENTS {
        let mut client = BenchmarkServiceClient::new(channels[caller % CHANNELS].clone());
        let completed = completed.clone();
        let token = token.to_owned();
        callers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let response = client.get_benchmark(request(&token)).await.expect("answered");
                std::hint::black_box(response);
                completed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for caller in callers {
        caller.await.expect("the caller finished");
    }
    completed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let environment: HashMap<String, String> = HashMap::from([
            ("METRIX_BENCHMARK__LISTEN_ADDR".into(), "127.0.0.1:0".into()),
            (
                "METRIX_BENCHMARK__DATABASE_URL".into(),
                format!("sqlite://{}", folder.path().join("benchmark.db").display()),
            ),
            ("METRIX_SHUTDOWN_GRACE_SECONDS".into(), "1".into()),
        ]);
        let settings = BenchmarkSettings::load(&Settings::new(&environment)).expect("valid settings");
        let mut generator = rand::rngs::StdRng::seed_from_u64(7);
        let values: Vec<f64> = (0..500).map(|_| 80.0 + 60.0 * generator.random::<f64>()).collect();
        let issuer = TestIssuer::new();
        let shutdown = Shutdown::new();
        let server = BenchmarkServer::build_with(
            settings,
            Backends::in_process(),
            issuer.authenticator(),
            Arc::new(StaticPeers { values }),
            shutdown.clone(),
        )
        .await
        .expect("the benchmark service starts");
        let service_address = server.local_addr();
        tokio::spawn(server.run_until_stopped());
        let token = issuer.user_token("bench-org", Role::CompanyUser);

        // Compute once, so every measured call is served from the cache.
        let mut client = BenchmarkServiceClient::connect(format!("http://{service_address}"))
            .await
            .expect("connects");
        let first = client
            .get_benchmark(request(&token))
            .await
            .expect("answered")
            .into_inner();
        let cached = client
            .get_benchmark(request(&token))
            .await
            .expect("answered")
            .into_inner();
        assert!(cached.results[0].cached, "the second answer comes from the cache");

        // TCP_NODELAY as the service sets it, so neither side waits on Nagle.
        let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().expect("an address"))
            .expect("a port")
            .with_nodelay(Some(true));
        let bare_address = incoming.local_addr().expect("bound");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(BenchmarkServiceServer::new(Bare { answer: first }))
                .serve_with_incoming(incoming),
        );

        let mut bare = Vec::new();
        let mut service = Vec::new();
        for _ in 0..ROUNDS {
            bare.push(throughput(bare_address, &token).await);
            service.push(throughput(service_address, &token).await);
        }
        let bare_median = median(&mut bare);
        let service_median = median(&mut service);
        println!(
            "cached GetBenchmark, {CLIENTS} calls in flight over {CHANNELS} connections, {SECONDS} s x {ROUNDS} rounds"
        );
        println!("| server | requests/s (median) | rounds |");
        println!("|---|---:|---|");
        println!(
            "| bare tonic, prepared answer | {bare_median:.0} | {} |",
            bare.iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "| benchmark service, cached | {service_median:.0} | {} |",
            service
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "ratio service / bare: {:.2} (target ≥ 0.70)",
            service_median / bare_median
        );
        shutdown.trigger();
    });
}
