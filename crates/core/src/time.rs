//! Time as the stores keep it: Unix microseconds in a 64-bit integer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Now, in Unix microseconds.
pub fn now_micros() -> i64 {
    to_micros(SystemTime::now())
}

/// A system time in Unix microseconds (negative before 1970).
pub fn to_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// A duration in microseconds, saturating.
pub fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The protobuf timestamp of Unix microseconds.
pub fn timestamp(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// The Unix microseconds of a protobuf timestamp, if it is in range.
pub fn micros_of(timestamp: &Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return None;
    }
    timestamp
        .seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(timestamp.nanos / 1_000))
}

/// The UTC calendar date (year, month 1–12, day 1–31) of Unix microseconds.
pub fn civil_date(micros: i64) -> (i32, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm, on the proleptic Gregorian calendar.
    let days = micros.div_euclid(86_400_000_000) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (i32::try_from(year).unwrap_or(i32::MAX), month, day)
}

/// Unix microseconds of midnight UTC on a calendar date (the inverse of
/// [`civil_date`]); `month` is 1–12 and `day` 1–31.
pub fn civil_micros(year: i32, month: u32, day: u32) -> i64 {
    // Howard Hinnant's days-from-civil algorithm.
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era - 719_468) * 86_400_000_000
}

/// Unix microseconds as RFC 3339 in UTC, with 0, 3 or 6 fractional digits
/// as the protobuf JSON mapping writes them (`2026-11-22T10:17:42.500Z`).
pub fn rfc3339(micros: i64) -> String {
    let (year, month, day) = civil_date(micros);
    let second_of_day = micros.div_euclid(1_000_000).rem_euclid(86_400);
    let fraction = micros.rem_euclid(1_000_000);
    let (hour, minute, second) = (second_of_day / 3_600, second_of_day / 60 % 60, second_of_day % 60);
    let fraction_text = if fraction == 0 {
        String::new()
    } else if fraction % 1_000 == 0 {
        format!(".{:03}", fraction / 1_000)
    } else {
        format!(".{fraction:06}")
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction_text}Z")
}

/// The current UTC year.
pub fn current_year() -> i32 {
    civil_date(now_micros()).0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn timestamps_round_trip(micros in -10_000_000_000_000_000i64..10_000_000_000_000_000i64) {
            prop_assert_eq!(micros_of(&timestamp(micros)), Some(micros));
        }
    }

    #[test]
    fn civil_micros_inverts_civil_date() {
        for micros in [0, 951_782_400_000_000, 1_798_761_600_000_000, -2_208_988_800_000_000] {
            let (year, month, day) = civil_date(micros);
            assert_eq!(civil_micros(year, month, day), micros);
        }
    }

    #[test]
    fn civil_dates_are_gregorian() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        // 2024-02-29T12:00:00Z, a leap day.
        assert_eq!(civil_date(1_709_208_000_000_000), (2024, 2, 29));
        // 2026-11-22T00:00:00Z.
        assert_eq!(civil_date(1_795_305_600_000_000), (2026, 11, 22));
        assert_eq!(civil_date(1_795_305_600_000_000 - 1), (2026, 11, 21));
    }

    #[test]
    fn rfc3339_is_written_like_protobuf_json() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_795_305_600_000_000 + 37_062_500_000),
            "2026-11-22T10:17:42.500Z"
        );
        assert_eq!(rfc3339(1_709_208_000_000_001), "2024-02-29T12:00:00.000001Z");
        assert_eq!(rfc3339(-1_000_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn out_of_range_nanos_are_refused() {
        assert_eq!(micros_of(&Timestamp { seconds: 1, nanos: -1 }), None);
        assert_eq!(
            micros_of(&Timestamp {
                seconds: 1,
                nanos: 1_000_000_000
            }),
            None
        );
    }
}
