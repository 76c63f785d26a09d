//! Property-based fuzzing of the period grammar (`period`) and of AIP-158
//! page tokens (`page_token`), the two parsers of `metrix-core` that read
//! text straight from requests.
//!
//! What the properties assert:
//! - `Period::parse` accepts exactly the contract's 3,417 texts (`YYYY`,
//!   `YYYY-Qn`, `YYYY-MM`, 1900 to 2100) and nothing else, never panics,
//!   and names the right problem; `parse(format(p)) == p`;
//! - `Period::suggest` never panics on any text and only ever proposes a
//!   canonical period; the calendar arithmetic (order, neighbours, bounds,
//!   `containing`, `with_same_end`) agrees with itself for every period and
//!   never panics for any instant;
//! - a page token decodes to the cursor it was made from, only for the
//!   filters it was made for; garbage never decodes; a token changed
//!   anywhere, its cursor included, is refused (tokens carry a MAC).
//!
//! CI runs a bounded number of cases; set `PROPTEST_CASES` for a long run
//! (`docs/security.md`, "Fuzzing").

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use metrix_core::page_token;
use metrix_core::period::{MAX_YEAR, MIN_YEAR, Period, PeriodError};
use metrix_proto::metrics::v1::PeriodGranularity;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::{Deserialize, Serialize};

/// `PROPTEST_CASES` when set (long runs), else `ci_cases`; a case a
/// property skips (`prop_assume!`) may be skipped as often as cases run.
fn cases(ci_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(ci_cases);
    Config {
        cases,
        max_global_rejects: cases.max(1_024),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// Periods.

/// Every text of the grammar and the period it names, written out here
/// independently of `Period`'s own formatting.
static GRAMMAR: LazyLock<HashMap<String, Period>> = LazyLock::new(|| {
    let mut texts = HashMap::new();
    for year in MIN_YEAR..=MAX_YEAR {
        texts.insert(format!("{year}"), Period::from_year(year).expect("in range"));
        for quarter in 1..=4 {
            texts.insert(
                format!("{year}-Q{quarter}"),
                Period::from_quarter(year, quarter).expect("in range"),
            );
        }
        for month in 1..=12 {
            texts.insert(
                format!("{year}-{month:02}"),
                Period::from_month(year, month).expect("in range"),
            );
        }
    }
    texts
});

fn any_period() -> impl Strategy<Value = Period> {
    let year = MIN_YEAR..=MAX_YEAR;
    prop_oneof![
        year.clone().prop_map(|year| Period::from_year(year).expect("in range")),
        (year.clone(), 1_u8..=4).prop_map(|(year, quarter)| Period::from_quarter(year, quarter).expect("in range")),
        (year, 1_u8..=12).prop_map(|(year, month)| Period::from_month(year, month).expect("in range")),
    ]
}

/// Text near the grammar: a year of any width and value, a suffix that is
/// right, nearly right or wrong, and stray characters around.
fn near_period_text() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        (0_u32..=9999).prop_map(|year| format!("{year:04}")),
        (1850_u32..=2150).prop_map(|year| year.to_string()),
        "[0-9]{0,6}",
        Just("２０２６".to_owned()),
    ];
    let suffix = prop_oneof![
        Just(String::new()),
        (0_u32..=9).prop_map(|quarter| format!("-Q{quarter}")),
        (0_u32..=99).prop_map(|month| format!("-{month:02}")),
        (0_u32..=9).prop_map(|month| format!("-{month}")),
        "[-/Qq ._]{0,2}[0-9]{0,3}",
        prop::sample::select(vec!["-Q", "-", "Q3", "-q3", "-Q03", "-09-30", "-Q٣", "-1a"]).prop_map(str::to_owned),
    ];
    let around = prop::sample::select(vec!["", "", "", " ", "\0", "\u{feff}", "+", "-", "\n"]);
    (around.clone(), year, suffix, around)
        .prop_map(|(before, year, suffix, after)| format!("{before}{year}{suffix}{after}"))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        near_period_text(),
        "[0-9Qq/ .,_-]{0,14}",
        prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        // Longer than `suggest` reads.
        prop::collection::vec(any::<char>(), 60..200).prop_map(String::from_iter),
    ]
}

/// The problem `parse` must name for a text outside the grammar, from the
/// grammar's own rules (shape first, then the year, then the quarter or
/// month).
fn expected_problem(text: &str) -> PeriodError {
    if text.is_empty() {
        return PeriodError::Empty;
    }
    let bytes = text.as_bytes();
    if bytes.len() < 4 || !bytes[..4].iter().all(u8::is_ascii_digit) {
        return PeriodError::Malformed;
    }
    let year: u16 = text[..4].parse().expect("four digits");
    let year_out = !(MIN_YEAR..=MAX_YEAR).contains(&year);
    match &bytes[4..] {
        [] if year_out => PeriodError::YearOutOfRange { year },
        [b'-', b'Q', quarter] if quarter.is_ascii_digit() => {
            let quarter = quarter - b'0';
            if year_out {
                PeriodError::YearOutOfRange { year }
            } else {
                PeriodError::QuarterOutOfRange { quarter }
            }
        }
        [b'-', tens, units] if tens.is_ascii_digit() && units.is_ascii_digit() => {
            let month = (tens - b'0') * 10 + (units - b'0');
            if year_out {
                PeriodError::YearOutOfRange { year }
            } else {
                PeriodError::MonthOutOfRange { month }
            }
        }
        _ => PeriodError::Malformed,
    }
}

fn granularity() -> impl Strategy<Value = PeriodGranularity> {
    prop::sample::select(vec![
        PeriodGranularity::Unspecified,
        PeriodGranularity::Month,
        PeriodGranularity::Quarter,
        PeriodGranularity::Year,
    ])
}

proptest! {
    #![proptest_config(cases(80_000))]

    #[test]
    fn parse_accepts_exactly_the_grammar(text in any_text()) {
        match (Period::parse(&text), GRAMMAR.get(&text)) {
            (Ok(parsed), Some(expected)) => {
                prop_assert_eq!(parsed, *expected);
                prop_assert_eq!(parsed.to_string(), text.clone(), "one text per period");
            }
            (Err(problem), None) => {
                prop_assert_eq!(&problem, &expected_problem(&text), "{:?}", text);
                prop_assert!(!problem.to_string().is_empty());
            }
            (outcome, expected) => {
                return Err(TestCaseError::fail(format!("{text:?}: parsed {outcome:?}, grammar says {expected:?}")));
            }
        }
    }

    #[test]
    fn every_period_prints_and_parses_back(period in any_period()) {
        let text = period.to_string();
        prop_assert_eq!(GRAMMAR.get(&text), Some(&period));
        prop_assert_eq!(Period::parse(&text), Ok(period));
        prop_assert_eq!(text.parse::<Period>(), Ok(period));
        prop_assert_eq!(Period::suggest(&text), Some(period));
        prop_assert_eq!(Period::suggest(&format!("  {text}\t")), Some(period));
    }

    #[test]
    fn suggest_never_panics_and_only_proposes_canonical_periods(text in any_text()) {
        if let Some(suggested) = Period::suggest(&text) {
            prop_assert!(GRAMMAR.contains_key(&suggested.to_string()));
            prop_assert_eq!(Period::parse(&suggested.to_string()), Ok(suggested));
            prop_assert!(text.len() <= 64, "suggest reads at most 64 bytes, proposed for {:?}", text);
        }
        if let Some(valid) = GRAMMAR.get(text.trim()) {
            prop_assert_eq!(Period::suggest(&text), Some(*valid), "a valid period proposes itself");
        }
    }

    #[test]
    fn the_calendar_agrees_with_itself(first in any_period(), second in any_period(), wanted in granularity()) {
        // One order, by sort key, and the key identifies the period.
        prop_assert_eq!(first.cmp(&second), first.sort_key().cmp(&second.sort_key()));
        prop_assert_eq!(first == second, first.sort_key() == second.sort_key());
        if first.end_month_index() < second.end_month_index() {
            prop_assert!(first < second);
        }
        prop_assert!(first.start_month_index() <= first.end_month_index());
        // Neighbours are adjacent and inverse.
        if let Some(next) = first.next() {
            prop_assert_eq!(next.previous(), Some(first));
            prop_assert_eq!(next.granularity(), first.granularity());
            prop_assert_eq!(next.start_month_index(), first.end_month_index() + 1);
            prop_assert_eq!(next.bounds_micros().0, first.bounds_micros().1);
        } else {
            prop_assert_eq!(first.last_month(), (MAX_YEAR, 12));
        }
        if let Some(previous) = first.previous() {
            prop_assert_eq!(previous.next(), Some(first));
        } else {
            prop_assert_eq!(first.first_month(), (MIN_YEAR, 1));
        }
        if let Some(year_ago) = first.year_ago() {
            prop_assert_eq!(year_ago.end_month_index() + 12, first.end_month_index());
        }
        // Bounds hold the period's instants, and only those.
        let (start, end) = first.bounds_micros();
        prop_assert!(start < end);
        if first.granularity() == PeriodGranularity::Month || first.granularity() == PeriodGranularity::Quarter {
            prop_assert_eq!(Period::containing(start, first.granularity()), Some(first));
            prop_assert_eq!(Period::containing(end - 1, first.granularity()), Some(first));
            prop_assert_ne!(Period::containing(end, first.granularity()), Some(first));
        }
        if let Some(same_end) = first.with_same_end(wanted) {
            prop_assert_eq!(same_end.granularity(), wanted);
            prop_assert_eq!(same_end.last_month(), first.last_month());
        }
    }

    #[test]
    fn any_instant_has_at_most_one_period(micros in any::<i64>(), wanted in granularity()) {
        if let Some(period) = Period::containing(micros, wanted) {
            let (start, end) = period.bounds_micros();
            prop_assert!(start <= micros && micros < end, "{period} does not hold {micros}");
            prop_assert_eq!(period.granularity(), wanted);
        }
    }
}

// ---------------------------------------------------------------------------
// Page tokens.

/// Cursors shaped as the services' are: text keys, integers, a nested
/// struct and an enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    created_at: i64,
    id: String,
    revision: i32,
    after: usize,
    nested: Option<Nested>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    metric_id: String,
    period_end: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    AfterPlatform,
    After {
        publication_date: String,
        source_id: String,
    },
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,16}",
        prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
    ]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    let nested =
        prop::option::of((text(), any::<u32>()).prop_map(|(metric_id, period_end)| Nested { metric_id, period_end }));
    let kind = prop_oneof![
        Just(Kind::AfterPlatform),
        (text(), text()).prop_map(|(publication_date, source_id)| Kind::After {
            publication_date,
            source_id
        }),
    ];
    (any::<i64>(), text(), any::<i32>(), any::<usize>(), nested, kind).prop_map(
        |(created_at, id, revision, after, nested, kind)| Cursor {
            created_at,
            id,
            revision,
            after,
            nested,
            kind,
        },
    )
}

/// Filters as the services write them (`sources|1|true`), and any text.
fn filters() -> impl Strategy<Value = String> {
    prop_oneof![
        ("[a-z]{1,8}", any::<i32>(), any::<bool>()).prop_map(|(list, kind, flag)| format!("{list}|{kind}|{flag}")),
        text(),
    ]
}

/// A one-character change of a token.
#[derive(Debug, Clone)]
struct Tamper {
    at: prop::sample::Index,
    replacement: char,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let replacement = prop_oneof![
        8 => prop::sample::select("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars().collect::<Vec<_>>()),
        1 => prop::sample::select(vec!['+', '/', '=', '.', ' ', '\0', 'é']),
    ];
    (any::<prop::sample::Index>(), replacement).prop_map(|(at, replacement)| Tamper { at, replacement })
}

proptest! {
    #![proptest_config(cases(30_000))]

    #[test]
    fn a_token_decodes_to_its_cursor_for_its_filters_only(
        cursor in cursor(),
        filters in filters(),
        other_filters in filters(),
    ) {
        let token = page_token::encode(&cursor, &filters);
        prop_assert!(!token.is_empty());
        prop_assert!(token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{token}");
        prop_assert_eq!(page_token::decode::<Cursor>(&token, &filters), Ok(Some(cursor.clone())));
        if other_filters != filters {
            let refused = page_token::decode::<Cursor>(&token, &other_filters);
            prop_assert_eq!(refused.map_err(|violation| violation.field), Err("page_token".to_owned()));
        }
        // The empty token is the first page, whatever the filters.
        prop_assert_eq!(page_token::decode::<Cursor>("", &filters), Ok(None));
    }

    #[test]
    fn garbage_never_decodes(token in prop_oneof![
        "[A-Za-z0-9_-]{1,200}",
        prop::collection::vec(any::<char>(), 1..64).prop_map(String::from_iter),
        // Valid base64 of JSON that is not an envelope.
        prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        text().prop_map(|json| URL_SAFE_NO_PAD.encode(format!("{{\"c\":{json:?},\"f\":\"x\"}}"))),
    ], filters in filters()) {
        let refused = page_token::decode::<Cursor>(&token, &filters);
        prop_assert!(refused.is_err(), "{token:?} decoded to {refused:?}");
        prop_assert_eq!(refused.map_err(|violation| violation.field), Err("page_token".to_owned()));
    }

    #[test]
    fn every_tampered_token_is_refused(cursor in cursor(), filters in filters(), tamper in tamper()) {
        let token = page_token::encode(&cursor, &filters);
        let at = tamper.at.index(token.len());
        let mut tampered: Vec<char> = token.chars().collect();
        prop_assume!(tampered[at] != tamper.replacement);
        tampered[at] = tamper.replacement;
        let tampered: String = tampered.into_iter().collect();
        // The cursor is authenticated with the filters: a change anywhere,
        // inside the cursor too, is refused.
        let outcome = page_token::decode::<Cursor>(&tampered, &filters);
        prop_assert!(outcome.is_err(), "{tampered:?} decoded to {outcome:?}");
    }
}

/// A cursor edited inside a genuine token, or a token written from nothing
/// but the filters the caller chose, is refused: tokens carry a MAC keyed
/// with the deployment's `METRIX_PAGE_TOKEN_KEY`.
#[test]
fn a_forged_cursor_is_refused() {
    let filters = "sources|0|false";
    let genuine = page_token::encode(&serde_json::json!({"after": 50}), filters);
    let bytes = URL_SAFE_NO_PAD.decode(&genuine).expect("base64url");
    let text = String::from_utf8_lossy(&bytes).replace("{\"after\":50}", "{\"after\":7}");
    let forged = URL_SAFE_NO_PAD.encode(text.as_bytes());
    assert_eq!(
        page_token::decode::<serde_json::Value>(&forged, filters).map_err(|violation| violation.field),
        Err("page_token".to_owned())
    );
    for made in [
        URL_SAFE_NO_PAD.encode("{\"after\":3}"),
        URL_SAFE_NO_PAD.encode("{\"c\":{\"after\":3},\"f\":\"x\"}"),
        URL_SAFE_NO_PAD.encode(format!("{{\"after\":3}}{}", "A".repeat(16))),
    ] {
        assert!(
            page_token::decode::<serde_json::Value>(&made, filters).is_err(),
            "{made}"
        );
    }
}

#[test]
fn the_grammar_has_every_period_once() {
    assert_eq!(GRAMMAR.len(), (usize::from(MAX_YEAR - MIN_YEAR) + 1) * 17);
}
