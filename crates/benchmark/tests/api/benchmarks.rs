//! GetBenchmark and GetBenchmarkTimeSeries: figures, anonymity, caching and
//! bad input.

use metrix_core::authn::Role;
use metrix_proto::benchmark::v1::{
    BenchmarkStatistics, GetBenchmarkRequest, GetBenchmarkTimeSeriesRequest, ListRevenueBandsRequest,
    ListSectorsRequest, SuppressionStatus, TimeGranularity, TrendDirection,
};
use metrix_proto::common::v1::TimeRange;
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

/// NDR values of twenty peers, one far outlier; the expected figures below
/// are numpy's and scipy's on these values (`np.percentile`, `np.std(ddof=1)`,
/// `scipy.stats.t.ppf`).
const NDR: [f64; 20] = [
    88.0, 92.0, 95.0, 97.0, 99.0, 100.0, 101.0, 103.0, 104.0, 106.0, 108.0, 110.0, 112.0, 115.0, 118.0, 122.0, 125.0,
    130.0, 140.0, 300.0,
];

fn ndr_request(band: &str) -> GetBenchmarkRequest {
    GetBenchmarkRequest {
        metric_id: "ndr".into(),
        revenue_band_id: band.into(),
        period: "2026-Q2".into(),
        ..Default::default()
    }
}

async fn figures_equal_numpy_with_outliers_excluded(backend: Backend) {
    let app = spawn_app(backend).await;
    app.peers.add_peers("fintech", "arr_1m_5m", "ndr", "2026-Q2", &NDR);
    // Another period and another band must not leak into the slice.
    app.peers
        .add_peers("fintech", "arr_1m_5m", "ndr", "2026-Q1", &[10.0, 20.0]);
    app.peers.add_peers("fintech", "arr_5m_10m", "ndr", "2026-Q2", &[500.0]);
    let token = app.user(&new_organization(), Role::CompanyUser);
    let response = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_1m_5m"), &token))
        .await
        .expect("answered")
        .into_inner();
    let slice = response.slice.expect("slice");
    assert_eq!(
        (
            slice.metric_id.as_str(),
            slice.period.as_str(),
            slice.sector_id.as_str()
        ),
        ("ndr", "2026-Q2", "")
    );
    assert_eq!(response.results.len(), 1);
    let result = &response.results[0];
    assert_eq!(result.source.as_ref().expect("source").id, "metrix");
    let statistics = result.statistics.as_ref().expect("statistics");
    assert_eq!(
        (statistics.n, statistics.total_count, statistics.outlier_count),
        (19, 20, 1)
    );
    assert_eq!(
        statistics.suppression.as_ref().expect("suppression").status,
        SuppressionStatus::NotSuppressed as i32
    );
    assert_close(statistics.lower_fence, 70.875);
    assert_close(statistics.upper_fence, 147.875);
    assert_close(statistics.p10, 94.4);
    assert_close(statistics.p25, 99.5);
    assert_close(statistics.p50, 106.0);
    assert_close(statistics.p75, 116.5);
    assert_close(statistics.p90, 126.0);
    assert_close(statistics.mean, 108.6842105263158);
    assert_close(statistics.std_dev, 13.6180135261227);
    // The extremes are one company's value each: never published.
    assert!(statistics.min.is_none() && statistics.max.is_none());
    let mean_interval = statistics.mean_confidence_interval.as_ref().expect("mean interval");
    assert_close(mean_interval.lower_bound, 102.12053810997573);
    assert_close(mean_interval.upper_bound, 115.24788294265586);
    let median_interval = statistics.median_confidence_interval.as_ref().expect("median interval");
    let (lower, upper) = (
        median_interval.lower_bound.expect("lower"),
        median_interval.upper_bound.expect("upper"),
    );
    assert!(lower <= 106.0 && 106.0 <= upper, "{lower} … {upper}");
    assert_eq!(median_interval.bootstrap_resamples, 500);
    assert!(median_interval.bootstrap_seed.is_some());
    assert_eq!(median_interval.bootstrap_rng, "ChaCha8");

    // The same seed gives the same interval; another seed may not.
    let again = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_1m_5m"), &token))
        .await
        .expect("answered")
        .into_inner();
    let again_interval = again.results[0]
        .statistics
        .as_ref()
        .and_then(|statistics| statistics.median_confidence_interval.clone())
        .expect("interval");
    assert_eq!(again_interval.lower_bound, Some(lower));
    assert_eq!(again_interval.upper_bound, Some(upper));
}

async fn small_slices_are_suppressed_and_tails_withheld(backend: Backend) {
    let app = spawn_app(backend).await;
    app.peers
        .add_peers("fintech", "arr_0_1m", "ndr", "2026-Q2", &[101.0, 99.0, 104.0, 97.0]);
    app.peers.add_peers(
        "fintech",
        "arr_5m_10m",
        "ndr",
        "2026-Q2",
        &[101.0, 99.0, 104.0, 97.0, 110.0, 95.0],
    );
    let token = app.user(&new_organization(), Role::Analyst);
    let suppressed = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_0_1m"), &token))
        .await
        .expect("answered")
        .into_inner();
    let statistics = suppressed.results[0].statistics.clone().expect("statistics");
    let suppression = statistics.suppression.expect("suppression");
    assert_eq!(suppression.status, SuppressionStatus::SuppressedBelowK as i32);
    assert_eq!(suppression.min_sample_size, 5);
    assert!(
        suppression.reason.contains("fewer than 5 organisations"),
        "{}",
        suppression.reason
    );
    // How many companies a suppressed slice holds is withheld too.
    assert_eq!((statistics.n, statistics.total_count), (0, 0));
    assert!(statistics.mean.is_none() && statistics.min.is_none() && statistics.max.is_none());
    assert!(statistics.p50.is_none() && statistics.std_dev.is_none() && statistics.lower_fence.is_none());
    let interval = statistics.mean_confidence_interval.expect("interval message");
    assert!(interval.lower_bound.is_none() && interval.upper_bound.is_none());

    let tails = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_5m_10m"), &token))
        .await
        .expect("answered")
        .into_inner();
    let statistics = tails.results[0].statistics.clone().expect("statistics");
    assert_eq!(
        statistics.suppression.expect("suppression").status,
        SuppressionStatus::TailsOmitted as i32
    );
    assert_eq!(statistics.n, 6);
    assert!(statistics.p10.is_none() && statistics.p90.is_none());
    assert_close(statistics.p50, 100.0);

    let empty = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_50m_plus"), &token))
        .await
        .expect("answered")
        .into_inner();
    let statistics = empty.results[0].statistics.clone().expect("statistics");
    assert_eq!(
        statistics.suppression.expect("suppression").status,
        SuppressionStatus::SuppressedNoData as i32
    );
    assert_eq!(statistics.n, 0);
}

/// k counts distinct organisations, and an organisation's own companies are
/// never among its peers: six companies of one organisation are one
/// contributor, and to that organisation a slice of it and four others is
/// a slice of four.
async fn k_counts_organisations_and_the_callers_own_are_never_peers(backend: Backend) {
    let app = spawn_app(backend).await;
    let many_companies = new_organization();
    for (index, band) in ["arr_1m_5m", "arr_5m_10m"].into_iter().enumerate() {
        for value in [101.0, 99.0, 104.0, 97.0, 110.0, 95.0] {
            let company_id = app.peers.add_company(&many_companies, "fintech", band);
            app.peers.set_value(&company_id, "ndr", "2026-Q2", value + index as f64);
        }
    }
    app.peers
        .add_peers("fintech", "arr_1m_5m", "ndr", "2026-Q2", &[100.0, 102.0, 98.0, 105.0]);
    let statistics_for = |organization: String, band: &'static str| {
        let token = app.user(&organization, Role::Analyst);
        let mut client = app.client();
        async move {
            client
                .get_benchmark(authorized(ndr_request(band), &token))
                .await
                .expect("answered")
                .into_inner()
                .results[0]
                .statistics
                .clone()
                .expect("statistics")
        }
    };
    let status = |statistics: &BenchmarkStatistics| statistics.suppression.as_ref().expect("suppression").status;

    // One organisation's six companies: one contributor, below k.
    let alone = statistics_for(new_organization(), "arr_5m_10m").await;
    assert_eq!(status(&alone), SuppressionStatus::SuppressedBelowK as i32);
    assert_eq!(alone.n, 0, "how many companies is withheld");

    // With four more organisations: five contributors, published to others.
    let outsider = statistics_for(new_organization(), "arr_1m_5m").await;
    assert_eq!(status(&outsider), SuppressionStatus::NotSuppressed as i32);
    assert_eq!(outsider.n, 10);

    // To the organisation itself, only the four others are peers.
    let insider = statistics_for(many_companies.clone(), "arr_1m_5m").await;
    assert_eq!(status(&insider), SuppressionStatus::SuppressedBelowK as i32);
    assert!(insider.mean.is_none() && insider.p50.is_none());
}

async fn slices_are_cached_until_kpis_change(backend: Backend) {
    let app = spawn_app(backend).await;
    app.peers
        .add_peers("fintech", "arr_1m_5m", "ndr", "2026-Q2", &NDR[..10]);
    let token = app.user(&new_organization(), Role::CompanyUser);
    let first = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_1m_5m"), &token))
        .await
        .expect("answered")
        .into_inner();
    assert!(!first.results[0].cached);
    let second = app
        .client()
        .get_benchmark(authorized(ndr_request("arr_1m_5m"), &token))
        .await
        .expect("answered")
        .into_inner();
    assert!(second.results[0].cached);
    assert_eq!(second.results[0].statistics, first.results[0].statistics);
    let reads = app.peers.peer_read_count();

    // New values arrive and the metrics service announces them.
    app.peers.add_peers("fintech", "arr_1m_5m", "ndr", "2026-Q2", &[150.0]);
    let mut fresh = None;
    for _ in 0..50 {
        app.announce_kpi_changes("2026-Q2").await;
        let answer = app
            .client()
            .get_benchmark(authorized(ndr_request("arr_1m_5m"), &token))
            .await
            .expect("answered")
            .into_inner();
        if !answer.results[0].cached {
            fresh = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let fresh = fresh.expect("the change invalidates the cached slice");
    assert_eq!(
        fresh.results[0].statistics.as_ref().expect("statistics").total_count,
        11
    );
    assert!(app.peers.peer_read_count() > reads);
}

async fn bad_requests_name_their_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.user(&new_organization(), Role::CompanyUser);
    let status = assert_code(
        app.client()
            .get_benchmark(authorized(
                GetBenchmarkRequest {
                    metric_id: "nps".into(),
                    revenue_band_id: "tiny".into(),
                    sector_id: "space".into(),
                    period: "2026".into(),
                    source_ids: vec!["metrix".into(), "survey-x".into()],
                    bootstrap_resamples: 200_000,
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "bootstrap_resamples",
            "metric_id",
            "period",
            "revenue_band_id",
            "sector_id",
            "source_ids[1]"
        ]
    );
    assert_code(
        app.client().get_benchmark(ndr_request("arr_1m_5m")).await,
        Code::Unauthenticated,
    );
}

async fn reference_data_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.user(&new_organization(), Role::CompanyUser);
    let bands = app
        .client()
        .list_revenue_bands(authorized(ListRevenueBandsRequest::default(), &token))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(bands.revenue_bands.len(), 5);
    assert!(
        bands
            .revenue_bands
            .windows(2)
            .all(|pair| pair[0].min_arr_usd < pair[1].min_arr_usd)
    );
    let mut sectors = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_sectors(authorized(
                ListSectorsRequest {
                    page_size: 5,
                    page_token: page_token.clone(),
                },
                &token,
            ))
            .await
            .expect("answered")
            .into_inner();
        sectors.extend(page.sectors);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(sectors.len(), metrix_core::reference::SECTORS.len());
    let status = assert_code(
        app.client()
            .list_sectors(authorized(
                ListSectorsRequest {
                    page_size: -1,
                    page_token: "garbage".into(),
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
}

async fn time_series_have_every_period_and_a_trend(backend: Backend) {
    let app = spawn_app(backend).await;
    // Medians rising by 2 points a quarter; 2025-Q3 has too few companies.
    for (quarter, base) in [
        ("2025-Q1", 100.0),
        ("2025-Q2", 102.0),
        ("2025-Q4", 106.0),
        ("2026-Q1", 108.0),
    ] {
        let values: Vec<f64> = (0..7).map(|step| base - 3.0 + f64::from(step)).collect();
        app.peers.add_peers("devtools", "arr_1m_5m", "ndr", quarter, &values);
    }
    app.peers
        .add_peers("devtools", "arr_1m_5m", "ndr", "2025-Q3", &[104.0, 105.0]);
    let token = app.user(&new_organization(), Role::CompanyUser);
    let start = metrix_core::time::civil_micros(2025, 1, 1);
    let end = metrix_core::time::civil_micros(2026, 4, 1);
    let response = app
        .client()
        .get_benchmark_time_series(authorized(
            GetBenchmarkTimeSeriesRequest {
                metric_id: "ndr".into(),
                revenue_band_id: "arr_1m_5m".into(),
                sector_id: "devtools".into(),
                time_range: Some(TimeRange {
                    start_time: Some(metrix_core::time::timestamp(start)),
                    end_time: Some(metrix_core::time::timestamp(end)),
                }),
                granularity: TimeGranularity::Quarter as i32,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("answered")
        .into_inner();
    let periods: Vec<&str> = response.points.iter().map(|point| point.period.as_str()).collect();
    assert_eq!(periods, ["2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1"]);
    let q3 = response.points[2].statistics.as_ref().expect("statistics");
    assert_eq!(
        q3.suppression.as_ref().expect("suppression").status,
        SuppressionStatus::SuppressedBelowK as i32
    );
    assert_close(
        response.points[0]
            .statistics
            .as_ref()
            .and_then(|statistics| statistics.p50),
        100.0,
    );
    let trend = response.trend.expect("trend");
    assert_eq!(trend.point_count, 4);
    assert_close(trend.slope, 2.0);
    assert_close(trend.intercept, 100.0);
    assert_close(trend.r_squared, 1.0);
    assert_eq!(trend.direction, TrendDirection::Increasing as i32);

    let status = assert_code(
        app.client()
            .get_benchmark_time_series(authorized(
                GetBenchmarkTimeSeriesRequest {
                    metric_id: "ndr".into(),
                    revenue_band_id: "arr_1m_5m".into(),
                    time_range: Some(TimeRange {
                        start_time: Some(metrix_core::time::timestamp(metrix_core::time::civil_micros(
                            2000, 1, 1,
                        ))),
                        end_time: None,
                    }),
                    granularity: TimeGranularity::Month as i32,
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["time_range"]);
}

both_backends!(
    k_counts_organisations_and_the_callers_own_are_never_peers,
    figures_equal_numpy_with_outliers_excluded,
    small_slices_are_suppressed_and_tails_withheld,
    slices_are_cached_until_kpis_change,
    bad_requests_name_their_fields,
    reference_data_pages,
    time_series_have_every_period_and_a_trend,
);
