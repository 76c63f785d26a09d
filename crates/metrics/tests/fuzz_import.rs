//! Property-based fuzzing of the KPI CSV import (`import::parse`), the
//! parser of the one file a customer uploads whole.
//!
//! What the properties assert:
//! - any text (arbitrary characters, arbitrary bytes read as UTF-8 the way
//!   the contract's `string` carries them, and CSV-shaped text with broken
//!   quoting) never panics the parser; a refused file names `csv_content`
//!   or `company_id`; in an accepted file every row read is accepted or
//!   rejected once, in line order, each rejected row naming its line and a
//!   column of the format (or none, for a whole-row problem), and every
//!   accepted row is one the store may take;
//! - for well-formed CSV (any header order and case, a BOM, LF, CRLF or CR
//!   line ends, quoted fields with commas, quotes and line breaks, blank
//!   spacer lines) the outcome is exactly the model's: the right line and
//!   the right column for every rejected row, the right values for every
//!   accepted one.
//!
//! CI runs a bounded number of cases; set `PROPTEST_CASES` for a long run
//! (`docs/security.md`, "Fuzzing").

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::HashSet;

use metrix_metrics::catalog;
use metrix_metrics::import::{MAX_NOTE_LENGTH, ParsedImport, parse};
use metrix_metrics::period::Period;
use metrix_metrics::validation::validate_record;
use proptest::prelude::*;
use proptest::test_runner::Config;

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

const COMPANY: &str = "0190f0a0-0000-7000-8000-000000000001";
const COLUMNS: [&str; 5] = ["company_id", "metric_id", "period", "value", "note"];

// ---------------------------------------------------------------------------
// What holds for any input.

/// Checks what every outcome must satisfy, for any input.
fn check_invariants(
    content: &str,
    request_company_id: &str,
    outcome: &Result<ParsedImport, Vec<metrix_core::error::FieldViolation>>,
) -> Result<(), TestCaseError> {
    let parsed = match outcome {
        Err(violations) => {
            prop_assert!(!violations.is_empty());
            for violation in violations {
                prop_assert!(
                    violation.field == "csv_content" || violation.field == "company_id",
                    "{violation:?}"
                );
                prop_assert!(!violation.description.is_empty());
            }
            return Ok(());
        }
        Ok(parsed) => parsed,
    };
    prop_assert_eq!(parsed.total_rows, parsed.accepted.len() + parsed.rejected.len());
    prop_assert!(parsed.total_rows > 0);
    // The header is line 1 and rows come after it.
    let first_row_line = 2;
    // The last line a row may start on, CR, LF and CRLF all ending lines.
    let lines = i32::try_from(content.matches('\n').count() + content.matches('\r').count() + 1).unwrap_or(i32::MAX);
    let mut previous = 0;
    for issue in &parsed.rejected {
        prop_assert!(
            issue.line_number >= first_row_line && issue.line_number <= lines,
            "{issue:?} of {lines} lines"
        );
        prop_assert!(issue.line_number >= previous, "rejections in line order");
        previous = issue.line_number;
        prop_assert!(
            issue.column.is_empty() || COLUMNS.contains(&issue.column.as_str()),
            "{issue:?} names no column of the format"
        );
        prop_assert!(!issue.reason.is_empty());
    }
    let mut previous = 0;
    let mut keys = HashSet::new();
    for row in &parsed.accepted {
        prop_assert!(
            row.line_number >= first_row_line && row.line_number <= lines,
            "{row:?} of {lines} lines"
        );
        prop_assert!(row.line_number > previous, "acceptances in line order, one per line");
        previous = row.line_number;
        let kpi = &row.kpi;
        prop_assert!(kpi.value().is_finite());
        prop_assert!(!kpi.company_id().is_empty());
        if !request_company_id.is_empty() {
            prop_assert_eq!(kpi.company_id(), request_company_id);
        }
        prop_assert_eq!(kpi.company_id().trim(), kpi.company_id());
        prop_assert!(kpi.note().chars().count() <= MAX_NOTE_LENGTH);
        prop_assert!(
            !kpi.note().contains('\0') && !kpi.company_id().contains('\0'),
            "{kpi:?} holds a NUL"
        );
        let valid = validate_record(kpi.metric_id(), &kpi.period().to_string(), kpi.value());
        prop_assert!(valid.is_ok(), "accepted {kpi:?}: {:?}", valid.err());
        prop_assert!(
            keys.insert((kpi.company_id().to_owned(), kpi.metric_id(), kpi.period())),
            "{kpi:?} repeats an accepted row"
        );
    }
    let accepted_lines: HashSet<i32> = parsed.accepted.iter().map(|row| row.line_number).collect();
    for issue in &parsed.rejected {
        prop_assert!(
            !accepted_lines.contains(&issue.line_number),
            "{issue:?} was also accepted"
        );
    }
    Ok(())
}

fn metric_id() -> impl Strategy<Value = String> {
    let known: Vec<String> = catalog::all().iter().map(|metric| metric.id.to_owned()).collect();
    prop_oneof![
        6 => prop::sample::select(known),
        1 => prop::sample::select(vec!["ARR", " arr ", "unknown_metric", "", "arr\0", "mrr;"]).prop_map(str::to_owned),
    ]
}

fn period_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (2015_u16..=2030, 0_u8..=3, 1_u8..=12).prop_map(|(year, shape, part)| match shape {
            0 => format!("{year}"),
            1 => format!("{year}-Q{}", (part - 1) / 3 + 1),
            _ => format!("{year}-{part:02}"),
        }),
        1 => prop::sample::select(vec!["2026-Q5", "2026-13", "1899", "Q3 2026", "2026/09", "", " 2026 ", "2026-9"])
            .prop_map(str::to_owned),
    ]
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0_u32..=200, 0_u32..100).prop_map(|(units, hundredths)| format!("{units}.{hundredths:02}")),
        2 => (0_u64..=10_000_000_000).prop_map(|value| value.to_string()),
        1 => prop::sample::select(vec![
            "-5", "1e3", "1E-2", "+7", ".5", "5.", "1e999", "-1e999", "1e-999", "NaN", "inf", "1,000", "$100", "12%", "",
            " 42 ", "0x10", "1_000", "١٢", "--1", "1e", "-0",
        ])
        .prop_map(str::to_owned),
    ]
}

fn company_id() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(COMPANY.to_owned()),
        1 => prop::sample::select(vec!["", " ", "someone-else", "0190F0A0-0000-7000-8000-000000000001"]).prop_map(str::to_owned),
        1 => Just(format!(" {COMPANY}\t")),
    ]
}

/// Free text: quotes, commas, line breaks, NUL, anything; sometimes over
/// the length limit.
fn note() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,12}",
        2 => prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        2 => prop::sample::select(vec!["a,b", "say \"hi\"", "two\nlines", "cr\rlf\r\n", "\"", "=SUM(A1)", "\u{feff}"])
            .prop_map(str::to_owned),
        1 => (990_usize..1_010, any::<char>()).prop_map(|(length, character)| std::iter::repeat_n(character, length).collect()),
    ]
}

/// Text the model does not know the shape of.
fn arbitrary_content() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..200).prop_map(String::from_iter),
        // Bytes, read as the contract's UTF-8 string would be.
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        // CSV-shaped, quotes and all, anywhere.
        prop::collection::vec(
            prop_oneof![
                6 => prop::sample::select(vec![
                    "company_id", "metric_id", "period", "value", "note", "arr", "mrr", "2026", "2026-Q1", "2026-03",
                    "1200", COMPANY, ",", ",", ",", "\n", "\n", "\r\n", "\r", "\"", "\"\"", " ", "\u{feff}", "\0",
                ])
                .prop_map(str::to_owned),
                1 => "[ -~]{1,4}",
                1 => prop::collection::vec(any::<char>(), 1..3).prop_map(String::from_iter),
            ],
            0..80,
        )
        .prop_map(|pieces| pieces.concat()),
    ]
}

// ---------------------------------------------------------------------------
// Well-formed CSV, against a model.

#[derive(Debug, Clone)]
struct Header {
    /// The columns, in file order, and how each name is written.
    columns: Vec<(&'static str, String)>,
}

fn header() -> impl Strategy<Value = Header> {
    let spelling = |name: &'static str| {
        prop_oneof![
            6 => Just(name.to_owned()),
            1 => Just(name.to_ascii_uppercase()),
            1 => Just(format!(" {name} ")),
        ]
    };
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![0_u8, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        spelling("company_id"),
        spelling("metric_id"),
        spelling("period"),
        spelling("value"),
        spelling("note"),
    )
        .prop_flat_map(
            |(with_company, with_note, fault, company, metric, period, value, note)| {
                let mut columns = vec![("metric_id", metric), ("period", period), ("value", value)];
                if with_company {
                    columns.push(("company_id", company));
                }
                if with_note {
                    columns.push(("note", note));
                }
                match fault {
                    // A column of another format.
                    1 => columns.push(("colour", "colour".to_owned())),
                    // A column twice.
                    2 => columns.push(("period", "Period".to_owned())),
                    // A required column missing.
                    3 => {
                        columns.remove(1);
                    }
                    // No columns that the format knows.
                    4 => columns = vec![("", String::new())],
                    _ => {}
                }
                Just(columns).prop_shuffle().prop_map(|columns| Header { columns })
            },
        )
}

/// One line (or more, with quoted line breaks) after the header.
#[derive(Debug, Clone)]
enum Row {
    /// A spacer: nothing, or only blank fields.
    Blank { commas: usize, spaces: bool },
    /// A record: a value per column, maybe one too many or too few.
    Record {
        values: Vec<String>,
        width: Width,
        quote_all: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum Width {
    Exact,
    OneMore,
    OneFewer,
}

impl Row {
    /// The fields the row's line holds (none for a spacer).
    fn fields(&self) -> Vec<&str> {
        let Row::Record { values, width, .. } = self else {
            return Vec::new();
        };
        let mut fields: Vec<&str> = values.iter().map(String::as_str).collect();
        match width {
            Width::Exact => {}
            Width::OneMore => fields.push("extra"),
            Width::OneFewer => {
                fields.pop();
            }
        }
        fields
    }
}

fn row(header: &Header) -> impl Strategy<Value = Row> + use<> {
    let values: Vec<BoxedStrategy<String>> = header
        .columns
        .iter()
        .map(|(column, _)| match *column {
            "company_id" => company_id().boxed(),
            "metric_id" => metric_id().boxed(),
            "period" => period_text().boxed(),
            "value" => value_text().boxed(),
            _ => note().boxed(),
        })
        .collect();
    let width = prop_oneof![12 => Just(Width::Exact), 1 => Just(Width::OneMore), 1 => Just(Width::OneFewer)];
    prop_oneof![
        10 => (values, width, any::<bool>()).prop_map(|(values, width, quote_all)| Row::Record { values, width, quote_all }),
        1 => (0_usize..4, any::<bool>()).prop_map(|(commas, spaces)| Row::Blank { commas, spaces }),
    ]
}

#[derive(Debug, Clone)]
struct CsvCase {
    header: Header,
    rows: Vec<Row>,
    line_end: &'static str,
    bom: bool,
    final_line_end: bool,
    request_company_id: String,
}

fn csv_case() -> impl Strategy<Value = CsvCase> {
    header().prop_flat_map(|header| {
        (
            prop::collection::vec(row(&header), 0..12),
            prop::sample::select(vec!["\n", "\n", "\r\n", "\r"]),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![3 => Just(COMPANY.to_owned()), 2 => Just(String::new())],
            Just(header),
        )
            .prop_map(
                |(rows, line_end, bom, final_line_end, request_company_id, header)| CsvCase {
                    header,
                    rows,
                    line_end,
                    bom,
                    final_line_end,
                    request_company_id,
                },
            )
    })
}

fn write_field(out: &mut String, value: &str, quote: bool) {
    if quote || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// What the model expects of one row.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Skipped,
    Rejected {
        line: i32,
        column: &'static str,
    },
    Accepted {
        line: i32,
        company_id: String,
        metric_id: String,
        period: Period,
        value: f64,
        note: String,
    },
}

impl CsvCase {
    /// The file, and the line each row starts on.
    fn write(&self) -> (String, Vec<i32>) {
        let mut out = String::new();
        if self.bom {
            out.push('\u{feff}');
        }
        let names: Vec<&str> = self
            .header
            .columns
            .iter()
            .map(|(_, written)| written.as_str())
            .collect();
        out.push_str(&names.join(","));
        let mut line = 1;
        let mut starts = Vec::new();
        for (index, row) in self.rows.iter().enumerate() {
            out.push_str(self.line_end);
            line += 1;
            starts.push(line);
            match row {
                Row::Blank { commas, spaces } => {
                    let field = if *spaces { " " } else { "" };
                    out.push_str(&vec![field; commas + 1].join(","));
                }
                Row::Record { quote_all, .. } => {
                    for (position, field) in row.fields().iter().enumerate() {
                        if position > 0 {
                            out.push(',');
                        }
                        write_field(&mut out, field, *quote_all);
                    }
                }
            }
            // Line breaks inside quoted fields move the next row down.
            line += breaks_in(row);
            if index + 1 == self.rows.len() && self.final_line_end {
                out.push_str(self.line_end);
            }
        }
        (out, starts)
    }

    fn header_ok(&self) -> bool {
        let mut seen = HashSet::new();
        for (column, _) in &self.header.columns {
            if !COLUMNS.contains(column) || !seen.insert(*column) {
                return false;
            }
        }
        ["metric_id", "period", "value"]
            .iter()
            .all(|column| seen.contains(column))
    }

    fn has_company_column(&self) -> bool {
        self.header.columns.iter().any(|(column, _)| *column == "company_id")
    }

    /// The model's outcome for each row, given the lines rows start on.
    fn expected(&self, starts: &[i32]) -> Vec<Expected> {
        let mut first_lines = std::collections::HashMap::new();
        let width = self.header.columns.len();
        self.rows
            .iter()
            .zip(starts)
            .map(|(row, line)| {
                let line = *line;
                let fields = row.fields();
                if fields.iter().all(|field| field.trim().is_empty()) {
                    return Expected::Skipped;
                }
                let rejected = |column| Expected::Rejected { line, column };
                if fields.len() != width {
                    return rejected("");
                }
                let field = |name: &str| {
                    self.header
                        .columns
                        .iter()
                        .position(|(column, _)| *column == name)
                        .map_or(String::new(), |index| fields[index].trim().to_owned())
                };
                let company_id = if self.has_company_column() {
                    field("company_id")
                } else {
                    self.request_company_id.clone()
                };
                if company_id.is_empty()
                    || (!self.request_company_id.is_empty() && company_id != self.request_company_id)
                {
                    return rejected("company_id");
                }
                if company_id.contains('\0') {
                    return rejected("company_id");
                }
                let value_text = field("value");
                let plain = !value_text.is_empty()
                    && value_text
                        .chars()
                        .all(|character| character.is_ascii_digit() || ".-+eE".contains(character));
                let value = match value_text.parse::<f64>() {
                    Ok(value) if plain && value.is_finite() => value,
                    _ => return rejected("value"),
                };
                let metric_id = field("metric_id");
                let period = match validate_record(&metric_id, &field("period"), value) {
                    Ok((period, _)) => period,
                    Err(problems) => {
                        let column = match problems.first().map(|problem| problem.field.as_str()) {
                            Some("metric_id") => "metric_id",
                            Some("period") => "period",
                            Some("value") => "value",
                            other => panic!("validate_record named {other:?}"),
                        };
                        return rejected(column);
                    }
                };
                let note = field("note");
                if note.chars().count() > MAX_NOTE_LENGTH || note.contains('\0') {
                    return rejected("note");
                }
                let key = (company_id.clone(), metric_id.clone(), period);
                if first_lines.contains_key(&key) {
                    return rejected("");
                }
                first_lines.insert(key, line);
                Expected::Accepted {
                    line,
                    company_id,
                    metric_id,
                    period,
                    value,
                    note,
                }
            })
            .collect()
    }
}

/// How many line breaks a row's quoted fields hold (each moves the rows
/// after it one line down).
fn breaks_in(row: &Row) -> i32 {
    let count = row
        .fields()
        .iter()
        .map(|value| {
            // A CRLF is one line end; a lone CR or LF is one too.
            let crlf = value.matches("\r\n").count();
            value.matches('\n').count() + value.matches('\r').count() - crlf
        })
        .sum::<usize>();
    i32::try_from(count).expect("a few line breaks")
}

proptest! {
    #![proptest_config(cases(60_000))]

    #[test]
    fn any_text_is_parsed_without_panic_and_every_rejection_names_its_line(
        content in arbitrary_content(),
        request_company_id in prop_oneof![Just(COMPANY.to_owned()), Just(String::new())],
    ) {
        let outcome = parse(&content, &request_company_id);
        check_invariants(&content, &request_company_id, &outcome)?;
    }
}

proptest! {
    #![proptest_config(cases(15_000))]

    #[test]
    fn well_formed_csv_is_read_exactly_as_the_model_says(case in csv_case()) {
        let (content, starts) = case.write();
        let outcome = parse(&content, &case.request_company_id);
        check_invariants(&content, &case.request_company_id, &outcome)?;
        if !case.header_ok() {
            let violations = outcome.expect_err("a bad header refuses the file");
            prop_assert_eq!(violations[0].field.as_str(), "csv_content");
            return Ok(());
        }
        if !case.has_company_column() && case.request_company_id.is_empty() {
            let violations = outcome.expect_err("no company anywhere refuses the file");
            prop_assert_eq!(violations[0].field.as_str(), "company_id");
            return Ok(());
        }
        let expected = case.expected(&starts);
        let read: Vec<&Expected> = expected.iter().filter(|row| **row != Expected::Skipped).collect();
        if read.is_empty() {
            let violations = outcome.expect_err("a header alone refuses the file");
            prop_assert_eq!(violations[0].field.as_str(), "csv_content");
            return Ok(());
        }
        let parsed = match outcome {
            Ok(parsed) => parsed,
            Err(violations) => return Err(TestCaseError::fail(format!("{content:?} refused: {violations:?}"))),
        };
        prop_assert_eq!(parsed.total_rows, read.len(), "{:?}", content);
        let outcome: Vec<Expected> = parsed
            .rejected
            .iter()
            .map(|issue| Expected::Rejected {
                line: issue.line_number,
                column: COLUMNS.iter().find(|column| **column == issue.column).copied().unwrap_or(""),
            })
            .chain(parsed.accepted.iter().map(|row| Expected::Accepted {
                line: row.line_number,
                company_id: row.kpi.company_id().to_owned(),
                metric_id: row.kpi.metric_id().to_owned(),
                period: row.kpi.period(),
                value: row.kpi.value(),
                note: row.kpi.note().to_owned(),
            }))
            .collect();
        let expected: Vec<Expected> = read
            .iter()
            .filter(|row| matches!(row, Expected::Rejected { .. }))
            .chain(read.iter().filter(|row| matches!(row, Expected::Accepted { .. })))
            .map(|row| (*row).clone())
            .collect();
        prop_assert_eq!(outcome, expected, "{:?}", content);
    }
}

/// Rows are reported on the line they start on, whatever the line ends
/// (the csv crate's own line count is wrong for CRLF and CR,
/// BurntSushi/rust-csv#208) and after empty lines.
#[test]
fn rows_are_reported_on_their_own_line() {
    let lines = |csv: &str| -> Vec<i32> {
        let parsed = parse(csv, COMPANY).expect("parses");
        let mut lines: Vec<i32> = parsed.accepted.iter().map(|row| row.line_number).collect();
        lines.extend(parsed.rejected.iter().map(|issue| issue.line_number));
        lines.sort_unstable();
        lines
    };
    assert_eq!(
        lines("metric_id,period,value\r\narr,2026,1\r\nmrr,2026-01,1\r\n"),
        [2, 3]
    );
    assert_eq!(lines("metric_id,period,value\rarr,2026,1\rmrr,2026-01,1\r"), [2, 3]);
    assert_eq!(
        lines("metric_id,period,value\n\narr,2026,1\n\n\nmrr,2026-01,1\n"),
        [3, 6]
    );
    // A quoted line break inside a row counts toward the rows after it.
    assert_eq!(
        lines("metric_id,period,value,note\r\narr,2026,1,\"two\r\nlines\"\r\nmrr,2026-01,1,x\r\n"),
        [2, 4]
    );
}

/// A NUL in a note, or in a `company_id` when the request names no company,
/// rejects that row naming its line and column: PostgreSQL refuses NUL in
/// text, and the whole import must not fail at the store for one row.
#[test]
fn a_nul_in_a_note_or_company_id_rejects_the_row() {
    let csv = "metric_id,period,value,note\narr,2026-Q1,1200000,before\0after\nmrr,2026-01,1,fine\n";
    let parsed = parse(csv, COMPANY).expect("parses");
    assert_eq!(parsed.accepted.len(), 1);
    assert_eq!(parsed.rejected.len(), 1);
    assert_eq!(
        (parsed.rejected[0].line_number, parsed.rejected[0].column.as_str()),
        (2, "note")
    );
    assert!(parsed.rejected[0].reason.contains("NUL"), "{:?}", parsed.rejected[0]);
    let csv = "company_id,metric_id,period,value\nc-1\0,arr,2026-Q1,1200000\n";
    let parsed = parse(csv, "").expect("parses");
    assert!(parsed.accepted.is_empty());
    assert_eq!(
        (parsed.rejected[0].line_number, parsed.rejected[0].column.as_str()),
        (2, "company_id")
    );
}

#[test]
fn the_model_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = csv_case();
    let mut columns = HashSet::new();
    let mut accepted = 0;
    for _ in 0..500 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        if !case.header_ok() || (!case.has_company_column() && case.request_company_id.is_empty()) {
            continue;
        }
        let (_, starts) = case.write();
        for row in case.expected(&starts) {
            match row {
                Expected::Rejected { column, .. } => {
                    columns.insert(column);
                }
                Expected::Accepted { .. } => accepted += 1,
                Expected::Skipped => {}
            }
        }
    }
    assert!(accepted >= 100, "{accepted} rows accepted");
    for column in ["", "company_id", "metric_id", "period", "value", "note"] {
        assert!(columns.contains(column), "no row rejected for {column:?}: {columns:?}");
    }
}
