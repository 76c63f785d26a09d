//! `metrix healthcheck`: asks a running service over `grpc.health.v1` whether
//! it is serving, so container health checks need no curl or grpcurl in the
//! image. Exits 0 when the answer is SERVING and 1 otherwise (a refused
//! connection, a timeout, NOT_SERVING, an unknown service), printing one line
//! that says why; Docker reads exit 1 as unhealthy.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The address checked when neither `--address` nor
/// `METRIX_HEALTHCHECK_ADDRESS` says otherwise: the auth service's port.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:50051";

/// Options of `metrix healthcheck`.
#[derive(Args)]
pub struct HealthcheckArgs {
    /// The service to ask, such as http://127.0.0.1:50052 (a bare host:port
    /// means http://). Every service and the gateway answer on their one port.
    #[arg(long, env = "METRIX_HEALTHCHECK_ADDRESS", default_value = DEFAULT_ADDRESS)]
    address: String,
    /// The gRPC service to ask about, such as metrix.auth.v1.AuthService;
    /// the server as a whole when omitted.
    #[arg(long)]
    service: Option<String>,
    /// How long the whole check may take, connection included.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    timeout_seconds: f64,
}

/// Runs the check: `Ok` with a one-line report when the service is serving,
/// an error with the reason otherwise.
pub async fn run(args: HealthcheckArgs) -> anyhow::Result<String> {
    let timeout = Duration::try_from_secs_f64(args.timeout_seconds)
        .ok()
        .filter(|timeout| !timeout.is_zero())
        .ok_or_else(|| anyhow!("--timeout-seconds must be a positive number of seconds"))?;
    let address = if args.address.contains("://") {
        args.address
    } else {
        format!("http://{}", args.address)
    };
    let service = args.service.unwrap_or_default();
    let subject = if service.is_empty() {
        address.clone()
    } else {
        format!("{service} at {address}")
    };
    let endpoint = Endpoint::from_shared(address.clone())
        .with_context(|| format!("--address {address:?} is not a valid address"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let check = async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("{subject}: cannot connect"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest { service })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => anyhow!("{subject}: unknown service"),
                code => anyhow!("{subject}: health check failed: {code:?}: {}", status.message()),
            })
    };
    let answer = tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| anyhow!("{subject}: no answer within {timeout:?}"))??;
    let status = answer.into_inner().status();
    if status != ServingStatus::Serving {
        bail!("{subject}: {}", status.as_str_name());
    }
    Ok(format!("{subject}: {}", status.as_str_name()))
}
