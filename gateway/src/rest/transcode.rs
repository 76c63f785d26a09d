//! Between JSON and protobuf: a request's path bindings, query and body
//! become one dynamic message; a response message becomes canonical proto3
//! JSON (lowerCamelCase names, 64-bit integers as strings, enums by name,
//! `Timestamp` as RFC 3339).
//!
//! Path, query and body are first gathered into one JSON object and then
//! read field by field, so every bad field is reported by name.
//!
//! Over 400 lines, about a third of them its tests: the strict body reader,
//! the path and query bindings and the field reader share one notion of a
//! field's path and JSON name, and the tests pin their agreement; split,
//! each part would export its internals to the others.

use std::cell::Cell;
use std::collections::HashSet;

use metrix_core::error::FieldViolation;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage as _, SerializeOptions};
use serde_json::{Map, Value as Json};

use super::routes::{BodyRule, Route};
use super::template::{Binding, percent_decode};

/// The request message of `route`, from its path bindings, query string and body.
pub fn request_message(
    route: &Route,
    bindings: &[Binding],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, Vec<FieldViolation>> {
    let input = route.method.input();
    let mut violations = Vec::new();
    let mut root = match &route.body {
        // No body is the empty message; a body of `null` is not a message.
        BodyRule::Whole if body.iter().all(u8::is_ascii_whitespace) => Map::new(),
        BodyRule::Whole => match parse_body(body, "")? {
            Json::Object(object) => object,
            _ => return Err(vec![FieldViolation::new("body", "must be a JSON object")]),
        },
        BodyRule::Field(field) => {
            let mut root = Map::new();
            let value = parse_body(body, field.json_name())?;
            if !value.is_null() {
                root.insert(field.json_name().to_owned(), value);
            }
            root
        }
        BodyRule::None => {
            if !body.iter().all(u8::is_ascii_whitespace) {
                return Err(vec![FieldViolation::new("body", "must be empty for this route")]);
            }
            Map::new()
        }
    };
    if !matches!(route.body, BodyRule::Whole) {
        for (key, value) in query.map(parse_query).unwrap_or_default() {
            if let Err(violation) = insert_query(&input, &mut root, &key, value) {
                violations.push(violation);
            }
        }
    } else if query.is_some_and(|query| !query.is_empty()) {
        violations.push(FieldViolation::new(
            "query",
            "is not accepted: this route takes every field in the body",
        ));
    }
    for binding in bindings {
        if let Err(violation) = insert_path(&input, &mut root, &binding.field_path, &binding.value) {
            violations.push(violation);
        }
    }
    let reading = Reading {
        ignore_unknown_fields: route.ignore_unknown_fields,
    };
    let message = read_fields(&input, root, "", reading, &mut violations);
    if violations.is_empty()
        && let Some(field) = nested_too_deeply(&message, 0, "")
    {
        violations.push(metrix_core::server::nested_too_deeply(field));
    }
    if violations.is_empty() {
        Ok(message)
    } else {
        Err(violations)
    }
}

/// The first field (its JSON path) holding messages nested deeper than the
/// services decode, [`NESTING_LIMIT`] levels below the request, counted as
/// protobuf counts them: each nested message and each map entry is a level,
/// so a `google.protobuf.Struct` spends three per JSON object. A value
/// inside a well-known type is reported as the field holding it, such as
/// `events[0].properties`.
///
/// [`NESTING_LIMIT`]: metrix_core::server::NESTING_LIMIT
fn nested_too_deeply(message: &DynamicMessage, level: usize, path: &str) -> Option<String> {
    use prost_reflect::Value;
    let inside_well_known = is_well_known(&message.descriptor()) && !path.is_empty();
    let child_path = |suffix: &str| {
        if inside_well_known {
            path.to_owned()
        } else if path.is_empty() {
            suffix.to_owned()
        } else {
            format!("{path}.{suffix}")
        }
    };
    // A nested message `levels` below this one: too deep, or too deep inside.
    let check = |nested: &DynamicMessage, levels: usize, nested_path: String| {
        if level + levels > metrix_core::server::NESTING_LIMIT {
            Some(nested_path)
        } else {
            nested_too_deeply(nested, level + levels, &nested_path)
        }
    };
    for (field, value) in message.fields() {
        let field_path = child_path(field.json_name());
        let found = match value {
            Value::Message(nested) => check(nested, 1, field_path),
            Value::List(items) => items.iter().enumerate().find_map(|(index, item)| match item {
                Value::Message(nested) => {
                    let item_path = if inside_well_known {
                        field_path.clone()
                    } else {
                        format!("{field_path}[{index}]")
                    };
                    check(nested, 1, item_path)
                }
                _ => None,
            }),
            Value::Map(entries) if !entries.is_empty() => {
                if level + 1 > metrix_core::server::NESTING_LIMIT {
                    Some(field_path)
                } else {
                    entries.values().find_map(|entry| match entry {
                        Value::Message(nested) => check(nested, 2, field_path.clone()),
                        _ => None,
                    })
                }
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The body's JSON. A key given twice in one object is refused, named by
/// its path under `prefix` (where the body goes in the request): JSON
/// parsers disagree on which of the two wins, so neither is chosen.
fn parse_body(body: &[u8], prefix: &str) -> Result<Json, Vec<FieldViolation>> {
    use serde::de::DeserializeSeed as _;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json::Null);
    }
    let duplicate = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let root = PathNode {
        step: Step::Root(prefix),
        parent: None,
    };
    let parsed = StrictJson {
        node: &root,
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|json| deserializer.end().map(|()| json));
    // Text that is not JSON is refused as such, even after a duplicate.
    let json = parsed.map_err(|error| vec![FieldViolation::new("body", format!("is not valid JSON: {error}"))])?;
    match duplicate.take() {
        // A whole body that is not an object is refused as that instead.
        Some(_) if prefix.is_empty() && !json.is_object() => Ok(json),
        Some(path) => Err(vec![FieldViolation::new(
            if path.is_empty() { "body".to_owned() } else { path },
            "is given more than once in one JSON object",
        )]),
        None => Ok(json),
    }
}

/// Reads JSON as `serde_json::Value` does, and leaves in `duplicate` the
/// path of the first key an object holds twice (an empty key by the path
/// of its object, as `read_fields` names it). The path is a chain of nodes
/// on the stack, written out only for that key, so reading a body costs no
/// allocation per key.
struct StrictJson<'a> {
    node: &'a PathNode<'a>,
    duplicate: &'a Cell<Option<String>>,
}

/// One step of the way from the request to a value of the body.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// Where the body goes in the request (empty for the whole request).
    Root(&'a str),
    /// A key of an object.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// A value's place in the body: its step and its parent's place.
struct PathNode<'a> {
    step: Step<'a>,
    parent: Option<&'a PathNode<'a>>,
}

impl PathNode<'_> {
    /// The field path, as `read_fields` names fields: keys joined by `.`,
    /// indices in brackets, and whatever lies under an empty key named by
    /// the object that holds it.
    fn path(&self) -> String {
        let mut steps = Vec::new();
        let mut node = Some(self);
        while let Some(current) = node {
            steps.push(current.step);
            node = current.parent;
        }
        let mut path = String::new();
        for step in steps.into_iter().rev() {
            match step {
                Step::Root(prefix) => path.push_str(prefix),
                Step::Key("") => break,
                Step::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Step::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for StrictJson<'_> {
    type Value = Json;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictJson<'_> {
    type Value = Json;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
        // JSON has no NaN or infinity, so every parsed float is a number.
        Ok(serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Json, E> {
        Ok(Json::String(value))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Json, A::Error> {
        let mut array = Vec::new();
        loop {
            let node = PathNode {
                step: Step::Index(array.len()),
                parent: Some(self.node),
            };
            let element = StrictJson {
                node: &node,
                duplicate: self.duplicate,
            };
            let Some(item) = items.next_element_seed(element)? else {
                break;
            };
            array.push(item);
        }
        Ok(Json::Array(array))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<Json, A::Error> {
        let mut object = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let node = PathNode {
                step: Step::Key(&key),
                parent: Some(self.node),
            };
            let value = entries.next_value_seed(StrictJson {
                node: &node,
                duplicate: self.duplicate,
            })?;
            if object.contains_key(&key) {
                let first = self.duplicate.take();
                self.duplicate.set(first.or_else(|| Some(node.path())));
            }
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| percent_decode(&text.replace('+', " ")).unwrap_or_else(|| text.to_owned());
            (decode(key), decode(value))
        })
        .collect()
}

/// The field named `name` (proto name or JSON name).
fn field_named(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// A query or path value as the JSON that the field's type accepts.
fn scalar_json(field: &FieldDescriptor, text: &str) -> Json {
    match field.kind() {
        Kind::Bool => match text {
            "true" | "1" => Json::Bool(true),
            "false" | "0" => Json::Bool(false),
            _ => Json::String(text.to_owned()),
        },
        // An enum by number, as the body takes it (proto3 JSON reads both).
        Kind::Enum(_) => text
            .parse::<i32>()
            .map_or_else(|_| Json::String(text.to_owned()), Json::from),
        // Everything else accepts a JSON string in proto3 JSON: numbers
        // (64-bit ones as strings anyway), bytes in base64,
        // and the well-known types with a string form (Timestamp, Duration,
        // FieldMask, wrappers).
        _ => Json::String(text.to_owned()),
    }
}

fn insert_query(
    input: &MessageDescriptor,
    root: &mut Map<String, Json>,
    key: &str,
    value: String,
) -> Result<(), FieldViolation> {
    if key.is_empty() {
        return Err(FieldViolation::new("query", "holds a parameter with an empty name"));
    }
    let parts: Vec<&str> = key.split('.').collect();
    let unknown = || FieldViolation::new(key, format!("is not a field of {}", input.name()));
    let mut message = input.clone();
    let mut object = root;
    let mut named = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let field = field_named(&message, part).ok_or_else(unknown)?;
        let json_name = field.json_name().to_owned();
        named.push(json_name.clone());
        let last = index + 1 == parts.len();
        if last {
            if value.contains('\0') {
                return Err(nul_violation(named.join(".")));
            }
            let value = scalar_json(&field, &value);
            if field.is_list() {
                let entry = object.entry(json_name).or_insert_with(|| Json::Array(Vec::new()));
                match entry {
                    Json::Array(items) => items.push(value),
                    _ => return Err(FieldViolation::new(key, "is given twice in different forms")),
                }
            } else if field.is_map() {
                return Err(FieldViolation::new(
                    key,
                    "is a map, which the query cannot carry: send it in the body",
                ));
            } else if object.insert(json_name, value).is_some() {
                return Err(FieldViolation::new(key, "is given more than once but holds one value"));
            }
            return Ok(());
        }
        match field.kind() {
            Kind::Message(next) if !field.is_list() && !field.is_map() => {
                message = next;
                let entry = object.entry(json_name).or_insert_with(|| Json::Object(Map::new()));
                object = match entry {
                    Json::Object(inner) => inner,
                    _ => return Err(FieldViolation::new(key, "is given twice in different forms")),
                };
            }
            _ => return Err(unknown()),
        }
    }
    Ok(())
}

/// Sets the field at `path` to a path variable's `value`. The body may
/// carry the same field only with that same value: another value, or one of
/// another type, is refused rather than silently replaced.
fn insert_path(
    input: &MessageDescriptor,
    root: &mut Map<String, Json>,
    path: &[String],
    value: &str,
) -> Result<(), FieldViolation> {
    let mut message = input.clone();
    let mut object = root;
    let mut named = String::new();
    // A disagreement found; the path value is set all the same, so the
    // field is reported once.
    let mut refused = None;
    for (index, part) in path.iter().enumerate() {
        // Route loading checked that every path variable resolves to a scalar.
        let Some(field) = field_named(&message, part) else {
            break;
        };
        let json_name = field.json_name().to_owned();
        if !named.is_empty() {
            named.push('.');
        }
        named.push_str(&json_name);
        // The body may name the field by its proto name: move it under the
        // JSON name. Under both names it stays twice, and `read_fields`
        // refuses that.
        if field.name() != json_name
            && !object.contains_key(&json_name)
            && let Some(sent) = object.remove(field.name())
        {
            object.insert(json_name.clone(), sent);
        }
        if index + 1 == path.len() {
            if value.contains('\0') {
                return Err(nul_violation(named));
            }
            if object.get(&json_name).is_some_and(|sent| !same_scalar(sent, value)) {
                refused = Some(FieldViolation::new(
                    named,
                    format!("is set by the URL to {value:?}; the body must leave it out or agree"),
                ));
            }
            object.insert(json_name, scalar_json(&field, value));
            break;
        }
        let Kind::Message(next) = field.kind() else {
            break;
        };
        message = next;
        let entry = object.entry(json_name).or_insert_with(|| Json::Object(Map::new()));
        if !entry.is_object() {
            if !entry.is_null() {
                refused = Some(FieldViolation::new(named.clone(), "must be a JSON object"));
            }
            *entry = Json::Object(Map::new());
        }
        let Json::Object(inner) = entry else { break };
        object = inner;
    }
    refused.map_or(Ok(()), Err)
}

/// A path or query value holding a NUL character: no identifier or filter
/// holds one (and PostgreSQL refuses it in text), so the call stops here.
fn nul_violation(field: String) -> FieldViolation {
    FieldViolation::new(field, "must not contain a NUL character")
}

/// Whether a body's JSON value says the same as a path variable's text
/// (`null` says nothing).
fn same_scalar(sent: &Json, text: &str) -> bool {
    match sent {
        Json::Null => true,
        Json::String(sent) => sent == text,
        Json::Number(number) => number.to_string() == text,
        Json::Bool(flag) => flag.to_string() == text,
        Json::Array(_) | Json::Object(_) => false,
    }
}

/// How a route reads its body.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    /// Skip keys that name no field instead of refusing them.
    ignore_unknown_fields: bool,
}

/// Reads `object` into a message of `descriptor` one field at a time, so a
/// bad field is named; nested messages are read the same way.
fn read_fields(
    descriptor: &MessageDescriptor,
    object: Map<String, Json>,
    prefix: &str,
    reading: Reading,
    violations: &mut Vec<FieldViolation>,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    let mut seen = HashSet::new();
    let path_of = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    for (key, value) in object {
        if key.is_empty() {
            let object = if prefix.is_empty() { "body" } else { prefix };
            violations.push(FieldViolation::new(object, "holds an empty key, which names no field"));
            continue;
        }
        let path = path_of(&key);
        let Some(field) = field_named(descriptor, &key) else {
            if reading.ignore_unknown_fields {
                continue;
            }
            violations.push(FieldViolation::new(
                path,
                format!("is not a field of {}", descriptor.name()),
            ));
            continue;
        };
        // A field named both ways would otherwise keep whichever came last.
        if !seen.insert(field.number()) {
            violations.push(FieldViolation::new(
                path_of(field.json_name()),
                format!("is given twice, as {} and as {}", field.name(), field.json_name()),
            ));
            continue;
        }
        if value.is_null() {
            continue;
        }
        let plain_message =
            matches!(field.kind(), Kind::Message(ref nested) if !is_well_known(nested)) && !field.is_map();
        if plain_message && let Kind::Message(nested) = field.kind() {
            match (field.is_list(), value) {
                (false, Json::Object(inner)) => {
                    let nested_message = read_fields(&nested, inner, &path, reading, violations);
                    message.set_field(&field, prost_reflect::Value::Message(nested_message));
                    continue;
                }
                // Each element is read on its own, so every bad one is named
                // with its index.
                (true, Json::Array(items)) => {
                    let mut elements = Vec::with_capacity(items.len());
                    for (index, item) in items.into_iter().enumerate() {
                        let item_path = format!("{path}[{index}]");
                        match item {
                            Json::Object(inner) => elements.push(prost_reflect::Value::Message(read_fields(
                                &nested, inner, &item_path, reading, violations,
                            ))),
                            _ => violations.push(FieldViolation::new(
                                item_path,
                                format!("must be an object ({})", nested.name()),
                            )),
                        }
                    }
                    message.set_field(&field, prost_reflect::Value::List(elements));
                    continue;
                }
                (_, _) => {
                    let expected = if field.is_list() { "an array" } else { "an object" };
                    violations.push(FieldViolation::new(
                        path,
                        format!("must be {expected} ({})", nested.name()),
                    ));
                    continue;
                }
            }
        }
        let mut single = Map::new();
        single.insert(field.json_name().to_owned(), value);
        match DynamicMessage::deserialize(descriptor.clone(), Json::Object(single)) {
            Ok(parsed) => message.set_field(&field, parsed.get_field(&field).into_owned()),
            // A `Struct` too deep for prost-reflect's own decoding is the
            // same failure `nested_too_deeply` reports, so it reads the same.
            Err(error) if error.to_string().contains("recursion limit reached") => {
                violations.push(metrix_core::server::nested_too_deeply(path));
            }
            Err(error) => violations.push(FieldViolation::new(path, describe(&error.to_string()))),
        }
    }
    message
}

fn is_well_known(descriptor: &MessageDescriptor) -> bool {
    descriptor.full_name().starts_with("google.protobuf.")
}

/// serde's messages, trimmed of positions that mean nothing to the caller.
fn describe(error: &str) -> String {
    let text = error.split(" at line ").next().unwrap_or(error);
    text.to_owned()
}

/// The canonical JSON of a message.
pub fn message_json(message: &DynamicMessage) -> Json {
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .unwrap_or(Json::Null)
}

/// The JSON body of a response as bytes: the whole message written
/// straight from the message (no JSON tree in between), or the
/// `response_body` field.
pub fn response_bytes(route: &Route, message: &DynamicMessage) -> Vec<u8> {
    if route.response_body.is_some() {
        return serde_json::to_vec(&response_json(route, message)).unwrap_or_else(|_| b"null".to_vec());
    }
    let mut bytes = Vec::with_capacity(4096);
    match message.serialize_with_options(&mut serde_json::Serializer::new(&mut bytes), &SerializeOptions::new()) {
        Ok(()) => bytes,
        Err(_) => b"null".to_vec(),
    }
}

/// The JSON body of a response: the whole message, or the `response_body`
/// field (present even when empty).
pub fn response_json(route: &Route, message: &DynamicMessage) -> Json {
    match &route.response_body {
        None => message_json(message),
        Some(field) => {
            let whole = message
                .serialize_with_options(
                    serde_json::value::Serializer,
                    &SerializeOptions::new().skip_default_fields(false),
                )
                .unwrap_or(Json::Null);
            whole.get(field.json_name()).cloned().unwrap_or(Json::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::rest::{RouteMatch, RouteTable};

    fn table() -> RouteTable {
        let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        RouteTable::from_pool(&pool, "metrix.").expect("routes")
    }

    fn transcode(method: Method, path: &str, query: Option<&str>, body: &str) -> Result<Json, Vec<FieldViolation>> {
        let table = table();
        let RouteMatch::Found(route, bindings) = table.find(&method, path) else {
            panic!("no route for {method} {path}")
        };
        request_message(route, &bindings, query, body.as_bytes()).map(|message| message_json(&message))
    }

    #[test]
    fn a_whole_body_becomes_the_request() {
        let json = transcode(
            Method::POST,
            "/v1/auth:signUp",
            None,
            r#"{"email":"ada@example.com","password":"p","organization_name":"Ada"}"#,
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"email": "ada@example.com", "password": "p", "organizationName": "Ada"})
        );
    }

    #[test]
    fn path_and_query_fill_the_rest() {
        let json = transcode(
            Method::POST,
            "/v1/users/u-1:updateRole",
            None,
            r#"{"role":"ROLE_ANALYST"}"#,
        )
        .unwrap();
        assert_eq!(json, serde_json::json!({"userId": "u-1", "role": "ROLE_ANALYST"}));
        let json = transcode(
            Method::GET,
            "/v1/audit-events",
            Some("page_size=5&kind=AUDIT_EVENT_KIND_SIGN_UP&pageToken=abc"),
            "",
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"pageSize": 5, "pageToken": "abc", "kind": "AUDIT_EVENT_KIND_SIGN_UP"})
        );
    }

    #[test]
    fn the_body_may_repeat_a_path_field_only_with_its_value() {
        for body in [
            r#"{"role":"ROLE_ADMIN","userId":"u-1"}"#,
            r#"{"role":"ROLE_ADMIN","user_id":"u-1"}"#,
            r#"{"role":"ROLE_ADMIN","userId":null}"#,
        ] {
            let json = transcode(Method::POST, "/v1/users/u-1:updateRole", None, body).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"userId": "u-1", "role": "ROLE_ADMIN"}),
                "{body}"
            );
        }
        for body in [
            r#"{"role":"ROLE_ADMIN","userId":{}}"#,
            r#"{"role":"ROLE_ADMIN","userId":123}"#,
            r#"{"role":"ROLE_ADMIN","user_id":"someone-else"}"#,
            r#"{"role":"ROLE_ADMIN","user_id":"u-1","userId":"u-1"}"#,
        ] {
            let violations = transcode(Method::POST, "/v1/users/u-1:updateRole", None, body).unwrap_err();
            let fields: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
            assert_eq!(fields, ["userId"], "{body}");
        }
        let json = transcode(
            Method::PATCH,
            "/v1/companies/c-1",
            None,
            r#"{"company_id":"c-1","name":"Ada"}"#,
        )
        .unwrap();
        assert_eq!(json["company"]["companyId"], "c-1");
        assert_eq!(json["company"]["name"], "Ada");
        let violations = transcode(Method::PATCH, "/v1/companies/c-1", None, r#"{"companyId":"c-2"}"#).unwrap_err();
        assert_eq!(violations[0].field, "company.companyId");
        let violations = transcode(Method::PATCH, "/v1/companies/c-1", None, r#""Ada""#).unwrap_err();
        assert_eq!(violations[0].field, "company");
    }

    #[test]
    fn response_bytes_are_the_canonical_json() {
        let table = table();
        let RouteMatch::Found(route, _) = table.find(&Method::GET, "/v1/dashboard") else {
            panic!("no dashboard route")
        };
        let answer = serde_json::json!({"dashboard": {
            "totalEvents": "2000",
            "series": [{"startTime": "2026-12-02T00:56:00Z", "eventCount": "2"}],
            "rangePreset": "RANGE_PRESET_HOUR",
            "bucketWidth": "60s"
        }});
        let message = DynamicMessage::deserialize(route.method.output(), answer.clone()).expect("a valid answer");
        let bytes = response_bytes(route, &message);
        let written: Json = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(written, answer);
        assert_eq!(written, response_json(route, &message));
    }

    #[test]
    fn a_field_named_both_ways_is_refused() {
        let violations = transcode(
            Method::POST,
            "/v1/auth:signUp",
            None,
            r#"{"email":"a@example.com","password":"p","organizationName":"A","organization_name":"B"}"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["organizationName"]);
    }

    #[test]
    fn bad_fields_are_named() {
        let violations = transcode(Method::POST, "/v1/auth:signUp", None, r#"{"emial":"x","password":5}"#).unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["emial", "password"]);
        let violations = transcode(Method::GET, "/v1/audit-events", Some("page_size=many&colour=red"), "").unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["colour", "pageSize"]);
        let violations = transcode(Method::POST, "/v1/auth:signIn", None, "{not json").unwrap_err();
        assert_eq!(violations[0].field, "body");
    }

    fn violated(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|violation| violation.field.as_str()).collect()
    }

    #[test]
    fn a_nul_in_a_path_or_query_value_is_refused_by_its_json_name() {
        let violations = transcode(Method::GET, "/v1/events/abc%00def", None, "").unwrap_err();
        assert_eq!(violated(&violations), ["eventId"]);
        assert_eq!(violations[0].description, "must not contain a NUL character");
        let violations = transcode(Method::GET, "/v1/audit-events", Some("page_token=a%00b"), "").unwrap_err();
        assert_eq!(violated(&violations), ["pageToken"]);
        let violations = transcode(Method::GET, "/v1/events", Some("filter.user_id=u%00&pageSize=5"), "").unwrap_err();
        assert_eq!(violated(&violations), ["filter.userId"]);
        let violations = transcode(
            Method::GET,
            "/v1/events",
            Some("filter.eventTypes=a&filter.eventTypes=%00"),
            "",
        )
        .unwrap_err();
        assert_eq!(violated(&violations), ["filter.eventTypes"]);
        // An escaped percent sign is text like any other.
        let json = transcode(Method::GET, "/v1/events/abc%2500def", None, "").unwrap();
        assert_eq!(json, serde_json::json!({"eventId": "abc%00def"}));
    }

    /// `{"a": {"a": … "x"}}`, `objects` objects deep.
    fn nested_json(objects: usize) -> Json {
        (0..objects).fold(serde_json::json!("x"), |inner, _| serde_json::json!({ "a": inner }))
    }

    /// The same as a `Struct`.
    fn nested_struct(objects: usize) -> prost_types::Struct {
        let mut properties = prost_types::Struct::default();
        properties.fields.insert(
            "a".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("x".to_owned())),
            },
        );
        for _ in 1..objects {
            let mut outer = prost_types::Struct::default();
            outer.fields.insert(
                "a".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StructValue(properties)),
                },
            );
            properties = outer;
        }
        properties
    }

    #[test]
    fn nesting_is_refused_exactly_where_the_services_decoder_stops() {
        use metrix_proto::metrics::v1::{Event, TrackEventRequest, TrackEventsRequest};
        use prost::Message as _;
        let mut outcomes = HashSet::new();
        for objects in 1..=60 {
            let batch = serde_json::json!({"events": [{"eventType": "signup", "properties": nested_json(objects)}]});
            let transcoded = transcode(Method::POST, "/v1/events:batch", None, &batch.to_string());
            let decodes = TrackEventsRequest::decode(
                TrackEventsRequest {
                    events: vec![Event {
                        event_type: "signup".to_owned(),
                        properties: Some(nested_struct(objects)),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
                .encode_to_vec()
                .as_slice(),
            )
            .is_ok();
            match transcoded {
                Ok(json) => {
                    assert!(
                        decodes,
                        "{objects} objects deep: accepted, but the service cannot decode it"
                    );
                    assert_eq!(json["events"][0]["properties"], nested_json(objects));
                }
                Err(violations) => {
                    assert!(!decodes, "{objects} objects deep: refused, but the service decodes it");
                    assert_eq!(
                        violations,
                        [metrix_core::server::nested_too_deeply("events[0].properties")],
                        "{objects}"
                    );
                }
            }
            outcomes.insert(decodes);

            let single = serde_json::json!({"event": {"eventType": "signup", "properties": nested_json(objects)}});
            let transcoded = transcode(Method::POST, "/v1/events", None, &single.to_string());
            let decodes = TrackEventRequest::decode(
                TrackEventRequest {
                    event: Some(Event {
                        event_type: "signup".to_owned(),
                        properties: Some(nested_struct(objects)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .encode_to_vec()
                .as_slice(),
            )
            .is_ok();
            match transcoded {
                Ok(_) => assert!(
                    decodes,
                    "{objects} objects deep in one event: accepted, but undecodable"
                ),
                Err(violations) => {
                    assert!(!decodes, "{objects} objects deep in one event: refused, but decodable");
                    assert_eq!(
                        violations,
                        [metrix_core::server::nested_too_deeply("event.properties")],
                        "{objects}"
                    );
                }
            }
        }
        assert_eq!(outcomes.len(), 2, "the depths tried cross the limit");
    }
}
