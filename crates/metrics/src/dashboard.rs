//! Dashboards, computed from the rollups maintained at ingestion: the
//! window of a preset, totals and series from the event counts, active
//! users by merging the user sketches of the buckets of a window, and the
//! last minute from raw events (an index range of one minute). The
//! independent reads run concurrently.

use metrix_core::error::FieldViolation;
use metrix_core::time::{micros_of, timestamp};
use metrix_proto::common::v1::TimeRange;
use metrix_proto::metrics::v1::{ActiveUsers, Dashboard, DashboardBucket, EventTypeShare, RangePreset};

use crate::error::MetricsError;
use crate::sketch::UserSketch;
use crate::store::MetricsStore;
use crate::store::events::bucket_start;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const MICROS: i64 = 1_000_000;
/// The longest custom range.
const MAX_CUSTOM_DAYS: i64 = 90;
/// How many recent data points a dashboard lists.
const RECENT_DATA_POINTS: i64 = 20;
/// How many event types a dashboard lists.
const TOP_EVENT_TYPES: usize = 5;

/// The resolved time window of a dashboard, aligned to its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardWindow {
    /// The preset it was resolved from.
    pub preset: RangePreset,
    /// Inclusive start, Unix microseconds.
    pub start: i64,
    /// Exclusive end, Unix microseconds.
    pub end: i64,
    /// Width of each bucket, in seconds.
    pub width_seconds: i64,
}

/// Resolves a preset (or a custom range, at most 90 days) at `now`.
/// Preset windows end with the bucket holding `now`; a custom range is
/// widened to whole buckets.
pub fn resolve_window(
    preset: i32,
    custom: Option<&TimeRange>,
    now: i64,
) -> Result<DashboardWindow, Vec<FieldViolation>> {
    let preset = match RangePreset::try_from(preset) {
        Ok(RangePreset::Unspecified) => RangePreset::Hour,
        Ok(preset) => preset,
        Err(_) => {
            return Err(vec![FieldViolation::new(
                "range_preset",
                format!("{preset} is not a range preset"),
            )]);
        }
    };
    let rolling = |width_seconds: i64, buckets: i64| {
        let end = bucket_start(now, width_seconds) + width_seconds * MICROS;
        DashboardWindow {
            preset,
            start: end - buckets * width_seconds * MICROS,
            end,
            width_seconds,
        }
    };
    match preset {
        RangePreset::Hour | RangePreset::Unspecified => Ok(rolling(MINUTE, 60)),
        RangePreset::Day => Ok(rolling(HOUR, 24)),
        RangePreset::Week => Ok(rolling(DAY, 7)),
        RangePreset::Custom => {
            let Some(range) = custom else {
                return Err(vec![FieldViolation::new(
                    "custom_range",
                    "is required when range_preset is CUSTOM",
                )]);
            };
            let start = range.start_time.as_ref().and_then(micros_of);
            let Some(start) = start else {
                return Err(vec![FieldViolation::new(
                    "custom_range.start_time",
                    "is required and must be a valid timestamp",
                )]);
            };
            let end = match &range.end_time {
                None => now,
                Some(time) => micros_of(time)
                    .ok_or_else(|| vec![FieldViolation::new("custom_range.end_time", "is not a valid timestamp")])?,
            };
            if start >= end {
                return Err(vec![FieldViolation::new("custom_range", "must start before it ends")]);
            }
            if end - start > MAX_CUSTOM_DAYS * DAY * MICROS {
                return Err(vec![FieldViolation::new(
                    "custom_range",
                    format!("must span at most {MAX_CUSTOM_DAYS} days"),
                )]);
            }
            let length = end - start;
            let width_seconds = if length <= 2 * HOUR * MICROS {
                MINUTE
            } else if length <= 2 * DAY * MICROS {
                HOUR
            } else {
                DAY
            };
            let aligned_start = bucket_start(start, width_seconds);
            let last_bucket = bucket_start(end - 1, width_seconds);
            Ok(DashboardWindow {
                preset,
                start: aligned_start,
                end: last_bucket + width_seconds * MICROS,
                width_seconds,
            })
        }
    }
}

/// The distinct users of the union of `sketches`.
fn distinct_users<'a>(sketches: impl IntoIterator<Item = &'a (i64, UserSketch)>) -> i64 {
    let mut union = UserSketch::default();
    for (_, sketch) in sketches {
        union.merge(sketch);
    }
    union.count()
}

/// The sketches of the buckets in `[start, end)`, when `sketches` (of
/// buckets from `covered_start` to `covered_end`) hold all of them.
fn within(
    sketches: &[(i64, UserSketch)],
    (covered_start, covered_end): (i64, i64),
    (start, end): (i64, i64),
) -> Option<impl Iterator<Item = &(i64, UserSketch)>> {
    (covered_start <= start && end <= covered_end).then(|| {
        sketches
            .iter()
            .filter(move |(bucket, _)| start <= *bucket && *bucket < end)
    })
}

/// Computes the dashboard of `organization_id` (one app, or all when
/// `app_id` is empty) for `window`, at `now`.
pub async fn compute(
    store: &MetricsStore,
    organization_id: &str,
    app_id: &str,
    window: DashboardWindow,
    now: i64,
) -> Result<Dashboard, MetricsError> {
    let width = window.width_seconds;
    // Rolling windows in whole hours and days, ending with the one that
    // holds the end of the dashboard's range.
    let reference = window.end - 1;
    let hour_end = bucket_start(reference, HOUR) + HOUR * MICROS;
    let day_end = bucket_start(reference, DAY) + DAY * MICROS;
    let last_day = (hour_end - 24 * HOUR * MICROS, hour_end);
    let last_week = (day_end - 7 * DAY * MICROS, day_end);
    let last_month = (day_end - 30 * DAY * MICROS, day_end);
    let (counted, types, events_last_minute, hours, days, recent) = tokio::try_join!(
        store.event_series(organization_id, app_id, width, window.start, window.end),
        store.event_type_counts(organization_id, app_id, width, window.start, window.end),
        store.raw_event_count(organization_id, app_id, now - MINUTE * MICROS, now),
        store.activity_sketches(organization_id, app_id, HOUR, last_day.0, last_day.1),
        store.activity_sketches(organization_id, app_id, DAY, last_month.0, last_month.1),
        store.recent_data_points(organization_id, app_id, RECENT_DATA_POINTS),
    )?;
    let range = (window.start, window.end);
    let in_range = match width {
        HOUR => within(&hours, last_day, range).map(distinct_users),
        DAY => within(&days, last_month, range).map(distinct_users),
        _ => None,
    };
    let in_range = match in_range {
        Some(users) => users,
        None => distinct_users(
            &store
                .activity_sketches(organization_id, app_id, width, window.start, window.end)
                .await?,
        ),
    };
    let active_users = ActiveUsers {
        daily: distinct_users(&hours),
        weekly: distinct_users(within(&days, last_month, last_week).into_iter().flatten()),
        monthly: distinct_users(&days),
        in_range,
    };

    let total_events: i64 = counted.iter().map(|(_, count)| count).sum();
    let mut series = Vec::new();
    let mut counted = counted.into_iter().peekable();
    let mut bucket = window.start;
    while bucket < window.end {
        let event_count = match counted.peek() {
            Some((start, count)) if *start == bucket => {
                let count = *count;
                counted.next();
                count
            }
            _ => 0,
        };
        series.push(DashboardBucket {
            start_time: Some(timestamp(bucket)),
            event_count,
        });
        bucket += width * MICROS;
    }
    let top_event_types = types
        .into_iter()
        .take(TOP_EVENT_TYPES)
        .map(|(event_type, count)| EventTypeShare {
            event_type,
            count,
            share: if total_events > 0 {
                count as f64 / total_events as f64
            } else {
                0.0
            },
        })
        .collect();
    Ok(Dashboard {
        app_id: app_id.to_owned(),
        range_preset: window.preset as i32,
        time_range: Some(TimeRange {
            start_time: Some(timestamp(window.start)),
            end_time: Some(timestamp(window.end)),
        }),
        bucket_width: Some(prost_types::Duration {
            seconds: width,
            nanos: 0,
        }),
        total_events,
        events_last_minute,
        active_users: Some(active_users),
        top_event_types,
        series,
        recent_data_points: recent.iter().map(|point| point.to_proto(organization_id)).collect(),
        compute_time: Some(timestamp(now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T10:17:42.5Z.
    const NOW: i64 = 1_795_305_600_000_000 + (10 * 3_600 + 17 * 60 + 42) * 1_000_000 + 500_000;

    #[test]
    fn presets_roll_with_the_clock() {
        let hour = resolve_window(0, None, NOW).expect("hour");
        assert_eq!(hour.width_seconds, 60);
        assert_eq!((hour.end - hour.start) / (60 * MICROS), 60);
        assert!(hour.start <= NOW && NOW < hour.end);
        let day = resolve_window(RangePreset::Day as i32, None, NOW).expect("day");
        assert_eq!(
            (day.width_seconds, (day.end - day.start) / (HOUR * MICROS)),
            (3_600, 24)
        );
        let week = resolve_window(RangePreset::Week as i32, None, NOW).expect("week");
        assert_eq!(
            (week.width_seconds, (week.end - week.start) / (DAY * MICROS)),
            (86_400, 7)
        );
        assert_eq!(week.end, 1_795_305_600_000_000 + DAY * MICROS);
    }

    #[test]
    fn custom_ranges_pick_their_bucket_and_stay_bounded() {
        let range = |hours: i64| TimeRange {
            start_time: Some(timestamp(NOW - hours * HOUR * MICROS)),
            end_time: Some(timestamp(NOW)),
        };
        let custom = RangePreset::Custom as i32;
        assert_eq!(
            resolve_window(custom, Some(&range(2)), NOW).expect("2 h").width_seconds,
            60
        );
        assert_eq!(
            resolve_window(custom, Some(&range(30)), NOW)
                .expect("30 h")
                .width_seconds,
            3_600
        );
        assert_eq!(
            resolve_window(custom, Some(&range(24 * 10)), NOW)
                .expect("10 d")
                .width_seconds,
            86_400
        );
        let too_long = resolve_window(custom, Some(&range(24 * 91)), NOW).expect_err("91 days");
        assert_eq!(too_long[0].field, "custom_range");
        assert_eq!(
            resolve_window(custom, None, NOW).expect_err("missing")[0].field,
            "custom_range"
        );
        assert_eq!(
            resolve_window(42, None, NOW).expect_err("unknown")[0].field,
            "range_preset"
        );
    }
}
