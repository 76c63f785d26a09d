//! Property-based fuzzing of `google.api.http` path templates
//! (`rest::template`) and of the route table that matches request paths
//! with them (`rest::routes`).
//!
//! What the properties assert:
//! - parsing any text, and matching any path against any template that
//!   parsed, never panics;
//! - a template built from the grammar parses, and matching the path
//!   expanded from it binds exactly the values it was expanded with
//!   (`match(expand(vars)) == vars`), however the values are escaped;
//! - percent-decoding accepts exactly the well-formed escapes (`%` and two
//!   hex digits) of UTF-8 text, and inverts percent-encoding;
//! - the route table never panics on any path, and every route it finds
//!   matches the path with the bindings it returned.
//!
//! CI runs a bounded number of cases; set `PROPTEST_CASES` for a long run
//! (`docs/security.md`, "Fuzzing").

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use http::Method;
use metrix_gateway::rest::template::{PathTemplate, percent_decode};
use metrix_gateway::rest::{RouteMatch, RouteTable};
use proptest::prelude::*;
use proptest::test_runner::Config;
use prost_reflect::DescriptorPool;

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

/// A segment of a template as generated, so that its expansion is known.
#[derive(Debug, Clone)]
enum SegmentSpec {
    Literal(String),
    /// `*`
    Any,
    /// `**`, only ever last.
    Rest,
    /// `{field.path}` (an empty pattern) or `{field.path=pattern}`.
    Variable {
        field_path: Vec<String>,
        pattern: Vec<SegmentSpec>,
    },
}

#[derive(Debug, Clone)]
struct TemplateSpec {
    segments: Vec<SegmentSpec>,
    verb: Option<String>,
}

impl TemplateSpec {
    fn text(&self) -> String {
        let mut text = String::new();
        for segment in &self.segments {
            text.push('/');
            text.push_str(&segment_text(segment));
        }
        if let Some(verb) = &self.verb {
            text.push(':');
            text.push_str(verb);
        }
        text
    }

    /// How many fills the template needs: one per `*` and `**`, bound or not.
    fn holes(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| match segment {
                SegmentSpec::Literal(_) => 0,
                SegmentSpec::Any | SegmentSpec::Rest => 1,
                SegmentSpec::Variable { pattern, .. } if pattern.is_empty() => 1,
                SegmentSpec::Variable { pattern, .. } => pattern
                    .iter()
                    .filter(|segment| !matches!(segment, SegmentSpec::Literal(_)))
                    .count(),
            })
            .sum()
    }
}

fn segment_text(segment: &SegmentSpec) -> String {
    match segment {
        SegmentSpec::Literal(literal) => literal.clone(),
        SegmentSpec::Any => "*".to_owned(),
        SegmentSpec::Rest => "**".to_owned(),
        SegmentSpec::Variable { field_path, pattern } => {
            let mut text = format!("{{{}", field_path.join("."));
            if !pattern.is_empty() {
                text.push('=');
                text.push_str(&pattern.iter().map(segment_text).collect::<Vec<_>>().join("/"));
            }
            text.push('}');
            text
        }
    }
}

fn literal() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~-]{1,8}"
}

fn field_path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[A-Za-z0-9_]{1,8}", 1..=3)
}

fn inner_segment() -> impl Strategy<Value = SegmentSpec> {
    prop_oneof![literal().prop_map(SegmentSpec::Literal), Just(SegmentSpec::Any)]
}

/// Any template of the grammar: literals, `*`, variables with or without a
/// pattern, an optional trailing `**` (bare or ending the last variable's
/// pattern) and an optional verb.
fn template_spec() -> impl Strategy<Value = TemplateSpec> {
    let segment = prop_oneof![
        3 => literal().prop_map(SegmentSpec::Literal),
        1 => Just(SegmentSpec::Any),
        3 => (field_path(), prop::collection::vec(inner_segment(), 0..=3))
            .prop_map(|(field_path, pattern)| SegmentSpec::Variable { field_path, pattern }),
    ];
    (
        prop::collection::vec(segment, 1..=5),
        0..3_u8,
        field_path(),
        prop::collection::vec(inner_segment(), 0..=2),
        prop::option::of(literal()),
    )
        .prop_map(|(mut segments, rest, rest_path, rest_prefix, verb)| {
            match rest {
                // A bare `**` last.
                1 => segments.push(SegmentSpec::Rest),
                // A variable ending in `**` last.
                2 => {
                    let mut pattern = rest_prefix;
                    pattern.push(SegmentSpec::Rest);
                    segments.push(SegmentSpec::Variable {
                        field_path: rest_path,
                        pattern,
                    });
                }
                _ => {}
            }
            TemplateSpec { segments, verb }
        })
}

/// One character of a path segment, written raw or escaped; `/` and `%`
/// are always escaped, since raw they mean something else.
#[derive(Debug, Clone)]
struct Written {
    text: String,
    escape: bool,
    lowercase_hex: bool,
}

fn escape_into(out: &mut String, character: char, lowercase_hex: bool) {
    let mut buffer = [0; 4];
    for byte in character.encode_utf8(&mut buffer).bytes() {
        if lowercase_hex {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// The path text of a value, escaped as the case says.
fn write(written: &Written) -> String {
    let mut out = String::new();
    for (index, character) in written.text.chars().enumerate() {
        let must = matches!(character, '/' | '%');
        // Escape about half of the others, decided by position and case.
        let chosen = written.escape && index % 2 == 0;
        if must || chosen {
            escape_into(&mut out, character, written.lowercase_hex);
        } else {
            out.push(character);
        }
    }
    out
}

/// Text for one segment: anything but empty, including NUL, `:`, `?`,
/// spaces and characters outside ASCII.
fn fill_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{1,10}",
        "[ -~]{1,10}",
        prop::collection::vec(any::<char>(), 1..8).prop_map(String::from_iter),
    ]
}

fn fill() -> impl Strategy<Value = Written> {
    (fill_text(), any::<bool>(), any::<bool>()).prop_map(|(text, escape, lowercase_hex)| Written {
        text,
        escape,
        lowercase_hex,
    })
}

/// What `**` stands for: segments of text.
fn rest_fill() -> impl Strategy<Value = Vec<Written>> {
    prop::collection::vec(fill(), 0..=3)
}

#[derive(Debug, Clone)]
struct Expansion {
    path: String,
    /// Each variable's field path and the value it must bind.
    bindings: Vec<(Vec<String>, String)>,
}

/// Writes the path of `spec` with `fills` (one per hole, in order) and the
/// values its variables must bind.
fn expand(spec: &TemplateSpec, fills: &[Written], rest: &[Written]) -> Expansion {
    let mut fills = fills.iter();
    let mut parts: Vec<String> = Vec::new();
    let mut bindings = Vec::new();
    let mut expand_segment = |segment: &SegmentSpec, parts: &mut Vec<String>, values: &mut Vec<String>| match segment {
        SegmentSpec::Literal(literal) => {
            parts.push(literal.clone());
            values.push(literal.clone());
        }
        SegmentSpec::Any => {
            let written = fills.next().expect("one fill per hole");
            parts.push(write(written));
            values.push(written.text.clone());
        }
        SegmentSpec::Rest => {
            let _ = fills.next();
            for written in rest {
                parts.push(write(written));
                values.push(written.text.clone());
            }
        }
        SegmentSpec::Variable { .. } => unreachable!("variables do not nest"),
    };
    for segment in &spec.segments {
        match segment {
            SegmentSpec::Variable { field_path, pattern } => {
                let mut values = Vec::new();
                if pattern.is_empty() {
                    expand_segment(&SegmentSpec::Any, &mut parts, &mut values);
                } else {
                    for inner in pattern {
                        expand_segment(inner, &mut parts, &mut values);
                    }
                }
                bindings.push((field_path.clone(), values.join("/")));
            }
            other => expand_segment(other, &mut parts, &mut Vec::new()),
        }
    }
    let mut path = format!("/{}", parts.join("/"));
    if let Some(verb) = &spec.verb {
        path.push(':');
        path.push_str(verb);
    }
    Expansion { path, bindings }
}

/// The reference decoder: `%` must be followed by two ASCII hex digits,
/// and the bytes must be UTF-8.
fn strict_percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let high = *bytes.get(index + 1)?;
            let low = *bytes.get(index + 2)?;
            let value = |digit: u8| (digit as char).to_digit(16);
            decoded.push(u8::try_from(value(high)? * 16 + value(low)?).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

fn route_table() -> RouteTable {
    let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
    RouteTable::from_pool(&pool, "metrix.").expect("the annotations are valid")
}

fn http_method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ])
}

/// Paths near the real routes (their literals, separators, escapes) and
/// arbitrary text.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just(":".to_owned()),
        Just("%".to_owned()),
        Just("%2F".to_owned()),
        Just("%00".to_owned()),
        Just("%+1".to_owned()),
        Just("%e2%82".to_owned()),
        prop::sample::select(vec![
            "v1",
            "users",
            "me",
            "companies",
            "kpis",
            "events",
            "reports",
            "download",
            "benchmarks",
            "timeSeries",
            "auth",
            "signUp",
            "updateRole",
            "api-keys",
            "batch",
            ".well-known",
            "jwks.json",
            "*",
            "**",
            "{",
            "}",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,6}",
        prop::collection::vec(any::<char>(), 0..4).prop_map(String::from_iter),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(cases(40_000))]

    #[test]
    fn a_template_of_the_grammar_binds_exactly_what_it_was_expanded_with(
        (spec, fills, rest) in template_spec().prop_flat_map(|spec| {
            let holes = spec.holes();
            (Just(spec), prop::collection::vec(fill(), holes), rest_fill())
        }),
    ) {
        let text = spec.text();
        let template = PathTemplate::parse(&text);
        prop_assert!(template.is_ok(), "{text:?} is refused: {:?}", template.err());
        let template = template.expect("checked above");
        let expansion = expand(&spec, &fills, &rest);
        // A variable binds only a non-empty value: `{x=**}` with nothing
        // after it does not match, by design.
        let empty_binding = expansion.bindings.iter().any(|(_, value)| value.is_empty());
        let bound = template.matches(&expansion.path).map(|bindings| {
            bindings
                .into_iter()
                .map(|binding| (binding.field_path, binding.value))
                .collect::<Vec<_>>()
        });
        if empty_binding {
            prop_assert_eq!(bound, None, "{} matched {:?}", text, expansion.path);
        } else {
            prop_assert_eq!(bound, Some(expansion.bindings.clone()), "{} against {:?}", text, expansion.path);
        }
        let variables: Vec<Vec<String>> = expansion.bindings.into_iter().map(|(field_path, _)| field_path).collect();
        prop_assert_eq!(template.variables(), variables);
        prop_assert_eq!(template.as_str(), text.as_str());
    }

    #[test]
    fn parsing_and_matching_anything_never_panics(
        text in prop_oneof![
            "[/{}=*.:a-z_]{0,30}",
            "/[ -~]{0,30}",
            prop::collection::vec(any::<char>(), 0..30).prop_map(String::from_iter),
        ],
        paths in prop::collection::vec(hostile_path(), 1..4),
    ) {
        if let Ok(template) = PathTemplate::parse(&text) {
            prop_assert!(text.starts_with('/'));
            let _ = template.openapi_path();
            let _ = template.specificity();
            for path in &paths {
                if let Some(bindings) = template.matches(path) {
                    prop_assert!(bindings.iter().all(|binding| !binding.value.is_empty()));
                    prop_assert_eq!(bindings.len(), template.variables().len());
                }
            }
        }
    }

    #[test]
    fn percent_decoding_accepts_exactly_the_well_formed_escapes(
        text in prop_oneof![
            "[%0-9a-fA-FgG+ -]{0,16}",
            prop::collection::vec(prop_oneof![
                Just("%".to_owned()),
                "%[0-9a-fA-F]{2}",
                "[ -~]{1,3}",
                prop::collection::vec(any::<char>(), 1..3).prop_map(String::from_iter),
            ], 0..8).prop_map(|pieces| pieces.concat()),
        ],
    ) {
        prop_assert_eq!(percent_decode(&text), strict_percent_decode(&text), "{:?}", text);
    }

    #[test]
    fn percent_decoding_inverts_encoding(value in fill()) {
        prop_assert_eq!(percent_decode(&write(&value)), Some(value.text.clone()));
    }

    #[test]
    fn the_route_table_finds_only_routes_that_match(method in http_method(), path in hostile_path()) {
        ROUTES.with(|table| -> Result<(), TestCaseError> {
        match table.find(&method, &path) {
            RouteMatch::Found(route, bindings) => {
                prop_assert_eq!(&route.http_method, &method);
                prop_assert_eq!(route.template.matches(&path), Some(bindings));
            }
            RouteMatch::MethodNotAllowed(allowed) => {
                prop_assert!(!allowed.is_empty());
                prop_assert!(!allowed.contains(&method));
                prop_assert!(table.routes().iter().any(|route| route.template.matches(&path).is_some()));
            }
            RouteMatch::NotFound => {
                prop_assert!(table.routes().iter().all(|route| route.template.matches(&path).is_none()));
            }
        }
        Ok(())
        })?;
    }
}

thread_local! {
    static ROUTES: RouteTable = route_table();
}

#[test]
fn the_real_routes_bind_their_variables_round_trip() {
    // Each real route with a variable, expanded with awkward values, finds
    // itself and binds them back.
    let table = route_table();
    for route in table.routes() {
        for value in ["c-1", "a/b", "a:b", "100%", "über", " x ", "a?b#c"] {
            let mut encoded = String::new();
            for character in value.chars() {
                if character.is_ascii_alphanumeric() || "-._~".contains(character) {
                    encoded.push(character);
                } else {
                    escape_into(&mut encoded, character, false);
                }
            }
            let path = route
                .template
                .openapi_path()
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        encoded.as_str()
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let path = match route.template.openapi_path().rsplit_once('}') {
                // A verb after the last variable survives the split above
                // only when the variable is not last; put it back.
                Some((_, after)) if after.starts_with(':') => format!("{path}{after}"),
                _ => path,
            };
            let RouteMatch::Found(found, bindings) = table.find(&route.http_method, &path) else {
                panic!("{} {path} finds no route", route.http_method);
            };
            assert_eq!(found.method.full_name(), route.method.full_name(), "{path}");
            assert_eq!(bindings.len(), route.template.variables().len(), "{path}");
            assert!(
                bindings.iter().all(|binding| binding.value == value),
                "{path}: {bindings:?}"
            );
        }
    }
}

/// Found by the strictness property: `%+9` once decoded to a TAB, because
/// `u8::from_str_radix` takes a leading `+`.
#[test]
fn a_plus_sign_is_not_a_hex_digit() {
    assert_eq!(percent_decode("%+9"), None);
    assert_eq!(percent_decode("a%+0b"), None);
    assert_eq!(strict_percent_decode("%+9"), None);
}
