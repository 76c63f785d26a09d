//! The Segment tracking spec, read into Metrix events: every call type
//! becomes an event of that type (`track`, `page`, `screen`, `identify`,
//! `group`, `alias`), its spec fields placed where Metrix keeps them, and
//! the result parsed by [`crate::events::parse_event`] like any tracked
//! event (clock-skew correction, limits, edge metadata).
//!
//! Field violations name the spec's fields (`messageId`, `userId`, …), as
//! the senders wrote them.

use metrix_core::error::{FieldViolation, Violations};
use metrix_proto::metrics::v1::{Event, TrackingMessage};
use prost_types::value::Kind;
use serde_json::{Map, Value as Json};
use sha2::{Digest as _, Sha256};

use crate::events::{Arrival, NewEvent, json_to_struct, parse_event, struct_to_json};

/// The most messages of one batch.
pub const MAX_BATCH_MESSAGES: usize = 500;
/// The largest message, encoded, in bytes (the spec's 32 KB).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// The app of an event whose context names neither an app nor a library.
pub const DEFAULT_APP: &str = "segment";

/// A call of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// An action.
    Track,
    /// A page view.
    Page,
    /// A screen view.
    Screen,
    /// Who the user is.
    Identify,
    /// Which group the user belongs to.
    Group,
    /// Two ids of one user.
    Alias,
}

impl Call {
    /// The call a message's `type` names.
    pub fn named(name: &str) -> Option<Call> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "track" => Call::Track,
            "page" => Call::Page,
            "screen" => Call::Screen,
            "identify" => Call::Identify,
            "group" => Call::Group,
            "alias" => Call::Alias,
            _ => return None,
        })
    }

    /// Its name, the type of the events it makes.
    pub fn name(self) -> &'static str {
        match self {
            Call::Track => "track",
            Call::Page => "page",
            Call::Screen => "screen",
            Call::Identify => "identify",
            Call::Group => "group",
            Call::Alias => "alias",
        }
    }
}

/// What a batch gives every message that lacks its own.
#[derive(Debug, Clone, Default)]
pub struct BatchDefaults {
    /// The batch's `sentAt`.
    pub sent_at: String,
    /// The batch's `context`.
    pub context: Option<prost_types::Struct>,
    /// Whether the sender may state its users' address and user agent
    /// (`context.ip`, `context.userAgent`): a server forwarding their
    /// events, with the scope `events:forward`. Otherwise the edge's own
    /// observation stands, whatever the context claims.
    pub forwarded: bool,
}

/// A message as a Metrix event. `route` is the call the route made, when
/// the route says it (single calls); in a batch each message's `type` says.
pub fn message_event(
    message: &TrackingMessage,
    route: Option<Call>,
    defaults: &BatchDefaults,
    arrival: &Arrival,
) -> Result<NewEvent, Vec<FieldViolation>> {
    let mut violations = Violations::new();
    let unnamed = message.r#type.trim().is_empty();
    let call = match (route, Call::named(&message.r#type)) {
        (Some(route), Some(named)) if named != route => {
            violations.add("type", format!("is {:?} on the {} route", message.r#type, route.name()));
            route
        }
        (Some(route), None) if !unnamed => {
            violations.add("type", format!("{:?} is not a call of the spec", message.r#type));
            route
        }
        (Some(route), _) => route,
        (None, Some(named)) => named,
        (None, None) => {
            let reason = if unnamed {
                "is required in a batch: track, page, screen, identify, group or alias".to_owned()
            } else {
                format!(
                    "{:?} is not one of track, page, screen, identify, group, alias",
                    message.r#type
                )
            };
            return Err(vec![FieldViolation::new("type", reason)]);
        }
    };
    let user_id = violations.check(identifier("userId", message.user_id.as_ref()));
    let anonymous_id = violations.check(identifier("anonymousId", message.anonymous_id.as_ref()));
    let (Some(user_id), Some(anonymous_id)) = (user_id, anonymous_id) else {
        return Err(violations.into_vec());
    };
    if user_id.is_empty() && anonymous_id.is_empty() {
        violations.add("userId", "a userId or an anonymousId is required");
    }
    let mut extra = match message.properties.as_ref().map(struct_to_json) {
        Some(Json::Object(properties)) => properties,
        _ => Map::new(),
    };
    let event_name = match call {
        Call::Track => {
            if message.event.trim().is_empty() {
                violations.add("event", "is required for track");
            }
            message.event.trim().to_owned()
        }
        Call::Page | Call::Screen => {
            if !message.category.trim().is_empty() {
                extra.insert("category".to_owned(), Json::String(message.category.trim().to_owned()));
            }
            message.name.trim().to_owned()
        }
        Call::Identify => {
            // RudderStack's SDKs send a user's traits in `context.traits`,
            // which the spec also allows; the message's own win.
            let mut traits = context_traits(defaults.context.as_ref(), message.context.as_ref());
            if let Some(Json::Object(own)) = message.traits.as_ref().map(struct_to_json) {
                traits.extend(own);
            }
            if !traits.is_empty() {
                extra.insert("traits".to_owned(), Json::Object(traits));
            }
            String::new()
        }
        Call::Group => {
            let group_id = violations
                .check(identifier("groupId", message.group_id.as_ref()))
                .unwrap_or_default();
            if group_id.is_empty() {
                violations.add("groupId", "is required for group");
            }
            insert_struct(&mut extra, "traits", message.traits.as_ref());
            extra.insert("groupId".to_owned(), Json::String(group_id.clone()));
            group_id
        }
        Call::Alias => {
            let previous_id = violations
                .check(identifier("previousId", message.previous_id.as_ref()))
                .unwrap_or_default();
            if previous_id.is_empty() {
                violations.add("previousId", "is required for alias");
            }
            if user_id.is_empty() {
                violations.add("userId", "is required for alias");
            }
            extra.insert("previousId".to_owned(), Json::String(previous_id.clone()));
            previous_id
        }
    };
    if !anonymous_id.is_empty() {
        extra.insert("anonymousId".to_owned(), Json::String(anonymous_id.clone()));
    }
    let context = merged_context(defaults.context.as_ref(), message.context.as_ref());
    let app_id = app_of(&context);
    if !context.is_empty() {
        extra.insert("context".to_owned(), Json::Object(context));
    }
    let timestamp = if message.timestamp.trim().is_empty() {
        violations.check(time("originalTimestamp", &message.original_timestamp))
    } else {
        violations.check(time("timestamp", &message.timestamp))
    };
    let sent_at = if message.sent_at.trim().is_empty() {
        violations.check(time("sentAt", &defaults.sent_at))
    } else {
        violations.check(time("sentAt", &message.sent_at))
    };
    let event_id = violations
        .check(identifier("messageId", message.message_id.as_ref()))
        .map(|id| event_id_of(&id));
    violations.finish()?;
    let event = Event {
        event_id: event_id.unwrap_or_default(),
        app_id,
        user_id: if user_id.is_empty() { anonymous_id } else { user_id },
        event_type: call.name().to_owned(),
        event_name,
        properties: json_to_struct(&Json::Object(extra)),
        timestamp: timestamp.flatten(),
        sent_at: sent_at.flatten(),
        ..Default::default()
    };
    let arrival = if defaults.forwarded {
        forwarded_arrival(arrival, message.context.as_ref().or(defaults.context.as_ref()))?
    } else {
        arrival.clone()
    };
    parse_event(&event, &arrival).map_err(|violations| violations.into_iter().map(spec_name).collect())
}

/// `traits` (an object) under `key`, when sent.
fn insert_struct(object: &mut Map<String, Json>, key: &str, value: Option<&prost_types::Struct>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), struct_to_json(value));
    }
}

/// The longest user agent a forwarding server may state.
const MAX_USER_AGENT_CHARS: usize = 512;

/// `arrival` with the address and user agent a forwarding server states
/// for its user (`context.ip`, `context.userAgent`), where it states them.
fn forwarded_arrival(arrival: &Arrival, context: Option<&prost_types::Struct>) -> Result<Arrival, Vec<FieldViolation>> {
    let context = context.map(struct_to_json).unwrap_or(Json::Null);
    let mut forwarded = arrival.clone();
    let mut violations = Violations::new();
    match context.get("ip") {
        None | Some(Json::Null) => {}
        Some(Json::String(ip)) if let Ok(ip) = ip.trim().parse::<std::net::IpAddr>() => forwarded.ip = ip.to_string(),
        Some(_) => violations.add("context.ip", "must be an IPv4 or IPv6 address"),
    }
    match context.get("userAgent") {
        None | Some(Json::Null) => {}
        Some(Json::String(agent))
            if agent.chars().count() <= MAX_USER_AGENT_CHARS && !agent.chars().any(char::is_control) =>
        {
            forwarded.user_agent = agent.clone();
        }
        Some(_) => violations.add(
            "context.userAgent",
            format!("must be text of at most {MAX_USER_AGENT_CHARS} printable characters"),
        ),
    }
    violations.finish()?;
    Ok(forwarded)
}

/// The user traits a context carries (`context.traits`).
fn context_traits(batch: Option<&prost_types::Struct>, message: Option<&prost_types::Struct>) -> Map<String, Json> {
    match merged_context(batch, message).remove("traits") {
        Some(Json::Object(traits)) => traits,
        _ => Map::new(),
    }
}

/// The batch's context with the message's own keys over it.
fn merged_context(batch: Option<&prost_types::Struct>, message: Option<&prost_types::Struct>) -> Map<String, Json> {
    let mut merged = Map::new();
    for context in [batch, message].into_iter().flatten() {
        if let Json::Object(object) = struct_to_json(context) {
            merged.extend(object);
        }
    }
    merged
}

/// The event's app: `context.app.name`, else `context.library.name` (the
/// SDK, such as `analytics-python`), else [`DEFAULT_APP`].
fn app_of(context: &Map<String, Json>) -> String {
    ["app", "library"]
        .iter()
        .filter_map(|key| context.get(*key)?.get("name")?.as_str())
        .map(str::trim)
        .find(|name| !name.is_empty())
        .map_or_else(|| DEFAULT_APP.to_owned(), |name| name.chars().take(64).collect())
}

/// An id the spec lets be a string or a number, as text; empty when unset.
fn identifier(field: &str, value: Option<&prost_types::Value>) -> Result<String, FieldViolation> {
    match value.and_then(|value| value.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => Ok(String::new()),
        Some(Kind::StringValue(text)) => Ok(text.trim().to_owned()),
        Some(Kind::NumberValue(number)) if number.is_finite() => {
            Ok(if number.fract() == 0.0 && number.abs() < 9.0e15 {
                format!("{}", *number as i64)
            } else {
                number.to_string()
            })
        }
        Some(_) => Err(FieldViolation::new(field, "must be a string or a number")),
    }
}

/// An ISO 8601 time (RFC 3339: `2026-12-05T10:15:00.123Z`, any offset), or
/// none when empty.
fn time(field: &str, text: &str) -> Result<Option<prost_types::Timestamp>, FieldViolation> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<prost_types::Timestamp>().map(Some).map_err(|_| {
        FieldViolation::new(
            field,
            "must be an ISO 8601 time with a time zone, such as 2026-12-05T10:15:00.123Z",
        )
    })
}

/// The Metrix event id of a `messageId`: itself when Metrix can keep it as
/// an id, else its SHA-256 (hex), so a retried message still finds its
/// first copy.
pub fn event_id_of(message_id: &str) -> String {
    let keepable = !message_id.is_empty()
        && message_id.len() <= 128
        && message_id
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'));
    if keepable || message_id.is_empty() {
        message_id.to_owned()
    } else {
        Sha256::digest(message_id.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// A violation of the Metrix event named by the spec field it came from.
fn spec_name(violation: FieldViolation) -> FieldViolation {
    let field = match violation.field.as_str() {
        "event_id" => "messageId",
        "app_id" => "context.app.name",
        "user_id" => "userId",
        "event_name" => "event",
        "properties" => "properties",
        "timestamp" => "timestamp",
        "sent_at" => "sentAt",
        other => other,
    };
    FieldViolation::new(field, violation.description)
}
