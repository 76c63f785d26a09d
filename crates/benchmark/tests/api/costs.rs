//! What a benchmark query may cost: a quota per organisation, every query
//! in the audit trail, bounded resamples, cached time series.

use std::time::Duration;

use metrix_core::authn::Role;
use metrix_proto::benchmark::v1::{GetBenchmarkRequest, GetBenchmarkTimeSeriesRequest, TimeGranularity};
use metrix_proto::common::v1::TimeRange;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::*;
use metrix_core::both_backends;

fn ndr(band: &str) -> GetBenchmarkRequest {
    GetBenchmarkRequest {
        metric_id: "ndr".into(),
        revenue_band_id: band.into(),
        period: "2026-Q2".into(),
        ..Default::default()
    }
}

/// The audit rows of `organization_id`: (rpc, slice).
async fn audited(app: &TestApp, organization_id: &str) -> Vec<(String, String)> {
    let database = metrix_core::storage::Database::connect(app.database.url())
        .await
        .expect("the database opens");
    let rows: Vec<(String, String)> = metrix_core::with_pool!(&database, pool => {
        sqlx::query_as("SELECT rpc, slice FROM benchmark_queries WHERE organization_id = $1 ORDER BY asked_at")
            .bind(organization_id)
            .fetch_all(pool)
            .await
    })
    .expect("read");
    database.close().await;
    rows
}

/// An organisation past its quota is refused with a retry hint; another
/// organisation is not; every admitted query is in the audit trail with the
/// slice asked.
async fn queries_are_limited_per_organisation_and_audited(backend: Backend) {
    let app = spawn_app_with(backend, &[("METRIX_BENCHMARK__QUERIES_PER_MINUTE", "3")]).await;
    let prober = new_organization();
    let token = app.user(&prober, Role::Analyst);
    for _ in 0..3 {
        app.client()
            .get_benchmark(authorized(ndr("arr_1m_5m"), &token))
            .await
            .expect("within the quota");
    }
    let refused = assert_code(
        app.client().get_benchmark(authorized(ndr("arr_1m_5m"), &token)).await,
        Code::ResourceExhausted,
    );
    let retry = refused
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a retry hint");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(60), "{retry:?}");
    let other = app.user(&new_organization(), Role::Analyst);
    app.client()
        .get_benchmark(authorized(ndr("arr_5m_10m"), &other))
        .await
        .expect("another organisation has its own quota");

    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = audited(&app, &prober).await;
        if rows.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (rpc, slice) in &rows {
        assert_eq!(rpc, "GetBenchmark");
        assert_eq!(slice, "metric=ndr band=arr_1m_5m sector=* period=2026-Q2");
    }
}

/// A caller cannot ask for an expensive bootstrap.
async fn resamples_are_capped(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.user(&new_organization(), Role::Analyst);
    let too_many = GetBenchmarkRequest {
        bootstrap_resamples: 10_001,
        ..ndr("arr_1m_5m")
    };
    let status = assert_code(
        app.client().get_benchmark(authorized(too_many, &token)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["bootstrap_resamples"]);
    let most = GetBenchmarkRequest {
        bootstrap_resamples: 10_000,
        ..ndr("arr_1m_5m")
    };
    app.client()
        .get_benchmark(authorized(most, &token))
        .await
        .expect("the cap itself is allowed");
}

/// A caller-chosen seed cannot defeat the cache: each new seed (or
/// resample count) the cache cannot answer counts against the
/// organisation's fresh-bootstrap quota; a seed asked again is answered from
/// the cache, and the default bootstrap never counts.
async fn new_seeds_are_limited_and_repeated_seeds_are_cached(backend: Backend) {
    let app = spawn_app_with(backend, &[("METRIX_BENCHMARK__FRESH_BOOTSTRAPS_PER_MINUTE", "2")]).await;
    app.peers.add_peers(
        "devtools",
        "arr_1m_5m",
        "ndr",
        "2026-Q2",
        &[100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0],
    );
    let token = app.user(&new_organization(), Role::Analyst);
    let seeded = |seed: Option<u64>| GetBenchmarkRequest {
        bootstrap_seed: seed,
        ..ndr("arr_1m_5m")
    };
    for seed in [1, 2] {
        let answer = app
            .client()
            .get_benchmark(authorized(seeded(Some(seed)), &token))
            .await
            .expect("within the fresh-bootstrap quota")
            .into_inner();
        assert!(!answer.results[0].cached, "seed {seed} is computed");
    }
    let refused = assert_code(
        app.client().get_benchmark(authorized(seeded(Some(3)), &token)).await,
        Code::ResourceExhausted,
    );
    assert!(refused.message().contains("seed"), "{}", refused.message());
    assert!(
        refused
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .is_some()
    );
    // A resample count other than the default (the test server's is 500)
    // is a new bootstrap too.
    let resampled = GetBenchmarkRequest {
        bootstrap_resamples: 400,
        ..ndr("arr_1m_5m")
    };
    assert_code(
        app.client().get_benchmark(authorized(resampled, &token)).await,
        Code::ResourceExhausted,
    );
    let again = app
        .client()
        .get_benchmark(authorized(seeded(Some(1)), &token))
        .await
        .expect("a seed asked before is answered from the cache")
        .into_inner();
    assert!(again.results[0].cached);
    for _ in 0..3 {
        app.client()
            .get_benchmark(authorized(seeded(None), &token))
            .await
            .expect("the default bootstrap never counts");
    }
    let other = app.user(&new_organization(), Role::Analyst);
    app.client()
        .get_benchmark(authorized(seeded(Some(3)), &other))
        .await
        .expect("another organisation has its own quota");
}

/// A time series is computed once, then served from the cache until KPIs
/// change.
async fn time_series_are_cached_until_kpis_change(backend: Backend) {
    let app = spawn_app(backend).await;
    app.peers.add_peers(
        "devtools",
        "arr_1m_5m",
        "ndr",
        "2026-Q1",
        &[100.0, 101.0, 102.0, 103.0, 104.0],
    );
    let token = app.user(&new_organization(), Role::Analyst);
    let request = || GetBenchmarkTimeSeriesRequest {
        metric_id: "ndr".into(),
        revenue_band_id: "arr_1m_5m".into(),
        sector_id: "devtools".into(),
        time_range: Some(TimeRange {
            start_time: Some(metrix_core::time::timestamp(metrix_core::time::civil_micros(
                2025, 10, 1,
            ))),
            end_time: Some(metrix_core::time::timestamp(metrix_core::time::civil_micros(
                2026, 4, 1,
            ))),
        }),
        granularity: TimeGranularity::Quarter as i32,
        ..Default::default()
    };
    let first = app
        .client()
        .get_benchmark_time_series(authorized(request(), &token))
        .await
        .expect("answered")
        .into_inner();
    let reads = app.peers.peer_read_count();
    let second = app
        .client()
        .get_benchmark_time_series(authorized(request(), &token))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(app.peers.peer_read_count(), reads, "served from the cache");
    assert_eq!(first.points, second.points);
    app.announce_kpi_changes("2026-Q1").await;
    let mut read_again = false;
    for _ in 0..50 {
        app.client()
            .get_benchmark_time_series(authorized(request(), &token))
            .await
            .expect("answered");
        if app.peers.peer_read_count() > reads {
            read_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read_again, "a KPI change refreshes the series");
}

both_backends!(
    queries_are_limited_per_organisation_and_audited,
    resamples_are_capped,
    new_seeds_are_limited_and_repeated_seeds_are_cached,
    time_series_are_cached_until_kpis_change,
);
