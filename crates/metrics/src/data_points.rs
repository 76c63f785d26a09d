//! Time-series data points: the parsed form of a recorded point, the parsed
//! form of a query, and the exact aggregations (the reference the database
//! path must match, and the path SQLite takes).

use std::collections::BTreeMap;

use metrix_core::error::FieldViolation;
use metrix_core::time::{micros_of, timestamp};
use metrix_proto::metrics::v1::{Aggregation, DataPoint, DataPointType, QueryDataPointsRequest};

/// The most points of one RecordDataPoints call.
pub const MAX_BATCH_POINTS: usize = 1_000;
/// The most buckets one query may produce.
pub const MAX_BUCKETS: i64 = 10_000;
/// The most tags of one point.
pub const MAX_TAGS: usize = 16;
/// The longest series name.
pub const MAX_NAME_LENGTH: usize = 128;
const MICROS: i64 = 1_000_000;
const FUTURE_LIMIT: i64 = 24 * 3_600 * MICROS;

/// A valid point, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDataPoint {
    /// The series name.
    pub name: String,
    /// Gauge, counter or timing.
    pub point_type: DataPointType,
    /// The value.
    pub value: f64,
    /// The unit, possibly empty.
    pub unit: String,
    /// The tags, sorted by key.
    pub tags: BTreeMap<String, String>,
    /// The app or source, possibly empty.
    pub app_id: String,
    /// When the value was measured.
    pub measured_at: i64,
}

impl NewDataPoint {
    /// The tags as a JSON object (keys sorted, so equal tags are equal text).
    pub fn tags_json(&self) -> String {
        serde_json::to_string(&self.tags).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The contract's form.
    pub fn to_proto(&self, organization_id: &str) -> DataPoint {
        DataPoint {
            name: self.name.clone(),
            r#type: self.point_type as i32,
            value: self.value,
            unit: self.unit.clone(),
            tags: self.tags.clone().into_iter().collect(),
            timestamp: Some(timestamp(self.measured_at)),
            app_id: self.app_id.clone(),
            organization_id: organization_id.to_owned(),
        }
    }
}

fn is_series_name(text: &str, maximum: usize) -> bool {
    !text.is_empty()
        && text.len() <= maximum
        && text
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || "_.-".contains(character))
}

/// Parses one point; violations are named by their path inside the point
/// (`name`, `tags[region]`), for the caller to place.
pub fn parse_point(point: &DataPoint, now: i64) -> Result<NewDataPoint, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let name = point.name.trim();
    if !is_series_name(name, MAX_NAME_LENGTH) {
        violations.push(FieldViolation::new(
            "name",
            "must be 1 to 128 characters from a-z 0-9 _ . - (such as api.request.latency)",
        ));
    }
    let point_type = match DataPointType::try_from(point.r#type) {
        Ok(DataPointType::Unspecified) | Err(_) => {
            violations.push(FieldViolation::new("type", "must be GAUGE, COUNTER or TIMING"));
            DataPointType::Unspecified
        }
        Ok(kind) => kind,
    };
    if !point.value.is_finite() {
        violations.push(FieldViolation::new("value", "must be a finite number"));
    } else if point.value < 0.0 && matches!(point_type, DataPointType::Counter | DataPointType::Timing) {
        violations.push(FieldViolation::new(
            "value",
            "must not be negative for counters and timings",
        ));
    }
    if point.unit.chars().count() > 32 {
        violations.push(FieldViolation::new("unit", "must be at most 32 characters"));
    }
    if point.app_id.chars().count() > 64 {
        violations.push(FieldViolation::new("app_id", "must be at most 64 characters"));
    }
    if point.tags.len() > MAX_TAGS {
        violations.push(FieldViolation::new(
            "tags",
            format!("must hold at most {MAX_TAGS} tags"),
        ));
    }
    for (key, value) in &point.tags {
        if !is_series_name(key, 64) {
            violations.push(FieldViolation::new(
                format!("tags[{key}]"),
                "keys must be 1 to 64 characters from a-z 0-9 _ . -",
            ));
        } else if value.chars().count() > 256 {
            violations.push(FieldViolation::new(
                format!("tags[{key}]"),
                "values must be at most 256 characters",
            ));
        } else if value.contains('\0') {
            violations.push(FieldViolation::new(format!("tags[{key}]"), crate::events::NUL_REASON));
        }
    }
    let measured_at = match &point.timestamp {
        None => now,
        Some(time) => match micros_of(time) {
            Some(micros) if micros <= now + FUTURE_LIMIT => micros,
            Some(_) => {
                violations.push(FieldViolation::new(
                    "timestamp",
                    "must not be more than 24 hours in the future",
                ));
                now
            }
            None => {
                violations.push(FieldViolation::new("timestamp", "is not a valid timestamp"));
                now
            }
        },
    };
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(NewDataPoint {
        name: name.to_owned(),
        point_type,
        value: point.value,
        unit: point.unit.trim().to_owned(),
        tags: point.tags.clone().into_iter().collect(),
        app_id: point.app_id.trim().to_owned(),
        measured_at,
    })
}

/// A valid query.
#[derive(Debug, Clone, PartialEq)]
pub struct PointQuery {
    /// The series.
    pub name: String,
    /// Only this type, or any when unspecified.
    pub point_type: DataPointType,
    /// Only this app, or any when empty.
    pub app_id: String,
    /// Every tag a point must carry.
    pub tags: BTreeMap<String, String>,
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
    /// Bucket width in seconds; `None` for one bucket over the whole range.
    pub width_seconds: Option<i64>,
    /// The requested aggregation (possibly unspecified).
    pub aggregation: Aggregation,
}

/// Parses a query at `now`.
pub fn parse_query(request: &QueryDataPointsRequest, now: i64) -> Result<PointQuery, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let name = request.name.trim();
    if !is_series_name(name, MAX_NAME_LENGTH) {
        violations.push(FieldViolation::new(
            "name",
            "is required: a series name such as api.request.latency",
        ));
    }
    let point_type = DataPointType::try_from(request.r#type).unwrap_or_else(|_| {
        violations.push(FieldViolation::new("type", "is not a data point type"));
        DataPointType::Unspecified
    });
    let aggregation = Aggregation::try_from(request.aggregation).unwrap_or_else(|_| {
        violations.push(FieldViolation::new("aggregation", "is not an aggregation"));
        Aggregation::Unspecified
    });
    let range = request.time_range.unwrap_or_default();
    let end = match &range.end_time {
        None => Some(now),
        Some(time) => micros_of(time),
    };
    let start = match (&range.start_time, end) {
        (None, Some(end)) => Some(end - 3_600 * MICROS),
        (Some(time), _) => micros_of(time),
        (None, None) => None,
    };
    let (start, end) = match (start, end) {
        (Some(start), Some(end)) if start < end => (start, end),
        (Some(_), Some(_)) => {
            violations.push(FieldViolation::new("time_range", "must start before it ends"));
            (0, 1)
        }
        _ => {
            violations.push(FieldViolation::new("time_range", "holds an invalid timestamp"));
            (0, 1)
        }
    };
    let width_seconds = match &request.bucket_width {
        None => None,
        Some(width) if width.nanos != 0 || width.seconds < 1 => {
            violations.push(FieldViolation::new(
                "bucket_width",
                "must be a whole number of seconds, at least 1",
            ));
            None
        }
        Some(width) => {
            let first = start.div_euclid(width.seconds * MICROS);
            let last = (end - 1).div_euclid(width.seconds * MICROS);
            if last - first + 1 > MAX_BUCKETS {
                violations.push(FieldViolation::new(
                    "bucket_width",
                    format!("makes more than {MAX_BUCKETS} buckets over the range; widen it"),
                ));
            }
            Some(width.seconds)
        }
    };
    if request.tags.len() > MAX_TAGS {
        violations.push(FieldViolation::new(
            "tags",
            format!("must hold at most {MAX_TAGS} tags"),
        ));
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(PointQuery {
        name: name.to_owned(),
        point_type,
        app_id: request.app_id.trim().to_owned(),
        tags: request.tags.clone().into_iter().collect(),
        start,
        end,
        width_seconds,
        aggregation,
    })
}

impl PointQuery {
    /// The start of the bucket holding `micros`.
    pub fn bucket_of(&self, micros: i64) -> i64 {
        match self.width_seconds {
            Some(width) => micros.div_euclid(width * MICROS) * width * MICROS,
            None => self.start,
        }
    }

    /// The exclusive end of the bucket starting at `start`.
    pub fn bucket_end(&self, start: i64) -> i64 {
        match self.width_seconds {
            Some(width) => start + width * MICROS,
            None => self.end,
        }
    }
}

/// The aggregation to apply: UNSPECIFIED becomes SUM for counters and MEAN
/// for gauges and timings.
pub fn resolve_aggregation(requested: Aggregation, series_type: DataPointType) -> Aggregation {
    match (requested, series_type) {
        (Aggregation::Unspecified, DataPointType::Counter) => Aggregation::Sum,
        (Aggregation::Unspecified, _) => Aggregation::Mean,
        (requested, _) => requested,
    }
}

/// The percentile `fraction` (0–1) of sorted `values`, interpolating
/// linearly between the closest ranks (as PostgreSQL's `percentile_cont`).
pub fn percentile(sorted: &[f64], fraction: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = fraction * last as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let weight = rank - lower as f64;
    Some(sorted[lower] + (sorted[upper.min(last)] - sorted[lower]) * weight)
}

/// Applies `aggregation` (resolved) to the values of one bucket.
pub fn aggregate(aggregation: Aggregation, values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let count = values.len() as f64;
    match aggregation {
        Aggregation::Count => Some(count),
        Aggregation::Sum => Some(values.iter().sum()),
        Aggregation::Mean | Aggregation::Unspecified => Some(values.iter().sum::<f64>() / count),
        Aggregation::Min => values.iter().copied().reduce(f64::min),
        Aggregation::Max => values.iter().copied().reduce(f64::max),
        Aggregation::Median | Aggregation::P90 | Aggregation::P95 | Aggregation::P99 => {
            values.sort_by(f64::total_cmp);
            percentile(values, percentile_fraction(aggregation))
        }
    }
}

/// The fraction of a percentile aggregation.
pub fn percentile_fraction(aggregation: Aggregation) -> f64 {
    match aggregation {
        Aggregation::P90 => 0.90,
        Aggregation::P95 => 0.95,
        Aggregation::P99 => 0.99,
        _ => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_795_305_600_000_000;

    #[test]
    fn percentiles_interpolate_between_closest_ranks() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 0.5), Some(2.5));
        assert_eq!(percentile(&sorted, 0.9), Some(3.7));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        let mut values = vec![10.0, 1.0, 4.0, 3.0, 2.0];
        assert_eq!(aggregate(Aggregation::Median, &mut values), Some(3.0));
        assert_eq!(aggregate(Aggregation::Sum, &mut values), Some(20.0));
        assert_eq!(aggregate(Aggregation::Max, &mut values), Some(10.0));
        assert_eq!(aggregate(Aggregation::Count, &mut values), Some(5.0));
    }

    #[test]
    fn unspecified_aggregations_follow_the_type() {
        assert_eq!(
            resolve_aggregation(Aggregation::Unspecified, DataPointType::Counter),
            Aggregation::Sum
        );
        assert_eq!(
            resolve_aggregation(Aggregation::Unspecified, DataPointType::Timing),
            Aggregation::Mean
        );
        assert_eq!(
            resolve_aggregation(Aggregation::P99, DataPointType::Counter),
            Aggregation::P99
        );
    }

    #[test]
    fn bad_points_name_their_fields() {
        let point = DataPoint {
            name: "API Latency".into(),
            r#type: DataPointType::Timing as i32,
            value: -3.0,
            tags: [("Route".to_owned(), "x".to_owned())].into_iter().collect(),
            timestamp: Some(timestamp(NOW + 2 * FUTURE_LIMIT)),
            ..Default::default()
        };
        let violations = parse_point(&point, NOW).expect_err("invalid");
        let fields: Vec<_> = violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["name", "value", "tags[Route]", "timestamp",]);
    }

    #[test]
    fn queries_default_to_the_last_hour_and_bound_their_buckets() {
        let request = QueryDataPointsRequest {
            name: "queue.depth".into(),
            ..Default::default()
        };
        let query = parse_query(&request, NOW).expect("valid");
        assert_eq!((query.start, query.end), (NOW - 3_600 * MICROS, NOW));
        assert_eq!(query.bucket_of(NOW - 5), query.start);
        let too_fine = QueryDataPointsRequest {
            bucket_width: Some(prost_types::Duration { seconds: 0, nanos: 500 }),
            ..request.clone()
        };
        assert_eq!(
            parse_query(&too_fine, NOW).expect_err("sub-second")[0].field,
            "bucket_width"
        );
        let too_many = QueryDataPointsRequest {
            bucket_width: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            time_range: Some(metrix_proto::common::v1::TimeRange {
                start_time: Some(timestamp(NOW - 86_400 * MICROS)),
                end_time: Some(timestamp(NOW)),
            }),
            ..request
        };
        assert_eq!(
            parse_query(&too_many, NOW).expect_err("86,400 buckets")[0].field,
            "bucket_width"
        );
    }

    proptest! {
        #[test]
        fn percentiles_stay_within_the_values(mut values in proptest::collection::vec(-1e9f64..1e9, 1..50), fraction in 0.0f64..=1.0) {
            values.sort_by(f64::total_cmp);
            let result = percentile(&values, fraction).expect("non-empty");
            prop_assert!(result >= values[0] - 1e-6 && result <= values[values.len() - 1] + 1e-6);
        }
    }
}
