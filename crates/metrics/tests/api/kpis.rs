//! KPI values: recording with revisions, revenue bands, atomic batches,
//! listing, calculation, validation and CSV import.

use std::collections::HashMap;

use metrix_core::authn::{Role, Scope};
use metrix_proto::metrics::v1::*;
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

fn kpi(company_id: &str, metric_id: &str, period: &str, value: f64) -> KpiValue {
    KpiValue {
        company_id: company_id.to_owned(),
        metric_id: metric_id.to_owned(),
        period: period.to_owned(),
        value,
        ..Default::default()
    }
}

async fn record(app: &TestApp, token: &str, values: Vec<KpiValue>) -> Result<RecordKpisResponse, tonic::Status> {
    app.client()
        .record_kpis(authorized(RecordKpisRequest { kpi_values: values }, token))
        .await
        .map(tonic::Response::into_inner)
}

async fn company_band(app: &TestApp, token: &str, company_id: &str) -> String {
    app.client()
        .get_company(authorized(
            GetCompanyRequest {
                company_id: company_id.to_owned(),
            },
            token,
        ))
        .await
        .expect("company")
        .into_inner()
        .company
        .expect("company")
        .revenue_band_id
}

async fn values_are_revised_and_history_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company_id = app.create_company(&organization, "Ledgerly").await;
    let user = app.user(&organization, Role::CompanyUser);

    let first = record(
        &app,
        &user,
        vec![
            kpi(&company_id, "arr", "2026-Q1", 2_500_000.0),
            kpi(&company_id, "ndr", "2026-Q1", 112.5),
        ],
    )
    .await
    .expect("recorded");
    assert_eq!(
        (first.created_count, first.updated_count, first.unchanged_count),
        (2, 0, 0)
    );
    assert!(first.kpi_values.iter().all(|value| value.revision == 1 && value.latest));
    assert_eq!(first.kpi_values[0].source, KpiSource::Api as i32);
    assert_eq!(company_band(&app, &user, &company_id).await, "arr_1m_5m");

    let again = record(
        &app,
        &user,
        vec![
            kpi(&company_id, "arr", "2026-Q1", 2_500_000.0),
            kpi(&company_id, "ndr", "2026-Q1", 115.0),
        ],
    )
    .await
    .expect("recorded");
    assert_eq!(
        (again.created_count, again.updated_count, again.unchanged_count),
        (0, 1, 1)
    );
    assert_eq!(again.kpi_values[0].revision, 1);
    assert_eq!(again.kpi_values[1].revision, 2);

    let history = app
        .client()
        .list_kpis(authorized(
            ListKpisRequest {
                company_id: company_id.clone(),
                metric_ids: vec!["ndr".into()],
                include_history: true,
                ..Default::default()
            },
            &user,
        ))
        .await
        .expect("history")
        .into_inner();
    let revisions: Vec<_> = history
        .kpi_values
        .iter()
        .map(|value| (value.revision, value.value, value.latest))
        .collect();
    assert_eq!(revisions, [(2, 115.0, true), (1, 112.5, false)]);

    // A later period moves the band; a correction of an older one does not.
    record(&app, &user, vec![kpi(&company_id, "arr", "2026-Q2", 12_000_000.0)])
        .await
        .expect("recorded");
    assert_eq!(company_band(&app, &user, &company_id).await, "arr_10m_50m");
    record(&app, &user, vec![kpi(&company_id, "arr", "2026-Q1", 400_000.0)])
        .await
        .expect("recorded");
    assert_eq!(company_band(&app, &user, &company_id).await, "arr_10m_50m");
}

async fn a_bad_value_rejects_the_whole_batch(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company_id = app.create_company(&organization, "Ledgerly").await;
    let foreign_company = app.create_company(&new_organization(), "Elsewhere").await;
    let writer = app.issuer.api_key(&organization, &[Scope::MetricsWrite]);
    let result = app
        .client()
        .record_kpis(with_api_key(
            RecordKpisRequest {
                kpi_values: vec![
                    kpi(&company_id, "arr", "2026-Q1", 1_000_000.0),
                    kpi(&company_id, "arr", "2026-Q5", 1_000_000.0),
                    kpi(&company_id, "grr", "2026-Q1", 140.0),
                    kpi(&company_id, "unknown", "2026-Q1", 1.0),
                    kpi(&foreign_company, "arr", "2026-Q1", 1.0),
                    kpi(&company_id, "arr", "2026-Q1", 2_000_000.0),
                ],
            },
            &writer,
        ))
        .await;
    let status = assert_code(result, Code::InvalidArgument);
    let fields = violated_fields(&status);
    for expected in [
        "kpi_values[1].period",
        "kpi_values[2].value",
        "kpi_values[3].metric_id",
        "kpi_values[4].company_id",
        "kpi_values[5]",
    ] {
        assert!(fields.iter().any(|field| field == expected), "{expected} in {fields:?}");
    }
    assert!(
        !fields.iter().any(|field| field.starts_with("kpi_values[0]")),
        "{fields:?}"
    );
    let stored = app
        .client()
        .list_kpis(with_api_key(
            ListKpisRequest::default(),
            &app.issuer.api_key(&organization, &[Scope::Read]),
        ))
        .await
        .expect("listed")
        .into_inner();
    assert!(stored.kpi_values.is_empty(), "nothing of a refused batch is stored");
    let events_only = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    assert_code(
        app.client()
            .record_kpis(with_api_key(
                RecordKpisRequest {
                    kpi_values: vec![kpi(&company_id, "arr", "2026", 1.0)],
                },
                &events_only,
            ))
            .await,
        Code::PermissionDenied,
    );
}

async fn kpis_are_listed_with_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company_id = app.create_company(&organization, "Ledgerly").await;
    let other_company = app.create_company(&organization, "Other").await;
    let admin = app.admin(&organization);
    let mut values = Vec::new();
    for year in [2025, 2026] {
        for quarter in 1..=4 {
            let period = format!("{year}-Q{quarter}");
            values.push(kpi(&company_id, "arr", &period, 1_000_000.0 * f64::from(quarter)));
            values.push(kpi(&company_id, "ndr", &period, 100.0 + f64::from(quarter)));
            values.push(kpi(&other_company, "arr", &period, 500_000.0));
        }
    }
    values.push(kpi(&company_id, "mrr", "2026-03", 90_000.0));
    record(&app, &admin, values).await.expect("recorded");

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_kpis(authorized(
                ListKpisRequest {
                    company_id: company_id.clone(),
                    metric_ids: vec!["arr".into()],
                    start_period: "2025-Q3".into(),
                    end_period: "2026".into(),
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.kpi_values.into_iter().map(|value| value.period));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ["2026-Q4", "2026-Q3", "2026-Q2", "2026-Q1", "2025-Q4", "2025-Q3"]);

    let months = app
        .client()
        .list_kpis(authorized(
            ListKpisRequest {
                period_granularity: PeriodGranularity::Month as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("months")
        .into_inner();
    assert_eq!(months.kpi_values.len(), 1);
    assert_eq!(months.kpi_values[0].metric_id, "mrr");

    let bad = app
        .client()
        .list_kpis(authorized(
            ListKpisRequest {
                metric_ids: vec!["arr".into(), "happiness".into()],
                start_period: "last year".into(),
                period_granularity: 42,
                source: 99,
                ..Default::default()
            },
            &admin,
        ))
        .await;
    let status = assert_code(bad, Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["metric_ids[1]", "period_granularity", "source", "start_period"]
    );

    let stranger = app.admin(&new_organization());
    assert_code(
        app.client()
            .list_kpis(authorized(
                ListKpisRequest {
                    company_id: company_id.clone(),
                    ..Default::default()
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
}

async fn kpis_are_calculated_by_their_formulas(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.user(&new_organization(), Role::CompanyUser);
    let calculate = |metric_id: &str, inputs: &[(&str, f64)]| CalculateKpiRequest {
        metric_id: metric_id.to_owned(),
        inputs: inputs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), *value))
            .collect::<HashMap<_, _>>(),
    };
    let ndr = app
        .client()
        .calculate_kpi(authorized(
            calculate(
                "ndr",
                &[
                    ("start_arr", 1_000_000.0),
                    ("expansion", 150_000.0),
                    ("contraction", 30_000.0),
                    ("churn", 50_000.0),
                ],
            ),
            &token,
        ))
        .await
        .expect("calculated")
        .into_inner();
    assert!((ndr.value - 107.0).abs() < 1e-9, "{}", ndr.value);
    assert_eq!(ndr.unit, MetricUnit::Percent as i32);
    assert!(ndr.components.iter().any(|component| component.name == "start_arr"));

    let payback = app
        .client()
        .calculate_kpi(authorized(
            calculate(
                "cac_payback_months",
                &[("cac", 12_000.0), ("monthly_arpa", 1_000.0), ("gross_margin", 80.0)],
            ),
            &token,
        ))
        .await
        .expect("calculated")
        .into_inner();
    assert!((payback.value - 15.0).abs() < 1e-9, "{}", payback.value);

    let missing = app
        .client()
        .calculate_kpi(authorized(calculate("ndr", &[("start_arr", 0.0)]), &token))
        .await;
    let status = assert_code(missing, Code::InvalidArgument);
    let fields = violated_fields(&status);
    assert!(fields.iter().any(|field| field == "inputs[expansion]"), "{fields:?}");
    assert!(fields.iter().any(|field| field == "inputs[start_arr]"), "{fields:?}");
}

async fn values_are_validated_against_stored_related_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company_id = app.create_company(&organization, "Ledgerly").await;
    let token = app.admin(&organization);
    record(&app, &token, vec![kpi(&company_id, "mrr", "2026-Q1", 100_000.0)])
        .await
        .expect("recorded");
    let validate = |value: f64| ValidateKpiRequest {
        kpi: Some(kpi(&company_id, "arr", "2026-Q1", value)),
        related_values: Vec::new(),
    };
    let consistent = app
        .client()
        .validate_kpi(authorized(validate(1_200_000.0), &token))
        .await
        .expect("validated")
        .into_inner();
    assert_eq!(consistent.status, ValidationStatus::Valid as i32, "{consistent:?}");
    let inconsistent = app
        .client()
        .validate_kpi(authorized(validate(3_000_000.0), &token))
        .await
        .expect("validated")
        .into_inner();
    assert_eq!(
        inconsistent.status,
        ValidationStatus::Warning as i32,
        "{inconsistent:?}"
    );
    let check = inconsistent
        .cross_metric_checks
        .iter()
        .find(|check| check.metric_ids.contains(&"mrr".to_owned()))
        .expect("an ARR/MRR check");
    assert!(check.evaluated);
    assert_eq!(check.expected_value, Some(1_200_000.0));

    let fraction = app
        .client()
        .validate_kpi(authorized(
            ValidateKpiRequest {
                kpi: Some(kpi("", "gross_margin", "2026-Q1", 0.72)),
                related_values: Vec::new(),
            },
            &token,
        ))
        .await
        .expect("validated")
        .into_inner();
    assert_eq!(fraction.status, ValidationStatus::Warning as i32);
    assert_eq!(fraction.suggested_corrections[0].suggested_value, "72");
}

async fn a_csv_import_stores_the_good_rows_and_reports_the_bad(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company_id = app.create_company(&organization, "Ledgerly").await;
    let analyst = app.user(&organization, Role::Analyst);
    let csv = "metric_id,period,value,note\n\
               arr,2026-Q1,1200000,board deck\n\
               arr,2026-Q7,1300000,\n\
               ndr,2026-Q1,112.5,\n\
               gross_margin,2026-Q1,$70,\n";
    let import = |dry_run: bool| ImportKpisRequest {
        csv_content: csv.to_owned(),
        company_id: company_id.clone(),
        dry_run,
    };
    let dry = app
        .client()
        .import_kpis(authorized(import(true), &analyst))
        .await
        .expect("dry run")
        .into_inner();
    assert!(dry.dry_run);
    assert_eq!(
        (dry.total_row_count, dry.accepted_row_count, dry.rejected_row_count),
        (4, 2, 2)
    );
    assert_eq!(dry.created_count, 0);
    let listed = |token: String| {
        let mut client = app.client();
        async move {
            client
                .list_kpis(authorized(ListKpisRequest::default(), &token))
                .await
                .expect("listed")
                .into_inner()
                .kpi_values
        }
    };
    assert!(listed(analyst.clone()).await.is_empty(), "a dry run stores nothing");

    let done = app
        .client()
        .import_kpis(authorized(import(false), &analyst))
        .await
        .expect("imported")
        .into_inner();
    assert_eq!((done.accepted_row_count, done.created_count), (2, 2));
    let rejected: Vec<_> = done
        .rejected_rows
        .iter()
        .map(|row| (row.line_number, row.column.as_str()))
        .collect();
    assert_eq!(rejected, [(3, "period"), (5, "value")]);
    let stored = listed(analyst.clone()).await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|value| value.source == KpiSource::CsvImport as i32));
    assert!(stored.iter().any(|value| value.note == "board deck"));

    let again = app
        .client()
        .import_kpis(authorized(import(false), &analyst))
        .await
        .expect("imported again")
        .into_inner();
    assert_eq!(again.unchanged_count, 2, "re-importing changes nothing");

    assert_code(
        app.client()
            .import_kpis(authorized(import(false), &app.user(&organization, Role::CompanyUser)))
            .await,
        Code::PermissionDenied,
    );
    let unknown_column = app
        .client()
        .import_kpis(authorized(
            ImportKpisRequest {
                csv_content: "metric,period,value\narr,2026,1\n".into(),
                company_id: company_id.clone(),
                dry_run: false,
            },
            &analyst,
        ))
        .await;
    let status = assert_code(unknown_column, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["csv_content"]);
}

both_backends!(
    values_are_revised_and_history_is_kept,
    a_bad_value_rejects_the_whole_batch,
    kpis_are_listed_with_filters_and_pages,
    kpis_are_calculated_by_their_formulas,
    values_are_validated_against_stored_related_metrics,
    a_csv_import_stores_the_good_rows_and_reports_the_bad,
);
