//! `metrix dev`: the whole mesh in one process. Each service listens on its
//! own port and they talk over real gRPC, exactly as in production; only the
//! backends are embedded (SQLite files under the data folder, in-process
//! cache) unless METRIX_DATABASE_URL / METRIX_REDIS_URL say otherwise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use metrix_core::authn::Scope;
use metrix_core::cache::Backends;
use metrix_core::config::{Settings, WithDefaults};
use metrix_core::server::Shutdown;
use metrix_core::telemetry;
use rand::RngCore as _;

use crate::Failure;

/// Options of `metrix dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Where the embedded databases and the development master key live.
    #[arg(long, default_value = ".metrix", env = "METRIX_DEV_DATA_DIR")]
    data_dir: PathBuf,
    /// Skips the demo data (300 companies with eight quarters of KPIs) that
    /// the first start seeds.
    #[arg(long)]
    no_demo: bool,
}

/// Runs the mesh until SIGINT/SIGTERM.
pub async fn run(args: DevArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let mut environment = WithDefaults {
        defaults: dev_defaults(&args.data_dir)?,
    };
    let auth_settings = metrix_auth::AuthSettings::load(&Settings::new(&environment))?;
    telemetry::init_logging(auth_settings.common.log_format, &auth_settings.common.log_filter);

    // One set of backends for the whole process: the services share the
    // in-process cache and pub/sub as they would share Redis.
    let backends = Backends::connect(
        auth_settings.common.redis_url.as_ref(),
        &auth_settings.common.redis_key_prefix,
    )
    .await
    .context("connecting to redis")?;
    let shutdown = Shutdown::on_signals();
    let auth = metrix_auth::AuthServer::build(auth_settings, backends.clone(), shutdown.clone())
        .await
        .context("starting the auth service")?;
    let auth_address = auth.local_addr();

    // The other services find auth where it actually listens, and verify
    // API keys with the platform's own service account.
    let (client_id, client_secret) = dev_service_account(auth.state(), &args.data_dir).await?;
    for (name, value) in [
        ("METRIX_AUTH_URL", format!("http://{auth_address}")),
        ("METRIX_SERVICE_CLIENT_ID", client_id),
        ("METRIX_SERVICE_CLIENT_SECRET", client_secret),
    ] {
        environment.defaults.insert(name.to_owned(), value);
    }
    let metrics_settings = metrix_metrics::MetricsSettings::load(&Settings::new(&environment))?;
    let metrics = metrix_metrics::MetricsServer::build(metrics_settings, backends.clone(), shutdown.clone())
        .await
        .context("starting the metrics service")?;
    let metrics_address = metrics.local_addr();
    if !args.no_demo {
        // Seeding runs beside the mesh; it does nothing when demo data exists.
        tokio::spawn(seed_demo(
            auth.state().clone(),
            metrics.state().clone(),
            shutdown.clone(),
        ));
    }

    // The benchmark service reads peer data where metrics actually listens.
    environment.defaults.insert(
        "METRIX_BENCHMARK__METRICS_URL".to_owned(),
        format!("http://{metrics_address}"),
    );
    let benchmark_settings = metrix_benchmark::BenchmarkSettings::load(&Settings::new(&environment))?;
    let benchmark = metrix_benchmark::BenchmarkServer::build(benchmark_settings, backends.clone(), shutdown.clone())
        .await
        .context("starting the benchmark service")?;
    let benchmark_address = benchmark.local_addr();

    // The gateway reaches the services where they actually listen.
    for (variable, address) in [
        ("METRIX_GATEWAY__AUTH_URL", auth_address),
        ("METRIX_GATEWAY__METRICS_URL", metrics_address),
        ("METRIX_GATEWAY__BENCHMARK_URL", benchmark_address),
    ] {
        environment
            .defaults
            .insert(variable.to_owned(), format!("http://{address}"));
    }
    let gateway_settings = metrix_gateway::GatewaySettings::load(&Settings::new(&environment))?;
    let gateway = metrix_gateway::GatewayServer::build(gateway_settings, backends, shutdown.clone())
        .await
        .context("starting the gateway")?;
    let gateway_address = gateway.local_addr();

    println!();
    println!("  Metrix dev mesh is running (Ctrl-C to stop)");
    println!("  data:      {}", args.data_dir.display());
    println!("  gateway   http://{gateway_address}   REST, grpc-web, gRPC; /docs, /openapi.json");
    println!("  auth      {auth_address}   grpc, grpc-web, /metrics");
    println!("  metrics   {metrics_address}   grpc, grpc-web, /metrics");
    println!("  benchmark {benchmark_address}   grpc, grpc-web, /metrics");
    if !args.no_demo {
        println!("  demo      sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}: a company with KPIs and live product events");
    }
    println!();
    println!("  try:");
    println!("    grpcurl -plaintext {auth_address} list");
    println!(
        "    grpcurl -plaintext -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse battery\",\"organization_name\":\"Ada Labs\"}}' {auth_address} metrix.auth.v1.AuthService/SignUp"
    );
    println!(
        "    curl -s http://{gateway_address}/v1/auth:signIn -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse battery\"}}'"
    );
    println!(
        "    curl -s 'http://{gateway_address}/v1/benchmarks/ndr?revenueBandId=arr_1m_5m' -H \"authorization: Bearer $ACCESS_TOKEN\""
    );
    println!();

    let (auth_result, metrics_result, benchmark_result, gateway_result) = tokio::join!(
        auth.run_until_stopped(),
        metrics.run_until_stopped(),
        benchmark.run_until_stopped(),
        gateway.run_until_stopped()
    );
    auth_result.context("serving the auth service")?;
    metrics_result.context("serving the metrics service")?;
    benchmark_result.context("serving the benchmark service")?;
    gateway_result.context("serving the gateway")?;
    Ok(())
}

/// The demo account of the dev mesh.
const DEMO_EMAIL: &str = "demo@metrix.dev";
/// Its password (a development convenience, printed at start).
const DEMO_PASSWORD: &str = "metrix demo password";

/// Seeds the demo data: 300 peer companies with KPIs, then a demo account
/// whose company has KPIs and a week of product events, then keeps a few
/// events a second flowing into it so its dashboard lives.
async fn seed_demo(
    auth: std::sync::Arc<metrix_auth::AuthState>,
    metrics: std::sync::Arc<metrix_metrics::MetricsState>,
    shutdown: Shutdown,
) {
    use metrix_metrics::demo;
    match demo::seed(&metrics, demo::DEFAULT_SEED, demo::DEFAULT_COMPANIES).await {
        Ok(summary) if summary.already_seeded => tracing::debug!("demo data already present"),
        Ok(summary) => tracing::info!(
            companies = summary.companies,
            kpi_values = summary.kpi_values,
            "demo data seeded (skip it with --no-demo)"
        ),
        Err(error) => {
            tracing::warn!(error = %metrix_core::error::error_chain(&error), "seeding demo data failed");
            return;
        }
    }
    let organization_id = match demo_account(&auth).await {
        Ok(organization_id) => organization_id,
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "creating the demo account failed");
            return;
        }
    };
    match demo::seed_account(&metrics, &organization_id, "Demo Labs").await {
        Ok(true) => tracing::info!(email = DEMO_EMAIL, "demo account seeded"),
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(error = %metrix_core::error::error_chain(&error), "seeding the demo account failed");
            return;
        }
    }
    // A live trickle: a few events every two seconds.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let stopped = shutdown.triggered();
    tokio::pin!(stopped);
    for round in 0_u64.. {
        tokio::select! {
            () = &mut stopped => break,
            _ = tick.tick() => {}
        }
        let now = metrix_core::time::now_micros();
        let count = 1 + (round % 5) as usize;
        let prefix = format!("demo-live-{now}");
        let events = demo::demo_events(round, &prefix, count, now - 1_000_000, now, 400);
        if let Err(error) = metrix_metrics::ingest::store_and_announce(&metrics, &organization_id, &events).await {
            tracing::warn!(error = %metrix_core::error::error_chain(&error), "demo events failed");
        }
    }
}

/// The demo account's organisation, creating the account on first start.
async fn demo_account(auth: &metrix_auth::AuthState) -> anyhow::Result<String> {
    if let Some(user) = auth.store.user_by_email(DEMO_EMAIL).await? {
        return Ok(user.organization_id);
    }
    let password_hash = metrix_auth::passwords::hash(DEMO_PASSWORD.to_owned().into()).await?;
    let user = auth
        .store
        .create_organization_with_admin(
            "Demo Labs",
            metrix_auth::store::NewUser {
                email: DEMO_EMAIL,
                display_name: "Demo",
                password_hash: Some(&password_hash),
                identity: None,
            },
        )
        .await?;
    Ok(user.organization_id)
}

/// The embedded defaults: loopback addresses, SQLite files, human logs and a
/// master key generated once into the data folder.
fn dev_defaults(data_dir: &Path) -> anyhow::Result<HashMap<String, String>> {
    let mut defaults = HashMap::from([
        ("METRIX_LOG_FORMAT".to_owned(), "human".to_owned()),
        ("METRIX_LOG".to_owned(), "info,sqlx=warn".to_owned()),
        ("METRIX_AUTH__LISTEN_ADDR".to_owned(), "127.0.0.1:50051".to_owned()),
        ("METRIX_METRICS__LISTEN_ADDR".to_owned(), "127.0.0.1:50052".to_owned()),
        ("METRIX_BENCHMARK__LISTEN_ADDR".to_owned(), "127.0.0.1:50053".to_owned()),
        ("METRIX_GATEWAY__LISTEN_ADDR".to_owned(), "127.0.0.1:8080".to_owned()),
        ("METRIX_SHUTDOWN_GRACE_SECONDS".to_owned(), "5".to_owned()),
        (
            "METRIX_AUTH__MASTER_KEY".to_owned(),
            dev_secret(data_dir, "master.key")?,
        ),
        (
            "METRIX_METRICS__PEER_KEY_SECRET".to_owned(),
            dev_secret(data_dir, "peer-key.secret")?,
        ),
        (
            "METRIX_PAGE_TOKEN_KEY".to_owned(),
            dev_secret(data_dir, "page-token.key")?,
        ),
        (
            "METRIX_GATEWAY__RATE_LIMIT_KEY".to_owned(),
            dev_secret(data_dir, "rate-limit.key")?,
        ),
    ]);
    // Each service gets its own SQLite file unless one database URL is set
    // for all of them.
    if std::env::var_os("METRIX_DATABASE_URL").is_none() {
        for (variable, file) in [
            ("METRIX_AUTH__DATABASE_URL", "auth.db"),
            ("METRIX_METRICS__DATABASE_URL", "metrics.db"),
            ("METRIX_BENCHMARK__DATABASE_URL", "benchmark.db"),
        ] {
            defaults.insert(
                variable.to_owned(),
                format!("sqlite://{}", data_dir.join(file).display()),
            );
        }
    }
    Ok(defaults)
}

/// A development secret of 32 random bytes (base64), created on first start
/// in the data folder. Production takes its secrets from the environment.
fn dev_secret(data_dir: &Path, file: &str) -> anyhow::Result<String> {
    let path = data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let encoded = STANDARD.encode(key);
    write_private(&path, &encoded)?;
    Ok(encoded)
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("protecting {}", path.display()))?;
    }
    Ok(())
}

/// The platform service account the services of the dev mesh share (it
/// verifies API keys and reads peer values), created on first start and
/// kept in the data folder; created anew when the auth store lost it.
async fn dev_service_account(auth: &metrix_auth::AuthState, data_dir: &Path) -> anyhow::Result<(String, String)> {
    let path = data_dir.join("service-account");
    if let Ok(saved) = std::fs::read_to_string(&path)
        && let Some((client_id, secret)) = saved.trim().split_once('\n')
        && auth
            .store
            .service_account(client_id)
            .await
            .context("reading the dev service account")?
            .is_some()
    {
        return Ok((client_id.to_owned(), secret.to_owned()));
    }
    auth.store
        .ensure_platform_organization()
        .await
        .context("creating the platform organisation")?;
    let (account, secret) = metrix_auth::app::create_service_account(
        &auth.store,
        metrix_auth::store::PLATFORM_ORGANIZATION_ID,
        "dev mesh services",
        &[Scope::ApiKeysVerify, Scope::PeersRead],
    )
    .await
    .context("creating the dev service account")?;
    write_private(&path, &format!("{}\n{secret}", account.client_id))?;
    Ok((account.client_id, secret))
}
