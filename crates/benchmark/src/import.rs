//! ImportBenchmarkData: the published figures of an external survey, checked
//! row by row before anything is stored.

use std::collections::HashMap;

use metrix_core::error::FieldViolation;
use metrix_core::period::Period;
use metrix_core::reference;
use metrix_proto::benchmark::v1::{BenchmarkDataRow, ImportBenchmarkDataRequest};
use metrix_proto::metrics::v1::PeriodGranularity;

use crate::peers::MetricInfo;
use crate::store::{NewSource, PublishedRow};

/// The most rows of one import.
pub const MAX_ROWS: usize = 10_000;
/// The longest source name, description or publisher, in characters.
const MAX_TEXT_LENGTH: usize = 2_000;

/// Why one row was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The row's index in the request.
    pub row_index: usize,
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The source fields of an import, checked; every problem is a field
/// violation of the request.
pub fn parse_source(request: &ImportBenchmarkDataRequest) -> Result<NewSource, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let display_name = request.source_name.trim().to_owned();
    if display_name.is_empty() {
        violations.push(FieldViolation::new("source_name", "is required"));
    } else if display_name.chars().count() > 200 {
        violations.push(FieldViolation::new("source_name", "must be at most 200 characters"));
    }
    let publication_date = request.publication_date.trim().to_owned();
    if !is_calendar_date(&publication_date) {
        violations.push(FieldViolation::new(
            "publication_date",
            "must be a calendar date such as 2026-03-31",
        ));
    }
    let url = request.url.trim().to_owned();
    if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
        violations.push(FieldViolation::new("url", "must be an http:// or https:// link"));
    }
    for (field, text) in [("publisher", &request.publisher), ("description", &request.description)] {
        if text.chars().count() > MAX_TEXT_LENGTH {
            violations.push(FieldViolation::new(
                field,
                format!("must be at most {MAX_TEXT_LENGTH} characters"),
            ));
        }
    }
    if request.rows.is_empty() {
        violations.push(FieldViolation::new("rows", "must hold at least one row"));
    } else if request.rows.len() > MAX_ROWS {
        violations.push(FieldViolation::new(
            "rows",
            format!("must hold at most {MAX_ROWS} rows"),
        ));
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(NewSource {
        display_name,
        publisher: request.publisher.trim().to_owned(),
        publication_date,
        verified: request.verified,
        url,
        description: request.description.trim().to_owned(),
    })
}

/// Whether `text` is an ISO 8601 calendar date `YYYY-MM-DD` that exists.
fn is_calendar_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&year) && (1..=days_in_month).contains(&day)
}

/// A period of a benchmark slice: a quarter or a month.
pub fn parse_slice_period(text: &str) -> Result<Period, String> {
    let period = Period::parse(text.trim()).map_err(|error| error.to_string())?;
    match period.granularity() {
        PeriodGranularity::Quarter | PeriodGranularity::Month => Ok(period),
        _ => Err("must be a quarter (2026-Q3) or a month (2026-07)".to_owned()),
    }
}

/// Checks every row; the stored form of all of them, or every error.
pub fn parse_rows(rows: &[BenchmarkDataRow], metrics: &[MetricInfo]) -> Result<Vec<PublishedRow>, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(rows.len());
    let mut seen: HashMap<(String, String, String, String), usize> = HashMap::new();
    for (row_index, row) in rows.iter().enumerate() {
        let mut error = |field: &'static str, message: String| {
            errors.push(RowError {
                row_index,
                field,
                message,
            })
        };
        let metric_id = row.metric_id.trim().to_owned();
        if !metrics.iter().any(|metric| metric.id == metric_id) {
            error("metric_id", format!("{metric_id:?} is not a metric"));
        }
        let revenue_band_id = row.revenue_band_id.trim().to_owned();
        if reference::revenue_band(&revenue_band_id).is_none() {
            error("revenue_band_id", format!("{revenue_band_id:?} is not a revenue band"));
        }
        let sector_id = row.sector_id.trim().to_owned();
        if !sector_id.is_empty() && reference::sector(&sector_id).is_none() {
            error("sector_id", format!("{sector_id:?} is not a sector"));
        }
        let period = match parse_slice_period(&row.period) {
            Ok(period) => period.to_string(),
            Err(message) => {
                error("period", message);
                String::new()
            }
        };
        if row.n < 1 {
            error("n", "must be at least 1".to_owned());
        }
        let figures = [
            ("mean", row.mean),
            ("std_dev", row.std_dev),
            ("min", row.min),
            ("max", row.max),
            ("p10", row.p10),
            ("p25", row.p25),
            ("p50", row.p50),
            ("p75", row.p75),
            ("p90", row.p90),
        ];
        let mut finite = true;
        for (field, value) in figures {
            if value.is_some_and(|value| !value.is_finite()) {
                error(field, "must be a finite number".to_owned());
                finite = false;
            }
        }
        if row.std_dev.is_some_and(|std_dev| std_dev < 0.0) {
            error("std_dev", "must not be negative".to_owned());
        }
        if finite {
            let ordered = [
                ("min", row.min),
                ("p10", row.p10),
                ("p25", row.p25),
                ("p50", row.p50),
                ("p75", row.p75),
                ("p90", row.p90),
                ("max", row.max),
            ];
            let mut previous: Option<(&str, f64)> = None;
            for (field, value) in ordered {
                let Some(value) = value else { continue };
                if let Some((previous_field, previous_value)) = previous
                    && value < previous_value
                {
                    error(
                        field,
                        format!("percentiles must be non-decreasing: {field} is below {previous_field}"),
                    );
                }
                previous = Some((field, value));
            }
            if let Some(mean) = row.mean
                && (row.min.is_some_and(|min| mean < min) || row.max.is_some_and(|max| mean > max))
            {
                error("mean", "must lie between min and max".to_owned());
            }
        }
        let key = (
            metric_id.clone(),
            revenue_band_id.clone(),
            sector_id.clone(),
            period.clone(),
        );
        if !period.is_empty()
            && let Some(first) = seen.insert(key, row_index)
        {
            error(
                "period",
                format!("the same metric, band, sector and period is already in row {first}"),
            );
        }
        parsed.push(PublishedRow {
            metric_id,
            revenue_band_id,
            sector_id,
            period,
            sample_size: row.n,
            mean: row.mean,
            std_dev: row.std_dev,
            min_value: row.min,
            max_value: row.max,
            p10: row.p10,
            p25: row.p25,
            p50: row.p50,
            p75: row.p75,
            p90: row.p90,
        });
    }
    if errors.is_empty() { Ok(parsed) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Direction;

    fn metrics() -> Vec<MetricInfo> {
        vec![MetricInfo {
            id: "ndr".into(),
            display_name: "Net dollar retention".into(),
            unit: "%".into(),
            direction: Direction::HigherIsBetter,
        }]
    }

    fn row() -> BenchmarkDataRow {
        BenchmarkDataRow {
            metric_id: "ndr".into(),
            revenue_band_id: "arr_1m_5m".into(),
            sector_id: String::new(),
            period: "2026-Q2".into(),
            n: 120,
            p25: Some(98.0),
            p50: Some(104.0),
            p75: Some(112.0),
            ..Default::default()
        }
    }

    #[test]
    fn calendar_dates_must_exist() {
        assert!(is_calendar_date("2024-02-29"));
        assert!(!is_calendar_date("2026-02-29"));
        assert!(!is_calendar_date("2026-13-01"));
        assert!(!is_calendar_date("2026-1-01"));
        assert!(!is_calendar_date("+026-01-01"));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_field() {
        let mut unordered = row();
        unordered.p75 = Some(90.0);
        unordered.period = "2026-Q1".into();
        let mut unknown = row();
        unknown.metric_id = "nope".into();
        unknown.period = "2026".into();
        let duplicate = row();
        let errors = parse_rows(&[row(), unordered, unknown, duplicate], &metrics()).expect_err("bad rows");
        let found: Vec<(usize, &str)> = errors.iter().map(|error| (error.row_index, error.field)).collect();
        assert_eq!(found, [(1, "p75"), (2, "metric_id"), (2, "period"), (3, "period")]);
    }

    #[test]
    fn good_rows_keep_unpublished_figures_unset() {
        let parsed = parse_rows(&[row()], &metrics()).expect("valid");
        assert_eq!(parsed[0].p10, None);
        assert_eq!(parsed[0].p50, Some(104.0));
    }
}
