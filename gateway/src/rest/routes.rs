//! The route table, read from the `google.api.http` options of every method.

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MethodDescriptor, Value};

use super::template::{Binding, PathTemplate, TemplateError};

/// Where the HTTP body goes in the request message.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// No body; every field not in the path comes from the query.
    None,
    /// `body: "*"`: the body is the whole request message (minus path fields).
    Whole,
    /// `body: "field"`: the body is one field; the rest comes from the query.
    Field(FieldDescriptor),
}

/// One REST route of one RPC.
#[derive(Debug, Clone)]
pub struct Route {
    /// The RPC.
    pub method: MethodDescriptor,
    /// The HTTP verb.
    pub http_method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// Where the body goes.
    pub body: BodyRule,
    /// The response field that becomes the body, if not the whole response.
    pub response_body: Option<FieldDescriptor>,
    /// Whether body fields the request does not name are ignored rather
    /// than refused (`(metrix.common.v1.ignore_unknown_fields)`).
    pub ignore_unknown_fields: bool,
}

impl Route {
    /// The gRPC path, `/package.Service/Method`.
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.method.parent_service().full_name(), self.method.name())
    }

    /// The fully-qualified service name.
    pub fn service_name(&self) -> String {
        self.method.parent_service().full_name().to_owned()
    }
}

/// The outcome of looking a request up.
pub enum RouteMatch<'a> {
    /// A route and its path bindings.
    Found(&'a Route, Vec<Binding>),
    /// The path exists with other verbs.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// A problem in the annotations.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A template does not parse.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A rule names a field that does not exist or cannot be bound.
    #[error("{method}: {problem}")]
    Rule {
        /// The RPC.
        method: String,
        /// What is wrong.
        problem: String,
    },
    /// Two RPCs claim the same verb and path.
    #[error("{first} and {second} both claim {verb} {path}")]
    Conflict {
        /// One RPC.
        first: String,
        /// The other.
        second: String,
        /// The verb.
        verb: Method,
        /// The path.
        path: String,
    },
}

/// Every REST route, most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the routes of every service in `pool` whose package starts with
    /// `package_prefix` (such as `metrix.`).
    pub fn from_pool(pool: &DescriptorPool, package_prefix: &str) -> Result<Self, RouteError> {
        let Some(extension) = pool.get_extension_by_name("google.api.http") else {
            return Ok(Self::default());
        };
        let mut routes = Vec::new();
        for service in pool
            .services()
            .filter(|service| service.full_name().starts_with(package_prefix))
        {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    continue;
                };
                collect_rule(&method, &rule, &mut routes)?;
            }
        }
        routes.sort_by_key(|route| std::cmp::Reverse(route.template.specificity()));
        for (index, route) in routes.iter().enumerate() {
            if let Some(twin) = routes[index + 1..].iter().find(|other| {
                other.http_method == route.http_method && other.template.openapi_path() == route.template.openapi_path()
            }) {
                return Err(RouteError::Conflict {
                    first: route.method.full_name().to_owned(),
                    second: twin.method.full_name().to_owned(),
                    verb: route.http_method.clone(),
                    path: route.template.as_str().to_owned(),
                });
            }
        }
        Ok(Self { routes })
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a verb and path.
    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            if let Some(bindings) = route.template.matches(path) {
                if route.http_method == *method {
                    return RouteMatch::Found(route, bindings);
                }
                if !allowed.contains(&route.http_method) {
                    allowed.push(route.http_method.clone());
                }
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed(allowed)
        }
    }
}

/// Whether `method` is marked `(metrix.common.v1.ignore_unknown_fields) = true`.
fn ignores_unknown_fields(method: &MethodDescriptor) -> bool {
    let options = method.options();
    method
        .parent_pool()
        .get_extension_by_name("metrix.common.v1.ignore_unknown_fields")
        .filter(|extension| options.has_extension(extension))
        .is_some_and(|extension| options.get_extension(&extension).as_bool() == Some(true))
}

fn collect_rule(method: &MethodDescriptor, rule: &DynamicMessage, routes: &mut Vec<Route>) -> Result<(), RouteError> {
    let problem = |problem: String| RouteError::Rule {
        method: method.full_name().to_owned(),
        problem,
    };
    let text = |name: &str| {
        rule.get_field_by_name(name)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let verbs = [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ];
    let mut pattern = verbs
        .iter()
        .find(|(name, _)| rule.has_field_by_name(name))
        .map(|(name, verb)| (verb.clone(), text(name)));
    if pattern.is_none()
        && rule.has_field_by_name("custom")
        && let Some(Value::Message(custom)) = rule.get_field_by_name("custom").map(std::borrow::Cow::into_owned)
    {
        let kind = custom
            .get_field_by_name("kind")
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let path = custom
            .get_field_by_name("path")
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let verb = Method::from_bytes(kind.as_bytes())
            .map_err(|_| problem(format!("custom verb {kind:?} is not an HTTP method")))?;
        pattern = Some((verb, path));
    }
    if let Some((http_method, path)) = pattern {
        let template = PathTemplate::parse(&path)?;
        let input = method.input();
        for field_path in template.variables() {
            let field = resolve_path(&input, &field_path)
                .ok_or_else(|| problem(format!("path variable {} is not a field", field_path.join("."))))?;
            if field.is_list() || field.is_map() || matches!(field.kind(), prost_reflect::Kind::Message(_)) {
                return Err(problem(format!(
                    "path variable {} must be a scalar field",
                    field_path.join(".")
                )));
            }
        }
        let body_text = text("body");
        let body = match body_text.as_str() {
            "" => BodyRule::None,
            "*" => BodyRule::Whole,
            name => BodyRule::Field(
                input
                    .get_field_by_name(name)
                    .ok_or_else(|| problem(format!("body field {name} does not exist")))?,
            ),
        };
        let response_body = match text("response_body").as_str() {
            "" => None,
            name => Some(
                method
                    .output()
                    .get_field_by_name(name)
                    .ok_or_else(|| problem(format!("response_body field {name} does not exist")))?,
            ),
        };
        routes.push(Route {
            method: method.clone(),
            http_method,
            template,
            body,
            response_body,
            ignore_unknown_fields: ignores_unknown_fields(method),
        });
    }
    if let Some(Value::List(bindings)) = rule
        .get_field_by_name("additional_bindings")
        .map(std::borrow::Cow::into_owned)
    {
        for binding in bindings {
            if let Value::Message(binding) = binding {
                collect_rule(method, &binding, routes)?;
            }
        }
    }
    Ok(())
}

/// The field at a dotted path, through singular message fields.
pub fn resolve_path(message: &prost_reflect::MessageDescriptor, path: &[String]) -> Option<FieldDescriptor> {
    let (last, parents) = path.split_last()?;
    let mut current = message.clone();
    for name in parents {
        let field = current.get_field_by_name(name)?;
        match field.kind() {
            prost_reflect::Kind::Message(next) if !field.is_list() && !field.is_map() => current = next,
            _ => return None,
        }
    }
    current.get_field_by_name(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
        RouteTable::from_pool(&pool, "metrix.").expect("the annotations are valid")
    }

    #[test]
    fn every_annotated_rpc_has_a_route() {
        let table = table();
        let paths: Vec<String> = table
            .routes()
            .iter()
            .map(|route| format!("{} {}", route.http_method, route.template.as_str()))
            .collect();
        for expected in [
            "POST /v1/auth:signUp",
            "GET /v1/users/me",
            "GET /.well-known/jwks.json",
            "GET /v1/auth/jwks",
            "DELETE /v1/api-keys/{api_key_id}",
        ] {
            assert!(paths.iter().any(|path| path == expected), "{expected} missing");
        }
        assert!(
            !table.routes().iter().any(|route| route.method.name() == "VerifyApiKey"),
            "internal RPCs have no route"
        );
    }

    #[test]
    fn literal_paths_win_over_variables() {
        let table = table();
        match table.find(&Method::GET, "/v1/users/me") {
            RouteMatch::Found(route, bindings) => {
                assert_eq!(route.method.name(), "GetCurrentUser");
                assert!(bindings.is_empty());
            }
            _ => panic!("no route for /v1/users/me"),
        }
        assert!(matches!(
            table.find(&Method::PUT, "/v1/users/me"),
            RouteMatch::MethodNotAllowed(_)
        ));
        assert!(matches!(table.find(&Method::GET, "/v1/nothing"), RouteMatch::NotFound));
    }
}
