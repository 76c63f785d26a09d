//! Reports: generation, idempotency, visibility and every download format.

use metrix_core::authn::Role;
use metrix_proto::benchmark::v1::{
    Assessment, DownloadReportRequest, GenerateReportRequest, GetReportRequest, ListReportTemplatesRequest,
    ListReportsRequest, ReportFormat, ReportStatus,
};
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

async fn reports_compare_a_company_and_download_in_every_format(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let peers_ndr: Vec<f64> = (0..12).map(|step| 95.0 + 2.0 * f64::from(step)).collect();
    let peers_grr: Vec<f64> = (0..12).map(|step| 80.0 + f64::from(step)).collect();
    app.peers
        .add_peers("healthtech", "arr_5m_10m", "ndr", "2026-Q2", &peers_ndr);
    app.peers
        .add_peers("healthtech", "arr_5m_10m", "grr", "2026-Q2", &peers_grr);
    let company = app.peers.add_company(&organization, "healthtech", "arr_5m_10m");
    app.peers.set_value(&company, "ndr", "2026-Q2", 130.0);
    app.peers.set_value(&company, "grr", "2026-Q2", 79.0);
    let token = app.user(&organization, Role::CompanyUser);
    let templates = app
        .client()
        .list_report_templates(authorized(ListReportTemplatesRequest::default(), &token))
        .await
        .expect("listed")
        .into_inner();
    assert!(
        templates
            .report_templates
            .iter()
            .any(|template| template.id == "retention")
    );

    let request = GenerateReportRequest {
        company_id: company.clone(),
        template_id: "retention".into(),
        period: "2026-Q2".into(),
        request_id: "report-once".into(),
        ..Default::default()
    };
    let report = app
        .client()
        .generate_report(authorized(request.clone(), &token))
        .await
        .expect("generated")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(report.status, ReportStatus::Succeeded as i32);
    assert_eq!(report.sections.len(), 2);
    let ndr = &report.sections[0];
    assert_eq!(ndr.metric_id, "ndr");
    assert_eq!(ndr.assessment, Assessment::Strength as i32);
    assert!(ndr.chart_svg.starts_with("<svg") && ndr.chart_svg.ends_with("</svg>"));
    assert!(!ndr.chart_svg.contains("<script"));
    assert!(ndr.reading.contains("above the median"), "{}", ndr.reading);
    assert_eq!(report.sections[1].assessment, Assessment::Weakness as i32);
    assert_eq!(report.strengths.len(), 1);
    assert_eq!(report.weaknesses.len(), 1);

    // The same idempotency key gives the same report.
    let retried = app
        .client()
        .generate_report(authorized(request, &token))
        .await
        .expect("generated")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(retried.id, report.id);
    let fetched = app
        .client()
        .get_report(authorized(
            GetReportRequest {
                report_id: report.id.clone(),
            },
            &token,
        ))
        .await
        .expect("fetched")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(fetched, report);

    for (format, content_type, extension, marker) in [
        (ReportFormat::Html, "text/html; charset=utf-8", "html", "<svg"),
        (
            ReportFormat::Markdown,
            "text/markdown; charset=utf-8",
            "md",
            "## Net dollar retention",
        ),
        (
            ReportFormat::Csv,
            "text/csv; charset=utf-8",
            "csv",
            "metric_id,metric_name",
        ),
        (
            ReportFormat::Json,
            "application/json",
            "json",
            "\"templateId\": \"retention\"",
        ),
    ] {
        let download = app
            .client()
            .download_report(authorized(
                DownloadReportRequest {
                    report_id: report.id.clone(),
                    format: format as i32,
                },
                &token,
            ))
            .await
            .expect("downloaded")
            .into_inner();
        assert_eq!(download.content_type, content_type);
        assert_eq!(download.filename, format!("metrix-report-{}.{extension}", report.id));
        let text = String::from_utf8(download.content).expect("text");
        assert!(text.contains(marker), "{format:?} lacks {marker}: {text}");
    }

    // Another organisation cannot see it.
    let stranger = app.user(&new_organization(), Role::Admin);
    assert_code(
        app.client()
            .get_report(authorized(
                GetReportRequest {
                    report_id: report.id.clone(),
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.client()
            .download_report(authorized(
                DownloadReportRequest {
                    report_id: report.id,
                    format: 0,
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
}

async fn a_company_without_arr_gets_a_failed_report(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company = app.peers.add_company(&organization, "fintech", "");
    let token = app.user(&organization, Role::Admin);
    let report = app
        .client()
        .generate_report(authorized(
            GenerateReportRequest {
                company_id: company,
                template_id: "saas_growth".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("answered")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(report.status, ReportStatus::Failed as i32);
    assert!(report.failure_message.contains("ARR"));
    assert_code(
        app.client()
            .download_report(authorized(
                DownloadReportRequest {
                    report_id: report.id,
                    format: ReportFormat::Html as i32,
                },
                &token,
            ))
            .await,
        Code::FailedPrecondition,
    );
    let status = assert_code(
        app.client()
            .generate_report(authorized(
                GenerateReportRequest {
                    template_id: "nope".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["company_id", "template_id"]);
}

both_backends!(
    reports_compare_a_company_and_download_in_every_format,
    a_company_without_arr_gets_a_failed_report,
    reports_are_listed_newest_first_for_their_organisation_only,
);

/// ListReports: the organisation's own reports only, newest first, page by
/// page with tokens bound to the filter, summaries without sections.
async fn reports_are_listed_newest_first_for_their_organisation_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let peers: Vec<f64> = (0..12).map(|step| 95.0 + 2.0 * f64::from(step)).collect();
    app.peers
        .add_peers("healthtech", "arr_5m_10m", "ndr", "2026-Q2", &peers);
    let first = app.peers.add_company(&organization, "healthtech", "arr_5m_10m");
    let second = app.peers.add_company(&organization, "healthtech", "arr_5m_10m");
    for company in [&first, &second] {
        app.peers.set_value(company, "ndr", "2026-Q2", 120.0);
    }
    let token = app.user(&organization, Role::CompanyUser);
    let mut generated = Vec::new();
    for company in [&first, &second, &first] {
        let report = app
            .client()
            .generate_report(authorized(
                GenerateReportRequest {
                    company_id: company.clone(),
                    template_id: "retention".into(),
                    period: "2026-Q2".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("generated")
            .into_inner()
            .report
            .expect("report");
        generated.push(report.id);
    }
    let list = |request: ListReportsRequest, token: &str| {
        let mut client = app.client();
        let request = authorized(request, token);
        async move { client.list_reports(request).await }
    };

    // Newest first, two at a time.
    let page = list(
        ListReportsRequest {
            page_size: 2,
            ..Default::default()
        },
        &token,
    )
    .await
    .expect("listed")
    .into_inner();
    let ids: Vec<&str> = page.reports.iter().map(|report| report.id.as_str()).collect();
    assert_eq!(ids, [generated[2].as_str(), generated[1].as_str()]);
    assert!(
        page.reports
            .iter()
            .all(|report| report.sections.is_empty() && report.strengths.is_empty())
    );
    assert!(
        page.reports
            .iter()
            .all(|report| report.status == ReportStatus::Succeeded as i32)
    );
    let rest = list(
        ListReportsRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        },
        &token,
    )
    .await
    .expect("listed")
    .into_inner();
    let ids: Vec<&str> = rest.reports.iter().map(|report| report.id.as_str()).collect();
    assert_eq!(ids, [generated[0].as_str()]);
    assert!(rest.next_page_token.is_empty());

    // One company's reports; the token of another filter is refused.
    let of_first = list(
        ListReportsRequest {
            company_id: first.clone(),
            ..Default::default()
        },
        &token,
    )
    .await
    .expect("listed")
    .into_inner();
    let ids: Vec<&str> = of_first.reports.iter().map(|report| report.id.as_str()).collect();
    assert_eq!(ids, [generated[2].as_str(), generated[0].as_str()]);
    assert_code(
        list(
            ListReportsRequest {
                company_id: first.clone(),
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
            &token,
        )
        .await,
        Code::InvalidArgument,
    );

    // Another organisation sees none of them, even naming the company.
    let stranger = app.user(&new_organization(), Role::Admin);
    for company_id in [String::new(), first] {
        let seen = list(
            ListReportsRequest {
                company_id,
                ..Default::default()
            },
            &stranger,
        )
        .await
        .expect("listed")
        .into_inner();
        assert!(seen.reports.is_empty(), "{:?}", seen.reports);
    }
}
