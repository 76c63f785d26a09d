//! The period a KPI value covers: a calendar year, quarter or month.
//!
//! [`Period::parse`] accepts exactly the contract's grammar (`2026`,
//! `2026-Q3`, `2026-09`) and is the only way in, so every `Period` in the
//! service is valid and prints back to the text it was parsed from.
//! [`Period::suggest`] reads the sloppy spellings people type (`Q3 2026`,
//! `09/2026`, `2026-09-30`) and proposes the canonical period when the intent
//! is unambiguous; it never replaces `parse`, it only feeds suggested
//! corrections.
//!
//! Ranges are compared through month indexes (`year × 12 + month − 1`), which
//! the store can keep in integer columns.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use metrix_proto::metrics::v1::PeriodGranularity;

/// The earliest year a period may fall in.
pub const MIN_YEAR: u16 = 1900;

/// The latest year a period may fall in.
pub const MAX_YEAR: u16 = 2100;

/// The longest text [`Period::suggest`] looks at; anything longer is not a
/// period typed by a person.
const MAX_SUGGESTION_INPUT_LENGTH: usize = 64;

/// Why a text is not a period, in words usable as a field-violation
/// description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The text is empty.
    #[error("is required")]
    Empty,
    /// The text does not have the shape of a year, quarter or month.
    #[error("must be a year (2026), a quarter (2026-Q3) or a month (2026-09)")]
    Malformed,
    /// The year is outside 1900 to 2100.
    #[error("must have a year from 1900 to 2100, not {year}")]
    YearOutOfRange {
        /// The year that was given.
        year: u16,
    },
    /// The quarter is not 1 to 4.
    #[error("must have a quarter from Q1 to Q4, not Q{quarter}")]
    QuarterOutOfRange {
        /// The quarter that was given.
        quarter: u8,
    },
    /// The month is not 01 to 12.
    #[error("must have a month from 01 to 12, not {month:02}")]
    MonthOutOfRange {
        /// The month that was given.
        month: u8,
    },
}

/// Which part of a year a period covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Span {
    /// The whole year.
    Year,
    /// One quarter, 1 to 4.
    Quarter(u8),
    /// One month, 1 to 12.
    Month(u8),
}

/// A valid calendar year, quarter or month between 1900 and 2100.
///
/// Periods are ordered by their last month, and for the same last month the
/// shorter period first (`2026-12` < `2026-Q4` < `2026`), the order of
/// [`Period::sort_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    /// The calendar year, within [`MIN_YEAR`] and [`MAX_YEAR`].
    year: u16,
    /// The part of the year covered.
    span: Span,
}

impl Period {
    /// Parses the contract's grammar: `YYYY`, `YYYY-Qn` or `YYYY-MM`, with a
    /// year from 1900 to 2100, a quarter from 1 to 4 and a two-digit month
    /// from 01 to 12. Nothing else is accepted: no spaces, no lowercase `q`,
    /// no one-digit month.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        if text.is_empty() {
            return Err(PeriodError::Empty);
        }
        let bytes = text.as_bytes();
        if bytes.len() < 4 || !bytes[..4].iter().all(u8::is_ascii_digit) {
            return Err(PeriodError::Malformed);
        }
        let year = parse_ascii_digits(&bytes[..4]).ok_or(PeriodError::Malformed)?;
        match &bytes[4..] {
            [] => Period::from_year(year),
            [b'-', b'Q', quarter] if quarter.is_ascii_digit() => Period::from_quarter(year, quarter - b'0'),
            [b'-', tens, units] if tens.is_ascii_digit() && units.is_ascii_digit() => {
                Period::from_month(year, (tens - b'0') * 10 + (units - b'0'))
            }
            _ => Err(PeriodError::Malformed),
        }
    }

    /// The calendar year `year`.
    pub fn from_year(year: u16) -> Result<Period, PeriodError> {
        check_year(year)?;
        Ok(Period { year, span: Span::Year })
    }

    /// Quarter `quarter` (1 to 4) of `year`.
    pub fn from_quarter(year: u16, quarter: u8) -> Result<Period, PeriodError> {
        check_year(year)?;
        if !(1..=4).contains(&quarter) {
            return Err(PeriodError::QuarterOutOfRange { quarter });
        }
        Ok(Period {
            year,
            span: Span::Quarter(quarter),
        })
    }

    /// Month `month` (1 to 12) of `year`.
    pub fn from_month(year: u16, month: u8) -> Result<Period, PeriodError> {
        check_year(year)?;
        if !(1..=12).contains(&month) {
            return Err(PeriodError::MonthOutOfRange { month });
        }
        Ok(Period {
            year,
            span: Span::Month(month),
        })
    }

    /// Proposes the canonical period a sloppy text most likely means, or
    /// `None` when the text is not recognisably a period or could mean more
    /// than one. A valid period, surrounding spaces aside, proposes itself.
    ///
    /// Recognised, in any case and with `-`, `/`, `.`, `_`, `,`, spaces or
    /// dashes between the parts: a year and a quarter in either order
    /// (`2026Q3`, `Q3 2026`, `q3-2026`); a year and a month number in either
    /// order (`2026-9`, `2026/09`, `09/2026`); a year and an English month
    /// name (`Sep 2026`); `YYYYMM` (`202609`); and a full date, which
    /// suggests its month (`2026-09-30`, `30/09/2026`, `Sep 30, 2026`). A
    /// day-first or month-first date is only read when the day is above 12
    /// or equals the month, and the day must exist in that month.
    pub fn suggest(text: &str) -> Option<Period> {
        if text.len() > MAX_SUGGESTION_INPUT_LENGTH {
            return None;
        }
        if let Ok(period) = Period::parse(text.trim()) {
            return Some(period);
        }
        let tokens = tokenize(text)?;
        suggest_from_tokens(&tokens)
    }

    /// The calendar year the period falls in.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The quarter (1 to 4) of a quarter period, `None` otherwise.
    pub fn quarter(&self) -> Option<u8> {
        match self.span {
            Span::Quarter(quarter) => Some(quarter),
            Span::Year | Span::Month(_) => None,
        }
    }

    /// The month (1 to 12) of a month period, `None` otherwise.
    pub fn month(&self) -> Option<u8> {
        match self.span {
            Span::Month(month) => Some(month),
            Span::Year | Span::Quarter(_) => None,
        }
    }

    /// The length of the period, as the contract's enum.
    pub fn granularity(&self) -> PeriodGranularity {
        match self.span {
            Span::Year => PeriodGranularity::Year,
            Span::Quarter(_) => PeriodGranularity::Quarter,
            Span::Month(_) => PeriodGranularity::Month,
        }
    }

    /// The first month of the period as (year, month 1 to 12).
    pub fn first_month(&self) -> (u16, u8) {
        match self.span {
            Span::Year => (self.year, 1),
            Span::Quarter(quarter) => (self.year, quarter * 3 - 2),
            Span::Month(month) => (self.year, month),
        }
    }

    /// The last month of the period as (year, month 1 to 12).
    pub fn last_month(&self) -> (u16, u8) {
        match self.span {
            Span::Year => (self.year, 12),
            Span::Quarter(quarter) => (self.year, quarter * 3),
            Span::Month(month) => (self.year, month),
        }
    }

    /// The index of the first month, `year × 12 + month − 1`: a period starts
    /// on or after the first day of another when its start index is greater
    /// or equal.
    pub fn start_month_index(&self) -> u32 {
        let (year, month) = self.first_month();
        month_index(year, month)
    }

    /// The index of the last month, inclusive, `year × 12 + month − 1`: a
    /// period ends on or before the last day of another when its end index is
    /// smaller or equal.
    pub fn end_month_index(&self) -> u32 {
        let (year, month) = self.last_month();
        month_index(year, month)
    }

    /// An integer that orders periods by their last month and, for the same
    /// last month, months before quarters before years: `end_month_index × 3`
    /// plus 0, 1 or 2. It identifies the period uniquely; sort it descending
    /// for "latest first".
    pub fn sort_key(&self) -> u32 {
        self.end_month_index() * 3 + self.granularity_rank()
    }

    /// The period of the same granularity just before this one (`2026-Q1`
    /// gives `2025-Q4`), or `None` before 1900.
    pub fn previous(&self) -> Option<Period> {
        let previous = match self.span {
            Span::Year => Period::from_year(self.year.checked_sub(1)?),
            Span::Quarter(1) => Period::from_quarter(self.year.checked_sub(1)?, 4),
            Span::Quarter(quarter) => Period::from_quarter(self.year, quarter - 1),
            Span::Month(1) => Period::from_month(self.year.checked_sub(1)?, 12),
            Span::Month(month) => Period::from_month(self.year, month - 1),
        };
        previous.ok()
    }

    /// The period of the same granularity just after this one (`2025-Q4`
    /// gives `2026-Q1`), or `None` after 2100.
    pub fn next(&self) -> Option<Period> {
        let next = match self.span {
            Span::Year => Period::from_year(self.year.checked_add(1)?),
            Span::Quarter(4) => Period::from_quarter(self.year.checked_add(1)?, 1),
            Span::Quarter(quarter) => Period::from_quarter(self.year, quarter + 1),
            Span::Month(12) => Period::from_month(self.year.checked_add(1)?, 1),
            Span::Month(month) => Period::from_month(self.year, month + 1),
        };
        next.ok()
    }

    /// The period's bounds in UTC, `[start, end)` in Unix microseconds: the
    /// first instant of its first month and of the month after its last.
    pub fn bounds_micros(&self) -> (i64, i64) {
        let (first_year, first_month) = self.first_month();
        let (last_year, last_month) = self.last_month();
        let (end_year, end_month) = if last_month == 12 {
            (i32::from(last_year) + 1, 1)
        } else {
            (i32::from(last_year), u32::from(last_month) + 1)
        };
        (
            crate::time::civil_micros(i32::from(first_year), u32::from(first_month), 1),
            crate::time::civil_micros(end_year, end_month, 1),
        )
    }

    /// The period of `granularity` (month or quarter) that holds the instant
    /// `micros`; `None` for another granularity or outside 1900 to 2100.
    pub fn containing(micros: i64, granularity: PeriodGranularity) -> Option<Period> {
        let (year, month, _) = crate::time::civil_date(micros);
        let year = u16::try_from(year).ok()?;
        let month = u8::try_from(month).ok()?;
        match granularity {
            PeriodGranularity::Month => Period::from_month(year, month).ok(),
            PeriodGranularity::Quarter => Period::from_quarter(year, month.div_ceil(3)).ok(),
            PeriodGranularity::Year => Period::from_year(year).ok(),
            PeriodGranularity::Unspecified => None,
        }
    }

    /// The period of the same granularity one year earlier (`2026-Q3` gives
    /// `2025-Q3`), or `None` before 1900.
    pub fn year_ago(&self) -> Option<Period> {
        let year = self.year.checked_sub(1)?;
        check_year(year).ok()?;
        Some(Period { year, span: self.span })
    }

    /// The period of `granularity` that ends in the same month as this one
    /// (`2026` as a month gives `2026-12`; `2026-06` as a quarter gives
    /// `2026-Q2`), or `None` when no such period exists (`2026-05` as a
    /// quarter).
    pub fn with_same_end(&self, granularity: PeriodGranularity) -> Option<Period> {
        let (year, last_month) = self.last_month();
        match granularity {
            PeriodGranularity::Unspecified => None,
            PeriodGranularity::Month => Period::from_month(year, last_month).ok(),
            PeriodGranularity::Quarter if last_month.is_multiple_of(3) => {
                Period::from_quarter(year, last_month / 3).ok()
            }
            PeriodGranularity::Quarter => None,
            PeriodGranularity::Year if last_month == 12 => Period::from_year(year).ok(),
            PeriodGranularity::Year => None,
        }
    }

    /// Months before quarters before years, for [`Period::sort_key`].
    fn granularity_rank(&self) -> u32 {
        match self.span {
            Span::Month(_) => 0,
            Span::Quarter(_) => 1,
            Span::Year => 2,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.span {
            Span::Year => write!(formatter, "{:04}", self.year),
            Span::Quarter(quarter) => write!(formatter, "{:04}-Q{quarter}", self.year),
            Span::Month(month) => write!(formatter, "{:04}-{month:02}", self.year),
        }
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Period::parse(text)
    }
}

impl Ord for Period {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for Period {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `year × 12 + month − 1`.
fn month_index(year: u16, month: u8) -> u32 {
    u32::from(year) * 12 + u32::from(month) - 1
}

/// Refuses a year outside 1900 to 2100.
fn check_year(year: u16) -> Result<(), PeriodError> {
    if (MIN_YEAR..=MAX_YEAR).contains(&year) {
        Ok(())
    } else {
        Err(PeriodError::YearOutOfRange { year })
    }
}

/// The value of one to four ASCII digits.
fn parse_ascii_digits(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    digits.iter().try_fold(0_u16, |accumulated, digit| {
        digit
            .is_ascii_digit()
            .then(|| accumulated * 10 + u16::from(digit - b'0'))
    })
}

/// Whether `year` is a leap year of the Gregorian calendar.
fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// The number of days of `month` (1 to 12) in `year`.
fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// One part of a sloppy period text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A run of ASCII digits, kept as text so that its length is known.
    Number(String),
    /// A quarter written `Q` and a number (`Q3`, `q 3`).
    Quarter(u8),
    /// An English month name or its three-letter abbreviation.
    MonthName(u8),
}

/// The English month names; a word is a month when it is the name or starts
/// with its first three letters and is a prefix of the name (`sep`, `sept`).
const MONTH_NAMES: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Splits a sloppy text into numbers, quarters and month names, or `None`
/// when it holds anything else.
fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut raw_parts: Vec<(bool, String)> = Vec::new();
    for character in text.chars() {
        let is_digit = character.is_ascii_digit();
        if character.is_ascii_alphanumeric() {
            let lowercase = character.to_ascii_lowercase();
            match raw_parts.last_mut() {
                Some((last_is_digit, part)) if *last_is_digit == is_digit && !part.is_empty() => part.push(lowercase),
                _ => raw_parts.push((is_digit, lowercase.to_string())),
            }
        } else if matches!(character, '-' | '/' | '.' | '_' | ',' | ' ' | '\t' | '–' | '—') {
            raw_parts.push((false, String::new()));
        } else {
            return None;
        }
    }
    let mut tokens = Vec::new();
    let mut pending_quarter_marker = false;
    for (is_digit, part) in raw_parts.into_iter().filter(|(_, part)| !part.is_empty()) {
        if pending_quarter_marker {
            if !is_digit {
                return None;
            }
            let quarter = parse_ascii_digits(part.as_bytes())?;
            tokens.push(Token::Quarter(u8::try_from(quarter).ok()?));
            pending_quarter_marker = false;
        } else if is_digit {
            tokens.push(Token::Number(part));
        } else if part == "q" {
            pending_quarter_marker = true;
        } else {
            tokens.push(Token::MonthName(month_from_name(&part)?));
        }
    }
    if pending_quarter_marker {
        return None;
    }
    Some(tokens)
}

/// The month (1 to 12) an English month name or abbreviation names.
fn month_from_name(word: &str) -> Option<u8> {
    if word.len() < 3 {
        return None;
    }
    let position = MONTH_NAMES.iter().position(|name| name.starts_with(word))?;
    u8::try_from(position + 1).ok()
}

/// A four-digit number within 1900 to 2100.
fn token_year(token: &Token) -> Option<u16> {
    match token {
        Token::Number(digits) if digits.len() == 4 => {
            let year = parse_ascii_digits(digits.as_bytes())?;
            check_year(year).ok()?;
            Some(year)
        }
        _ => None,
    }
}

/// A one- or two-digit number, such as a month or a day.
fn token_small_number(token: &Token) -> Option<u8> {
    match token {
        Token::Number(digits) if (1..=2).contains(&digits.len()) => {
            u8::try_from(parse_ascii_digits(digits.as_bytes())?).ok()
        }
        _ => None,
    }
}

/// The month of a date whose day and month are given, when the day exists.
fn month_of_date(year: u16, month: u8, day: u8) -> Option<Period> {
    let period = Period::from_month(year, month).ok()?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(period)
}

/// The month of a date written with the day and the month as two numbers in
/// an unknown order, when only one reading is possible or both agree.
fn month_of_ambiguous_date(year: u16, first: u8, second: u8) -> Option<Period> {
    let day_first_reading = month_of_date(year, second, first);
    let month_first_reading = month_of_date(year, first, second);
    match (day_first_reading, month_first_reading) {
        (Some(day_first), Some(month_first)) if day_first == month_first => Some(day_first),
        (Some(only), None) | (None, Some(only)) => Some(only),
        _ => None,
    }
}

/// Reads the recognised shapes of [`Period::suggest`] from tokens.
fn suggest_from_tokens(tokens: &[Token]) -> Option<Period> {
    match tokens {
        [only] => {
            if let Some(year) = token_year(only) {
                return Period::from_year(year).ok();
            }
            let Token::Number(digits) = only else {
                return None;
            };
            if digits.len() != 6 {
                return None;
            }
            let year = parse_ascii_digits(&digits.as_bytes()[..4])?;
            let month = parse_ascii_digits(&digits.as_bytes()[4..])?;
            Period::from_month(year, u8::try_from(month).ok()?).ok()
        }
        [first, second] => {
            let (year, other) = match (token_year(first), token_year(second)) {
                (Some(year), None) => (year, second),
                (None, Some(year)) => (year, first),
                _ => return None,
            };
            match other {
                Token::Quarter(quarter) => Period::from_quarter(year, *quarter).ok(),
                Token::MonthName(month) => Period::from_month(year, *month).ok(),
                Token::Number(_) => Period::from_month(year, token_small_number(other)?).ok(),
            }
        }
        [first, second, third] => {
            if let Some(year) = token_year(first) {
                return match (second, third) {
                    (Token::MonthName(month), day) | (day, Token::MonthName(month)) => {
                        month_of_date(year, *month, token_small_number(day)?)
                    }
                    _ => month_of_date(year, token_small_number(second)?, token_small_number(third)?),
                };
            }
            let year = token_year(third)?;
            match (first, second) {
                (Token::MonthName(month), day) | (day, Token::MonthName(month)) => {
                    month_of_date(year, *month, token_small_number(day)?)
                }
                _ => month_of_ambiguous_date(year, token_small_number(first)?, token_small_number(second)?),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn period(text: &str) -> Period {
        Period::parse(text).expect("a valid period")
    }

    #[test]
    fn parses_the_three_shapes() {
        assert_eq!(period("2026").granularity(), PeriodGranularity::Year);
        assert_eq!(period("2026-Q3").quarter(), Some(3));
        assert_eq!(period("2026-09").month(), Some(9));
        assert_eq!(period("1900-01").year(), 1900);
        assert_eq!(period("2100-Q4").year(), 2100);
    }

    #[test]
    fn refuses_everything_outside_the_grammar() {
        for text in [
            "26",
            "2026-",
            "2026-9",
            "2026-009",
            "2026-q3",
            "2026Q3",
            " 2026",
            "2026 ",
            "2026-Q",
            "2026-Q03",
            "2026/09",
            "２０２６",
            "2026-09-30",
            "+2026",
            "-2026",
            "2026-1a",
        ] {
            assert_eq!(Period::parse(text), Err(PeriodError::Malformed), "{text}");
        }
        assert_eq!(Period::parse(""), Err(PeriodError::Empty));
        assert_eq!(Period::parse("1899"), Err(PeriodError::YearOutOfRange { year: 1899 }));
        assert_eq!(
            Period::parse("2101-01"),
            Err(PeriodError::YearOutOfRange { year: 2101 })
        );
        assert_eq!(
            Period::parse("2026-Q0"),
            Err(PeriodError::QuarterOutOfRange { quarter: 0 })
        );
        assert_eq!(
            Period::parse("2026-Q5"),
            Err(PeriodError::QuarterOutOfRange { quarter: 5 })
        );
        assert_eq!(Period::parse("2026-00"), Err(PeriodError::MonthOutOfRange { month: 0 }));
        assert_eq!(
            Period::parse("2026-13"),
            Err(PeriodError::MonthOutOfRange { month: 13 })
        );
    }

    #[test]
    fn errors_read_as_field_violation_descriptions() {
        assert_eq!(
            PeriodError::Malformed.to_string(),
            "must be a year (2026), a quarter (2026-Q3) or a month (2026-09)"
        );
        assert_eq!(
            PeriodError::MonthOutOfRange { month: 13 }.to_string(),
            "must have a month from 01 to 12, not 13"
        );
        assert_eq!(
            PeriodError::YearOutOfRange { year: 1850 }.to_string(),
            "must have a year from 1900 to 2100, not 1850"
        );
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(period("2026").to_string(), "2026");
        assert_eq!(period("2026-Q3").to_string(), "2026-Q3");
        assert_eq!(period("2026-09").to_string(), "2026-09");
        assert_eq!("2026-Q1".parse::<Period>(), Ok(period("2026-Q1")));
    }

    #[test]
    fn month_ranges_cover_the_period() {
        assert_eq!(period("2026-Q3").first_month(), (2026, 7));
        assert_eq!(period("2026-Q3").last_month(), (2026, 9));
        assert_eq!(period("2026").start_month_index(), 2026 * 12);
        assert_eq!(period("2026").end_month_index(), 2026 * 12 + 11);
        assert_eq!(
            period("2026-09").start_month_index(),
            period("2026-09").end_month_index()
        );
        assert_eq!(period("2026-Q3").end_month_index(), period("2026-09").end_month_index());
    }

    #[test]
    fn orders_by_end_then_shorter_first() {
        let mut periods = [
            period("2026"),
            period("2026-Q4"),
            period("2026-12"),
            period("2026-11"),
            period("2025"),
        ];
        periods.sort();
        let texts: Vec<String> = periods.iter().map(Period::to_string).collect();
        assert_eq!(texts, ["2025", "2026-11", "2026-12", "2026-Q4", "2026"]);
    }

    #[test]
    fn next_and_bounds_follow_the_calendar() {
        assert_eq!(period("2025-Q4").next(), Some(period("2026-Q1")));
        assert_eq!(period("2026-12").next(), Some(period("2027-01")));
        assert_eq!(period("2100-Q4").next(), None);
        let (start, end) = period("2026-Q3").bounds_micros();
        assert_eq!(crate::time::rfc3339(start), "2026-07-01T00:00:00Z");
        assert_eq!(crate::time::rfc3339(end), "2026-10-01T00:00:00Z");
        assert_eq!(
            Period::containing(start, PeriodGranularity::Quarter),
            Some(period("2026-Q3"))
        );
        assert_eq!(
            Period::containing(end - 1, PeriodGranularity::Month),
            Some(period("2026-09"))
        );
    }

    #[test]
    fn previous_and_year_ago_cross_year_boundaries() {
        assert_eq!(period("2026-Q1").previous(), Some(period("2025-Q4")));
        assert_eq!(period("2026-01").previous(), Some(period("2025-12")));
        assert_eq!(period("2026-07").previous(), Some(period("2026-06")));
        assert_eq!(period("2026").previous(), Some(period("2025")));
        assert_eq!(period("2026-Q3").year_ago(), Some(period("2025-Q3")));
        assert_eq!(period("1900-Q1").previous(), None);
        assert_eq!(period("1900-02").previous(), Some(period("1900-01")));
        assert_eq!(period("1900-05").year_ago(), None);
        assert_eq!(period("1900").previous(), None);
    }

    #[test]
    fn with_same_end_finds_the_period_ending_in_the_same_month() {
        assert_eq!(
            period("2026").with_same_end(PeriodGranularity::Month),
            Some(period("2026-12"))
        );
        assert_eq!(
            period("2026").with_same_end(PeriodGranularity::Quarter),
            Some(period("2026-Q4"))
        );
        assert_eq!(
            period("2026-06").with_same_end(PeriodGranularity::Quarter),
            Some(period("2026-Q2"))
        );
        assert_eq!(period("2026-05").with_same_end(PeriodGranularity::Quarter), None);
        assert_eq!(period("2026-Q3").with_same_end(PeriodGranularity::Year), None);
        assert_eq!(
            period("2026-Q4").with_same_end(PeriodGranularity::Year),
            Some(period("2026"))
        );
        assert_eq!(period("2026-Q4").with_same_end(PeriodGranularity::Unspecified), None);
    }

    #[test]
    fn suggests_the_canonical_form_of_sloppy_input() {
        for (text, expected) in [
            ("2026Q3", "2026-Q3"),
            ("2026 Q3", "2026-Q3"),
            ("Q3 2026", "2026-Q3"),
            ("Q3-2026", "2026-Q3"),
            ("2026-q3", "2026-Q3"),
            ("q3/2026", "2026-Q3"),
            ("2026-Q03", "2026-Q3"),
            ("2026-9", "2026-09"),
            ("2026/09", "2026-09"),
            ("09/2026", "2026-09"),
            ("9.2026", "2026-09"),
            ("202609", "2026-09"),
            ("2026-09-30", "2026-09"),
            ("2026/9/1", "2026-09"),
            ("30/09/2026", "2026-09"),
            ("09/30/2026", "2026-09"),
            ("05/05/2026", "2026-05"),
            ("Sep 2026", "2026-09"),
            ("september 2026", "2026-09"),
            ("2026 Sept", "2026-09"),
            ("Sep 30, 2026", "2026-09"),
            ("30 Sep 2026", "2026-09"),
            ("2024-02-29", "2024-02"),
            (" 2026 ", "2026"),
            ("2026–Q3", "2026-Q3"),
            ("2026-Q3", "2026-Q3"),
        ] {
            assert_eq!(
                Period::suggest(text).map(|found| found.to_string()),
                Some(expected.to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn suggests_nothing_when_the_intent_is_unclear() {
        for text in [
            "",
            "Q3",
            "26-Q3",
            "Q3 26",
            "2026 Q5",
            "2026-13",
            "13/2026",
            "05/06/2026",
            "2026-02-30",
            "2025-02-29",
            "FY2026",
            "H1 2026",
            "2026 2027",
            "Q3 Q4 2026",
            "2026-09-30-01",
            "ma 2026",
            "1850",
            "2026q",
            "2026$",
        ] {
            assert_eq!(Period::suggest(text), None, "{text}");
        }
    }

    fn any_period() -> impl Strategy<Value = Period> {
        let year = MIN_YEAR..=MAX_YEAR;
        prop_oneof![
            year.clone()
                .prop_map(|year| Period::from_year(year).expect("year in range")),
            (year.clone(), 1_u8..=4).prop_map(|(year, quarter)| {
                Period::from_quarter(year, quarter).expect("year and quarter in range")
            }),
            (year, 1_u8..=12)
                .prop_map(|(year, month)| Period::from_month(year, month).expect("year and month in range")),
        ]
    }

    proptest! {
        #[test]
        fn every_period_round_trips_through_its_text(original in any_period()) {
            let text = original.to_string();
            prop_assert_eq!(Period::parse(&text), Ok(original));
            prop_assert_eq!(Period::suggest(&text), Some(original));
        }

        #[test]
        fn parse_and_suggest_never_panic(text in "\\PC{0,12}") {
            let _ = Period::parse(&text);
            let _ = Period::suggest(&text);
        }

        #[test]
        fn parse_and_suggest_never_panic_near_the_grammar(text in "[0-9Qq/ .-]{0,12}") {
            if let Ok(parsed) = Period::parse(&text) {
                prop_assert_eq!(parsed.to_string(), text.clone());
            }
            if let Some(suggested) = Period::suggest(&text) {
                prop_assert_eq!(Period::parse(&suggested.to_string()), Ok(suggested));
            }
        }

        #[test]
        fn previous_and_year_ago_stay_ordered(original in any_period()) {
            if let Some(previous) = original.previous() {
                prop_assert!(previous < original);
                prop_assert_eq!(previous.granularity(), original.granularity());
                prop_assert_eq!(previous.end_month_index() + 1, original.start_month_index());
            }
            if let Some(year_ago) = original.year_ago() {
                prop_assert!(year_ago < original);
                prop_assert_eq!(year_ago.granularity(), original.granularity());
                prop_assert_eq!(year_ago.end_month_index() + 12, original.end_month_index());
            }
            prop_assert!(original.start_month_index() <= original.end_month_index());
        }
    }
}
