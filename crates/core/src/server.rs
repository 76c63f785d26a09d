//! The bootstrap every service shares: one listener that serves native gRPC,
//! grpc-web and `/metrics`, with `grpc.health.v1`, server reflection (v1 and
//! v1alpha, since grpcurl asks v1alpha), request ids, per-RPC metrics, token
//! verification, message limits, and a graceful drain on SIGTERM/SIGINT.

mod limits;
mod observe;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::authn::Authenticator;

pub use self::limits::{MAX_MESSAGE_BYTES, NESTING_LIMIT, message_too_large, nested_too_deeply};
pub use self::observe::{REQUEST_ID_HEADER, RequestId, STANDARD_METHODS, assign_request_id, on_grpc_outcome};

/// The metadata key of the caller's IP address, set by the gateway.
pub const CLIENT_IP_HEADER: &str = "x-metrix-client-ip";
/// The metadata key of the caller's user agent, set by the gateway.
pub const CLIENT_USER_AGENT_HEADER: &str = "x-metrix-user-agent";

/// A handler's result as a gRPC answer: the value in a response, the
/// crate's error turned into a status here, at the boundary, and nowhere
/// before.
pub fn answer<T, E: Into<tonic::Status>>(result: Result<T, E>) -> Result<tonic::Response<T>, tonic::Status> {
    result.map(tonic::Response::new).map_err(Into::into)
}

/// A failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reflection could not read the descriptor set.
    #[error("cannot build server reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Serving failed.
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// A way to stop servers: cloned into each, triggered once.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            sender: watch::channel(false).0,
        }
    }
}

impl Shutdown {
    /// A shutdown that nothing has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown triggered by SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            trigger.trigger();
        });
        shutdown
    }

    /// Starts the drain of every server holding this shutdown.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the drain has started.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Runs `work` at once and then every `period` on a task of its own,
    /// until the drain starts; a round that overruns delays the next rather
    /// than bunching them. For the housekeeping every service does
    /// (retention sweeps, queue maintenance, expired revocations).
    pub fn every<F, Fut>(&self, period: Duration, mut work: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let stopped = self.triggered();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(period);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = &mut stopped => break,
                    _ = timer.tick() => {}
                }
                work().await;
            }
        })
    }

    /// Completes when the drain starts.
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            let _ = receiver.wait_for(|triggered| *triggered).await;
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "draining"),
                    _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "draining"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What a service hands to the bootstrap.
pub struct ServiceDefinition {
    /// Short name for logs and metrics, such as `auth`.
    pub name: &'static str,
    /// The fully-qualified gRPC services served, such as `metrix.auth.v1.AuthService`.
    pub grpc_services: Vec<&'static str>,
    /// The service's generated servers.
    pub routes: Routes,
    /// How credentials are checked.
    pub authenticator: Authenticator,
    /// How long requests in flight may take to finish once the drain starts.
    pub shutdown_grace: Duration,
    /// How long NOT_SERVING is reported before the listener closes.
    pub drain_delay: Duration,
}

/// A bound, serving server.
pub struct RunningServer {
    name: &'static str,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Binds `address` and starts serving `definition` until `shutdown`.
    pub async fn start(
        definition: ServiceDefinition,
        address: SocketAddr,
        shutdown: Shutdown,
    ) -> Result<RunningServer, ServerError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { address, source })?;
        let ServiceDefinition {
            name,
            grpc_services,
            routes,
            authenticator,
            shutdown_grace,
            drain_delay,
        } = definition;
        // Installs the recorder before the first request is counted.
        crate::telemetry::prometheus();
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let router = router(name, &grpc_services, routes.add_service(health_service), authenticator)?;
        tracing::info!(service = name, address = %local_addr, "serving grpc, grpc-web and /metrics");
        let drain = Drain {
            health: health_reporter,
            services: grpc_services,
            delay: drain_delay,
            grace: shutdown_grace,
        };
        Ok(Self::serve(name, listener, router, shutdown, drain).await)
    }

    /// Serves `router` on a bound `listener` until `shutdown`, draining as
    /// `drain` says: the services report SERVING now and NOT_SERVING first
    /// on shutdown, the listener closes after the delay, and requests in
    /// flight get the grace period.
    pub async fn serve(
        name: &'static str,
        listener: TcpListener,
        router: axum::Router,
        shutdown: Shutdown,
        drain: Drain,
    ) -> RunningServer {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        for service in &drain.services {
            drain.health.set_service_status(*service, ServingStatus::Serving).await;
        }
        drain.health.set_service_status("", ServingStatus::Serving).await;
        let grace = drain.grace;
        let delay = drain.delay;
        let draining = drain.run(name, shutdown.clone());
        let task = tokio::spawn(async move {
            use axum::serve::ListenerExt as _;
            // gRPC writes headers, messages and trailers separately; with
            // Nagle's algorithm on, a small write waits for the peer's
            // delayed ACK (tens of milliseconds).
            let listener = listener.tap_io(|stream| {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(error = %error, "cannot set TCP_NODELAY");
                }
            });
            let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(draining);
            let mut serve = std::pin::pin!(serve.into_future());
            tokio::select! {
                result = &mut serve => result.map_err(ServerError::Serve),
                () = async { shutdown.triggered().await; tokio::time::sleep(delay + grace).await } => {
                    // Connections still open are abandoned to the process's exit.
                    tracing::warn!(service = name, grace_seconds = grace.as_secs(), "grace period over, no longer waiting for open connections");
                    Ok(())
                }
            }
        });
        RunningServer { name, local_addr, task }
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the shutdown is triggered and the drain ends.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        let result = match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(ServerError::Serve(std::io::Error::other(join_error))),
        };
        tracing::info!(service = self.name, "stopped");
        result
    }
}

/// Every layer of a service's server around its `routes` (health
/// included), reflection and `/metrics`.
fn router(
    name: &'static str,
    grpc_services: &[&'static str],
    routes: Routes,
    authenticator: Authenticator,
) -> Result<axum::Router, ServerError> {
    let mut reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(metrix_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(metrix_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    let advertised = grpc_services.iter().copied().chain([
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    for service in advertised {
        reflection_v1 = reflection_v1.with_service_name(service);
        reflection_v1alpha = reflection_v1alpha.with_service_name(service);
    }
    let routes = routes
        .add_service(reflection_v1.build_v1()?)
        .add_service(reflection_v1alpha.build_v1alpha()?);

    // Layers run outside-in: request id, grpc-web translation, the
    // observer (which therefore sees native gRPC, trailers included),
    // authentication, the message limits, the services.
    let observed = observe::Observed {
        service: name,
        known_methods: observe::known_methods(grpc_services).into(),
    };
    Ok(routes
        .into_axum_router()
        .layer(axum::middleware::from_fn(limits::guard_messages))
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            crate::authn::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(observed, observe::observe))
        .layer(tonic_web::GrpcWebLayer::new())
        .route("/metrics", get(|| async { crate::telemetry::prometheus().render() }))
        .layer(axum::middleware::from_fn(observe::assign_request_id)))
}

/// How a server drains on shutdown.
pub struct Drain {
    /// The health service of the server.
    pub health: HealthReporter,
    /// The gRPC services it reports on (the overall status `""` always).
    pub services: Vec<&'static str>,
    /// How long NOT_SERVING is reported before the listener closes.
    pub delay: Duration,
    /// How long requests in flight may take after that.
    pub grace: Duration,
}

impl Drain {
    /// On shutdown: every service reports NOT_SERVING first, for the delay,
    /// so load balancers and `/readyz` stop sending traffic; then the
    /// listener closes and requests in flight finish.
    async fn run(self, name: &'static str, shutdown: Shutdown) {
        shutdown.triggered().await;
        for service in self.services {
            self.health.set_service_status(service, ServingStatus::NotServing).await;
        }
        self.health.set_service_status("", ServingStatus::NotServing).await;
        tracing::info!(
            service = name,
            delay_seconds = self.delay.as_secs(),
            "not serving; closing the listener after the delay"
        );
        tokio::time::sleep(self.delay).await;
        tracing::info!(service = name, "listener closed; draining requests in flight");
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use prost::Message as _;
    use tonic::{Code, Status};
    use tonic_health::pb::HealthCheckRequest;
    use tower::ServiceExt as _;

    use super::*;
    use crate::testing::TestIssuer;

    /// A service's router around `routes`, as `RunningServer::start` builds it.
    fn service_router(routes: Routes) -> axum::Router {
        router("test", &[], routes, TestIssuer::new().authenticator()).expect("the router builds")
    }

    fn health_routes() -> Routes {
        Routes::new(tonic_health::server::health_reporter().1)
    }

    /// One gRPC message with its length prefix.
    fn framed(message: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(&u32::try_from(message.len()).expect("small enough").to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    /// Calls health's Check with `message` as its encoded request, in
    /// `content_type` (native gRPC over HTTP/2, grpc-web over HTTP/1.1), and
    /// returns the status the answer's headers carry (every answer here is
    /// trailers-only).
    async fn health_check(router: axum::Router, content_type: &str, message: Vec<u8>) -> Status {
        let version = if content_type.starts_with("application/grpc-web") {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_2
        };
        let request = http::Request::post("/grpc.health.v1.Health/Check")
            .version(version)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::TE, "trailers")
            .body(Body::from(framed(&message)))
            .expect("a valid request");
        let response = router.oneshot(request).await.expect("infallible");
        Status::from_header_map(response.headers()).expect("a trailers-only answer")
    }

    fn check_request(service_name_length: usize) -> Vec<u8> {
        HealthCheckRequest {
            service: "x".repeat(service_name_length),
        }
        .encode_to_vec()
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_resource_exhausted_over_grpc_and_grpc_web() {
        for content_type in ["application/grpc", "application/grpc-web+proto"] {
            let status = health_check(
                service_router(health_routes()),
                content_type,
                check_request(MAX_MESSAGE_BYTES),
            )
            .await;
            assert_eq!(status.code(), Code::ResourceExhausted, "{content_type}: {status:?}");
            assert_eq!(
                status.message(),
                format!("the message is larger than the limit of {MAX_MESSAGE_BYTES} bytes")
            );
            // Just under the limit, the request reaches the service.
            let status = health_check(
                service_router(health_routes()),
                content_type,
                check_request(MAX_MESSAGE_BYTES - 16),
            )
            .await;
            assert_eq!(status.code(), Code::NotFound, "{content_type}: {status:?}");
        }
    }

    #[tokio::test]
    async fn a_server_configured_below_the_limit_answers_resource_exhausted_too() {
        let health = tonic_health::server::health_reporter()
            .1
            .max_decoding_message_size(1024);
        let status = health_check(
            service_router(Routes::new(health)),
            "application/grpc",
            check_request(2048),
        )
        .await;
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), "the message is larger than the limit of 1024 bytes");
    }

    #[tokio::test]
    async fn a_message_nested_past_the_decoder_limit_is_invalid_argument() {
        // An unknown field 2 holding groups nested 150 deep: prost follows
        // groups to skip them, and stops at its recursion limit.
        let depth = 150;
        let mut message = vec![(2 << 3) | 3; depth];
        message.extend(std::iter::repeat_n((2 << 3) | 4, depth));
        let status = health_check(service_router(health_routes()), "application/grpc", message).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.message(),
            format!("invalid request: is nested too deeply: more than {NESTING_LIMIT} levels of protobuf messages")
        );
        assert_eq!(crate::testing::violated_fields(&status), ["request"]);
    }
}
