//! OpenAPI 3.1, generated from the same descriptors as the routes: paths and
//! operations from the `google.api.http` rules, schemas from the messages
//! (canonical proto3 JSON names and types), enums by name, and the proto
//! comments as descriptions. What the contracts state about each field goes
//! along: `google.api.field_behavior` (REQUIRED fields in `required`,
//! OUTPUT_ONLY as `readOnly`, IMMUTABLE and IDENTIFIER as `x-immutable` and
//! `x-identifier`) and `metrix.common.v1.constraints` as the JSON Schema
//! keywords of the same meaning. What the gateway accepts beyond that is
//! stated too, so a client or fuzzer reads the truth: `null` for a field
//! that is not REQUIRED, enums by number, and for a message the RPC judges
//! in its answer (`judged_in_answer`) the message's shape alone.
//!
//! Over 400 lines: it is one walk over the descriptors (operations, then the
//! schemas they reach, then each field's rules), and every step reads or
//! writes the one `Builder` (the comments by source path, the option
//! descriptors, the schemas emitted so far); the snapshot in
//! `tests/transcoding.rs` checks the whole.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, Value,
};
use serde_json::{Map, Value as Json, json};

use crate::rest::{BodyRule, Route, RouteTable};

/// A proto comment as a description: the lines of each paragraph joined
/// with spaces, paragraphs separated by a blank line (CommonMark, as
/// OpenAPI reads descriptions).
fn description_of(comment: &str) -> String {
    let mut paragraphs: Vec<Vec<&str>> = vec![Vec::new()];
    for line in comment.lines().map(str::trim) {
        match paragraphs.last_mut() {
            Some(paragraph) if !line.is_empty() => paragraph.push(line),
            Some(paragraph) if !paragraph.is_empty() => paragraphs.push(Vec::new()),
            _ => {}
        }
    }
    paragraphs
        .into_iter()
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| paragraph.join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Leading comments by file and source path.
struct Comments(HashMap<(String, Vec<i32>), String>);

impl Comments {
    fn read(pool: &DescriptorPool) -> Self {
        let mut comments = HashMap::new();
        for file in pool.files() {
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            for location in &info.location {
                if let Some(text) = &location.leading_comments {
                    let text = description_of(text);
                    if !text.is_empty() {
                        comments.insert((file.name().to_owned(), location.path.clone()), text);
                    }
                }
            }
        }
        Self(comments)
    }

    fn of(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.0.get(&(file.to_owned(), path.to_vec())).map(String::as_str)
    }
}

struct Builder<'a> {
    comments: &'a Comments,
    rules: FieldRules,
    schemas: BTreeMap<String, Json>,
    /// Messages read by a route that ignores unknown fields.
    lenient: HashSet<String>,
}

/// `google.api.field_behavior` values (AIP-203) the document speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Required = 2,
    OutputOnly = 3,
    Immutable = 5,
    Identifier = 8,
}

/// What the contracts say about fields: their behaviour and their bounds,
/// read from the field options through the extensions the pool defines.
struct FieldRules {
    behavior: Option<ExtensionDescriptor>,
    constraints: Option<ExtensionDescriptor>,
}

impl FieldRules {
    fn read(pool: &DescriptorPool) -> Self {
        Self {
            behavior: pool.get_extension_by_name("google.api.field_behavior"),
            constraints: pool.get_extension_by_name("metrix.common.v1.constraints"),
        }
    }

    /// Whether `field` is annotated with `behavior`.
    fn has(&self, field: &FieldDescriptor, behavior: Behavior) -> bool {
        let Some(extension) = &self.behavior else {
            return false;
        };
        let options = field.options();
        if !options.has_extension(extension) {
            return false;
        }
        match options.get_extension(extension).as_ref() {
            Value::List(values) => values
                .iter()
                .any(|value| matches!(value, Value::EnumNumber(number) if *number == behavior as i32)),
            Value::EnumNumber(number) => *number == behavior as i32,
            _ => false,
        }
    }

    /// The field's `(metrix.common.v1.constraints)`, when it has any.
    fn constraints(&self, field: &FieldDescriptor) -> Option<DynamicMessage> {
        let extension = self.constraints.as_ref()?;
        let options = field.options();
        if !options.has_extension(extension) {
            return None;
        }
        match options.get_extension(extension).into_owned() {
            Value::Message(message) => Some(message),
            _ => None,
        }
    }

    /// Whether the RPC answers the problems of the field's message instead
    /// of refusing them (`judged_in_answer`).
    fn judged_in_answer(&self, field: &FieldDescriptor) -> bool {
        self.constraints(field).is_some_and(|constraints| {
            constraints
                .get_field_by_name("judged_in_answer")
                .is_some_and(|value| value.as_bool() == Some(true))
        })
    }

    /// The names of a message's REQUIRED fields, in field order.
    fn required(&self, message: &MessageDescriptor) -> Vec<String> {
        message
            .fields()
            .filter(|field| self.has(field, Behavior::Required))
            .map(|field| field.json_name().to_owned())
            .collect()
    }

    /// Adds what the contract says of `field` to its schema: `readOnly`,
    /// `x-immutable`, `x-identifier` and the bounds. Bounds of a repeated
    /// field's elements go to `items`, its counts to the array (or, for a
    /// map, to the object's properties).
    fn annotate(&self, field: &FieldDescriptor, schema: &mut Json) {
        let Json::Object(object) = schema else {
            return;
        };
        if self.has(field, Behavior::OutputOnly) {
            object.insert("readOnly".into(), Json::Bool(true));
        }
        if self.has(field, Behavior::Immutable) {
            object.insert("x-immutable".into(), Json::Bool(true));
        }
        if self.has(field, Behavior::Identifier) {
            object.insert("x-identifier".into(), Json::Bool(true));
        }
        // proto3 cannot tell an empty value from an absent one, so a
        // REQUIRED field is refused when empty: say so, and a generated
        // client or a fuzzer sends something.
        if self.has(field, Behavior::Required) && !field.is_map() {
            if field.is_list() {
                object.insert("minItems".into(), json!(1));
            } else {
                match field.kind() {
                    Kind::String => {
                        object.insert("minLength".into(), json!(1));
                    }
                    Kind::Enum(descriptor) => {
                        if let Some(zero) = descriptor.get_value(0) {
                            object.insert("not".into(), json!({"enum": [zero.name(), 0]}));
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(constraints) = self.constraints(field) else {
            return;
        };
        let bound = |name: &str| {
            constraints
                .has_field_by_name(name)
                .then(|| constraints.get_field_by_name(name))
                .flatten()
                .map(|value| match value.as_ref() {
                    Value::U32(number) => json!(number),
                    Value::F64(number) => number_of(*number),
                    Value::String(text) => json!(text),
                    _ => Json::Null,
                })
        };
        let (minimum_count, maximum_count) = if field.is_map() {
            ("minProperties", "maxProperties")
        } else {
            ("minItems", "maxItems")
        };
        for (option, keyword) in [("min_items", minimum_count), ("max_items", maximum_count)] {
            if let Some(value) = bound(option) {
                object.insert(keyword.into(), value);
            }
        }
        let element = if field.is_list() {
            match object.get_mut("items") {
                Some(Json::Object(items)) => items,
                _ => return,
            }
        } else {
            object
        };
        for (option, keyword) in [
            ("min_length", "minLength"),
            ("max_length", "maxLength"),
            ("pattern", "pattern"),
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusive_minimum", "exclusiveMinimum"),
        ] {
            if let Some(value) = bound(option) {
                element.insert(keyword.into(), value);
            }
        }
    }
}

/// `message` and every message type below it (well-known types aside).
fn collect_messages(message: &MessageDescriptor, found: &mut HashSet<String>) {
    if is_well_known(message) || !found.insert(message.full_name().to_owned()) {
        return;
    }
    for field in message.fields() {
        if let Kind::Message(nested) = field.kind() {
            collect_messages(&nested, found);
        }
    }
}

/// The OpenAPI document of every route.
pub fn document(pool: &DescriptorPool, routes: &RouteTable) -> Json {
    let comments = Comments::read(pool);
    let mut lenient = HashSet::new();
    for route in routes.routes().iter().filter(|route| route.ignore_unknown_fields) {
        collect_messages(&route.method.input(), &mut lenient);
    }
    let mut builder = Builder {
        comments: &comments,
        rules: FieldRules::read(pool),
        schemas: BTreeMap::new(),
        lenient,
    };
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut operation_ids: HashMap<String, usize> = HashMap::new();
    for route in routes.routes() {
        let operation = builder.operation(route, &mut operation_ids);
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.http_method.as_str().to_ascii_lowercase(), operation);
    }
    builder.schemas.insert(
        "Status".to_owned(),
        json!({
            "type": "object",
            "description": "An error: the gRPC code (number and name), a message, and details such as google.rpc.BadRequest field violations.",
            "properties": {
                "code": {"type": "integer", "format": "int32"},
                "status": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {"@type": {"type": "string"}}, "additionalProperties": true}}
            },
            "required": ["code", "status", "message", "details"]
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Metrix API",
            "version": "v1",
            "description": "Startup KPIs, product events, dashboards and peer benchmarks. Every operation is also a gRPC method (native gRPC and grpc-web on the same address); JSON follows the canonical proto3 mapping: lowerCamelCase names, 64-bit integers as strings, enums by name, timestamps in RFC 3339."
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": builder.schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "An access token from SignIn, SignUp, RefreshToken or IssueServiceToken."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "An API key from CreateApiKey, for ingestion and read access."}
            }
        },
        "security": [{"bearerAuth": []}, {"apiKey": []}, {}]
    })
}

impl Builder<'_> {
    fn describe(&self, file: &str, path: &[i32]) -> Option<String> {
        self.comments.of(file, path).map(str::to_owned)
    }

    fn method_description(&self, method: &MethodDescriptor) -> Option<String> {
        self.describe(method.parent_file().name(), method.path())
    }

    fn operation(&mut self, route: &Route, operation_ids: &mut HashMap<String, usize>) -> Json {
        let method = &route.method;
        let service = method.parent_service();
        let base_id = format!("{}_{}", service.name(), method.name());
        let count = operation_ids.entry(base_id.clone()).or_insert(0);
        *count += 1;
        let operation_id = if *count == 1 {
            base_id
        } else {
            format!("{base_id}{count}")
        };
        let input = method.input();
        let path_fields: Vec<Vec<String>> = route.template.variables();
        let mut parameters = Vec::new();
        for field_path in &path_fields {
            if let Some(field) = crate::rest::routes::resolve_path(&input, field_path) {
                let mut schema = self.field_schema(&field);
                self.rules.annotate(&field, &mut schema);
                // The services trim the ids a path carries, so one of white
                // space alone is no id.
                if let Json::Object(object) = &mut schema
                    && object.get("type") == Some(&json!("string"))
                    && !object.contains_key("pattern")
                {
                    object.insert("pattern".into(), json!("\\S"));
                }
                let mut parameter = json!({
                    "name": route.template.openapi_name(field_path),
                    "in": "path",
                    "required": true,
                    "description": self.field_description(&field),
                    "schema": schema,
                });
                if field_path.len() > 1 {
                    parameter["x-field-path"] = json!(field_path.join("."));
                }
                parameters.push(parameter);
            }
        }
        let bound_top: Vec<&str> = path_fields
            .iter()
            .filter(|path| path.len() == 1)
            .map(|path| path[0].as_str())
            .collect();
        if !matches!(route.body, BodyRule::Whole) {
            let body_field = match &route.body {
                BodyRule::Field(field) => Some(field.name().to_owned()),
                _ => None,
            };
            for field in input.fields() {
                if bound_top.contains(&field.name()) || body_field.as_deref() == Some(field.name()) || field.is_map() {
                    continue;
                }
                self.query_parameters(&field, String::new(), &mut parameters, 0);
            }
        }
        let mut operation = Map::new();
        operation.insert("operationId".into(), json!(operation_id));
        operation.insert("summary".into(), json!(method.name()));
        if let Some(description) = self.method_description(method) {
            operation.insert("description".into(), json!(description));
        }
        operation.insert("tags".into(), json!([service.name()]));
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Json::Array(parameters));
        }
        let request_schema = match &route.body {
            BodyRule::None => None,
            BodyRule::Whole => Some(self.body_schema(&input, &bound_top, is_partial_update(&input))),
            BodyRule::Field(field) => match field.kind() {
                Kind::Message(message) if !field.is_list() && !is_well_known(&message) => {
                    // Fields of the body's message that the path binds
                    // (`company.company_id`).
                    let bound_inside: Vec<&str> = path_fields
                        .iter()
                        .filter(|path| path.len() == 2 && path[0] == field.name())
                        .map(|path| path[1].as_str())
                        .collect();
                    Some(self.body_schema(&message, &bound_inside, is_partial_update(&input)))
                }
                _ => Some(self.field_schema(field)),
            },
        };
        if let Some(schema) = request_schema {
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let response_schema = match &route.response_body {
            Some(field) => self.field_schema(field),
            None => self.message_ref(&method.output()),
        };
        let success = if method.is_server_streaming() && crate::rest::handler::is_streamed_file(&method.output()) {
            json!({
                "description": "The file itself, streamed as it is produced: its media type in Content-Type and its name in Content-Disposition (attachment). A failure after the first bytes aborts the transfer.",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}
            })
        } else if method.is_server_streaming() {
            json!({
                "description": "A stream of messages: Server-Sent Events (`event: message`, or `event: error` with a Status) when the request accepts text/event-stream, newline-delimited JSON otherwise.",
                "content": {"text/event-stream": {"schema": response_schema}, "application/x-ndjson": {"schema": response_schema}}
            })
        } else if route.response_body.is_none() && crate::rest::handler::is_file_shaped(&method.output()) {
            json!({
                "description": "The file itself: its media type in Content-Type and its name in Content-Disposition (attachment).",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}
            })
        } else {
            json!({"description": "OK", "content": {"application/json": {"schema": response_schema}}})
        };
        operation.insert(
            "responses".into(),
            json!({
                "200": success,
                "default": {"description": "An error, with the HTTP status of its gRPC code.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}
            }),
        );
        Json::Object(operation)
    }

    /// Scalar fields become query parameters; singular messages contribute
    /// their fields with a dotted prefix (two levels deep).
    fn query_parameters(&mut self, field: &FieldDescriptor, prefix: String, parameters: &mut Vec<Json>, depth: usize) {
        let name = format!("{prefix}{}", field.json_name());
        match field.kind() {
            Kind::Message(message) if !is_well_known(&message) => {
                if field.is_list() || depth >= 2 {
                    return;
                }
                for inner in message.fields() {
                    if !inner.is_map() {
                        self.query_parameters(&inner, format!("{name}."), parameters, depth + 1);
                    }
                }
            }
            _ => {
                let mut schema = self.field_schema(field);
                self.rules.annotate(field, &mut schema);
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": depth == 0 && self.rules.has(field, Behavior::Required),
                    "description": self.field_description(field),
                    "schema": schema,
                    "explode": true,
                }));
            }
        }
    }

    /// The schema of a request body holding `message`: the message's own
    /// schema, unless the path binds some of its fields — they are path
    /// parameters, and the body leaves them out (the gateway refuses a body
    /// value that disagrees with the URL) — or it is a partial update, where
    /// no field is required (AIP-134: the mask says what is sent); then a
    /// copy that says so.
    fn body_schema(&mut self, message: &MessageDescriptor, bound_by_path: &[&str], partial: bool) -> Json {
        let reference = self.message_ref(message);
        let required = self.rules.required(message);
        let bound: Vec<String> = message
            .fields()
            .filter(|field| bound_by_path.contains(&field.name()))
            .map(|field| field.json_name().to_owned())
            .collect();
        let kept: Vec<String> = if partial {
            Vec::new()
        } else {
            required.iter().filter(|name| !bound.contains(name)).cloned().collect()
        };
        if bound.is_empty() && kept.len() == required.len() {
            return reference;
        }
        let mut schema = self.schemas.get(message.full_name()).cloned().unwrap_or(Json::Null);
        // A REQUIRED field not required here may be sent as `null`, like
        // any optional field.
        if let Some(Json::Object(properties)) = schema.get_mut("properties") {
            for name in required.iter().filter(|name| !kept.contains(name)) {
                if let Some(property) = properties.get_mut(name) {
                    nullable(property);
                }
            }
            for name in &bound {
                properties.remove(name);
            }
        }
        if let Json::Object(object) = &mut schema {
            if kept.is_empty() {
                object.remove("required");
            } else {
                object.insert("required".into(), json!(kept));
            }
        }
        schema
    }

    fn field_description(&self, field: &FieldDescriptor) -> Json {
        self.describe(field.parent_file().name(), field.path())
            .map_or(Json::Null, Json::String)
    }

    fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(schema) = well_known_schema(message) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.schemas.contains_key(&name) {
            // Insert a placeholder first: messages may refer to themselves.
            self.schemas.insert(name.clone(), Json::Null);
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field_schema(&field);
                if let (Json::Object(object), Some(description)) =
                    (&mut schema, self.describe(field.parent_file().name(), field.path()))
                {
                    object.entry("description").or_insert(Json::String(description));
                }
                self.rules.annotate(&field, &mut schema);
                if !self.rules.has(&field, Behavior::Required) {
                    nullable(&mut schema);
                }
                properties.insert(field.json_name().to_owned(), schema);
            }
            // A message read by a route that ignores unknown fields takes any.
            let closed = !self.lenient.contains(&name);
            let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": !closed});
            let required = self.rules.required(message);
            if !required.is_empty() {
                schema["required"] = json!(required);
            }
            if let Some(description) = self.describe(message.parent_file().name(), message.path()) {
                schema["description"] = Json::String(description);
            }
            self.schemas.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The shape of `message` alone, for a field whose problems the RPC
    /// answers rather than refuses (`judged_in_answer`): its component
    /// without `required` and without the bounds of its own fields.
    fn unchecked_ref(&mut self, message: &MessageDescriptor) -> Json {
        let checked = self.message_ref(message);
        if checked.get("$ref").is_none() {
            return checked;
        }
        let name = format!("{}.Unchecked", message.full_name());
        if !self.schemas.contains_key(&name) {
            let mut schema = self.schemas.get(message.full_name()).cloned().unwrap_or(Json::Null);
            if let Json::Object(object) = &mut schema {
                let required = object.remove("required");
                if let Some(Json::Object(properties)) = object.get_mut("properties") {
                    for (property_name, property) in properties.iter_mut() {
                        let Json::Object(keywords) = property else {
                            continue;
                        };
                        for bound in BOUNDS {
                            keywords.remove(bound);
                            if let Some(Json::Object(items)) = keywords.get_mut("items") {
                                items.remove(bound);
                            }
                        }
                        let was_required = required
                            .as_ref()
                            .and_then(Json::as_array)
                            .is_some_and(|names| names.contains(&json!(property_name)));
                        if was_required {
                            nullable(property);
                        }
                    }
                }
                let description = format!(
                    "The shape of {}: the call judges the value and answers its problems instead of refusing it.",
                    message.name()
                );
                object.insert("description".into(), Json::String(description));
            }
            self.schemas.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn enum_ref(&mut self, descriptor: &EnumDescriptor) -> Json {
        let name = descriptor.full_name().to_owned();
        if !self.schemas.contains_key(&name) {
            // proto3 JSON reads an enum by name or by number.
            let names = descriptor.values().map(|value| json!(value.name()));
            let numbers = descriptor.values().map(|value| json!(value.number()));
            let values: Vec<Json> = names.chain(numbers).collect();
            let mut schema = json!({"type": ["string", "integer"], "enum": values});
            if let Some(description) = self.describe(descriptor.parent_file().name(), descriptor.path()) {
                schema["description"] = Json::String(description);
            }
            self.schemas.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn field_schema(&mut self, field: &FieldDescriptor) -> Json {
        if let Kind::Message(message) = field.kind()
            && self.rules.judged_in_answer(field)
        {
            let single = self.unchecked_ref(&message);
            return if field.is_list() {
                json!({"type": "array", "items": single})
            } else {
                single
            };
        }
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({"type": "object"});
            };
            let value = self.single_schema(&entry.map_entry_value_field().kind());
            return json!({"type": "object", "additionalProperties": value});
        }
        let single = self.single_schema(&field.kind());
        if field.is_list() {
            json!({"type": "array", "items": single})
        } else {
            single
        }
    }

    fn single_schema(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(descriptor) => self.enum_ref(descriptor),
            Kind::Message(message) => self.message_ref(message),
        }
    }
}

/// The JSON Schema keywords that bound a value (as opposed to its shape).
const BOUNDS: [&str; 9] = [
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minItems",
    "maxItems",
    "not",
];

/// Lets a field's schema take `null` too. proto3 JSON reads `null` as the
/// field's default, which for a field that is not REQUIRED is the same as
/// leaving it out (a REQUIRED field's `null` is refused as missing).
fn nullable(schema: &mut Json) {
    let Json::Object(object) = schema else {
        return;
    };
    if let Some(reference) = object.remove("$ref") {
        object.insert("anyOf".into(), json!([{"$ref": reference}, {"type": "null"}]));
        return;
    }
    match object.get_mut("type") {
        Some(Json::String(kind)) => {
            let kind = std::mem::take(kind);
            object.insert("type".into(), json!([kind, "null"]));
        }
        Some(Json::Array(kinds)) if !kinds.contains(&json!("null")) => kinds.push(json!("null")),
        // No type: any JSON value, `null` included.
        _ => {}
    }
}

/// A bound as JSON: whole numbers without a fraction (`10000`, not `10000.0`).
fn number_of(value: f64) -> Json {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() < EXACT {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// Whether a request updates a resource partially, naming what it changes
/// in an `update_mask` (AIP-134).
fn is_partial_update(request: &MessageDescriptor) -> bool {
    request.get_field_by_name("update_mask").is_some_and(
        |field| matches!(field.kind(), Kind::Message(mask) if mask.full_name() == "google.protobuf.FieldMask"),
    )
}

fn is_well_known(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.protobuf.")
}

/// The JSON forms of the well-known types.
fn well_known_schema(message: &MessageDescriptor) -> Option<Json> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "description": "Seconds with an `s` suffix, such as `1.5s`."})
        }
        "google.protobuf.FieldMask" => {
            json!({"type": "string", "description": "Comma-separated lowerCamelCase field paths."})
        }
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array", "items": {}}),
        "google.protobuf.Empty" => json!({"type": "object", "additionalProperties": false}),
        "google.protobuf.Any" => {
            json!({"type": "object", "properties": {"@type": {"type": "string"}}, "additionalProperties": true})
        }
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({"type": ["number", "null"]}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => json!({"type": ["integer", "null"]}),
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => json!({"type": ["string", "null"]}),
        "google.protobuf.BoolValue" => json!({"type": ["boolean", "null"]}),
        "google.protobuf.StringValue" => json!({"type": ["string", "null"]}),
        "google.protobuf.BytesValue" => json!({"type": ["string", "null"], "contentEncoding": "base64"}),
        _ => return None,
    })
}

/// A readable page for the document, self-contained (no external scripts).
pub const DOCS_PAGE: &str = include_str!("docs.html");

/// The docs page's script.
pub const DOCS_SCRIPT: &str = include_str!("docs.js");

/// The docs page's style sheet.
pub const DOCS_STYLE: &str = include_str!("docs.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_keep_their_paragraphs() {
        assert_eq!(
            description_of(" First line\n second line.\n\n Next paragraph.\n \n\n Last.\n"),
            "First line second line.\n\nNext paragraph.\n\nLast."
        );
        assert_eq!(description_of("\n \n"), "");
    }

    #[test]
    fn every_route_is_documented_with_its_comments() {
        let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let routes = RouteTable::from_pool(&pool, "metrix.").expect("routes");
        let document = document(&pool, &routes);
        let paths = document["paths"].as_object().expect("paths");
        let operations: usize = paths.values().map(|path| path.as_object().map_or(0, Map::len)).sum();
        assert_eq!(operations, routes.routes().len());
        let sign_up = &document["paths"]["/v1/auth:signUp"]["post"];
        assert_eq!(sign_up["operationId"], "AuthService_SignUp");
        assert!(
            sign_up["description"]
                .as_str()
                .expect("description")
                .contains("Creates an account")
        );
        let request = &document["components"]["schemas"]["metrix.auth.v1.SignUpRequest"];
        // Optional, so `null` (proto3 JSON's "default") is as good as leaving it out.
        assert_eq!(
            request["properties"]["organizationName"]["type"],
            json!(["string", "null"])
        );
        assert!(request["properties"]["email"]["description"].as_str().is_some());
        let user = &document["components"]["schemas"]["metrix.auth.v1.User"];
        assert_eq!(user["properties"]["createTime"]["format"], "date-time");
        let role = &document["components"]["schemas"]["metrix.auth.v1.Role"];
        assert!(role["enum"].as_array().expect("values").contains(&json!("ROLE_ADMIN")));
        let delete = &document["paths"]["/v1/api-keys/{api_key_id}"]["delete"];
        assert_eq!(delete["parameters"][0]["in"], "path");
    }

    #[test]
    fn clients_and_fuzzers_read_what_the_gateway_accepts() {
        let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let routes = RouteTable::from_pool(&pool, "metrix.").expect("routes");
        let document = document(&pool, &routes);
        let schemas = &document["components"]["schemas"];
        // An enum by name or by number.
        let role = schemas["metrix.auth.v1.Role"]["enum"].as_array().expect("values");
        assert!(role.contains(&json!("ROLE_ADMIN")) && role.contains(&json!(0)));
        // A nested path variable has a name without a dot, and says what it binds.
        let update = &document["paths"]["/v1/companies/{company_id}"]["patch"];
        assert_eq!(update["parameters"][0]["name"], "company_id");
        assert_eq!(update["parameters"][0]["x-field-path"], "company.company_id");
        // A field the path binds is not in the body.
        let rotate = &document["paths"]["/v1/service-accounts/{client_id}:rotateSecret"]["post"];
        let body = &rotate["requestBody"]["content"]["application/json"]["schema"];
        assert!(body["properties"].get("clientId").is_none(), "{body}");
        // Each event of a batch is judged alone: the items state the shape only.
        let batch = &schemas["metrix.metrics.v1.TrackEventsRequest"]["properties"]["events"];
        assert_eq!(
            batch["items"]["$ref"],
            "#/components/schemas/metrix.metrics.v1.Event.Unchecked"
        );
        let unchecked = &schemas["metrix.metrics.v1.Event.Unchecked"];
        assert!(unchecked.get("required").is_none(), "{unchecked}");
        assert!(schemas["metrix.metrics.v1.Event"]["required"].is_array());
    }

    #[test]
    fn field_behaviour_and_bounds_reach_the_schemas() {
        let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let routes = RouteTable::from_pool(&pool, "metrix.").expect("routes");
        let document = document(&pool, &routes);
        let schemas = &document["components"]["schemas"];
        let sign_up = &schemas["metrix.auth.v1.SignUpRequest"];
        assert_eq!(sign_up["required"], json!(["email", "password"]));
        // proto3 cannot tell empty from absent: a REQUIRED string is non-empty.
        assert_eq!(sign_up["properties"]["email"]["minLength"], 1);
        assert_eq!(sign_up["properties"]["email"]["maxLength"], 254);
        assert_eq!(sign_up["properties"]["password"]["minLength"], 12);
        let company = &schemas["metrix.metrics.v1.Company"];
        assert_eq!(company["properties"]["createTime"]["readOnly"], true);
        assert_eq!(company["properties"]["companyId"]["x-identifier"], true);
        assert_eq!(company["properties"]["countryCode"]["pattern"], "^[A-Z]{2}$");
        let record = &schemas["metrix.metrics.v1.RecordKpisRequest"];
        assert_eq!(record["properties"]["kpiValues"]["maxItems"], 1000);
        let ranking = &schemas["metrix.benchmark.v1.CalculateRankingRequest"];
        assert_eq!(ranking["properties"]["values"]["maxProperties"], 50);

        // A field the path binds is a path parameter, not a required body field.
        let update_role = &document["paths"]["/v1/users/{user_id}:updateRole"]["post"];
        let body = &update_role["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["required"], json!(["role"]));
        // A partial update requires nothing of the resource in its body.
        let update_company = document["paths"]
            .as_object()
            .expect("paths")
            .values()
            .find_map(|path| path.get("patch"))
            .expect("UpdateCompany is a PATCH");
        let body = &update_company["requestBody"]["content"]["application/json"]["schema"];
        assert!(body.get("required").is_none(), "{body}");
        // REQUIRED query parameters are required.
        let benchmark = document["paths"]
            .as_object()
            .expect("paths")
            .values()
            .filter_map(|path| path.get("get"))
            .find(|operation| operation["operationId"] == "BenchmarkService_GetBenchmark")
            .expect("GetBenchmark is a GET");
        let parameters = benchmark["parameters"].as_array().expect("parameters");
        let band = parameters
            .iter()
            .find(|parameter| parameter["name"] == "revenueBandId")
            .expect("revenueBandId");
        assert_eq!(band["required"], true);
        let resamples = parameters
            .iter()
            .find(|parameter| parameter["name"] == "bootstrapResamples")
            .expect("bootstrapResamples");
        assert_eq!(resamples["schema"]["maximum"], 10000);
    }
}
