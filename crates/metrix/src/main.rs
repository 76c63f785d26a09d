//! The `metrix` binary: every service by subcommand, the whole mesh in one
//! process with `dev`, and operations commands. It parses configuration,
//! sets up telemetry and hands over to the service libraries.

mod dev;
mod healthcheck;
mod import;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use metrix_core::cache::Backends;
use metrix_core::config::{ConfigError, EXIT_CONFIG, EnvironmentSource, ProcessEnvironment, Settings};
use metrix_core::server::Shutdown;
use metrix_core::telemetry;

/// mimalloc instead of the C library's allocator: a request allocates and
/// frees many small buffers across threads, where glibc's arenas spent
/// about a sixth of the gateway's CPU time (and musl's, in a static
/// build, are slower still).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Metrix: startup metrics, product analytics and peer benchmarks.
#[derive(Parser)]
#[command(name = "metrix", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every service in one process with embedded storage (SQLite under
    /// ./.metrix/, in-process cache), or PostgreSQL/Redis when
    /// METRIX_DATABASE_URL/METRIX_REDIS_URL are set.
    Dev(dev::DevArgs),
    /// Runs the auth service, or an auth operation.
    Auth {
        #[command(subcommand)]
        command: Option<AuthCommand>,
    },
    /// Runs the metrics service: companies, KPIs, events, data points and dashboards.
    Metrics,
    /// Runs the benchmark service: peer statistics, rankings, time series and reports.
    Benchmark,
    /// Runs the gateway: REST JSON, grpc-web and gRPC for everything outside the mesh.
    Gateway,
    /// Runs every service's pending migrations and exits.
    Migrate,
    /// Asks a running service (or the gateway) over grpc.health.v1 whether it
    /// is serving: exits 0 when SERVING, 1 otherwise with the reason. For
    /// container health checks.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Imports data files through the API.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Fills the metrics store with demo data: companies across sectors and
    /// revenue bands, each with eight quarters of plausible KPIs. Does
    /// nothing when demo data is there already.
    SeedDemo {
        /// How many companies to create.
        #[arg(long, default_value_t = metrix_metrics::demo::DEFAULT_COMPANIES)]
        companies: usize,
        /// The random seed (the same seed gives the same companies).
        #[arg(long, default_value_t = metrix_metrics::demo::DEFAULT_SEED)]
        seed: u64,
    },
    /// Reads the dead letters of the queued ingestion path: entries whose
    /// events could not be stored for a reason retrying cannot fix. Uses
    /// the metrics service's configuration (its database, and Redis when
    /// METRIX_REDIS_URL is set).
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// Prints the newest dead letters, newest first, one JSON object a line:
    /// id, entry, reason, organizationId, eventIds.
    List {
        /// How many to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Imports KPI values from a CSV file, with progress bars: every row is
    /// validated first, then the valid rows are stored. Exits 1 when rows
    /// were rejected (the valid ones are stored).
    Kpis(import::ImportKpisArgs),
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Serves the auth service (the default).
    Serve,
    /// Rotates the token signing keys: the next key starts signing, a new
    /// next key is published, the old key stays published until its tokens expire.
    RotateKeys,
    /// Creates a service account, with platform scopes such as `peers:read`
    /// that the API does not grant, and prints its credentials.
    CreateServiceAccount {
        /// The organisation that owns the account; the platform's own
        /// organisation (for the services' accounts) when omitted.
        #[arg(long)]
        organization_id: Option<String>,
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// Space- or comma-separated scopes: events:write, metrics:write, read, peers:read.
        #[arg(long)]
        scopes: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("metrix: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            eprintln!("metrix: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
        Err(Failure::Other(error)) => {
            tracing::error!(error = format!("{error:#}"), "metrix stopped with an error");
            eprintln!("metrix: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why the process stops unsuccessfully.
enum Failure {
    /// Exit 64, naming the variable.
    Config(ConfigError),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Failure::Config(error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Auth { command } => auth(command.unwrap_or(AuthCommand::Serve), &ProcessEnvironment).await,
        Command::Metrics => metrics(&ProcessEnvironment).await,
        Command::Benchmark => benchmark(&ProcessEnvironment).await,
        Command::Gateway => gateway(&ProcessEnvironment).await,
        Command::Migrate => migrate(&ProcessEnvironment).await,
        Command::Healthcheck(args) => {
            let report = healthcheck::run(args).await?;
            println!("{report}");
            Ok(())
        }
        Command::Import {
            command: ImportCommand::Kpis(args),
        } => import::run(args).await,
        Command::SeedDemo { companies, seed } => seed_demo(&ProcessEnvironment, companies, seed).await,
        Command::DeadLetters {
            command: DeadLettersCommand::List { limit },
        } => list_dead_letters(&ProcessEnvironment, limit).await,
    }
}

async fn list_dead_letters(environment: &dyn EnvironmentSource, limit: usize) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = Settings::new(environment);
    let common = metrix_core::config::CommonSettings::load(&settings)?;
    telemetry::init_logging(common.log_format, &common.log_filter);
    let database_url = metrix_metrics::settings::database_url(&settings, &common)?;
    let database = metrix_metrics::connect_and_migrate(&database_url)
        .await
        .context("connecting to the metrics store")?;
    let backends = Backends::connect(common.redis_url.as_ref(), &common.redis_key_prefix)
        .await
        .context("connecting to redis")?;
    let work_streams = metrix_metrics::ingestion_queue(&backends, &database);
    let letters = metrix_metrics::ingest::dead_letters(work_streams.as_ref(), limit)
        .await
        .map_err(|error| anyhow::anyhow!(metrix_core::error::error_chain(&error)))
        .context("reading the dead letters")?;
    for letter in letters {
        let line = serde_json::json!({
            "id": letter.id,
            "entry": letter.entry_id,
            "reason": letter.reason,
            "organizationId": letter.organization_id,
            "eventIds": letter.event_ids,
        });
        println!("{line}");
    }
    Ok(())
}

async fn auth(command: AuthCommand, environment: &dyn EnvironmentSource) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = metrix_auth::AuthSettings::load(&Settings::new(environment))?;
    telemetry::init_logging(settings.common.log_format, &settings.common.log_filter);
    match command {
        AuthCommand::Serve => {
            let backends = Backends::connect(settings.common.redis_url.as_ref(), &settings.common.redis_key_prefix)
                .await
                .context("connecting to redis")?;
            let server = metrix_auth::AuthServer::build(settings, backends, Shutdown::on_signals())
                .await
                .context("starting the auth service")?;
            server.run_until_stopped().await.context("serving the auth service")?;
        }
        AuthCommand::RotateKeys => {
            let backends = Backends::connect(settings.common.redis_url.as_ref(), &settings.common.redis_key_prefix)
                .await
                .context("connecting to redis")?;
            let database = metrix_auth::connect_and_migrate(&settings)
                .await
                .context("connecting to the auth store")?;
            let state = metrix_auth::build_state(&settings, database, &backends)
                .await
                .context("loading signing keys")?;
            let rotation = metrix_auth::app::rotate_keys(&state)
                .await
                .context("rotating signing keys")?;
            println!(
                "current key: {}\nnext key:    {}\nretired key: {}",
                rotation.current_key_id, rotation.next_key_id, rotation.retired_key_id
            );
        }
        AuthCommand::CreateServiceAccount {
            organization_id,
            name,
            scopes,
        } => {
            let scopes = metrix_core::authn::Scope::parse_list(&scopes)
                .map_err(|problem| anyhow::anyhow!("--scopes: {problem}"))?;
            let database = metrix_auth::connect_and_migrate(&settings)
                .await
                .context("connecting to the auth store")?;
            let store = metrix_auth::store::AuthStore::new(database);
            let organization_id = match organization_id {
                Some(organization_id) => organization_id,
                None => {
                    store
                        .ensure_platform_organization()
                        .await
                        .context("creating the platform organisation")?;
                    metrix_auth::store::PLATFORM_ORGANIZATION_ID.to_owned()
                }
            };
            store
                .organization(&organization_id)
                .await
                .context("reading the organisation")?
                .context("--organization-id: no such organisation")?;
            let (account, secret) = metrix_auth::app::create_service_account(&store, &organization_id, &name, &scopes)
                .await
                .context("creating the service account")?;
            println!(
                "METRIX_SERVICE_CLIENT_ID={}\nMETRIX_SERVICE_CLIENT_SECRET={secret}",
                account.client_id
            );
        }
    }
    Ok(())
}

async fn metrics(environment: &dyn EnvironmentSource) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = metrix_metrics::MetricsSettings::load(&Settings::new(environment))?;
    telemetry::init_logging(settings.common.log_format, &settings.common.log_filter);
    let backends = Backends::connect(settings.common.redis_url.as_ref(), &settings.common.redis_key_prefix)
        .await
        .context("connecting to redis")?;
    let server = metrix_metrics::MetricsServer::build(settings, backends, Shutdown::on_signals())
        .await
        .context("starting the metrics service")?;
    server
        .run_until_stopped()
        .await
        .context("serving the metrics service")?;
    Ok(())
}

async fn benchmark(environment: &dyn EnvironmentSource) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = metrix_benchmark::BenchmarkSettings::load(&Settings::new(environment))?;
    telemetry::init_logging(settings.common.log_format, &settings.common.log_filter);
    let backends = Backends::connect(settings.common.redis_url.as_ref(), &settings.common.redis_key_prefix)
        .await
        .context("connecting to redis")?;
    let server = metrix_benchmark::BenchmarkServer::build(settings, backends, Shutdown::on_signals())
        .await
        .context("starting the benchmark service")?;
    server
        .run_until_stopped()
        .await
        .context("serving the benchmark service")?;
    Ok(())
}

async fn gateway(environment: &dyn EnvironmentSource) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = metrix_gateway::GatewaySettings::load(&Settings::new(environment))?;
    telemetry::init_logging(settings.common.log_format, &settings.common.log_filter);
    let backends = Backends::connect(settings.common.redis_url.as_ref(), &settings.common.redis_key_prefix)
        .await
        .context("connecting to redis")?;
    let server = metrix_gateway::GatewayServer::build(settings, backends, Shutdown::on_signals())
        .await
        .context("starting the gateway")?;
    server.run_until_stopped().await.context("serving the gateway")?;
    Ok(())
}

async fn seed_demo(environment: &dyn EnvironmentSource, companies: usize, seed: u64) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = metrix_metrics::MetricsSettings::load(&Settings::new(environment))?;
    telemetry::init_logging(settings.common.log_format, &settings.common.log_filter);
    let database = metrix_metrics::connect_and_migrate(&settings.database_url)
        .await
        .context("connecting to the metrics store")?;
    // The real backends, so that running services hear of the new values.
    let backends = Backends::connect(settings.common.redis_url.as_ref(), &settings.common.redis_key_prefix)
        .await
        .context("connecting to redis")?;
    let state = metrix_metrics::build_state(&settings, database, &backends);
    let summary = metrix_metrics::demo::seed(&state, seed, companies)
        .await
        .context("seeding demo data")?;
    if summary.already_seeded {
        println!("demo data is there already; nothing added");
    } else {
        println!(
            "seeded {} companies with {} KPI values and {} product events",
            summary.companies, summary.kpi_values, summary.events
        );
    }
    Ok(())
}

async fn migrate(environment: &dyn EnvironmentSource) -> Result<(), Failure> {
    use anyhow::Context as _;
    let settings = metrix_auth::AuthSettings::load(&Settings::new(environment))?;
    telemetry::init_logging(settings.common.log_format, &settings.common.log_filter);
    metrix_auth::connect_and_migrate(&settings)
        .await
        .context("migrating the auth store")?;
    let metrics_database_url = metrix_metrics::settings::database_url(&Settings::new(environment), &settings.common)?;
    metrix_metrics::connect_and_migrate(&metrics_database_url)
        .await
        .context("migrating the metrics store")?;
    let benchmark_database_url =
        metrix_benchmark::settings::database_url(&Settings::new(environment), &settings.common)?;
    metrix_benchmark::connect_and_migrate(&benchmark_database_url)
        .await
        .context("migrating the benchmark store")?;
    tracing::info!("migrations complete");
    Ok(())
}
