//! Logs and metrics: JSON (or human) logs through `tracing`, with the request
//! id on every span, and a Prometheus recorder rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global log subscriber. Later calls (several services in one
/// process, or tests) keep the first one.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _already_installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Human => registry.with(tracing_subscriber::fmt::layer().compact()).try_init(),
    };
}

/// Logs for tests: human lines on the test writer when `TEST_LOG` is set,
/// nothing otherwise.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = std::env::var("TEST_LOG")
            .ok()
            .filter(|value| value.contains('=') || value.contains("debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter.unwrap_or_else(|| "info".to_owned())))
            .with_test_writer()
            .try_init();
    }
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        #[allow(clippy::expect_used, reason = "the bucket list is a non-empty constant")]
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .expect("the latency bucket list is a non-empty constant");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then
        // this handle renders only what is recorded through it, which is
        // nothing, and that is the harness's choice.
        let _ = metrics::set_global_recorder(recorder);
        describe_metrics();
        handle
    })
}

/// Gives every metric the mesh records its `# HELP` line, so `/metrics`
/// passes `promtool check metrics` (CI scrapes every service with it).
fn describe_metrics() {
    metrics::describe_counter!(
        "metrix_rpc_requests_total",
        "gRPC calls a service finished, by rpc and status code"
    );
    metrics::describe_histogram!(
        "metrix_rpc_duration_seconds",
        "time a service took to answer a gRPC call, by rpc"
    );
    metrics::describe_counter!(
        "metrix_gateway_requests_total",
        "requests the gateway answered, by route, protocol and status"
    );
    metrics::describe_histogram!(
        "metrix_gateway_request_duration_seconds",
        "time the gateway took to answer a request, by route and protocol"
    );
    metrics::describe_gauge!(
        "metrix_ingest_queue_depth",
        "entries of the ingestion queue waiting or in flight"
    );
    metrics::describe_gauge!(
        "metrix_ingest_queue_lag_seconds",
        "age of the oldest entry of the ingestion queue waiting or in flight"
    );
    metrics::describe_gauge!(
        "metrix_ingest_dead_letters",
        "entries in the ingestion queue's dead letters"
    );
    metrics::describe_counter!(
        "metrix_ingest_dead_lettered_total",
        "ingestion entries this instance moved to the dead letters"
    );
    metrics::describe_counter!(
        "metrix_ingest_queue_refused_total",
        "queued ingestion calls refused because the queue was full"
    );
}
