//! The reference lists (revenue bands, sectors) and the benchmark sources:
//! the platform's own and imported published data.

use metrix_core::authn::principal;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::{page_token, reference};
use metrix_proto::benchmark::v1::*;
use serde::{Deserialize, Serialize};
use tonic::Request;

use crate::error::BenchmarkError;
use crate::store::SourceCursor;
use crate::{convert, import};

use super::checks::{reader, status_error};
use super::{BenchmarkApi, IMPORTERS};

/// Where the next page of a static list starts: after this position.
#[derive(Serialize, Deserialize)]
struct PositionCursor {
    after: usize,
}

/// A page of a fixed list, by position.
pub(super) fn static_page<T: Clone>(
    items: &[T],
    page_size: i32,
    page_token_text: &str,
    filters: &str,
) -> Result<(Vec<T>, String), BenchmarkError> {
    let mut violations = Violations::default();
    let size = violations.check(page_token::page_size(page_size));
    let cursor = violations.check(page_token::decode::<PositionCursor>(page_token_text, filters));
    let (Some(size), Some(cursor)) = (size, cursor) else {
        return Err(violations.into_vec().into());
    };
    violations.finish()?;
    let start = cursor.map(|cursor| cursor.after).unwrap_or_default().min(items.len());
    let end = (start + size as usize).min(items.len());
    let next = if end < items.len() {
        page_token::encode(&PositionCursor { after: end }, filters)
    } else {
        String::new()
    };
    Ok((items[start..end].to_vec(), next))
}

/// Where the next page of sources starts.
#[derive(Serialize, Deserialize)]
enum SourcesCursor {
    /// After the platform source: the first imported one is next.
    AfterPlatform,
    /// After this imported source.
    After(SourceCursor),
}

impl BenchmarkApi {
    pub(super) async fn list_revenue_bands(
        &self,
        request: Request<ListRevenueBandsRequest>,
    ) -> Result<ListRevenueBandsResponse, BenchmarkError> {
        reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let bands: Vec<_> = reference::REVENUE_BANDS.iter().map(|band| band.to_proto()).collect();
        let (revenue_bands, next_page_token) = static_page(&bands, request.page_size, &request.page_token, "bands")?;
        Ok(ListRevenueBandsResponse {
            revenue_bands,
            next_page_token,
        })
    }

    pub(super) async fn list_sectors(
        &self,
        request: Request<ListSectorsRequest>,
    ) -> Result<ListSectorsResponse, BenchmarkError> {
        reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let sectors: Vec<_> = reference::SECTORS.iter().map(|sector| sector.to_proto()).collect();
        let (sectors, next_page_token) = static_page(&sectors, request.page_size, &request.page_token, "sectors")?;
        Ok(ListSectorsResponse {
            sectors,
            next_page_token,
        })
    }

    pub(super) async fn list_benchmark_sources(
        &self,
        request: Request<ListBenchmarkSourcesRequest>,
    ) -> Result<ListBenchmarkSourcesResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let kind = violations.check(
            BenchmarkSourceKind::try_from(request.kind)
                .map_err(|_| FieldViolation::new("kind", format!("{} is not a source kind", request.kind))),
        );
        let filters = format!("sources|{}|{}", request.kind, request.verified_only);
        let size = violations.check(page_token::page_size(request.page_size));
        let cursor = violations.check(page_token::decode::<SourcesCursor>(&request.page_token, &filters));
        let (Some(kind), Some(size), Some(cursor)) = (kind, size, cursor) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let mut sources = Vec::new();
        let wants_platform = matches!(kind, BenchmarkSourceKind::Unspecified | BenchmarkSourceKind::Platform);
        let wants_external = matches!(kind, BenchmarkSourceKind::Unspecified | BenchmarkSourceKind::External);
        if cursor.is_none() && wants_platform {
            sources.push(convert::platform_source());
        }
        let mut next_page_token = String::new();
        if wants_external {
            let after = match &cursor {
                Some(SourcesCursor::After(after)) => Some(after),
                _ => None,
            };
            let room = size.saturating_sub(u32::try_from(sources.len()).unwrap_or(u32::MAX));
            let rows = self
                .engine
                .store
                .sources(&caller.organization_id, request.verified_only, after, room + 1)
                .await?;
            if rows.len() > room as usize {
                let last = rows.get((room as usize).wrapping_sub(1));
                let next = match last {
                    Some(last) => SourcesCursor::After(SourceCursor {
                        publication_date: last.publication_date.clone(),
                        source_id: last.source_id.clone(),
                    }),
                    None => SourcesCursor::AfterPlatform,
                };
                next_page_token = page_token::encode(&next, &filters);
            }
            sources.extend(rows.iter().take(room as usize).map(convert::source));
        }
        Ok(ListBenchmarkSourcesResponse {
            benchmark_sources: sources,
            next_page_token,
        })
    }

    pub(super) async fn import_benchmark_data(
        &self,
        request: Request<ImportBenchmarkDataRequest>,
    ) -> Result<ImportBenchmarkDataResponse, BenchmarkError> {
        let caller = principal(&request).map_err(status_error)?.clone();
        caller.require_user_role(&IMPORTERS).map_err(status_error)?;
        let request = request.into_inner();
        let source = import::parse_source(&request)?;
        let catalogue = self.engine.peers.metrics().await?;
        let rows = match import::parse_rows(&request.rows, &catalogue) {
            Ok(rows) => rows,
            Err(errors) => {
                return Ok(ImportBenchmarkDataResponse {
                    source: None,
                    imported_row_count: 0,
                    row_errors: errors
                        .into_iter()
                        .map(|error| BenchmarkDataRowError {
                            row_index: i32::try_from(error.row_index).unwrap_or(i32::MAX),
                            field: error.field.to_owned(),
                            message: error.message,
                        })
                        .collect(),
                });
            }
        };
        if request.validate_only {
            return Ok(ImportBenchmarkDataResponse::default());
        }
        let stored = self
            .engine
            .store
            .replace_source(&caller.organization_id, &source, &rows)
            .await?;
        tracing::info!(
            source_id = %stored.source_id,
            organization_id = %caller.organization_id,
            rows = rows.len(),
            "benchmark source imported"
        );
        Ok(ImportBenchmarkDataResponse {
            imported_row_count: stored.row_count,
            source: Some(convert::source(&stored)),
            row_errors: Vec::new(),
        })
    }
}
