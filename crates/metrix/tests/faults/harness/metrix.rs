//! `metrix dev --no-demo` as a child process on free ports, with the backends
//! and queue settings a test asks for; stopped with SIGTERM or SIGKILL and
//! started again on the same data folder, ports and settings.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{START_TIMEOUT, free_port, log_file, show_log_if_wanted};
use crate::client::{Account, Api};
use crate::verify::EventStore;

/// The grace period metrix is given to finish calls in flight after SIGTERM.
const SHUTDOWN_GRACE_SECONDS: u64 = 2;
/// How long after SIGTERM the process must be gone: the grace period and
/// the drain of the queue writer, with room for a slow machine.
const EXIT_TIMEOUT: Duration = Duration::from_secs(SHUTDOWN_GRACE_SECONDS + 8);
/// The password of every test's user.
const PASSWORD: &str = "correct horse battery staple";

/// Where metrix keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// One PostgreSQL database for every service (`METRIX_DATABASE_URL`).
    Postgres(String),
    /// SQLite files in the data folder (no `METRIX_DATABASE_URL`).
    Embedded,
}

/// How a test's metrix is configured.
#[derive(Debug, Clone)]
pub struct MetrixOptions {
    database: Database,
    redis_url: Option<String>,
    settings: Vec<(String, String)>,
}

impl MetrixOptions {
    /// Metrix on `database`, without Redis, stale queue entries claimed
    /// after 2 s.
    pub fn new(database: Database) -> MetrixOptions {
        MetrixOptions {
            database,
            redis_url: None,
            settings: vec![("METRIX_METRICS__QUEUE_CLAIM_AFTER_SECONDS".to_owned(), "2".to_owned())],
        }
    }

    /// With Redis at `url` (cache, pub/sub and the ingestion stream).
    pub fn redis(mut self, url: String) -> MetrixOptions {
        self.redis_url = Some(url);
        self
    }

    /// One more `METRIX_…` setting (a later one wins).
    pub fn setting(mut self, name: &str, value: &str) -> MetrixOptions {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A `metrix dev` process of one test, with a signed-up user; killed and
/// its folder deleted when dropped.
pub struct Metrix {
    child: Option<Child>,
    data: tempfile::TempDir,
    environment: Vec<(String, String)>,
    database: Database,
    redis_key_prefix: String,
    /// The client of this mesh, signed in as `account`.
    pub api: Api,
    /// The test's user and organisation.
    pub account: Account,
}

impl Metrix {
    /// Starts metrix, waits until the gateway is ready and signs up a user.
    pub async fn spawn(options: MetrixOptions) -> Metrix {
        let data = tempfile::Builder::new()
            .prefix("metrix-fault-data")
            .tempdir()
            .expect("a temporary data folder");
        let gateway_port = free_port();
        let metrics_port = free_port();
        let redis_key_prefix = format!("fault-{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut environment: Vec<(String, String)> = [
            ("METRIX_LOG_FORMAT", "human".to_owned()),
            // Every request is logged at INFO; the rest is what a failure needs.
            (
                "METRIX_LOG",
                "info,sqlx=warn,metrix_core::server::observe=warn,metrix_gateway::edge=warn".to_owned(),
            ),
            ("NO_COLOR", "1".to_owned()),
            ("METRIX_AUTH__LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRIX_METRICS__LISTEN_ADDR", format!("127.0.0.1:{metrics_port}")),
            ("METRIX_BENCHMARK__LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRIX_GATEWAY__LISTEN_ADDR", format!("127.0.0.1:{gateway_port}")),
            ("METRIX_SHUTDOWN_GRACE_SECONDS", SHUTDOWN_GRACE_SECONDS.to_string()),
            ("METRIX_DRAIN_DELAY_SECONDS", "0".to_owned()),
            // The load is one client; the gateway's own limits are not under test.
            ("METRIX_GATEWAY__RATE_LIMIT_PER_IP", "1000000".to_owned()),
            ("METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL", "1000000".to_owned()),
            ("METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP", "10000".to_owned()),
            ("METRIX_REDIS_KEY_PREFIX", redis_key_prefix.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        if let Database::Postgres(url) = &options.database {
            environment.push(("METRIX_DATABASE_URL".to_owned(), url.clone()));
        }
        if let Some(url) = &options.redis_url {
            environment.push(("METRIX_REDIS_URL".to_owned(), url.clone()));
        }
        environment.extend(options.settings);
        let api = Api::new(
            format!("http://127.0.0.1:{gateway_port}"),
            format!("http://127.0.0.1:{metrics_port}"),
        );
        let mut metrix = Metrix {
            child: None,
            data,
            environment,
            database: options.database,
            redis_key_prefix,
            api,
            account: Account {
                email: format!("fault-{}@example.com", uuid::Uuid::new_v4().simple()),
                password: PASSWORD.to_owned(),
                organization_id: String::new(),
            },
        };
        metrix.start_process().await;
        metrix.account = metrix.api.sign_up(&metrix.account.email, PASSWORD).await;
        metrix
    }

    /// Starts metrix again on the same folder, ports and settings (the
    /// process must be gone), waits until it is ready and signs in again.
    pub async fn respawn(&mut self) {
        self.start_process().await;
        self.api.sign_in(&self.account).await;
    }

    /// Like [`Metrix::respawn`], with some settings changed.
    pub async fn respawn_with(&mut self, settings: &[(&str, &str)]) {
        for (name, value) in settings {
            self.environment.push(((*name).to_owned(), (*value).to_owned()));
        }
        self.respawn().await;
    }

    async fn start_process(&mut self) {
        assert!(self.child.is_none(), "metrix is already running");
        let log = self.log_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_metrix"));
        command
            .args(["dev", "--no-demo", "--data-dir"])
            .arg(self.data.path())
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log));
        self.apply_environment(&mut command);
        self.child = Some(command.spawn().expect("the metrix binary starts"));
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.api.ready().await {
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("metrix exited with {status} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "metrix was not ready within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// This test's environment, and nothing of the caller's `METRIX_…`.
    fn apply_environment(&self, command: &mut Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("METRIX_") {
                command.env_remove(name);
            }
        }
        command.envs(self.environment.iter().map(|(name, value)| (name, value)));
    }

    /// SIGTERM, then waits for the exit, which must be 0 within the grace
    /// period (and a margin for a slow machine); the process is gone
    /// afterwards either way.
    pub async fn terminate(&mut self) -> Result<(), String> {
        let mut child = self.child.take().expect("metrix is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
        let signalled = Instant::now();
        let exit: ExitStatus = loop {
            if let Some(exit) = child.try_wait().expect("metrix can be waited on") {
                break exit;
            }
            if signalled.elapsed() > EXIT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("metrix did not exit within {EXIT_TIMEOUT:?} of SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if exit.success() {
            Ok(())
        } else {
            Err(format!("metrix exited with {exit} after SIGTERM, not 0"))
        }
    }

    /// SIGKILL: no drain, no shutdown of anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("metrix is running");
        child.kill().expect("metrix can be killed");
        child.wait().expect("metrix can be waited on");
    }

    /// Where the metrics service stores events, for verification.
    pub fn event_store(&self) -> EventStore {
        match &self.database {
            Database::Postgres(url) => EventStore::Postgres(url.clone()),
            Database::Embedded => EventStore::Sqlite(self.data.path().join("metrics.db")),
        }
    }

    /// The prefix of this test's Redis keys.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.redis_key_prefix)
    }

    /// Runs another `metrix` command (such as `dead-letters list`) with this
    /// process's environment, the metrics database named explicitly and the
    /// secrets `metrix dev` keeps in its folder.
    pub async fn run_command(&self, arguments: &[&str]) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_metrix"));
        command.args(arguments).stdin(Stdio::null());
        self.apply_environment(&mut command);
        command.env("METRIX_DEV_DATA_DIR", self.data.path());
        if let Database::Embedded = self.database {
            command.env(
                "METRIX_METRICS__DATABASE_URL",
                format!("sqlite://{}", self.data.path().join("metrics.db").display()),
            );
        }
        for (variable, file) in [
            ("METRIX_METRICS__PEER_KEY_SECRET", "peer-key.secret"),
            ("METRIX_AUTH__MASTER_KEY", "master.key"),
        ] {
            if let Ok(secret) = std::fs::read_to_string(self.data.path().join(file)) {
                command.env(variable, secret.trim());
            }
        }
        tokio::process::Command::from(command)
            .output()
            .await
            .unwrap_or_else(|error| panic!("cannot run metrix {}: {error}", arguments.join(" ")))
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("metrix.log")
    }
}

impl Drop for Metrix {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        show_log_if_wanted("metrix", &self.log_path());
    }
}
