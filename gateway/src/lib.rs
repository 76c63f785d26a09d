//! The Metrix edge: one ingress for everything outside the mesh.
//!
//! Native gRPC passes through to the upstream serving the service;
//! grpc-web is translated in front of that; REST JSON is transcoded
//! generically from the `google.api.http` annotations in the descriptor set,
//! and an OpenAPI document is generated from the same descriptors. Every
//! call gets CORS, security headers, a body limit, a timeout, a request id,
//! the caller's address and user agent as metadata, rate limits and metrics.
//! The gateway verifies nothing itself: credentials pass through, and every
//! service checks them.

pub mod console;
pub mod edge;
pub mod errors;
pub mod grpc;
pub mod openapi;
pub mod rest;
pub mod settings;
pub mod upstreams;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use metrix_core::cache::{Backends, RateLimiter};
use metrix_core::server::{Drain, RunningServer, ServerError, Shutdown};
use prost_reflect::DescriptorPool;
use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer as _;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::edge::Protocol;
use crate::rest::RouteTable;
pub use crate::settings::GatewaySettings;
use crate::upstreams::Upstreams;

/// What every request handler of the gateway shares.
pub struct Edge {
    /// The settings.
    pub settings: GatewaySettings,
    /// Every contract, for transcoding and error details.
    pub pool: DescriptorPool,
    /// The REST routes.
    pub routes: RouteTable,
    /// The services behind the gateway.
    pub upstreams: Upstreams,
    /// The gRPC paths of unary methods (they get the edge's timeout).
    pub unary_methods: HashSet<String>,
    /// The gRPC paths of every method the gateway serves (metric labels).
    pub known_methods: HashSet<String>,
    /// Rate limiting (Redis or in-process).
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// The OpenAPI document, generated once.
    pub openapi: serde_json::Value,
}

/// A failure to start the gateway.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The descriptor set does not decode.
    #[error("descriptor set")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// An annotation is invalid.
    #[error("http annotations")]
    Routes(#[from] rest::routes::RouteError),
    /// An upstream address is invalid.
    #[error("upstream address")]
    Upstream(#[from] tonic::transport::Error),
    /// Reflection could not be built.
    #[error("reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A CORS origin is not a valid header value.
    #[error("cors origin {0:?} is not a valid origin")]
    CorsOrigin(String),
    /// The server could not start.
    #[error("gateway server")]
    Server(#[from] ServerError),
}

/// A running gateway.
pub struct GatewayServer {
    server: RunningServer,
}

impl GatewayServer {
    /// Binds `settings.listen_addr` and serves until `shutdown`.
    pub async fn build(settings: GatewaySettings, backends: Backends, shutdown: Shutdown) -> Result<Self, BuildError> {
        let pool = DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET)?;
        let upstreams = Upstreams::new(&settings.upstreams)?;
        let served = |service: &str| upstreams.for_service(service).is_some();
        let routes = RouteTable::from_pool(&pool, "metrix.")?;
        let mut unary_methods = HashSet::new();
        let mut known_methods: HashSet<String> = metrix_core::server::STANDARD_METHODS
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut served_services = Vec::new();
        for service in pool
            .services()
            .filter(|service| service.full_name().starts_with("metrix.") && served(service.full_name()))
        {
            served_services.push(service.full_name().to_owned());
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                if !method.is_server_streaming() && !method.is_client_streaming() {
                    unary_methods.insert(path.clone());
                }
                known_methods.insert(path);
            }
        }
        let openapi = openapi::document(&pool, &routes);
        let cors = cors_layer(&settings.cors_origins)?;
        let listen_addr = settings.listen_addr;
        let grace = settings.common.shutdown_grace;
        let drain_delay = settings.common.drain_delay;
        let edge = Arc::new(Edge {
            settings,
            pool,
            routes,
            upstreams,
            unary_methods,
            known_methods,
            rate_limiter: backends.rate_limiter.clone(),
            openapi,
        });

        // The gateway's own gRPC: health, and reflection over every served
        // contract so `grpcurl` works against the gateway alone.
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let mut reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(metrix_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(metrix_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let advertised = served_services.iter().map(String::as_str).chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        for service in advertised {
            reflection_v1 = reflection_v1.with_service_name(service);
            reflection_v1alpha = reflection_v1alpha.with_service_name(service);
        }
        let local_grpc = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1.build_v1()?)
            .add_service(reflection_v1alpha.build_v1alpha()?)
            .into_axum_router();

        let console_index = match &edge.settings.console_dir {
            Some(folder) => console::Source::Folder(folder.clone()),
            None => console::Source::Embedded,
        };
        let console_assets = console_index.clone();
        let readiness = edge.clone();
        let documents = edge.clone();
        let fallback = edge.clone();
        let router = local_grpc
            .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
            .route(
                "/metrics",
                get(|| async { metrix_core::telemetry::prometheus().render() }),
            )
            .route("/readyz", get(move || readyz(readiness.clone())))
            .route(
                "/openapi.json",
                get(move || std::future::ready(Json(documents.openapi.clone()))),
            )
            .route(
                "/",
                get(move |request: Request| console::index(console_index.clone(), request)),
            )
            .route(
                "/assets/{*name}",
                get(move |request: Request| console::asset(console_assets.clone(), request)),
            )
            .route("/docs", get(|| async { Html(openapi::DOCS_PAGE) }))
            .route(
                "/docs/app.js",
                get(|| async {
                    (
                        [(http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                        openapi::DOCS_SCRIPT,
                    )
                }),
            )
            .route(
                "/docs/style.css",
                get(|| async {
                    (
                        [(http::header::CONTENT_TYPE, "text/css; charset=utf-8")],
                        openapi::DOCS_STYLE,
                    )
                }),
            )
            .fallback(move |request: Request| dispatch(fallback.clone(), request))
            .layer(axum::middleware::from_fn_with_state(edge.clone(), edge::bound_body))
            .layer(axum::middleware::from_fn_with_state(edge.clone(), edge::observe));
        // tonic-web refuses every HTTP/1 request that is not grpc-web, so
        // only grpc-web goes through it; REST and native gRPC go straight in.
        let grpc_web = tonic_web::GrpcWebLayer::new().layer(router.clone());
        let router = router
            .layer(axum::middleware::from_fn_with_state(grpc_web, translate_grpc_web))
            .layer(axum::middleware::from_fn_with_state(edge.clone(), edge::rate_limit))
            .layer(axum::middleware::from_fn_with_state(edge.clone(), edge::prepare))
            .layer(cors)
            .layer(axum::middleware::from_fn_with_state(
                edge.clone(),
                edge::refuse_foreign_preflight,
            ))
            .layer(axum::middleware::from_fn(metrix_core::server::assign_request_id));

        let listener = TcpListener::bind(listen_addr)
            .await
            .map_err(|source| ServerError::Bind {
                address: listen_addr,
                source,
            })?;
        metrix_core::telemetry::prometheus();
        let upstreams: Vec<(&str, &str)> = edge
            .settings
            .upstreams
            .iter()
            .map(|upstream| (upstream.name, upstream.url.as_str()))
            .collect();
        let drain = Drain {
            health: health_reporter,
            services: Vec::new(),
            delay: drain_delay,
            grace,
        };
        spawn_upstream_health(
            edge.clone(),
            drain.health.clone(),
            served_services.clone(),
            shutdown.clone(),
        );
        let server = RunningServer::serve("gateway", listener, router, shutdown, drain).await;
        tracing::info!(address = %server.local_addr(), ?upstreams, "gateway serving rest, grpc-web and grpc");
        Ok(Self { server })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until the shutdown completes.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        self.server.run_until_stopped().await
    }
}

/// Sends grpc-web requests through the translation, everything else on.
async fn translate_grpc_web(
    axum::extract::State(grpc_web): axum::extract::State<tonic_web::GrpcWebService<axum::Router>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if Protocol::of(request.headers()) != Protocol::GrpcWeb {
        return next.run(request).await;
    }
    match tower::ServiceExt::oneshot(grpc_web, request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(infallible) => match infallible {},
    }
}

/// gRPC (native, or grpc-web once translated) to the proxy; the rest is REST.
async fn dispatch(edge: Arc<Edge>, request: Request) -> Response {
    match Protocol::of(request.headers()) {
        Protocol::Grpc | Protocol::GrpcWeb => grpc::proxy(edge, request).await,
        Protocol::Rest => rest::handler::handle(edge, request).await,
    }
}

/// How often the gateway asks its upstreams how each routed service is.
const UPSTREAM_HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// The gateway's `grpc.health.v1` answers for every service it routes with
/// that service's own health at its upstream (NOT_SERVING while it cannot be
/// reached), checked every two seconds, so a client or load balancer asking
/// the gateway about `metrix.metrics.v1.MetricsService` learns whether it
/// would be served. Stops on shutdown, when the drain reports NOT_SERVING.
fn spawn_upstream_health(
    edge: Arc<Edge>,
    health: tonic_health::server::HealthReporter,
    services: Vec<String>,
    shutdown: Shutdown,
) {
    use tonic_health::ServingStatus;
    tokio::spawn(async move {
        let stopped = shutdown.triggered();
        tokio::pin!(stopped);
        let mut tick = tokio::time::interval(UPSTREAM_HEALTH_INTERVAL);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                _ = tick.tick() => {}
            }
            for service in &services {
                let serving = match edge.upstreams.for_service(service) {
                    Some((_, channel)) => {
                        let mut client = HealthClient::new(channel);
                        let request = HealthCheckRequest {
                            service: service.clone(),
                        };
                        matches!(
                            tokio::time::timeout(Duration::from_secs(2), client.check(request)).await,
                            Ok(Ok(answer)) if answer.get_ref().status() == tonic_health::pb::health_check_response::ServingStatus::Serving
                        )
                    }
                    None => false,
                };
                let status = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status(service, status).await;
            }
        }
        for service in &services {
            health.set_service_status(service, ServingStatus::NotServing).await;
        }
    });
}

/// Ready when every upstream reports SERVING through grpc.health.v1.
async fn readyz(edge: Arc<Edge>) -> Response {
    let checks = edge.upstreams.all().into_iter().map(|(name, channel)| async move {
        let mut client = HealthClient::new(channel);
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            client.check(HealthCheckRequest { service: String::new() }),
        )
        .await;
        let status = match answer {
            Ok(Ok(response)) => response.into_inner().status().as_str_name().to_owned(),
            Ok(Err(status)) => format!("UNREACHABLE: {}", status.message()),
            Err(_) => "UNREACHABLE: timed out".to_owned(),
        };
        (name, status)
    });
    let statuses: std::collections::BTreeMap<&str, String> =
        futures::future::join_all(checks).await.into_iter().collect();
    let ready = statuses.values().all(|status| status == "SERVING");
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({"status": if ready { "ready" } else { "not ready" }, "upstreams": statuses})),
    )
        .into_response()
}

/// CORS for the configured origins, exposing what grpc-web clients read.
fn cors_layer(origins: &[String]) -> Result<CorsLayer, BuildError> {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|origin| HeaderValue::from_str(origin).map_err(|_| BuildError::CorsOrigin(origin.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    let header = |name: &'static str| http::HeaderName::from_static(name);
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::header::ACCEPT,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("x-api-key"),
            header("x-request-id"),
            header("connect-protocol-version"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("x-request-id"),
            http::header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600)))
}
