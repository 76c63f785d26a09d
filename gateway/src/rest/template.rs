//! `google.api.http` path templates: parsing and matching.
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! A variable without a pattern matches one segment (`{company_id}` is
//! `{company_id=*}`); `**` matches the rest of the path and may only come
//! last.

use std::fmt;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    verb: Option<String>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: one segment.
    Any,
    /// `**`: every remaining segment.
    Rest,
    /// `{field.path=pattern}`.
    Variable {
        field_path: Vec<String>,
        pattern: Vec<Segment>,
    },
}

/// Why a template is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub problem: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "path template {:?}: {}", self.template, self.problem)
    }
}

impl std::error::Error for TemplateError {}

/// A variable bound by a match: its field path and its (decoded) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The field path, such as `["company", "company_id"]`.
    pub field_path: Vec<String>,
    /// The matched text, percent-decoded.
    pub value: String,
}

impl PathTemplate {
    /// Parses a template such as `/v1/companies/{company_id}:archive`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let error = |problem| TemplateError {
            template: text.to_owned(),
            problem,
        };
        let Some(body) = text.strip_prefix('/') else {
            return Err(error("must start with /"));
        };
        // The verb follows the last `:` outside braces and after the last `/`.
        let (path, verb) = split_verb(body);
        let segments = parse_segments(path, false).map_err(error)?;
        if segments.is_empty() {
            return Err(error("has no segments"));
        }
        let rest_positions: Vec<usize> = flatten(&segments)
            .iter()
            .enumerate()
            .filter(|(_, segment)| matches!(segment, Segment::Rest))
            .map(|(index, _)| index)
            .collect();
        if rest_positions
            .iter()
            .any(|position| *position + 1 != flatten(&segments).len())
        {
            return Err(error("** may only be the last segment"));
        }
        if verb.is_some_and(str::is_empty) {
            return Err(error("has an empty verb"));
        }
        Ok(Self {
            segments,
            verb: verb.map(str::to_owned),
            text: text.to_owned(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field paths of every variable, in order.
    pub fn variables(&self) -> Vec<Vec<String>> {
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Variable { field_path, .. } => Some(field_path.clone()),
                _ => None,
            })
            .collect()
    }

    /// How specific the template is: literal segments count most, so
    /// `/v1/users/me` wins over `/v1/users/{user_id}`.
    pub fn specificity(&self) -> (usize, usize, bool) {
        let flat = flatten(&self.segments);
        let literals = flat
            .iter()
            .filter(|segment| matches!(segment, Segment::Literal(_)))
            .count();
        let exact = flat.iter().filter(|segment| !matches!(segment, Segment::Rest)).count();
        (literals, exact, self.verb.is_some())
    }

    /// The name OpenAPI gives the variable bound to `field_path`: its last
    /// field (`company_id` for `company.company_id`), or the whole path
    /// joined by `_` when another variable of the template ends in the same
    /// field. Not the dotted path: clients and fuzzers that fill a path
    /// template by name (Python's `str.format`, for one) read a dot as an
    /// attribute. The gateway binds variables by position, so the name is
    /// the document's alone; `x-field-path` on the parameter says which
    /// field it binds.
    pub fn openapi_name(&self, field_path: &[String]) -> String {
        let Some(last) = field_path.last() else {
            return String::new();
        };
        let shared = self
            .variables()
            .iter()
            .filter(|other| other.last() == Some(last))
            .count();
        if shared > 1 { field_path.join("_") } else { last.clone() }
    }

    /// The template in OpenAPI's form: `/v1/companies/{company_id}` for
    /// `/v1/companies/{company.company_id}`, with patterns dropped.
    pub fn openapi_path(&self) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            match segment {
                Segment::Literal(literal) => path.push_str(literal),
                Segment::Any => path.push('*'),
                Segment::Rest => path.push_str("**"),
                Segment::Variable { field_path, .. } => {
                    path.push('{');
                    path.push_str(&self.openapi_name(field_path));
                    path.push('}');
                }
            }
        }
        if let Some(verb) = &self.verb {
            path.push(':');
            path.push_str(verb);
        }
        path
    }

    /// Matches a request path (without the query), binding the variables.
    pub fn matches(&self, path: &str) -> Option<Vec<Binding>> {
        let body = path.strip_prefix('/')?;
        let body = match &self.verb {
            Some(verb) => body.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => body,
        };
        let parts: Vec<&str> = body.split('/').collect();
        let mut bindings = Vec::new();
        let mut position = 0;
        for segment in &self.segments {
            match segment {
                Segment::Variable { field_path, pattern } => {
                    let start = position;
                    position = match_pattern(pattern, &parts, position)?;
                    let value = parts[start..position]
                        .iter()
                        .map(|part| percent_decode(part))
                        .collect::<Option<Vec<_>>>()?
                        .join("/");
                    if value.is_empty() {
                        return None;
                    }
                    bindings.push(Binding {
                        field_path: field_path.clone(),
                        value,
                    });
                }
                other => position = match_pattern(std::slice::from_ref(other), &parts, position)?,
            }
        }
        (position == parts.len()).then_some(bindings)
    }
}

fn split_verb(body: &str) -> (&str, Option<&str>) {
    let last_slash = body.rfind('/').map_or(0, |index| index + 1);
    let last_brace = body.rfind('}').map_or(0, |index| index + 1);
    let search_from = last_slash.max(last_brace);
    match body[search_from..].rfind(':') {
        Some(offset) => (&body[..search_from + offset], Some(&body[search_from + offset + 1..])),
        None => (body, None),
    }
}

fn parse_segments(text: &str, inside_variable: bool) -> Result<Vec<Segment>, &'static str> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        if rest.starts_with('{') {
            if inside_variable {
                return Err("variables cannot nest");
            }
            let close = rest.find('}').ok_or("has an unclosed {")?;
            let inner = &rest[1..close];
            let (field_path, pattern) = match inner.split_once('=') {
                Some((path, pattern)) => (path, parse_segments(pattern, true)?),
                None => (inner, vec![Segment::Any]),
            };
            let field_path: Vec<String> = field_path.split('.').map(str::to_owned).collect();
            if field_path.iter().any(|part| {
                part.is_empty()
                    || !part
                        .chars()
                        .all(|character| character.is_ascii_alphanumeric() || character == '_')
            }) {
                return Err("has a variable that is not a field path");
            }
            segments.push(Segment::Variable { field_path, pattern });
            rest = &rest[close + 1..];
        } else {
            let end = rest.find('/').unwrap_or(rest.len());
            let literal = &rest[..end];
            segments.push(match literal {
                "" => return Err("has an empty segment"),
                "*" => Segment::Any,
                "**" => Segment::Rest,
                _ if literal.contains(['{', '}', '=']) => return Err("has a malformed segment"),
                _ => Segment::Literal(literal.to_owned()),
            });
            rest = &rest[end..];
        }
        match rest.strip_prefix('/') {
            Some(next) => rest = next,
            None if rest.is_empty() => return Ok(segments),
            None => return Err("has text after a variable"),
        }
    }
}

fn flatten(segments: &[Segment]) -> Vec<Segment> {
    segments
        .iter()
        .flat_map(|segment| match segment {
            Segment::Variable { pattern, .. } => pattern.clone(),
            other => vec![other.clone()],
        })
        .collect()
}

/// Matches `pattern` (no variables) against `parts` from `position`; the
/// position after the match.
fn match_pattern(pattern: &[Segment], parts: &[&str], mut position: usize) -> Option<usize> {
    for segment in pattern {
        match segment {
            Segment::Literal(literal) => {
                if parts.get(position)? != literal {
                    return None;
                }
                position += 1;
            }
            Segment::Any => {
                if parts.get(position)?.is_empty() {
                    return None;
                }
                position += 1;
            }
            Segment::Rest => position = parts.len(),
            Segment::Variable { .. } => return None,
        }
    }
    Some(position)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or invalid UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            // Exactly two hex digits: `from_str_radix` alone would take `+9`.
            if !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bound(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(template)
            .expect("valid template")
            .matches(path)
            .map(|bindings| {
                bindings
                    .into_iter()
                    .map(|binding| (binding.field_path.join("."), binding.value))
                    .collect()
            })
    }

    #[test]
    fn literals_variables_and_verbs_match() {
        assert_eq!(bound("/v1/auth:signUp", "/v1/auth:signUp"), Some(vec![]));
        assert_eq!(bound("/v1/auth:signUp", "/v1/auth:signIn"), None);
        assert_eq!(bound("/v1/auth:signUp", "/v1/auth"), None);
        assert_eq!(
            bound("/v1/companies/{company_id}", "/v1/companies/c-1"),
            Some(vec![("company_id".into(), "c-1".into())])
        );
        assert_eq!(bound("/v1/companies/{company_id}", "/v1/companies/"), None);
        assert_eq!(bound("/v1/companies/{company_id}", "/v1/companies/a/b"), None);
        assert_eq!(
            bound("/v1/users/{user_id}:updateRole", "/v1/users/u%201:updateRole"),
            Some(vec![("user_id".into(), "u 1".into())])
        );
        assert_eq!(
            bound("/v1/companies/{company.company_id}", "/v1/companies/c-9"),
            Some(vec![("company.company_id".into(), "c-9".into())])
        );
        assert_eq!(bound("/.well-known/jwks.json", "/.well-known/jwks.json"), Some(vec![]));
    }

    #[test]
    fn patterns_span_segments() {
        assert_eq!(
            bound("/v1/{name=projects/*/reports/*}", "/v1/projects/p/reports/r"),
            Some(vec![("name".into(), "projects/p/reports/r".into())])
        );
        assert_eq!(
            bound("/v1/files/{path=**}", "/v1/files/a/b/c"),
            Some(vec![("path".into(), "a/b/c".into())])
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        for template in [
            "v1/x",
            "/v1/{a",
            "/v1/{a{b}}",
            "/v1//x",
            "/v1/**/x",
            "/v1/x:",
            "/v1/{a b}",
        ] {
            assert!(PathTemplate::parse(template).is_err(), "{template}");
        }
    }

    #[test]
    fn specific_templates_rank_higher() {
        let me = PathTemplate::parse("/v1/users/me").unwrap();
        let any = PathTemplate::parse("/v1/users/{user_id}").unwrap();
        assert!(me.specificity() > any.specificity());
        assert_eq!(any.openapi_path(), "/v1/users/{user_id}");
        assert_eq!(
            PathTemplate::parse("/v1/companies/{company.company_id}")
                .unwrap()
                .openapi_path(),
            "/v1/companies/{company_id}"
        );
        assert_eq!(
            PathTemplate::parse("/v1/{a.id}/{b.id}").unwrap().openapi_path(),
            "/v1/{a_id}/{b_id}"
        );
        assert_eq!(
            PathTemplate::parse("/v1/events:batch").unwrap().openapi_path(),
            "/v1/events:batch"
        );
    }

    proptest! {
        #[test]
        fn a_bound_value_round_trips(value in "[A-Za-z0-9._~-]{1,30}") {
            prop_assert_eq!(bound("/v1/reports/{report_id}/download", &format!("/v1/reports/{value}/download")), Some(vec![("report_id".to_owned(), value)]));
        }

        #[test]
        fn matching_never_panics(path in "/[a-z/:%{}.]{0,40}") {
            let template = PathTemplate::parse("/v1/{a}/x/{b=**}").unwrap();
            let _ = template.matches(&path);
        }
    }
}
