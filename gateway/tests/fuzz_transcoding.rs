//! Property-based fuzzing of REST JSON transcoding (`rest::transcode`),
//! over every annotated RPC of the descriptor set.
//!
//! What the properties assert:
//! - any request (hostile JSON guided by the request message — wrong types,
//!   huge and malformed numbers, unicode, NUL, lone surrogates, duplicate
//!   keys, deep nesting, large values — mutated bytes, hostile query strings
//!   and path values) never panics the transcoder;
//! - every refusal is a 400 whose `BadRequest` names, for each violation, a
//!   field the request sent (or `body` / `query`), with a description;
//! - every accepted message decodes in the service (protobuf's nesting
//!   limit included), and its canonical JSON transcodes to itself; a
//!   message from a route without a body holds no NUL in any text;
//! - every valid message round-trips: message → canonical JSON, spread
//!   over path, query and body as its route binds them → the same message;
//!   every answer is written as its canonical JSON (straight or through a
//!   JSON tree alike), which reads back as the same message;
//! - a field the URL binds may appear in the body only with the same
//!   value, and a different one is refused naming that field.
//!
//! CI runs a bounded number of cases; set `PROPTEST_CASES` for a long run
//! (`docs/security.md`, "Fuzzing").

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use http::{Method, StatusCode};
use metrix_core::error::{FieldViolation, invalid_argument};
use metrix_gateway::errors::{invalid_request, status_json};
use metrix_gateway::rest::template::{Binding, percent_decode};
use metrix_gateway::rest::transcode::{message_json, request_message, response_bytes, response_json};
use metrix_gateway::rest::{BodyRule, Route, RouteMatch, RouteTable};
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value,
};
use serde_json::Value as Json;

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

struct Contracts {
    pool: DescriptorPool,
    table: RouteTable,
}

fn contracts() -> Contracts {
    let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
    let table = RouteTable::from_pool(&pool, "metrix.").expect("the annotations are valid");
    Contracts { pool, table }
}

thread_local! {
    static CONTRACTS: Contracts = contracts();
}

fn routes() -> Vec<Route> {
    contracts().table.routes().to_vec()
}

// ---------------------------------------------------------------------------
// Valid messages, generated from the descriptors.

/// Where a field travels: in the JSON body, or in the query string (which
/// carries no maps, no repeated messages, no `Struct`, no NUL and no empty
/// nested message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Body,
    Query,
}

/// How deep generated messages nest (the contracts nest less than this).
const MESSAGE_DEPTH: u32 = 3;

fn text(carrier: Carrier) -> BoxedStrategy<String> {
    let any_text = prop_oneof![
        "[ -~]{0,12}",
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        Just(String::new()),
    ];
    match carrier {
        Carrier::Body => any_text.boxed(),
        // The query refuses NUL by design.
        Carrier::Query => any_text.prop_map(|text| text.replace('\0', "")).boxed(),
    }
}

/// A `FieldMask` path whose lowerCamelCase form converts back.
fn field_mask_path() -> impl Strategy<Value = String> {
    let word = "[a-z][a-z0-9]{0,5}(_[a-z][a-z0-9]{0,5}){0,2}";
    prop::collection::vec(word, 1..=3).prop_map(|words| words.join("."))
}

/// JSON a `google.protobuf.Struct` holds (finite numbers only).
fn struct_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<f64>().prop_map(|number| serde_json::Number::from_f64(number).map_or(Json::Null, Json::Number)),
        text(Carrier::Body).prop_map(Json::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::hash_map(text(Carrier::Body), inner, 0..4)
                .prop_map(|entries| Json::Object(entries.into_iter().collect())),
        ]
    });
    prop::collection::hash_map(text(Carrier::Body), value, 0..4)
        .prop_map(|entries| Json::Object(entries.into_iter().collect()))
}

fn well_known(descriptor: &MessageDescriptor, carrier: Carrier) -> Option<BoxedStrategy<Value>> {
    let descriptor = descriptor.clone();
    let build = {
        let descriptor = descriptor.clone();
        move |fields: Vec<(&str, Value)>| {
            let mut message = DynamicMessage::new(descriptor.clone());
            for (name, value) in fields {
                message.set_field_by_name(name, value);
            }
            Value::Message(message)
        }
    };
    Some(match descriptor.full_name() {
        // 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
        "google.protobuf.Timestamp" => (-62_135_596_800_i64..=253_402_300_799, 0..1_000_000_000_i32)
            .prop_map(move |(seconds, nanos)| {
                build(vec![("seconds", Value::I64(seconds)), ("nanos", Value::I32(nanos))])
            })
            .boxed(),
        "google.protobuf.Duration" => (
            -315_576_000_000_i64..=315_576_000_000,
            0..1_000_000_000_i32,
            any::<bool>(),
        )
            .prop_map(move |(seconds, nanos, negative)| {
                let nanos = if seconds < 0 || (seconds == 0 && negative) {
                    -nanos
                } else {
                    nanos
                };
                build(vec![("seconds", Value::I64(seconds)), ("nanos", Value::I32(nanos))])
            })
            .boxed(),
        "google.protobuf.FieldMask" => prop::collection::vec(field_mask_path(), 0..3)
            .prop_map(move |paths| {
                build(vec![(
                    "paths",
                    Value::List(paths.into_iter().map(Value::String).collect()),
                )])
            })
            .boxed(),
        "google.protobuf.Struct" if carrier == Carrier::Body => struct_json()
            .prop_map(move |json| {
                Value::Message(DynamicMessage::deserialize(descriptor.clone(), json).expect("finite JSON is a Struct"))
            })
            .boxed(),
        _ => return None,
    })
}

fn is_well_known(descriptor: &MessageDescriptor) -> bool {
    descriptor.full_name().starts_with("google.protobuf.")
}

/// A value of `kind`, or `None` when `carrier` cannot carry one.
fn kind_value(kind: &Kind, carrier: Carrier, depth: u32) -> Option<BoxedStrategy<Value>> {
    Some(match kind {
        Kind::Double => any::<f64>().prop_map(Value::F64).boxed(),
        Kind::Float => any::<f32>().prop_map(Value::F32).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(Value::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(Value::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(Value::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(Value::U64).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::String => text(carrier).prop_map(Value::String).boxed(),
        Kind::Bytes => prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|bytes| Value::Bytes(bytes.into()))
            .boxed(),
        Kind::Enum(descriptor) => {
            let known = prop::sample::select(descriptor.values().map(|value| value.number()).collect::<Vec<_>>());
            match carrier {
                // Numbers the contract does not name travel as numbers.
                Carrier::Body => prop_oneof![4 => known, 1 => any::<i32>()]
                    .prop_map(Value::EnumNumber)
                    .boxed(),
                Carrier::Query => known.prop_map(Value::EnumNumber).boxed(),
            }
        }
        Kind::Message(descriptor) if is_well_known(descriptor) => return well_known(descriptor, carrier),
        Kind::Message(_) if depth == 0 => return None,
        Kind::Message(descriptor) => message(descriptor, &|_| Some(carrier), depth - 1)
            .prop_map(Value::Message)
            .boxed(),
    })
}

fn map_key(kind: &Kind) -> BoxedStrategy<MapKey> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(MapKey::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(MapKey::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(MapKey::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(MapKey::U64).boxed(),
        Kind::Bool => any::<bool>().prop_map(MapKey::Bool).boxed(),
        _ => text(Carrier::Body).prop_map(MapKey::String).boxed(),
    }
}

fn field_value(field: &FieldDescriptor, carrier: Carrier, depth: u32) -> Option<BoxedStrategy<Value>> {
    if field.is_map() {
        if carrier == Carrier::Query {
            return None;
        }
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message")
        };
        let key = map_key(&entry.map_entry_key_field().kind());
        let value = kind_value(&entry.map_entry_value_field().kind(), carrier, depth)?;
        return Some(
            prop::collection::hash_map(key, value, 0..4)
                .prop_map(Value::Map)
                .boxed(),
        );
    }
    let kind = field.kind();
    if field.is_list() {
        let string_form = matches!(&kind, Kind::Message(descriptor) if matches!(
            descriptor.full_name(),
            "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask"
        ));
        if carrier == Carrier::Query && matches!(kind, Kind::Message(_)) && !string_form {
            return None;
        }
        let element = kind_value(&kind, carrier, depth)?;
        return Some(prop::collection::vec(element, 0..4).prop_map(Value::List).boxed());
    }
    kind_value(&kind, carrier, depth)
}

fn is_empty_message(message: &DynamicMessage) -> bool {
    message_json(message).as_object().is_some_and(serde_json::Map::is_empty)
}

/// A message of `descriptor` with about half of its fields set; `carrier`
/// says how each field travels (`None`: not generated).
fn message(
    descriptor: &MessageDescriptor,
    carrier: &dyn Fn(&FieldDescriptor) -> Option<Carrier>,
    depth: u32,
) -> BoxedStrategy<DynamicMessage> {
    let mut fields = Vec::new();
    let mut values = Vec::new();
    for field in descriptor.fields() {
        let Some(field_carrier) = carrier(&field) else { continue };
        let Some(value) = field_value(&field, field_carrier, depth) else {
            continue;
        };
        values.push(prop::option::of(value).boxed());
        fields.push((field, field_carrier));
    }
    let descriptor = descriptor.clone();
    values
        .prop_map(move |values| {
            let mut message = DynamicMessage::new(descriptor.clone());
            for ((field, field_carrier), value) in fields.iter().zip(values) {
                let Some(value) = value else { continue };
                // The query cannot say "present but empty".
                if *field_carrier == Carrier::Query
                    && matches!(&value, Value::Message(nested) if is_empty_message(nested))
                {
                    continue;
                }
                message.set_field(field, value);
            }
            message
        })
        .boxed()
}

/// A path variable's value: not empty, no NUL (refused by design).
fn path_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{1,12}",
        text(Carrier::Query).prop_map(|text| if text.is_empty() { "x".to_owned() } else { text }),
    ]
}

fn set_path(message: &mut DynamicMessage, path: &[String], value: String) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let field = message
        .descriptor()
        .get_field_by_name(first)
        .expect("route loading checked every path variable");
    if rest.is_empty() {
        message.set_field(&field, Value::String(value));
    } else if let Value::Message(nested) = message.get_field_mut(&field) {
        set_path(nested, rest, value);
    }
}

fn get_path(message: &DynamicMessage, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let field = message.descriptor().get_field_by_name(first)?;
    match (message.get_field(&field).into_owned(), rest.is_empty()) {
        (Value::String(value), true) => Some(value),
        (Value::Message(nested), false) => get_path(&nested, rest),
        _ => None,
    }
}

/// How a valid message is written as a request.
#[derive(Debug, Clone)]
struct Style {
    proto_names: bool,
    plus_for_space: bool,
    omit_path_fields_from_body: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(proto_names, plus_for_space, omit)| Style {
        proto_names,
        plus_for_space,
        omit_path_fields_from_body: omit,
    })
}

/// A route and a valid request message for it.
#[derive(Debug, Clone)]
struct ValidCase {
    route: usize,
    message: DynamicMessage,
    style: Style,
}

fn valid_case() -> impl Strategy<Value = ValidCase> {
    let routes = routes();
    let per_route: Vec<BoxedStrategy<ValidCase>> = routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let input = route.method.input();
            let body = route.body.clone();
            let carrier = move |field: &FieldDescriptor| {
                Some(match &body {
                    BodyRule::Whole => Carrier::Body,
                    BodyRule::None => Carrier::Query,
                    BodyRule::Field(body_field) if body_field.number() == field.number() => Carrier::Body,
                    BodyRule::Field(_) => Carrier::Query,
                })
            };
            let variables = route.template.variables();
            let values = prop::collection::vec(path_value(), variables.len());
            (message(&input, &carrier, MESSAGE_DEPTH), values, style())
                .prop_map(move |(mut message, values, style)| {
                    for (variable, value) in variables.iter().zip(values) {
                        set_path(&mut message, variable, value);
                    }
                    ValidCase {
                        route: index,
                        message,
                        style,
                    }
                })
                .boxed()
        })
        .collect();
    prop::strategy::Union::new(per_route)
}

/// A route and a valid answer of its RPC.
fn valid_answer() -> impl Strategy<Value = (usize, DynamicMessage)> {
    let per_route: Vec<BoxedStrategy<(usize, DynamicMessage)>> = routes()
        .iter()
        .enumerate()
        .map(|(index, route)| {
            message(&route.method.output(), &|_| Some(Carrier::Body), MESSAGE_DEPTH)
                .prop_map(move |message| (index, message))
                .boxed()
        })
        .collect();
    prop::strategy::Union::new(per_route)
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str, plus_for_space: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            b' ' if plus_for_space => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The query pairs of a message's JSON object, dotted through nested messages.
fn flatten(
    descriptor: &MessageDescriptor,
    object: &serde_json::Map<String, Json>,
    prefix: &str,
    style: &Style,
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (key, value) in object {
        let field = descriptor
            .get_field_by_json_name(key)
            .expect("canonical JSON names only fields");
        let name = if style.proto_names { field.name() } else { key.as_str() };
        let full = format!("{prefix}{name}");
        let scalar = |value: &Json| match value {
            Json::String(text) => text.clone(),
            other => other.to_string(),
        };
        match (value, field.kind()) {
            (Json::Object(inner), Kind::Message(nested)) => {
                pairs.extend(flatten(&nested, inner, &format!("{full}."), style));
            }
            (Json::Array(items), _) => pairs.extend(items.iter().map(|item| (full.clone(), scalar(item)))),
            (other, _) => pairs.push((full, scalar(other))),
        }
    }
    pairs
}

struct Written {
    method: Method,
    path: String,
    query: Option<String>,
    body: Vec<u8>,
}

/// Writes `message` as a REST request of `route`.
fn write_request(route: &Route, message: &DynamicMessage, style: &Style) -> Written {
    let variables = route.template.variables();
    let mut path = route.template.openapi_path();
    assert!(!path.contains('*'), "the contracts bind single segments only: {path}");
    for variable in &variables {
        let value = get_path(message, variable).expect("the case set every path variable");
        let name = route.template.openapi_name(variable);
        path = path.replace(&format!("{{{name}}}"), &encode(&value, false));
    }
    let Json::Object(mut object) = message_json(message) else {
        panic!("a message is a JSON object")
    };
    let input = route.method.input();
    let json_name = |proto_name: &str| {
        input
            .get_field_by_name(proto_name)
            .map(|field| field.json_name().to_owned())
            .expect("a field of the request")
    };
    let top_level_bound: Vec<String> = variables
        .iter()
        .filter(|variable| variable.len() == 1)
        .map(|variable| json_name(&variable[0]))
        .collect();
    let (body, query_object) = match &route.body {
        BodyRule::Whole => {
            if style.omit_path_fields_from_body {
                for bound in &top_level_bound {
                    object.remove(bound);
                }
            }
            (
                serde_json::to_vec(&object).expect("JSON writes"),
                serde_json::Map::new(),
            )
        }
        BodyRule::Field(field) => {
            let body = object
                .remove(field.json_name())
                .map(|value| serde_json::to_vec(&value).expect("JSON writes"))
                .unwrap_or_default();
            (body, object)
        }
        BodyRule::None => (Vec::new(), object),
    };
    let mut query_object = query_object;
    for bound in &top_level_bound {
        query_object.remove(bound);
    }
    let pairs = flatten(&input, &query_object, "", style);
    let query = (!pairs.is_empty()).then(|| {
        pairs
            .iter()
            .map(|(key, value)| format!("{}={}", encode(key, false), encode(value, style.plus_for_space)))
            .collect::<Vec<_>>()
            .join("&")
    });
    Written {
        method: route.http_method.clone(),
        path,
        query,
        body,
    }
}

// ---------------------------------------------------------------------------
// Hostile requests.

/// JSON text that may be invalid: raw tokens, strings written as given
/// (lone surrogates, bad escapes) and objects with duplicate keys.
#[derive(Debug, Clone)]
enum JsonText {
    Raw(String),
    Str(String),
    RawStr(String),
    Array(Vec<JsonText>),
    Object(Vec<(String, JsonText)>),
}

impl JsonText {
    fn render(&self, out: &mut String) {
        match self {
            JsonText::Raw(raw) => out.push_str(raw),
            JsonText::Str(text) => out.push_str(&serde_json::to_string(text).expect("a string writes")),
            JsonText::RawStr(raw) => {
                out.push('"');
                out.push_str(raw);
                out.push('"');
            }
            JsonText::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            JsonText::Object(entries) => {
                out.push('{');
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("a key writes"));
                    out.push(':');
                    value.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }
}

/// Numbers as JSON writes them, from the ordinary to the absurd (out of
/// every range, too precise, too long).
fn json_number() -> impl Strategy<Value = JsonText> {
    let absurd = prop::sample::select(vec![
        "0",
        "-0",
        "1",
        "-1",
        "1.5",
        "1e2",
        "1E-2",
        "2147483647",
        "2147483648",
        "-2147483649",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "1e308",
        "1e309",
        "-1e400",
        "1e-400",
        "4.9e-324",
        "1.7976931348623157e308",
        "123456789012345678901234567890",
        "0.1",
        "1.0",
        "-0.0",
    ])
    .prop_map(|raw| JsonText::Raw(raw.to_owned()));
    prop_oneof![
        3 => absurd,
        3 => "-?(0|[1-9][0-9]{0,29})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?".prop_map(JsonText::Raw),
        1 => (1..500_usize).prop_map(|digits| JsonText::Raw("9".repeat(digits))),
    ]
}

/// Text that is not JSON: numbers JSON does not allow, bare words, stray
/// punctuation, bad escapes and lone surrogates.
fn invalid_token() -> impl Strategy<Value = JsonText> {
    prop_oneof![
        prop::sample::select(vec![
            "01",
            "1.",
            ".5",
            "+1",
            "0x10",
            "NaN",
            "Infinity",
            "-",
            "1e",
            "--1",
            "1.0e+",
            "nul",
            "tru",
            "undefined",
            "",
            "}",
            "]",
            ",",
            "'a'",
        ])
        .prop_map(|raw| JsonText::Raw(raw.to_owned())),
        prop::sample::select(vec![
            "\\x41",
            "\\",
            "\u{1}",
            "\\uZZZZ",
            "\\ud800",
            "\\udc00\\ud800",
            "\\ud800x"
        ])
        .prop_map(|raw| JsonText::RawStr(raw.to_owned())),
    ]
}

/// Strings, valid JSON: any text (NUL and controls included, escaped),
/// texts that mean something to some field type, and written escapes.
fn hostile_string() -> impl Strategy<Value = JsonText> {
    prop_oneof![
        4 => text(Carrier::Body).prop_map(JsonText::Str),
        2 => prop::sample::select(vec![
            "NaN", "Infinity", "-Infinity", "1e400", "-0", "2026-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00+14:00", "2026-01-01", "1.5s",
            "-315576000001s", "1e3s", "s", "a,b.c_d", "aB.cD", "a__b", "true", "ROLE_ADMIN", "AAAA", "AA=A", "====",
            "-_-_", "18446744073709551616", "", " ",
        ])
        .prop_map(|text| JsonText::Str(text.to_owned())),
        1 => prop::sample::select(vec!["\\u0000", "\\ud83d\\ude00", "a\\nb", "\\u00e9", "\\/", "\\u202e"])
            .prop_map(|raw| JsonText::RawStr(raw.to_owned())),
    ]
}

/// One large string (up to 70,000 characters).
fn long_string() -> impl Strategy<Value = JsonText> {
    (1..70_000_usize, any::<char>())
        .prop_map(|(length, character)| JsonText::Str(std::iter::repeat_n(character, length).collect()))
}

fn hostile_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z_]{1,12}",
        1 => text(Carrier::Body),
        1 => prop::sample::select(vec!["", "\0", "__proto__", "@type", "a.b", "a[0]", "ÄÖ", "\u{202e}x"])
            .prop_map(str::to_owned),
    ]
}

/// Objects `depth` deep (`{"a":{"a":…}}`) or arrays (`[[…]]`), sometimes
/// left unclosed.
fn deep_nesting() -> impl Strategy<Value = JsonText> {
    (1..400_usize, any::<bool>(), any::<bool>()).prop_map(|(depth, objects, closed)| {
        let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
        let mut text = open.repeat(depth);
        text.push('1');
        if closed {
            text.push_str(&close.repeat(depth));
        }
        JsonText::Raw(text)
    })
}

/// Any JSON value, mostly valid (so that it reaches the field readers),
/// sometimes not JSON at all or nested past every limit.
fn hostile_json() -> BoxedStrategy<JsonText> {
    let leaf = prop_oneof![
        2 => json_number(),
        3 => hostile_string(),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(|raw| JsonText::Raw(raw.to_owned())),
    ];
    prop_oneof![
        20 => leaf.prop_recursive(5, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(JsonText::Array),
                prop::collection::vec((hostile_key(), inner), 0..6).prop_map(JsonText::Object),
            ]
        }),
        1 => invalid_token(),
        1 => deep_nesting(),
    ]
    .boxed()
}

/// A value for a field of `kind`: often of the right type, often not.
fn guided_kind(kind: &Kind, depth: u32) -> BoxedStrategy<JsonText> {
    let right: BoxedStrategy<JsonText> = match kind {
        Kind::Double | Kind::Float => prop_oneof![
            json_number(),
            prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "1.5", "1e39"])
                .prop_map(|text| JsonText::Str(text.to_owned())),
        ]
        .boxed(),
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64
        | Kind::Uint32
        | Kind::Fixed32
        | Kind::Uint64
        | Kind::Fixed64 => prop_oneof![
            json_number(),
            json_number().prop_map(|number| JsonText::Str(number.text())),
        ]
        .boxed(),
        Kind::Bool => prop::sample::select(vec!["true", "false", "\"true\"", "1", "0"])
            .prop_map(|raw| JsonText::Raw(raw.to_owned()))
            .boxed(),
        Kind::String | Kind::Bytes => prop_oneof![12 => hostile_string(), 1 => long_string()].boxed(),
        Kind::Enum(descriptor) => {
            let names: Vec<String> = descriptor.values().map(|value| value.name().to_owned()).collect();
            prop_oneof![
                3 => prop::sample::select(names).prop_map(JsonText::Str),
                1 => json_number(),
                1 => hostile_string(),
            ]
            .boxed()
        }
        Kind::Message(descriptor) if descriptor.full_name() == "google.protobuf.Struct" => hostile_json(),
        Kind::Message(descriptor) if is_well_known(descriptor) => hostile_string().boxed(),
        Kind::Message(descriptor) if depth > 0 => guided_object(descriptor, depth - 1),
        Kind::Message(_) => Just(JsonText::Raw("{}".to_owned())).boxed(),
    };
    prop_oneof![6 => right, 1 => hostile_json()].boxed()
}

fn guided_field(field: &FieldDescriptor, depth: u32) -> BoxedStrategy<JsonText> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message")
        };
        let value = guided_kind(&entry.map_entry_value_field().kind(), depth);
        return prop_oneof![
            3 => prop::collection::vec((hostile_key(), value), 0..4).prop_map(JsonText::Object),
            1 => hostile_json(),
        ]
        .boxed();
    }
    let element = guided_kind(&field.kind(), depth);
    if field.is_list() {
        return prop_oneof![
            3 => prop::collection::vec(element.clone(), 0..4).prop_map(JsonText::Array),
            1 => element,
        ]
        .boxed();
    }
    element
}

/// An object for `descriptor`: mostly its fields (by JSON or proto name,
/// sometimes twice), with some unknown keys.
fn guided_object(descriptor: &MessageDescriptor, depth: u32) -> BoxedStrategy<JsonText> {
    let mut entries: Vec<(u32, BoxedStrategy<(String, JsonText)>)> = descriptor
        .fields()
        .map(|field| {
            let names = vec![
                field.json_name().to_owned(),
                field.json_name().to_owned(),
                field.name().to_owned(),
            ];
            (6, (prop::sample::select(names), guided_field(&field, depth)).boxed())
        })
        .collect();
    entries.push((1, (hostile_key(), hostile_json()).boxed()));
    prop::collection::vec(prop::strategy::Union::new_weighted(entries), 0..6)
        .prop_map(JsonText::Object)
        .boxed()
}

/// A change to the body's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    Truncate(prop::sample::Index),
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Prefix(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        12 => Just(Mutation::None),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        1 => prop::sample::select(vec!["\u{feff}", " \n\t", "\0", "[", "{}"]).prop_map(Mutation::Prefix),
    ]
}

fn mutate(mut body: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::None => {}
        Mutation::Truncate(at) if !body.is_empty() => body.truncate(at.index(body.len())),
        Mutation::Replace(at, byte) if !body.is_empty() => {
            let at = at.index(body.len());
            body[at] = *byte;
        }
        Mutation::Insert(at, byte) => {
            let at = at.index(body.len() + 1);
            body.insert(at, *byte);
        }
        Mutation::Prefix(prefix) => {
            body.splice(0..0, prefix.bytes());
        }
        Mutation::Truncate(_) | Mutation::Replace(..) => {}
    }
    body
}

/// Names a query may use: the request's fields and their dotted paths.
fn query_names(descriptor: &MessageDescriptor, prefix: &str, depth: u32, names: &mut Vec<String>) {
    for field in descriptor.fields() {
        for name in [field.json_name(), field.name()] {
            let full = format!("{prefix}{name}");
            names.push(full.clone());
            if let Kind::Message(nested) = field.kind()
                && depth > 0
                && !is_well_known(&nested)
            {
                query_names(&nested, &format!("{full}."), depth - 1, names);
            }
        }
    }
}

fn hostile_query_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,8}",
        prop::sample::select(vec![
            "%", "%zz", "%+1", "%+0", "%00", "%ff", "%e2%82", "+", "&", "=", "==", ".", "..", "[0]",
        ])
        .prop_map(str::to_owned),
        prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
    ]
}

fn hostile_query(descriptor: &MessageDescriptor) -> BoxedStrategy<Option<String>> {
    let mut names = Vec::new();
    query_names(descriptor, "", 2, &mut names);
    names.push(String::new());
    let key = prop_oneof![8 => prop::sample::select(names), 1 => hostile_query_text()];
    let value = prop_oneof![
        2 => hostile_query_text(),
        1 => hostile_string().prop_map(|text| match text {
            JsonText::Str(text) => text,
            other => other.text(),
        }),
    ];
    let pairs = prop::collection::vec((key, value), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    });
    prop_oneof![
        2 => Just(None),
        4 => pairs.prop_map(Some),
        1 => hostile_query_text().prop_map(Some),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct HostileCase {
    route: usize,
    bindings: Vec<Binding>,
    query: Option<String>,
    body: Vec<u8>,
}

fn hostile_case() -> impl Strategy<Value = HostileCase> {
    let per_route: Vec<BoxedStrategy<HostileCase>> = routes()
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let input = route.method.input();
            let body = match &route.body {
                BodyRule::Whole => prop_oneof![
                    8 => guided_object(&input, 2).prop_map(|json| json.text().into_bytes()),
                    2 => hostile_json().prop_map(|json| json.text().into_bytes()),
                    1 => prop::collection::vec(any::<u8>(), 0..64),
                ]
                .boxed(),
                BodyRule::Field(field) => prop_oneof![
                    8 => guided_field(field, 2).prop_map(|json| json.text().into_bytes()),
                    2 => hostile_json().prop_map(|json| json.text().into_bytes()),
                    1 => prop::collection::vec(any::<u8>(), 0..64),
                ]
                .boxed(),
                BodyRule::None => prop_oneof![
                    16 => Just(Vec::new()),
                    1 => prop::sample::select(vec![" ", "\n", "{}", "null", "x"]).prop_map(|body| body.as_bytes().to_vec()),
                ]
                .boxed(),
            };
            let query = match &route.body {
                // Such routes refuse any query; a few cases check that.
                BodyRule::Whole => prop_oneof![8 => Just(None), 1 => hostile_query(&input)].boxed(),
                _ => hostile_query(&input),
            };
            let variables = route.template.variables();
            let values = prop::collection::vec(
                prop_oneof![
                    4 => path_value().boxed(),
                    1 => prop::collection::vec(any::<char>(), 1..8).prop_map(String::from_iter).boxed(),
                ],
                variables.len(),
            );
            (body, mutation(), query, values)
                .prop_map(move |(body, mutation, query, values)| HostileCase {
                    route: index,
                    bindings: variables
                        .iter()
                        .zip(values)
                        .map(|(field_path, value)| Binding {
                            field_path: field_path.clone(),
                            value,
                        })
                        .collect(),
                    query,
                    body: mutate(body, &mutation),
                })
                .boxed()
        })
        .collect();
    prop::strategy::Union::new(per_route)
}

// ---------------------------------------------------------------------------
// What every outcome must satisfy.

/// The query's keys as the gateway reads them.
fn query_keys(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            percent_decode(&key.replace('+', " ")).unwrap_or_else(|| key.to_owned())
        })
        .collect()
}

/// A dotted path of proto or JSON names, in JSON names as far as it resolves.
fn json_path(input: &MessageDescriptor, path: &str) -> String {
    let mut descriptor = Some(input.clone());
    let mut named = Vec::new();
    for part in path.split('.') {
        let field = descriptor.as_ref().and_then(|message| {
            message
                .get_field_by_name(part)
                .or_else(|| message.get_field_by_json_name(part))
        });
        match field {
            Some(field) => {
                named.push(field.json_name().to_owned());
                descriptor = match field.kind() {
                    Kind::Message(nested) => Some(nested),
                    _ => None,
                };
            }
            None => {
                named.push(part.to_owned());
                descriptor = None;
            }
        }
    }
    named.join(".")
}

/// Every name the request sent, as given and in JSON names.
fn sent_names(route: &Route, case: &HostileCase) -> Vec<String> {
    let input = route.method.input();
    let mut names = vec!["body".to_owned(), "query".to_owned()];
    if let BodyRule::Field(field) = &route.body {
        names.push(field.json_name().to_owned());
    }
    if let Ok(Json::Object(object)) = serde_json::from_slice::<Json>(&case.body) {
        for key in object.keys() {
            names.push(key.clone());
            names.push(json_path(&input, key));
        }
    }
    for key in case.query.as_deref().map(query_keys).unwrap_or_default() {
        names.push(json_path(&input, &key));
        names.push(key);
    }
    for binding in &case.bindings {
        names.push(json_path(&input, &binding.field_path.join(".")));
    }
    names
}

fn names_something_sent(field: &str, sent: &[String]) -> bool {
    sent.iter().any(|name| {
        field == name
            || field
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

fn check_refusal(
    contracts: &Contracts,
    route: &Route,
    case: &HostileCase,
    violations: &[FieldViolation],
) -> Result<(), TestCaseError> {
    prop_assert!(!violations.is_empty(), "a refusal without a violation");
    let sent = sent_names(route, case);
    for violation in violations {
        prop_assert!(!violation.description.is_empty(), "{violation:?}");
        prop_assert!(
            !violation.field.is_empty(),
            "a violation without a field name: {violation:?}"
        );
        prop_assert!(
            names_something_sent(&violation.field, &sent),
            "{violation:?} names nothing the request sent ({sent:?})"
        );
    }
    let response = invalid_request(violations.to_vec(), &contracts.pool);
    prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let json = status_json(&invalid_argument(violations.to_vec()), &contracts.pool);
    let named: Vec<&str> = json["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|detail| detail["fieldViolations"].as_array())
        .flatten()
        // Canonical JSON leaves out an empty `field`.
        .map(|violation| violation["field"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
    prop_assert_eq!(named, expected, "the 400's BadRequest names the violations");
    Ok(())
}

/// Whether any text in `value` holds a NUL.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Message(message) => message.fields().any(|(_, value)| holds_nul(value)),
        Value::List(items) => items.iter().any(holds_nul),
        Value::Map(entries) => entries
            .iter()
            .any(|(key, value)| matches!(key, MapKey::String(text) if text.contains('\0')) || holds_nul(value)),
        _ => false,
    }
}

fn check_acceptance(route: &Route, case: &HostileCase, message: &DynamicMessage) -> Result<(), TestCaseError> {
    // The service decodes what the gateway accepted (nesting limit included).
    let decoded = DynamicMessage::decode(route.method.input(), message.encode_to_vec().as_slice());
    prop_assert!(decoded.is_ok(), "accepted but undecodable: {:?}", decoded.err());
    prop_assert_eq!(message_json(&decoded.expect("checked above")), message_json(message));
    if matches!(route.body, BodyRule::None) {
        prop_assert!(
            !holds_nul(&Value::Message(message.clone())),
            "a NUL reached the message through the path or query"
        );
    }
    // The canonical JSON of what was accepted is accepted as the same message.
    if matches!(route.body, BodyRule::Whole) {
        let canonical = serde_json::to_vec(&message_json(message)).expect("JSON writes");
        let again = request_message(route, &case.bindings, None, &canonical);
        prop_assert!(again.is_ok(), "canonical JSON refused: {:?}", again.err());
        prop_assert_eq!(message_json(&again.expect("checked above")), message_json(message));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A path field repeated in the body.

#[derive(Debug, Clone)]
enum Repeat {
    Absent,
    Null,
    Same { proto_name: bool },
    Both,
    Other(String),
    Number(i64),
    Object,
}

fn repeat() -> impl Strategy<Value = Repeat> {
    prop_oneof![
        Just(Repeat::Absent),
        Just(Repeat::Null),
        any::<bool>().prop_map(|proto_name| Repeat::Same { proto_name }),
        Just(Repeat::Both),
        text(Carrier::Body).prop_map(Repeat::Other),
        any::<i64>().prop_map(Repeat::Number),
        Just(Repeat::Object),
    ]
}

/// Routes with one path variable that their body may repeat.
fn routes_binding_a_body_field() -> Vec<usize> {
    routes()
        .iter()
        .enumerate()
        .filter(|(_, route)| {
            let variables = route.template.variables();
            variables.len() == 1
                && match &route.body {
                    BodyRule::Whole => variables[0].len() == 1,
                    BodyRule::Field(field) => variables[0].len() == 2 && variables[0][0] == field.name(),
                    BodyRule::None => false,
                }
        })
        .map(|(index, _)| index)
        .collect()
}

proptest! {
    #![proptest_config(cases(30_000))]

    #[test]
    fn valid_messages_round_trip_through_path_query_and_body(case in valid_case()) {
        CONTRACTS.with(|contracts| -> Result<(), TestCaseError> {
            let route = &contracts.table.routes()[case.route];
            let written = write_request(route, &case.message, &case.style);
            let RouteMatch::Found(found, bindings) = contracts.table.find(&written.method, &written.path) else {
                return Err(TestCaseError::fail(format!("{} {} finds no route", written.method, written.path)));
            };
            prop_assert_eq!(found.method.full_name(), route.method.full_name(), "{}", written.path);
            let transcoded = request_message(found, &bindings, written.query.as_deref(), &written.body);
            prop_assert!(
                transcoded.is_ok(),
                "{} {}?{:?} {:?} refused: {:?}",
                written.method, written.path, written.query, String::from_utf8_lossy(&written.body), transcoded.err()
            );
            let transcoded = transcoded.expect("checked above");
            prop_assert_eq!(message_json(&transcoded), message_json(&case.message));
            let decoded = DynamicMessage::decode(route.method.input(), transcoded.encode_to_vec().as_slice());
            prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
            prop_assert_eq!(message_json(&decoded.expect("checked above")), message_json(&case.message));
            Ok(())
        })?;
    }

    #[test]
    fn answers_are_written_as_their_canonical_json((route_index, answer) in valid_answer()) {
        CONTRACTS.with(|contracts| -> Result<(), TestCaseError> {
            let route = &contracts.table.routes()[route_index];
            // Written straight from the message, or through a JSON tree: the same JSON.
            let bytes = response_bytes(route, &answer);
            let written: Result<Json, _> = serde_json::from_slice(&bytes);
            prop_assert!(written.is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
            let written = written.expect("checked above");
            prop_assert_eq!(&written, &response_json(route, &answer));
            // And that JSON reads back as the message it was written from.
            if route.response_body.is_none() {
                let read = DynamicMessage::deserialize(route.method.output(), written);
                prop_assert!(read.is_ok(), "{:?}", read.err());
                prop_assert_eq!(message_json(&read.expect("checked above")), message_json(&answer));
            }
            Ok(())
        })?;
    }

    #[test]
    fn hostile_requests_never_panic_and_every_refusal_names_a_field(case in hostile_case()) {
        CONTRACTS.with(|contracts| -> Result<(), TestCaseError> {
            let route = &contracts.table.routes()[case.route];
            match request_message(route, &case.bindings, case.query.as_deref(), &case.body) {
                Ok(message) => check_acceptance(route, &case, &message),
                Err(violations) => check_refusal(contracts, route, &case, &violations),
            }
        })?;
    }

    #[test]
    fn a_path_field_in_the_body_must_agree_with_the_url(
        route_index in prop::sample::select(routes_binding_a_body_field()),
        value in path_value(),
        repeat in repeat(),
    ) {
        CONTRACTS.with(|contracts| -> Result<(), TestCaseError> {
            let route = &contracts.table.routes()[route_index];
            let variable = &route.template.variables()[0];
            let input = route.method.input();
            let leaf = field_at(&input, variable);
            let (json_name, proto_name) = (leaf.json_name().to_owned(), leaf.name().to_owned());
            let mut object = serde_json::Map::new();
            let agrees = match &repeat {
                Repeat::Absent => true,
                Repeat::Null => {
                    object.insert(json_name.clone(), Json::Null);
                    true
                }
                Repeat::Same { proto_name: by_proto_name } => {
                    let key = if *by_proto_name { proto_name.clone() } else { json_name.clone() };
                    object.insert(key, Json::String(value.clone()));
                    true
                }
                Repeat::Both => {
                    object.insert(json_name.clone(), Json::String(value.clone()));
                    object.insert(proto_name.clone(), Json::String(value.clone()));
                    // One name is enough: both at once is refused even when
                    // they agree (unless they are the same name).
                    json_name == proto_name
                }
                Repeat::Other(other) => {
                    object.insert(json_name.clone(), Json::String(other.clone()));
                    *other == value
                }
                Repeat::Number(number) => {
                    object.insert(json_name.clone(), Json::from(*number));
                    number.to_string() == value
                }
                Repeat::Object => {
                    object.insert(json_name.clone(), Json::Object(serde_json::Map::new()));
                    false
                }
            };
            // For `body: "field"` the variable is `field.leaf`, and the body
            // is the field: either way the object holds the leaf.
            let body = Json::Object(object);
            let bindings = vec![Binding { field_path: variable.clone(), value: value.clone() }];
            let expected_field = json_path(&input, &variable.join("."));
            let outcome = request_message(route, &bindings, None, &serde_json::to_vec(&body).expect("JSON writes"));
            if agrees {
                prop_assert!(outcome.is_ok(), "{repeat:?} refused: {:?}", outcome.err());
                let json = message_json(&outcome.expect("checked above"));
                let bound = (1..=variable.len()).try_fold(&json, |json, length| {
                    json.get(field_at(&input, &variable[..length]).json_name())
                });
                prop_assert_eq!(bound.and_then(Json::as_str), Some(value.as_str()));
            } else {
                prop_assert!(outcome.is_err(), "{repeat:?} accepted");
                let violations = outcome.err().unwrap_or_default();
                let fields: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
                prop_assert_eq!(fields, vec![expected_field.as_str()]);
            }
            Ok(())
        })?;
    }
}

/// The field at a path of proto names.
fn field_at(input: &MessageDescriptor, path: &[String]) -> FieldDescriptor {
    let mut descriptor = input.clone();
    let (last, parents) = path.split_last().expect("a path has a field");
    for parent in parents {
        let Kind::Message(nested) = descriptor.get_field_by_name(parent).expect("a field").kind() else {
            panic!("{parent} is not a message")
        };
        descriptor = nested;
    }
    descriptor.get_field_by_name(last).expect("a field")
}

#[test]
fn every_path_variable_is_a_string_field() {
    // The generators bind path variables as strings; the contracts must
    // keep to that for the round trip to cover them.
    for route in routes() {
        for variable in route.template.variables() {
            let field = field_at(&route.method.input(), &variable);
            assert!(
                matches!(field.kind(), Kind::String),
                "{}: {variable:?}",
                route.template.as_str()
            );
        }
    }
    assert!(!routes_binding_a_body_field().is_empty());
}

fn transcode(method: Method, path: &str, query: Option<&str>, body: &str) -> Result<Json, Vec<FieldViolation>> {
    let contracts = contracts();
    let RouteMatch::Found(route, bindings) = contracts.table.find(&method, path) else {
        panic!("no route for {method} {path}")
    };
    request_message(route, &bindings, query, body.as_bytes()).map(|message| message_json(&message))
}

/// A key given twice in one object is refused, named by its path, as the
/// proto3 JSON conformance suite requires (`FieldNameDuplicate`): JSON
/// parsers disagree on which of the two wins, so the gateway picks neither.
#[test]
fn a_key_given_twice_is_refused_by_its_path() {
    let violations = transcode(
        Method::POST,
        "/v1/auth:signIn",
        None,
        r#"{"email":"ada@example.com","password":"p","email":"eve@example.com"}"#,
    )
    .expect_err("refused");
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "email");
    assert!(violations[0].description.contains("more than once"), "{violations:?}");
    // Inside a body that is one field of the request, and inside an array.
    let violations = transcode(Method::POST, "/v1/companies", None, r#"{"name":"A","name":"B"}"#).expect_err("refused");
    assert_eq!(violations[0].field, "company.name");
    let violations = transcode(
        Method::POST,
        "/v1/kpis",
        None,
        r#"{"kpiValues":[{"companyId":"c"},{"value":1,"value":2}]}"#,
    )
    .expect_err("refused");
    assert_eq!(violations[0].field, "kpiValues[1].value");
    // The same key in two different objects is not a duplicate.
    transcode(
        Method::POST,
        "/v1/kpis",
        None,
        r#"{"kpiValues":[{"value":1},{"value":2}]}"#,
    )
    .expect("accepted");
}

/// An empty key names no field: it is refused under the object that holds
/// it (`body`, or the enclosing field), or under `query`.
#[test]
fn an_empty_key_is_refused_under_the_object_that_holds_it() {
    let violations = transcode(Method::POST, "/v1/auth:signIn", None, r#"{"":1}"#).expect_err("refused");
    assert_eq!(violations[0].field, "body");
    let violations = transcode(Method::POST, "/v1/companies", None, r#"{"":1}"#).expect_err("refused");
    assert_eq!(violations[0].field, "company");
    let violations = transcode(Method::GET, "/v1/audit-events", Some("=1"), "").expect_err("refused");
    assert_eq!(violations[0].field, "query");
}

/// The hostile generator reaches every kind of outcome; a generator that
/// only ever produced refusals would prove little.
#[test]
fn the_hostile_generator_reaches_acceptances_and_refusals() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = hostile_case();
    let contracts = contracts();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..400 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let route = &contracts.table.routes()[case.route];
        match request_message(route, &case.bindings, case.query.as_deref(), &case.body) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(accepted >= 20, "only {accepted} of 400 accepted");
    assert!(refused >= 20, "only {refused} of 400 refused");
}
