//! Benchmark reports: templates, generation, reading and downloads.

use std::sync::OnceLock;

use metrix_core::authn::Principal;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token::{self, PageLimits};
use metrix_core::reference;
use metrix_core::time::{now_micros, rfc3339};
use metrix_proto::benchmark::v1::*;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::Request;

use crate::convert::{self, PLATFORM_SOURCE_ID, ReportState};
use crate::error::BenchmarkError;
use crate::peers::{CallerCredentials, MetricInfo};
use crate::ranking;
use crate::reports::{self, ReportBody, ReportHeading};
use crate::store::ReportRow;

use super::checks::{period_of, reader, status_error};
use super::sources::static_page;
use super::{BenchmarkApi, Comparison, SectorChoice};

/// How long a report's idempotency key holds, in microseconds.
const REPORT_REQUEST_WINDOW: i64 = 24 * 3_600 * 1_000_000;

/// The longest idempotency key.
const MAX_REQUEST_ID_LENGTH: usize = 128;

/// Where the next page of ListReports starts: after this report.
#[derive(Serialize, Deserialize)]
struct ReportCursor {
    created_at: i64,
    report_id: String,
}

/// A stored report with its body read back.
fn stored_report(row: &ReportRow) -> Result<Report, BenchmarkError> {
    let body: Option<ReportBody> = if row.content.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&row.content)?)
    };
    Ok(convert::report(row, body.as_ref()))
}

/// The canonical proto3 JSON of a report.
fn report_json(report: &Report) -> Result<Vec<u8>, BenchmarkError> {
    static DESCRIPTOR: OnceLock<Option<prost_reflect::MessageDescriptor>> = OnceLock::new();
    let descriptor = DESCRIPTOR
        .get_or_init(|| {
            prost_reflect::DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET)
                .ok()?
                .get_message_by_name("metrix.benchmark.v1.Report")
        })
        .clone()
        .ok_or_else(|| BenchmarkError::Render("the report message is not in the descriptor set".to_owned()))?;
    let message = prost_reflect::DynamicMessage::decode(descriptor, report.encode_to_vec().as_slice())
        .map_err(|error| BenchmarkError::Render(format!("json: {error}")))?;
    let mut json = serde_json::to_vec_pretty(&message)?;
    json.push(b'\n');
    Ok(json)
}

impl BenchmarkApi {
    pub(super) async fn list_report_templates(
        &self,
        request: Request<ListReportTemplatesRequest>,
    ) -> Result<ListReportTemplatesResponse, BenchmarkError> {
        reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let templates: Vec<ReportTemplate> = reports::TEMPLATES
            .iter()
            .map(|template| ReportTemplate {
                id: template.id.to_owned(),
                display_name: template.display_name.to_owned(),
                description: template.description.to_owned(),
                metric_ids: template.metric_ids.iter().map(|id| (*id).to_owned()).collect(),
            })
            .collect();
        let (report_templates, next_page_token) =
            static_page(&templates, request.page_size, &request.page_token, "templates")?;
        Ok(ListReportTemplatesResponse {
            report_templates,
            next_page_token,
        })
    }

    pub(super) async fn generate_report(
        &self,
        request: Request<GenerateReportRequest>,
    ) -> Result<GenerateReportResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let credentials = CallerCredentials::from_request(&caller.organization_id, request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let company_id = request.company_id.trim().to_owned();
        if company_id.is_empty() {
            violations.push(FieldViolation::new("company_id", "is required"));
        }
        let template = match request.template_id.trim() {
            "" => {
                violations.push(FieldViolation::new("template_id", "is required"));
                None
            }
            id => {
                let found = reports::template(id);
                if found.is_none() {
                    violations.push(FieldViolation::new(
                        "template_id",
                        format!("{id:?} is not a report template (see ListReportTemplates)"),
                    ));
                }
                found
            }
        };
        let period = violations.check(period_of("period", &request.period));
        let request_id = request.request_id.trim().to_owned();
        if request_id.len() > MAX_REQUEST_ID_LENGTH {
            violations.push(FieldViolation::new(
                "request_id",
                format!("must be at most {MAX_REQUEST_ID_LENGTH} characters"),
            ));
        }
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (Some(template), Some(period), Some(source)) = (template, period, source) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let company = self.company(&credentials, &company_id).await?;
        self.engine
            .admit(
                &caller,
                "GenerateReport",
                format!(
                    "company={} template={} period={period}",
                    company.company_id, template.id
                ),
            )
            .await?;
        let now = now_micros();
        if !request_id.is_empty()
            && let Some(existing) = self
                .engine
                .store
                .report_by_request(&caller.organization_id, &request_id, now - REPORT_REQUEST_WINDOW)
                .await?
        {
            return Ok(GenerateReportResponse {
                report: Some(stored_report(&existing)?),
            });
        }
        let mut row = ReportRow {
            report_id: uuid::Uuid::now_v7().to_string(),
            organization_id: caller.organization_id.clone(),
            company_id: company.company_id.clone(),
            template_id: template.id.to_owned(),
            period: period.to_string(),
            revenue_band_id: company.revenue_band_id.clone(),
            sector_id: company.sector_id.clone(),
            source_id: source.id().to_owned(),
            status: ReportState::Succeeded.code(),
            failure_message: String::new(),
            request_id,
            created_at: now,
            completed_at: None,
            content: String::new(),
        };
        let body = if company.revenue_band_id.is_empty() {
            row.status = ReportState::Failed.code();
            row.failure_message =
                "the company has no revenue band yet: record its ARR so it can be compared with peers".to_owned();
            None
        } else {
            let catalogue = self.engine.peers.metrics().await?;
            let metrics: Vec<MetricInfo> = template
                .metric_ids
                .iter()
                .filter_map(|id| catalogue.iter().find(|metric| metric.id == *id).cloned())
                .collect();
            let values = self
                .engine
                .peers
                .company_values(&credentials, &company.company_id, &period)
                .await?;
            let (scope, rankings) = self
                .rank_in_sector(
                    &metrics,
                    &values,
                    Comparison {
                        revenue_band_id: company.revenue_band_id.clone(),
                        sector: SectorChoice::OwnOrBand(company.sector_id.clone()),
                        period,
                    },
                    &source,
                    &caller.organization_id,
                )
                .await?;
            row.sector_id = scope.sector_id.unwrap_or_default();
            let overall = ranking::overall(&rankings);
            let body = reports::build(metrics.into_iter().zip(rankings).collect(), overall);
            row.content = serde_json::to_string(&body)?;
            Some(body)
        };
        row.completed_at = Some(now_micros());
        self.engine.store.insert_report(&row).await?;
        tracing::info!(report_id = %row.report_id, company_id = %row.company_id, template = %row.template_id, "report generated");
        Ok(GenerateReportResponse {
            report: Some(convert::report(&row, body.as_ref())),
        })
    }

    pub(super) async fn get_report(
        &self,
        request: Request<GetReportRequest>,
    ) -> Result<GetReportResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let row = self.stored_row(&caller, &request.get_ref().report_id).await?;
        Ok(GetReportResponse {
            report: Some(stored_report(&row)?),
        })
    }

    pub(super) async fn list_reports(
        &self,
        request: Request<ListReportsRequest>,
    ) -> Result<ListReportsResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let company_id = request.company_id.trim();
        let filters = format!("reports|{company_id}");
        let (size, cursor) = page_token::page_request::<ReportCursor>(
            request.page_size,
            &request.page_token,
            &filters,
            PageLimits::STANDARD,
        )
        .map_err(BenchmarkError::from)?;
        let after = cursor
            .as_ref()
            .map(|cursor| (cursor.created_at, cursor.report_id.as_str()));
        let rows = self
            .engine
            .store
            .list_reports(&caller.organization_id, company_id, after, size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &filters, |row| ReportCursor {
            created_at: row.created_at,
            report_id: row.report_id.clone(),
        });
        Ok(ListReportsResponse {
            reports: rows.iter().map(|row| convert::report(row, None)).collect(),
            next_page_token,
        })
    }

    pub(super) async fn stored_row(&self, caller: &Principal, report_id: &str) -> Result<ReportRow, BenchmarkError> {
        let report_id = report_id.trim();
        if report_id.is_empty() {
            return Err(BenchmarkError::invalid("report_id", "is required"));
        }
        self.engine
            .store
            .report(&caller.organization_id, report_id)
            .await?
            .ok_or(BenchmarkError::NotFound("report"))
    }

    pub(super) async fn download_report(
        &self,
        request: Request<DownloadReportRequest>,
    ) -> Result<DownloadReportResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let format = ReportFormat::try_from(request.format)
            .map_err(|_| BenchmarkError::invalid("format", format!("{} is not a report format", request.format)))?;
        let row = self.stored_row(&caller, &request.report_id).await?;
        if row.status != ReportState::Succeeded.code() {
            return Err(BenchmarkError::FailedPrecondition(format!(
                "the report did not succeed: {}",
                row.failure_message
            )));
        }
        let body: ReportBody = serde_json::from_str(&row.content)?;
        let (content_type, extension, content) = match format {
            ReportFormat::Unspecified | ReportFormat::Html => (
                "text/html; charset=utf-8",
                "html",
                reports::render_html(&self.heading(&caller, &row).await, &body).into_bytes(),
            ),
            ReportFormat::Markdown => (
                "text/markdown; charset=utf-8",
                "md",
                reports::render_markdown(&self.heading(&caller, &row).await, &body).into_bytes(),
            ),
            ReportFormat::Csv => (
                "text/csv; charset=utf-8",
                "csv",
                reports::render_csv(&body)
                    .map_err(|error| BenchmarkError::Render(format!("csv: {error}")))?
                    .into_bytes(),
            ),
            ReportFormat::Json => (
                "application/json",
                "json",
                report_json(&convert::report(&row, Some(&body)))?,
            ),
        };
        Ok(DownloadReportResponse {
            content_type: content_type.to_owned(),
            filename: format!("metrix-report-{}.{extension}", row.report_id),
            content,
        })
    }

    /// What a rendered report says about itself.
    pub(super) async fn heading(&self, caller: &Principal, row: &ReportRow) -> ReportHeading {
        let source = match row.source_id.as_str() {
            PLATFORM_SOURCE_ID => convert::platform_source().display_name,
            id => match self.engine.store.source(&caller.organization_id, id).await {
                Ok(Some(source)) => source.display_name,
                _ => id.to_owned(),
            },
        };
        ReportHeading {
            report_id: row.report_id.clone(),
            template_name: reports::template(&row.template_id)
                .map(|template| template.display_name.to_owned())
                .unwrap_or_else(|| row.template_id.clone()),
            company_id: row.company_id.clone(),
            period: row.period.clone(),
            revenue_band: reference::revenue_band(&row.revenue_band_id)
                .map(|band| band.display_name.to_owned())
                .unwrap_or_else(|| row.revenue_band_id.clone()),
            sector: reference::sector(&row.sector_id)
                .map(|sector| sector.display_name.to_owned())
                .unwrap_or_else(|| "all sectors".to_owned()),
            source,
            generated_at: rfc3339(row.completed_at.unwrap_or(row.created_at)),
        }
    }
}
