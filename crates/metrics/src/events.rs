//! Product events: the parsed form of a tracked event, the clock-skew
//! correction, and the filters that select stored events.
//!
//! An event is parsed field by field so every problem is named; the edge's
//! metadata (client IP and user agent) replaces whatever the body claims.

use metrix_core::error::{FieldViolation, Violations};
use metrix_core::time::{micros_of, timestamp};
use metrix_proto::metrics::v1::{Event, EventFilter};

/// The most events of one TrackEvents call.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// The largest encoded TrackEvents request, in bytes.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// The largest properties object, encoded as JSON, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
/// How far in the future a corrected timestamp may lie, in microseconds.
pub const MAX_FUTURE_MICROS: i64 = 24 * 3600 * 1_000_000;

/// A valid event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Supplied or generated id, unique per organisation.
    pub event_id: String,
    /// The app or source.
    pub app_id: String,
    /// The user, possibly empty.
    pub user_id: String,
    /// The type, such as `page_view`.
    pub event_type: String,
    /// The name, possibly empty.
    pub event_name: String,
    /// The properties as a JSON object.
    pub properties_json: String,
    /// Supplied or generated session id.
    pub session_id: String,
    /// The client's event time, if sent.
    pub client_timestamp: Option<i64>,
    /// The client's send time, if sent.
    pub sent_at: Option<i64>,
    /// When the server received the event.
    pub received_at: i64,
    /// The event time corrected for clock skew.
    pub occurred_at: i64,
    /// The client's user agent, from the edge.
    pub user_agent: String,
    /// The client's address, from the edge.
    pub ip: String,
}

/// What the server knows about the request an event arrived in.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When the request arrived, in Unix microseconds.
    pub received_at: i64,
    /// The client's user agent.
    pub user_agent: String,
    /// The client's address, empty when unknown.
    pub ip: String,
    /// The oldest corrected time still retained, in Unix microseconds.
    pub oldest_retained: i64,
}

/// Segment's rule: `received_at − (sent_at − timestamp)` when both client
/// times are known, the client's time when only it is, else the receive time.
pub fn corrected_time(client_timestamp: Option<i64>, sent_at: Option<i64>, received_at: i64) -> i64 {
    match (client_timestamp, sent_at) {
        (Some(happened), Some(sent)) => received_at.saturating_sub(sent.saturating_sub(happened)),
        (Some(happened), None) => happened,
        _ => received_at,
    }
}

fn is_identifier(text: &str, extra: &[char]) -> bool {
    text.chars()
        .all(|character| character.is_ascii_alphanumeric() || extra.contains(&character))
}

/// Parses one event. Every problem is named by its path inside the event,
/// such as `event_type`; a caller prefixes it with where the event was.
pub fn parse_event(event: &Event, arrival: &Arrival) -> Result<NewEvent, Vec<FieldViolation>> {
    let mut violations = Violations::new();
    let mut problem = |field: &str, reason: String| violations.add(field, reason);

    let event_id = event.event_id.trim().to_owned();
    if !event_id.is_empty() && (event_id.len() > 128 || !is_identifier(&event_id, &['-', '_', '.'])) {
        problem(
            "event_id",
            "must be 1 to 128 characters from A-Z a-z 0-9 - _ .".to_owned(),
        );
    }
    let app_id = event.app_id.trim().to_owned();
    if app_id.is_empty() {
        problem("app_id", "is required".to_owned());
    } else if app_id.chars().count() > 64 || app_id.chars().any(char::is_control) {
        problem("app_id", "must be at most 64 printable characters".to_owned());
    }
    if event.user_id.chars().count() > 256 {
        problem("user_id", "must be at most 256 characters".to_owned());
    }
    let event_type = event.event_type.trim().to_owned();
    if event_type.is_empty() {
        problem("event_type", "is required".to_owned());
    } else if event_type.len() > 64
        || !event_type
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || "_.-".contains(character))
    {
        problem(
            "event_type",
            "must be 1 to 64 characters from a-z 0-9 _ . - (such as page_view)".to_owned(),
        );
    }
    if event.event_name.chars().count() > 256 {
        problem("event_name", "must be at most 256 characters".to_owned());
    }
    if event.session_id.chars().count() > 128 {
        problem("session_id", "must be at most 128 characters".to_owned());
    }
    // PostgreSQL cannot store a NUL in text, nor `\u0000` in JSON: such an
    // event is refused by name here instead of failing its whole batch.
    for (field, value) in [
        ("event_id", &event.event_id),
        ("app_id", &event.app_id),
        ("user_id", &event.user_id),
        ("event_type", &event.event_type),
        ("event_name", &event.event_name),
        ("session_id", &event.session_id),
    ] {
        if value.contains('\0') {
            problem(field, NUL_REASON.to_owned());
        }
    }
    if let Some(path) = event
        .properties
        .as_ref()
        .and_then(|properties| nul_in_struct("properties", properties))
    {
        problem(&path, NUL_REASON.to_owned());
    }
    let properties_json = match &event.properties {
        None => "{}".to_owned(),
        Some(properties) => {
            let json = struct_to_json(properties).to_string();
            if json.len() > MAX_PROPERTIES_BYTES {
                problem(
                    "properties",
                    format!("must be at most {MAX_PROPERTIES_BYTES} bytes as JSON"),
                );
            }
            json
        }
    };
    let client_timestamp = match &event.timestamp {
        None => None,
        Some(time) => {
            let micros = micros_of(time);
            if micros.is_none() {
                problem("timestamp", "is not a valid timestamp".to_owned());
            }
            micros
        }
    };
    let sent_at = match &event.sent_at {
        None => None,
        Some(time) => {
            let micros = micros_of(time);
            if micros.is_none() {
                problem("sent_at", "is not a valid timestamp".to_owned());
            }
            micros
        }
    };
    let occurred_at = corrected_time(client_timestamp, sent_at, arrival.received_at);
    let time_field = if client_timestamp.is_some() {
        "timestamp"
    } else {
        "sent_at"
    };
    if occurred_at > arrival.received_at.saturating_add(MAX_FUTURE_MICROS) {
        problem(time_field, "puts the event more than 24 hours in the future".to_owned());
    } else if occurred_at < arrival.oldest_retained {
        problem(time_field, "puts the event before the retention period".to_owned());
    }
    violations.finish()?;
    Ok(NewEvent {
        event_id: if event_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            event_id
        },
        app_id,
        user_id: event.user_id.trim().to_owned(),
        event_type,
        event_name: event.event_name.trim().to_owned(),
        properties_json,
        session_id: if event.session_id.trim().is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            event.session_id.trim().to_owned()
        },
        client_timestamp,
        sent_at,
        received_at: arrival.received_at,
        occurred_at,
        user_agent: arrival.user_agent.clone(),
        ip: arrival.ip.clone(),
    })
}

/// A stored event in the contract's form.
pub fn event_to_proto(event: &NewEvent, organization_id: &str) -> Event {
    Event {
        event_id: event.event_id.clone(),
        organization_id: organization_id.to_owned(),
        app_id: event.app_id.clone(),
        user_id: event.user_id.clone(),
        event_type: event.event_type.clone(),
        event_name: event.event_name.clone(),
        properties: serde_json::from_str::<serde_json::Value>(&event.properties_json)
            .ok()
            .and_then(|value| json_to_struct(&value)),
        session_id: event.session_id.clone(),
        timestamp: event.client_timestamp.map(timestamp),
        sent_at: event.sent_at.map(timestamp),
        received_at: Some(timestamp(event.received_at)),
        corrected_timestamp: Some(timestamp(event.occurred_at)),
        user_agent: event.user_agent.clone(),
        ip: event.ip.clone(),
    }
}

/// A validated event filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventSelection {
    /// Only this app.
    pub app_id: String,
    /// Only these types (sorted, unique).
    pub event_types: Vec<String>,
    /// Only this name.
    pub event_name: String,
    /// Only this user.
    pub user_id: String,
    /// Only this session.
    pub session_id: String,
    /// Only events at or after this time.
    pub start: Option<i64>,
    /// Only events before this time.
    pub end: Option<i64>,
}

impl EventSelection {
    /// Parses a filter; violations are named by their path inside it
    /// (`time_range.start_time`), for the caller to place.
    pub fn parse(filter: Option<&EventFilter>) -> Result<Self, Vec<FieldViolation>> {
        let Some(filter) = filter else {
            return Ok(Self::default());
        };
        let mut violations = Vec::new();
        let mut event_types: Vec<String> = filter
            .event_types
            .iter()
            .map(|event_type| event_type.trim().to_owned())
            .filter(|event_type| !event_type.is_empty())
            .collect();
        event_types.sort();
        event_types.dedup();
        if event_types.len() > 100 {
            violations.push(FieldViolation::new("event_types", "must list at most 100 types"));
        }
        let (mut start, mut end) = (None, None);
        if let Some(range) = &filter.time_range {
            if let Some(time) = &range.start_time {
                start = micros_of(time);
                if start.is_none() {
                    violations.push(FieldViolation::new("time_range.start_time", "is not a valid timestamp"));
                }
            }
            if let Some(time) = &range.end_time {
                end = micros_of(time);
                if end.is_none() {
                    violations.push(FieldViolation::new("time_range.end_time", "is not a valid timestamp"));
                }
            }
            if let (Some(start), Some(end)) = (start, end)
                && start >= end
            {
                violations.push(FieldViolation::new("time_range", "must start before it ends"));
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(Self {
            app_id: filter.app_id.trim().to_owned(),
            event_types,
            event_name: filter.event_name.trim().to_owned(),
            user_id: filter.user_id.trim().to_owned(),
            session_id: filter.session_id.trim().to_owned(),
            start,
            end,
        })
    }

    /// Whether a live event matches (the time range is not considered).
    pub fn matches_live(&self, event: &Event) -> bool {
        (self.app_id.is_empty() || self.app_id == event.app_id)
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && (self.event_name.is_empty() || self.event_name == event.event_name)
            && (self.user_id.is_empty() || self.user_id == event.user_id)
            && (self.session_id.is_empty() || self.session_id == event.session_id)
    }

    /// A stable text of the filter, for page-token fingerprints.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{:?}|{:?}",
            self.app_id,
            self.event_types.join(","),
            self.event_name,
            self.user_id,
            self.session_id,
            self.start,
            self.end
        )
    }
}

/// Why a text holding a NUL is refused.
pub const NUL_REASON: &str = "must not contain a NUL character (U+0000)";

/// The path of the first key or string value of `value` holding a NUL,
/// below `path`.
pub fn nul_in_struct(path: &str, value: &prost_types::Struct) -> Option<String> {
    value.fields.iter().find_map(|(key, field)| {
        let field_path = format!("{path}.{key}");
        if key.contains('\0') {
            return Some(field_path);
        }
        nul_in_value(&field_path, field)
    })
}

fn nul_in_value(path: &str, value: &prost_types::Value) -> Option<String> {
    use prost_types::value::Kind;
    match value.kind.as_ref()? {
        Kind::StringValue(text) => text.contains('\0').then(|| path.to_owned()),
        Kind::StructValue(inner) => nul_in_struct(path, inner),
        Kind::ListValue(list) => list
            .values
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_in_value(&format!("{path}[{index}]"), item)),
        Kind::NullValue(_) | Kind::NumberValue(_) | Kind::BoolValue(_) => None,
    }
}

/// A protobuf `Struct` as a JSON object.
pub fn struct_to_json(value: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), value_to_json(value)))
            .collect(),
    )
}

fn value_to_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(number)) => serde_json::Number::from_f64(*number)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Kind::StructValue(inner)) => struct_to_json(inner),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.iter().map(value_to_json).collect()),
    }
}

/// A JSON object as a protobuf `Struct`; `None` for anything but an object.
pub fn json_to_struct(value: &serde_json::Value) -> Option<prost_types::Struct> {
    let serde_json::Value::Object(map) = value else {
        return None;
    };
    Some(prost_types::Struct {
        fields: map
            .iter()
            .map(|(key, value)| (key.clone(), json_to_value(value)))
            .collect(),
    })
}

fn json_to_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(*flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        serde_json::Value::String(text) => Kind::StringValue(text.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(value).unwrap_or_default()),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_795_305_600_000_000;

    fn arrival() -> Arrival {
        Arrival {
            received_at: NOW,
            user_agent: "curl/8".into(),
            ip: "203.0.113.7".into(),
            oldest_retained: NOW - 90 * 86_400_000_000,
        }
    }

    fn event() -> Event {
        Event {
            app_id: "web".into(),
            event_type: "page_view".into(),
            ..Default::default()
        }
    }

    #[test]
    fn skew_is_corrected_by_segments_rule() {
        // The client's clock runs 10 minutes fast: it says it sent at 12:10
        // an event of 12:05; the server received it at 12:00:01.
        let minute = 60_000_000;
        let happened = NOW + 5 * minute;
        let sent = NOW + 10 * minute;
        assert_eq!(
            corrected_time(Some(happened), Some(sent), NOW + 1_000_000),
            NOW - 5 * minute + 1_000_000
        );
        assert_eq!(corrected_time(Some(happened), None, NOW), happened);
        assert_eq!(corrected_time(None, Some(sent), NOW), NOW);
    }

    #[test]
    fn missing_ids_are_generated_and_edge_metadata_wins() {
        let mut claimed = event();
        claimed.ip = "10.0.0.1".into();
        claimed.user_agent = "forged".into();
        let parsed = parse_event(&claimed, &arrival()).expect("valid");
        assert!(!parsed.event_id.is_empty() && !parsed.session_id.is_empty());
        assert_eq!(parsed.ip, "203.0.113.7");
        assert_eq!(parsed.user_agent, "curl/8");
        assert_eq!(parsed.occurred_at, NOW);
        assert_eq!(parsed.properties_json, "{}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = Event {
            event_id: "has space".into(),
            app_id: String::new(),
            event_type: "Page View".into(),
            timestamp: Some(timestamp(NOW + 2 * MAX_FUTURE_MICROS)),
            ..Default::default()
        };
        let problems = parse_event(&bad, &arrival()).expect_err("invalid");
        let fields: Vec<_> = problems.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["event_id", "app_id", "event_type", "timestamp"]);
        let ancient = Event {
            timestamp: Some(timestamp(NOW - 400 * 86_400_000_000)),
            ..event()
        };
        assert_eq!(
            parse_event(&ancient, &arrival()).expect_err("too old")[0].field,
            "timestamp"
        );
    }

    #[test]
    fn properties_round_trip_through_json() {
        let json = serde_json::json!({"plan": "pro", "seats": 12.0, "tags": ["a", true, null], "nested": {"x": 1.5}});
        let structure = json_to_struct(&json).expect("an object");
        assert_eq!(struct_to_json(&structure), json);
        let large = Event {
            properties: json_to_struct(&serde_json::json!({"blob": "x".repeat(MAX_PROPERTIES_BYTES)})),
            ..event()
        };
        assert_eq!(
            parse_event(&large, &arrival()).expect_err("too large")[0].field,
            "properties"
        );
    }

    #[test]
    fn filters_match_live_events() {
        let selection = EventSelection::parse(Some(&EventFilter {
            event_types: vec!["signup".into(), " page_view ".into(), "signup".into()],
            ..Default::default()
        }))
        .expect("valid");
        assert_eq!(selection.event_types, ["page_view", "signup"]);
        assert!(selection.matches_live(&event()));
        assert!(!selection.matches_live(&Event {
            event_type: "click".into(),
            ..event()
        }));
        let backwards = EventFilter {
            time_range: Some(metrix_proto::common::v1::TimeRange {
                start_time: Some(timestamp(NOW)),
                end_time: Some(timestamp(NOW - 1)),
            }),
            ..Default::default()
        };
        assert_eq!(
            EventSelection::parse(Some(&backwards)).expect_err("backwards")[0].field,
            "time_range"
        );
    }

    proptest! {
        #[test]
        fn corrected_time_never_panics(happened in any::<Option<i64>>(), sent in any::<Option<i64>>(), received in any::<i64>()) {
            let _ = corrected_time(happened, sent, received);
        }
    }
}
