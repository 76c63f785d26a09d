//! ImportKpis: a CSV file of KPI values, checked row by row, recorded (or
//! only checked, on a dry run) with every rejected row and warning named by
//! its line.

use std::collections::{BTreeSet, HashMap};

use metrix_core::authn::{Role, Scope};
use metrix_core::time::now_micros;
use metrix_proto::metrics::v1::*;
use tonic::Request;

use crate::app::announce_kpi_changes;
use crate::error::MetricsError;
use crate::import;
use crate::store::{NewKpi, RecordOutcome};
use crate::validation::{self, KpiCandidate};

use super::{MetricsApi, authorize};

/// Roles that may import files.
const IMPORTERS: [Role; 2] = [Role::Analyst, Role::Admin];

impl MetricsApi {
    pub(super) async fn import_kpis(
        &self,
        request: Request<ImportKpisRequest>,
    ) -> Result<ImportKpisResponse, MetricsError> {
        let caller = authorize(&request, &IMPORTERS, &[Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        let request_company_id = request.company_id.trim().to_owned();
        self.require_company_if_named(&caller.organization_id, &request_company_id)
            .await?;
        let mut parsed = import::parse(&request.csv_content, &request_company_id).map_err(MetricsError::from)?;
        // Rows naming companies outside the organisation are rejected like any bad row.
        let named: BTreeSet<String> = parsed
            .accepted
            .iter()
            .map(|row| row.kpi.company_id().to_owned())
            .collect();
        let known = self.state.store.companies_of(&caller.organization_id, &named).await?;
        let (accepted, foreign): (Vec<_>, Vec<_>) = parsed
            .accepted
            .drain(..)
            .partition(|row| known.contains(row.kpi.company_id()));
        parsed.accepted = accepted;
        parsed.rejected.extend(foreign.into_iter().map(|row| import::RowIssue {
            line_number: row.line_number,
            column: "company_id".to_owned(),
            reason: "is not a company of your organisation".to_owned(),
        }));
        parsed.rejected.sort_by_key(|issue| issue.line_number);

        let warnings = import_warnings(&parsed.accepted);
        let values: Vec<NewKpi> = parsed.accepted.drain(..).map(|row| row.kpi).collect();
        let (mut created, mut updated, mut unchanged) = (0, 0, 0);
        if !request.dry_run && !values.is_empty() {
            let recorded = self
                .state
                .store
                .record_kpis(&caller.organization_id, &caller.subject, now_micros(), &values)
                .await?;
            announce_kpi_changes(self.state.pubsub.as_ref(), &recorded).await;
            for (_, outcome) in recorded {
                match outcome {
                    RecordOutcome::Created => created += 1,
                    RecordOutcome::Updated => updated += 1,
                    RecordOutcome::Unchanged => unchanged += 1,
                }
            }
        }
        tracing::info!(
            organization_id = %caller.organization_id,
            rows = parsed.total_rows,
            accepted = values.len(),
            rejected = parsed.rejected.len(),
            dry_run = request.dry_run,
            "kpi import"
        );
        Ok(ImportKpisResponse {
            total_row_count: parsed.total_rows as i64,
            accepted_row_count: values.len() as i64,
            rejected_row_count: parsed.rejected.len() as i64,
            created_count: created,
            updated_count: updated,
            unchanged_count: unchanged,
            rejected_rows: parsed.rejected.into_iter().map(row_issue_to_proto).collect(),
            warnings: warnings.into_iter().map(row_issue_to_proto).collect(),
            dry_run: request.dry_run,
        })
    }
}

/// Warnings of the accepted rows of an import, checked against the other
/// rows of the same company and period in the file.
fn import_warnings(rows: &[import::ImportRow]) -> Vec<import::RowIssue> {
    let mut related: HashMap<(String, String), validation::RelatedValues> = HashMap::new();
    for row in rows {
        related
            .entry((row.kpi.company_id().to_owned(), row.kpi.period().to_string()))
            .or_default()
            .insert(row.kpi.metric_id().to_owned(), row.kpi.value());
    }
    let mut warnings = Vec::new();
    for row in rows {
        let period = row.kpi.period().to_string();
        let candidate = KpiCandidate {
            metric_id: row.kpi.metric_id().to_owned(),
            period: period.clone(),
            value: row.kpi.value(),
        };
        let empty = validation::RelatedValues::new();
        let same_period = related
            .get(&(row.kpi.company_id().to_owned(), period))
            .unwrap_or(&empty);
        let report = validation::validate(&candidate, same_period);
        let mut reasons: Vec<String> = report
            .violations
            .iter()
            .map(|violation| violation.description.clone())
            .collect();
        reasons.extend(
            report
                .cross_metric_checks
                .iter()
                .filter(|check| check.evaluated && check.status != ValidationStatus::Valid)
                .map(|check| check.description.clone()),
        );
        if !reasons.is_empty() {
            warnings.push(import::RowIssue {
                line_number: row.line_number,
                column: "value".to_owned(),
                reason: reasons.join("; "),
            });
        }
    }
    warnings
}

fn row_issue_to_proto(issue: import::RowIssue) -> ImportRowIssue {
    ImportRowIssue {
        line_number: issue.line_number,
        column: issue.column,
        reason: issue.reason,
    }
}
