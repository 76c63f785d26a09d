//! CSV import of KPI values: the documented column set, row by row
//! validation with line numbers, and the duplicate rule.
//!
//! Parsing is pure; the service stores the accepted rows in one
//! transaction, so an import is never half-written.

use std::collections::HashMap;

use metrix_core::error::FieldViolation;
use metrix_proto::metrics::v1::KpiSource;

use crate::events::NUL_REASON;
use crate::period::Period;
use crate::store::NewKpi;

/// The largest CSV accepted, in bytes.
pub const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;
/// The most data rows accepted.
pub const MAX_ROWS: usize = 50_000;
/// The longest note, in characters: a stored value's.
pub use crate::store::MAX_NOTE_LENGTH;

/// A column of the import format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    CompanyId,
    MetricId,
    Period,
    Value,
    Note,
}

impl Column {
    fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "company_id" => Some(Column::CompanyId),
            "metric_id" => Some(Column::MetricId),
            "period" => Some(Column::Period),
            "value" => Some(Column::Value),
            "note" => Some(Column::Note),
            _ => None,
        }
    }
}

/// One valid row, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// The row's line in the file (the header is line 1).
    pub line_number: i32,
    /// The value the row records, checked as every stored value is.
    pub kpi: NewKpi,
}

/// A rejected row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIssue {
    /// The row's line in the file.
    pub line_number: i32,
    /// The offending column, empty for the whole row.
    pub column: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed file: the accepted rows and the rejected ones, both in line order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedImport {
    /// Rows read, not counting the header.
    pub total_rows: usize,
    /// Valid rows.
    pub accepted: Vec<ImportRow>,
    /// Rejected rows with the reason.
    pub rejected: Vec<RowIssue>,
}

/// Parses `content`. A problem with the file as a whole (no header, a
/// missing required or unknown column, too large) is returned as field
/// violations; a problem with one row rejects that row only.
pub fn parse(content: &str, request_company_id: &str) -> Result<ParsedImport, Vec<FieldViolation>> {
    let content_violation = |description: String| vec![FieldViolation::new("csv_content", description)];
    if content.len() > MAX_CSV_BYTES {
        return Err(content_violation(format!(
            "is larger than {MAX_CSV_BYTES} bytes; split the file"
        )));
    }
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    if content.trim().is_empty() {
        return Err(content_violation(
            "is required: a header line and at least one row".to_owned(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(content.as_bytes());
    let headers = reader
        .headers()
        .map_err(|error| content_violation(format!("has an unreadable header line: {error}")))?
        .clone();
    let mut positions: HashMap<Column, usize> = HashMap::new();
    for (index, name) in headers.iter().enumerate() {
        let Some(column) = Column::parse(name) else {
            return Err(content_violation(format!(
                "has an unknown column {name:?}; the columns are company_id, metric_id, period, value and note"
            )));
        };
        if positions.insert(column, index).is_some() {
            return Err(content_violation(format!("names the column {name:?} twice")));
        }
    }
    for (column, name) in [
        (Column::MetricId, "metric_id"),
        (Column::Period, "period"),
        (Column::Value, "value"),
    ] {
        if !positions.contains_key(&column) {
            return Err(content_violation(format!("has no {name} column")));
        }
    }
    if !positions.contains_key(&Column::CompanyId) && request_company_id.is_empty() {
        return Err(vec![FieldViolation::new(
            "company_id",
            "is required when the CSV has no company_id column",
        )]);
    }

    let mut parsed = ParsedImport::default();
    let mut lines = LineCounter::new(content);
    let mut first_line_of_key: HashMap<(String, &str, Period), i32> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line_number = error.position().map_or(0, |position| lines.line_at(position.byte()));
                parsed.total_rows += 1;
                parsed.rejected.push(RowIssue {
                    line_number,
                    column: String::new(),
                    reason: "the row is not valid CSV (check the quoting)".to_owned(),
                });
                continue;
            }
        };
        let line_number = record.position().map_or(0, |position| lines.line_at(position.byte()));
        if record.iter().all(|field| field.trim().is_empty()) {
            // Blank lines (a trailing newline, a spacer) are not rows.
            continue;
        }
        parsed.total_rows += 1;
        if parsed.total_rows > MAX_ROWS {
            return Err(content_violation(format!(
                "has more than {MAX_ROWS} rows; split the file"
            )));
        }
        let field = |column: Column| {
            positions
                .get(&column)
                .and_then(|index| record.get(*index))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let reject = |column: &str, reason: String| RowIssue {
            line_number,
            column: column.to_owned(),
            reason,
        };
        if record.len() != headers.len() {
            parsed.rejected.push(reject(
                "",
                format!("has {} fields where the header has {}", record.len(), headers.len()),
            ));
            continue;
        }
        let company_id = match positions.get(&Column::CompanyId) {
            Some(_) => field(Column::CompanyId),
            None => request_company_id.to_owned(),
        };
        if company_id.is_empty() {
            parsed.rejected.push(reject("company_id", "is required".to_owned()));
            continue;
        }
        if company_id.contains('\0') {
            parsed.rejected.push(reject("company_id", NUL_REASON.to_owned()));
            continue;
        }
        if !request_company_id.is_empty() && company_id != request_company_id {
            parsed
                .rejected
                .push(reject("company_id", "differs from the request's company_id".to_owned()));
            continue;
        }
        let value_text = field(Column::Value);
        let value = match parse_plain_number(&value_text) {
            Ok(value) => value,
            Err(reason) => {
                parsed.rejected.push(reject("value", reason));
                continue;
            }
        };
        let kpi = NewKpi::parse(
            company_id,
            &field(Column::MetricId),
            &field(Column::Period),
            value,
            KpiSource::CsvImport,
            &field(Column::Note),
        );
        let kpi = match kpi {
            Ok(kpi) => kpi,
            Err(problems) => {
                // The first problem is reported; the rest often follow from it.
                if let Some(problem) = problems.into_iter().next() {
                    parsed.rejected.push(reject(&problem.field, problem.description));
                }
                continue;
            }
        };
        let key = (kpi.company_id().to_owned(), kpi.metric_id(), kpi.period());
        if let Some(first_line) = first_line_of_key.get(&key) {
            parsed.rejected.push(reject(
                "",
                format!("repeats the company, metric and period of line {first_line}"),
            ));
            continue;
        }
        first_line_of_key.insert(key, line_number);
        parsed.accepted.push(ImportRow { line_number, kpi });
    }
    if parsed.total_rows == 0 {
        return Err(content_violation("has a header but no rows".to_owned()));
    }
    Ok(parsed)
}

/// The lines of a file, counted once as its records are read in order.
///
/// A record's line comes from its byte offset: the csv reader's own line
/// count is where it stood before it skipped the line end of the record
/// before and any empty lines (BurntSushi/rust-csv#208), so it is one line
/// early with CRLF and always 1 with CR. CR, LF and CRLF each end one line
/// here; the header is line 1.
struct LineCounter<'content> {
    content: &'content [u8],
    /// How far the line ends are counted.
    counted_to: usize,
    /// The line ends before `counted_to`.
    line_ends: usize,
}

impl<'content> LineCounter<'content> {
    fn new(content: &'content str) -> Self {
        Self {
            content: content.as_bytes(),
            counted_to: 0,
            line_ends: 0,
        }
    }

    /// The line of the record at `byte`. Records come in file order, so
    /// each call counts only the bytes since the last one.
    fn line_at(&mut self, byte: u64) -> i32 {
        let content = self.content;
        let start = usize::try_from(byte).unwrap_or(usize::MAX).min(content.len());
        let first = content[start..]
            .iter()
            .position(|byte| *byte != b'\r' && *byte != b'\n')
            .map_or(content.len(), |offset| start + offset);
        if first < self.counted_to {
            (self.counted_to, self.line_ends) = (0, 0);
        }
        // A CR at `first - 1` ends a line: `content[first]` is not an LF.
        self.line_ends += (self.counted_to..first)
            .filter(|index| {
                let byte = content[*index];
                byte == b'\n' || (byte == b'\r' && content.get(index + 1) != Some(&b'\n'))
            })
            .count();
        self.counted_to = first;
        i32::try_from(self.line_ends + 1).unwrap_or(i32::MAX)
    }
}

/// A plain decimal number: optional sign, digits, optional `.` and digits,
/// optional exponent. No thousands separators, currency signs or `%`.
fn parse_plain_number(text: &str) -> Result<f64, String> {
    if text.is_empty() {
        return Err("is required".to_owned());
    }
    let plain = text
        .chars()
        .all(|character| character.is_ascii_digit() || matches!(character, '.' | '-' | '+' | 'e' | 'E'));
    if !plain {
        return Err(format!(
            "{text:?} is not a plain number: use digits and `.`, without thousands separators, currency or %"
        ));
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("{text:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPANY: &str = "0190f0a0-0000-7000-8000-000000000001";

    #[test]
    fn good_rows_are_accepted_and_bad_ones_reported_by_line() {
        let csv = "metric_id,period,value,note\n\
                   arr,2026-Q1,1200000,first\n\
                   arr,2026-Q5,1300000,\n\
                   mrr,2026-03,\"100,000\",\n\
                   ndr,2026-Q1,112.5,\"quoted, with comma\"\n\
                   arr,2026-Q1,1250000,dup\n\
                   unknown_metric,2026-Q1,1,\n";
        let parsed = parse(csv, COMPANY).expect("parses");
        assert_eq!(parsed.total_rows, 6);
        let accepted: Vec<_> = parsed.accepted.iter().map(|row| row.line_number).collect();
        assert_eq!(accepted, [2, 5]);
        assert_eq!(parsed.accepted[1].kpi.note(), "quoted, with comma");
        let rejected: Vec<_> = parsed
            .rejected
            .iter()
            .map(|issue| (issue.line_number, issue.column.as_str()))
            .collect();
        assert_eq!(rejected, [(3, "period"), (4, "value"), (6, ""), (7, "metric_id")]);
        assert!(parsed.rejected[2].reason.contains("line 2"), "{:?}", parsed.rejected[2]);
    }

    #[test]
    fn headers_are_case_insensitive_in_any_order_with_a_bom() {
        let csv = format!("\u{feff}Value,PERIOD,Company_Id,metric_id\n5000000,2026,{COMPANY},arr\n");
        let parsed = parse(&csv, "").expect("parses");
        assert_eq!(parsed.accepted.len(), 1);
        assert_eq!(parsed.accepted[0].kpi.company_id(), COMPANY);
    }

    #[test]
    fn a_bad_header_rejects_the_file() {
        let unknown = parse("metric_id,period,value,colour\narr,2026,1,red\n", COMPANY).expect_err("unknown");
        assert!(unknown[0].description.contains("colour"));
        let missing = parse("metric_id,period\narr,2026\n", COMPANY).expect_err("missing value");
        assert!(missing[0].description.contains("value"));
        let no_company = parse("metric_id,period,value\narr,2026,1\n", "").expect_err("no company");
        assert_eq!(no_company[0].field, "company_id");
        assert!(parse("", COMPANY).is_err());
        assert!(parse("metric_id,period,value\n", COMPANY).is_err());
    }

    #[test]
    fn rows_of_another_company_are_rejected() {
        let csv = "company_id,metric_id,period,value\nsomeone-else,arr,2026,1\n";
        let parsed = parse(csv, COMPANY).expect("parses");
        assert_eq!(parsed.rejected[0].column, "company_id");
    }

    #[test]
    fn numbers_must_be_plain() {
        assert_eq!(parse_plain_number("1250.5"), Ok(1250.5));
        assert_eq!(parse_plain_number("-3e2"), Ok(-300.0));
        assert!(parse_plain_number("$100").is_err());
        assert!(parse_plain_number("12%").is_err());
        assert!(parse_plain_number("1,000").is_err());
        assert!(parse_plain_number("NaN").is_err());
        assert!(parse_plain_number("1e999").is_err());
    }
}
