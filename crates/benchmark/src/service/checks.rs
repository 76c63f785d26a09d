//! The checks every section's handlers share: who may read, and the
//! request fields naming a metric, revenue band, sector or period (each
//! refused by field name, pointing at the RPC that lists the valid values).

use metrix_core::authn::{Principal, Scope, principal};
use metrix_core::error::FieldViolation;
use metrix_core::period::Period;
use metrix_core::reference;
use metrix_core::time::now_micros;
use tonic::{Request, Status};

use crate::error::BenchmarkError;
use crate::peers::MetricInfo;
use crate::{import, series};

/// The most metrics one ranking covers.
pub(super) const MAX_RANKED_METRICS: usize = 50;

/// Any authenticated caller that may read its organisation's data: users of
/// every role, and service tokens or API keys with the `read` scope.
pub(super) fn reader<T>(request: &Request<T>) -> Result<Principal, Status> {
    let caller = principal(request)?;
    caller.require_scope(Scope::Read)?;
    Ok(caller.clone())
}

pub(super) fn metric_of(catalogue: &[MetricInfo], field: &str, id: &str) -> Result<MetricInfo, FieldViolation> {
    let id = id.trim();
    if id.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    catalogue
        .iter()
        .find(|metric| metric.id == id)
        .cloned()
        .ok_or_else(|| FieldViolation::new(field, format!("{id:?} is not a metric (see ListMetricDefinitions)")))
}

pub(super) fn band_of(field: &str, id: &str) -> Result<String, FieldViolation> {
    let id = id.trim();
    if id.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    reference::revenue_band(id)
        .map(|band| band.id.to_owned())
        .ok_or_else(|| FieldViolation::new(field, format!("{id:?} is not a revenue band (see ListRevenueBands)")))
}

pub(super) fn sector_of(field: &str, id: &str) -> Result<Option<String>, FieldViolation> {
    let id = id.trim();
    if id.is_empty() {
        return Ok(None);
    }
    reference::sector(id)
        .map(|sector| Some(sector.id.to_owned()))
        .ok_or_else(|| FieldViolation::new(field, format!("{id:?} is not a sector (see ListSectors)")))
}

pub(super) fn period_of(field: &str, text: &str) -> Result<Period, FieldViolation> {
    if text.trim().is_empty() {
        return Ok(series::last_ended_quarter(now_micros()));
    }
    import::parse_slice_period(text).map_err(|message| FieldViolation::new(field, message))
}

/// The metrics of a ranking request: each known, none twice, at most 50.
pub(super) fn metric_list(catalogue: &[MetricInfo], ids: &[String]) -> Result<Vec<MetricInfo>, FieldViolation> {
    if ids.len() > MAX_RANKED_METRICS {
        return Err(FieldViolation::new(
            "metric_ids",
            format!("must name at most {MAX_RANKED_METRICS} metrics"),
        ));
    }
    let mut metrics: Vec<MetricInfo> = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let metric = metric_of(catalogue, &format!("metric_ids[{index}]"), id)?;
        if metrics.iter().any(|known| known.id == metric.id) {
            return Err(FieldViolation::new(
                format!("metric_ids[{index}]"),
                "names a metric twice",
            ));
        }
        metrics.push(metric);
    }
    metrics.sort_by(|left, right| left.id.cmp(&right.id));
    Ok(metrics)
}

/// A status from a permission check, carried as a domain error.
pub(super) fn status_error(status: Status) -> BenchmarkError {
    match status.code() {
        tonic::Code::PermissionDenied => BenchmarkError::PermissionDenied("your role does not allow this"),
        _ => BenchmarkError::Unauthenticated(status.message().to_owned()),
    }
}
