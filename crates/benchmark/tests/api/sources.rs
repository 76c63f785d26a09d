//! ImportBenchmarkData and ListBenchmarkSources: atomic imports, row errors,
//! visibility, and answers from an external source.

use metrix_core::authn::Role;
use metrix_proto::benchmark::v1::{
    BenchmarkDataRow, BenchmarkSourceKind, CalculateRankingRequest, GetBenchmarkRequest, ImportBenchmarkDataRequest,
    ListBenchmarkSourcesRequest, PercentileRankMethod, SuppressionStatus,
};
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

fn survey_row(band: &str, n: i32) -> BenchmarkDataRow {
    BenchmarkDataRow {
        metric_id: "ndr".into(),
        revenue_band_id: band.into(),
        sector_id: String::new(),
        period: "2026-Q2".into(),
        n,
        mean: Some(105.0),
        p10: Some(90.0),
        p25: Some(98.0),
        p50: Some(104.0),
        p75: Some(112.0),
        p90: Some(121.0),
        ..Default::default()
    }
}

fn survey(rows: Vec<BenchmarkDataRow>) -> ImportBenchmarkDataRequest {
    ImportBenchmarkDataRequest {
        source_name: "SaaS Retention Survey 2026".into(),
        publisher: "Example Research".into(),
        publication_date: "2026-06-30".into(),
        verified: true,
        url: "https://example.com/survey".into(),
        rows,
        ..Default::default()
    }
}

async fn imports_are_atomic_and_report_every_bad_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let analyst = app.user(&organization, Role::Analyst);
    let mut unordered = survey_row("arr_5m_10m", 40);
    unordered.p75 = Some(100.0);
    let mut unknown = survey_row("arr_10m_50m", 40);
    unknown.metric_id = "nps".into();
    let rejected = app
        .client()
        .import_benchmark_data(authorized(
            survey(vec![survey_row("arr_1m_5m", 80), unordered, unknown]),
            &analyst,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert!(rejected.source.is_none());
    assert_eq!(rejected.imported_row_count, 0);
    let errors: Vec<(i32, &str)> = rejected
        .row_errors
        .iter()
        .map(|error| (error.row_index, error.field.as_str()))
        .collect();
    assert_eq!(errors, [(1, "p75"), (2, "metric_id")]);
    let listed = app
        .client()
        .list_benchmark_sources(authorized(ListBenchmarkSourcesRequest::default(), &analyst))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.benchmark_sources.len(), 1, "nothing was stored");
    assert_eq!(listed.benchmark_sources[0].id, "metrix");

    let status = assert_code(
        app.client()
            .import_benchmark_data(authorized(
                ImportBenchmarkDataRequest {
                    publication_date: "2026-02-30".into(),
                    ..Default::default()
                },
                &analyst,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["source_name", "publication_date", "rows"]);
    assert_code(
        app.client()
            .import_benchmark_data(authorized(
                survey(vec![survey_row("arr_1m_5m", 80)]),
                &app.user(&organization, Role::CompanyUser),
            ))
            .await,
        Code::PermissionDenied,
    );
}

async fn imported_sources_answer_as_published(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let analyst = app.user(&organization, Role::Analyst);
    let imported = app
        .client()
        .import_benchmark_data(authorized(
            survey(vec![survey_row("arr_1m_5m", 80), survey_row("arr_0_1m", 3)]),
            &analyst,
        ))
        .await
        .expect("imported")
        .into_inner();
    assert!(imported.row_errors.is_empty());
    assert_eq!(imported.imported_row_count, 2);
    let source = imported.source.expect("source");
    assert_eq!(source.kind, BenchmarkSourceKind::External as i32);
    assert_eq!(source.row_count, 2);

    // Importing the same name and date again replaces the rows.
    let replaced = app
        .client()
        .import_benchmark_data(authorized(survey(vec![survey_row("arr_1m_5m", 90)]), &analyst))
        .await
        .expect("imported")
        .into_inner();
    assert_eq!(
        replaced.source.as_ref().map(|source| source.id.clone()),
        Some(source.id.clone())
    );
    assert_eq!(replaced.imported_row_count, 1);

    let answer = app
        .client()
        .get_benchmark(authorized(
            GetBenchmarkRequest {
                metric_id: "ndr".into(),
                revenue_band_id: "arr_1m_5m".into(),
                period: "2026-Q2".into(),
                source_ids: vec!["metrix".into(), source.id.clone()],
                ..Default::default()
            },
            &analyst,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(answer.results.len(), 2);
    let external = answer.results[1].statistics.as_ref().expect("statistics");
    assert_eq!((external.n, external.total_count, external.outlier_count), (90, 90, 0));
    assert_eq!(external.p50, Some(104.0));
    assert!(
        external.min.is_none() && external.std_dev.is_none(),
        "unpublished figures stay unset"
    );
    assert!(external.lower_fence.is_none());
    assert_eq!(
        answer.results[0]
            .statistics
            .as_ref()
            .and_then(|statistics| statistics.suppression.clone())
            .map(|suppression| suppression.status),
        Some(SuppressionStatus::SuppressedNoData as i32)
    );

    let ranked = app
        .client()
        .calculate_ranking(authorized(
            CalculateRankingRequest {
                values: [("ndr".to_owned(), 108.0)].into(),
                revenue_band_id: "arr_1m_5m".into(),
                period: "2026-Q2".into(),
                source_id: source.id.clone(),
                ..Default::default()
            },
            &analyst,
        ))
        .await
        .expect("ranked")
        .into_inner();
    let ranking = &ranked.rankings[0];
    assert_eq!(
        ranking.percentile_rank_method,
        PercentileRankMethod::Interpolated as i32
    );
    // Halfway between P50 (104) and P75 (112).
    assert_close(ranking.percentile_rank, 62.5);
    assert_close(ranking.score, 62.5);

    // Another organisation does not see the source.
    let stranger = app.user(&new_organization(), Role::Admin);
    let listed = app
        .client()
        .list_benchmark_sources(authorized(ListBenchmarkSourcesRequest::default(), &stranger))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.benchmark_sources.len(), 1);
    let status = assert_code(
        app.client()
            .get_benchmark(authorized(
                GetBenchmarkRequest {
                    metric_id: "ndr".into(),
                    revenue_band_id: "arr_1m_5m".into(),
                    source_ids: vec![source.id],
                    ..Default::default()
                },
                &stranger,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["source_ids[0]"]);
}

async fn sources_page_platform_first_then_newest(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let analyst = app.user(&organization, Role::Analyst);
    for (name, date) in [
        ("Survey A", "2024-03-31"),
        ("Survey B", "2026-03-31"),
        ("Survey C", "2025-03-31"),
    ] {
        let mut request = survey(vec![survey_row("arr_1m_5m", 50)]);
        request.source_name = name.into();
        request.publication_date = date.into();
        app.client()
            .import_benchmark_data(authorized(request, &analyst))
            .await
            .expect("imported");
    }
    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_benchmark_sources(authorized(
                ListBenchmarkSourcesRequest {
                    page_size: 1,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &analyst,
            ))
            .await
            .expect("listed")
            .into_inner();
        names.extend(page.benchmark_sources.into_iter().map(|source| source.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(names, ["Metrix platform peers", "Survey B", "Survey C", "Survey A"]);
    let external_only = app
        .client()
        .list_benchmark_sources(authorized(
            ListBenchmarkSourcesRequest {
                kind: BenchmarkSourceKind::External as i32,
                ..Default::default()
            },
            &analyst,
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(external_only.benchmark_sources.len(), 3);
}

both_backends!(
    imports_are_atomic_and_report_every_bad_row,
    imported_sources_answer_as_published,
    sources_page_platform_first_then_newest,
);
