//! The periods of a time series: every month or quarter whose start lies in
//! the requested range and that has ended, and the default slice period.

use metrix_core::period::Period;
use metrix_proto::metrics::v1::PeriodGranularity;

/// The most periods one time series covers.
pub const MAX_PERIODS: usize = 120;

/// Why a range cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The range holds more periods than [`MAX_PERIODS`].
    #[error("covers {0} periods, more than the maximum of {MAX_PERIODS}")]
    TooLong(usize),
    /// The range ends before it starts.
    #[error("must end after it starts")]
    Reversed,
    /// The range reaches outside the years 1900 to 2100.
    #[error("must lie between the years 1900 and 2100")]
    OutOfRange,
}

/// The most recent quarter that has ended at `now_micros`.
#[allow(clippy::expect_used, reason = "2100-Q4 is a literal of the period grammar")]
pub fn last_ended_quarter(now_micros: i64) -> Period {
    Period::containing(now_micros, PeriodGranularity::Quarter)
        .and_then(|current| current.previous())
        .unwrap_or_else(|| Period::parse("2100-Q4").expect("the latest quarter is a valid period"))
}

/// The periods of `granularity` whose start lies in `[start, end)` and that
/// ended by `now`, oldest first. All arguments are Unix microseconds.
pub fn periods_in_range(
    granularity: PeriodGranularity,
    start: i64,
    end: i64,
    now: i64,
) -> Result<Vec<Period>, RangeError> {
    if end <= start {
        return Err(RangeError::Reversed);
    }
    let mut period = Period::containing(start, granularity).ok_or(RangeError::OutOfRange)?;
    if period.bounds_micros().0 < start {
        period = period.next().ok_or(RangeError::OutOfRange)?;
    }
    let mut periods = Vec::new();
    loop {
        let (period_start, period_end) = period.bounds_micros();
        if period_start >= end || period_end > now {
            break;
        }
        periods.push(period);
        if periods.len() > MAX_PERIODS {
            return Err(RangeError::TooLong(periods.len() + count_periods(period, end, now)));
        }
        match period.next() {
            Some(next) => period = next,
            None => break,
        }
    }
    Ok(periods)
}

/// How many periods after `after` still fall in the range (for the message).
fn count_periods(after: Period, end: i64, now: i64) -> usize {
    let mut count = 0;
    let mut period = after;
    while let Some(next) = period.next() {
        let (next_start, next_end) = next.bounds_micros();
        if next_start >= end || next_end > now {
            break;
        }
        count += 1;
        period = next;
    }
    count
}

#[cfg(test)]
mod tests {
    use metrix_core::time::civil_micros;

    use super::*;

    #[test]
    fn the_last_ended_quarter_is_the_one_before_now() {
        assert_eq!(last_ended_quarter(civil_micros(2026, 12, 1)).to_string(), "2026-Q3");
        assert_eq!(last_ended_quarter(civil_micros(2026, 1, 1)).to_string(), "2025-Q4");
    }

    #[test]
    fn ranges_hold_whole_ended_periods() {
        let now = civil_micros(2026, 12, 1);
        let quarters =
            periods_in_range(PeriodGranularity::Quarter, civil_micros(2025, 2, 15), now, now).expect("valid");
        let names: Vec<String> = quarters.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
        );
        let months = periods_in_range(
            PeriodGranularity::Month,
            civil_micros(2026, 9, 1),
            civil_micros(2026, 11, 1),
            now,
        )
        .expect("valid");
        assert_eq!(months.len(), 2);
        assert_eq!(
            periods_in_range(PeriodGranularity::Month, civil_micros(2000, 1, 1), now, now),
            Err(RangeError::TooLong(323))
        );
        assert_eq!(
            periods_in_range(PeriodGranularity::Month, now, now, now),
            Err(RangeError::Reversed)
        );
    }
}
