//! The relational store: PostgreSQL in production, an SQLite file by default.
//!
//! [`Database`] holds the native pool of the backend chosen by the URL. Queries
//! that both backends understand are written once and run through
//! [`with_pool!`], which compiles the same code for each pool type; a service
//! that needs a backend-specific path (PostgreSQL `COPY`, `percentile_cont`)
//! matches on the enum instead. Portable SQL uses `$1` placeholders (SQLite
//! reads them too), `TEXT` identifiers, and `BIGINT` timestamps in Unix
//! microseconds.

pub mod work_stream;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite://` or `sqlite:`.
    Sqlite,
}

impl DatabaseKind {
    /// The backend of `url`, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err("must start with postgres:// or sqlite://".to_owned())
        }
    }
}

/// A failure of the relational store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no backend.
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    /// Connecting or querying failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Creating the SQLite file's folder failed.
    #[error("cannot create the database folder")]
    Folder(#[from] std::io::Error),
}

/// A pool of connections to the chosen backend.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// The migrations of one service, for both backends, recorded in their own
/// table so that services sharing a database keep separate histories.
pub struct Migrations {
    /// The migrations written for PostgreSQL.
    pub postgres: Migrator,
    /// The migrations written for SQLite.
    pub sqlite: Migrator,
    /// The table that records which have run, such as `_auth_migrations`.
    pub table: &'static str,
}

impl Database {
    /// Connects to `url`: `postgres://user@host/db` or `sqlite://path/to/file.db`
    /// (the file and its folder are created when missing).
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        match DatabaseKind::from_url(url).map_err(|_| StorageError::UnsupportedUrl(redact(url)))? {
            DatabaseKind::Postgres => {
                let options = PgConnectOptions::from_str(url)?.application_name("metrix");
                let port = options.get_port();
                let pool = PgPoolOptions::new()
                    .max_connections(20)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(move |_, _| {
                        Box::pin(async move {
                            disable_nagle_towards(port);
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                Ok(Self::Postgres(pool))
            }
            DatabaseKind::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(15));
                if let Some(folder) = options
                    .get_filename()
                    .parent()
                    .filter(|folder| !folder.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(folder)?;
                }
                // Writers queue on SQLite's single lock; a small pool keeps the
                // busy waits short while readers run beside them under WAL.
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await?;
                Ok(Self::Sqlite(pool))
            }
        }
    }

    /// The backend in use.
    pub fn kind(&self) -> DatabaseKind {
        match self {
            Self::Postgres(_) => DatabaseKind::Postgres,
            Self::Sqlite(_) => DatabaseKind::Sqlite,
        }
    }

    /// Runs the service's pending migrations.
    pub async fn migrate(&self, migrations: Migrations) -> Result<(), StorageError> {
        let Migrations {
            mut postgres,
            mut sqlite,
            table,
        } = migrations;
        match self {
            Self::Postgres(pool) => {
                postgres.dangerous_set_table_name(table);
                postgres.run(pool).await?;
            }
            Self::Sqlite(pool) => {
                sqlite.dangerous_set_table_name(table);
                sqlite.run(pool).await?;
            }
        }
        Ok(())
    }

    /// Whether the store answers a trivial query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        crate::with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        crate::with_pool!(self, pool => pool.close().await);
    }
}

/// Runs the same code against whichever pool `database` holds: the body is
/// compiled once per backend, so it may use `sqlx::query`, `query_as` with a
/// `FromRow` type, and transactions, as long as both backends accept the SQL.
#[macro_export]
macro_rules! with_pool {
    ($database:expr, $pool:ident => $body:expr) => {
        match $database {
            $crate::storage::Database::Postgres($pool) => $body,
            $crate::storage::Database::Sqlite($pool) => $body,
        }
    };
}

/// Opens transactions that are going to write.
///
/// SQLite's default (deferred) transaction takes the write lock only at its
/// first write, so two that both read first can deadlock, and one of them
/// fails at once with SQLITE_BUSY whatever the busy timeout; `BEGIN
/// IMMEDIATE` takes the lock up front and the other waits. PostgreSQL's
/// row locks need no such care.
pub trait BeginWrite {
    /// The backend.
    type Backend: sqlx::Database;

    /// Begins a transaction that may write.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Backend>, sqlx::Error>> + Send;
}

impl BeginWrite for PgPool {
    type Backend = sqlx::Postgres;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

impl BeginWrite for SqlitePool {
    type Backend = sqlx::Sqlite;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Turns Nagle's algorithm off on this process's TCP sockets to `port`.
///
/// sqlx 0.9.0 connects without `TCP_NODELAY` (a regression upstream,
/// transact-rs/sqlx#4335, fixed after that release). Without it, a message
/// that spans more than one TCP segment (a batch of 500 events binds about
/// 100 KB) sends its last segment only when the server acknowledges the
/// previous one, which Linux delays by 40 ms: every such statement waited
/// 40 ms. sqlx offers no hook on its socket, so after each new connection
/// the process's sockets whose peer port is the database's get the option;
/// setting it again on one that has it, or on another client's socket to
/// the same port, is harmless.
#[cfg(target_os = "linux")]
fn disable_nagle_towards(port: u16) {
    for_each_socket_to(port, |socket| {
        if let Err(error) = socket.set_tcp_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY on a database connection");
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn disable_nagle_towards(_port: u16) {}

/// Calls `each` with every connected socket of this process whose peer port
/// is `port`, found through `/proc/self/fd`.
#[cfg(target_os = "linux")]
pub fn for_each_socket_to(port: u16, mut each: impl FnMut(socket2::SockRef<'_>)) {
    use std::os::fd::{BorrowedFd, RawFd};

    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<RawFd>().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open when listed and is only borrowed
        // for a few system calls. Were it closed and reused in between, they
        // act on whatever it became: getpeername fails on anything but a
        // connected socket, so at worst another socket to `port` is passed.
        #[allow(unsafe_code, reason = "the one way to borrow a descriptor by number; see SAFETY")]
        let descriptor = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&descriptor);
        let to_port = socket
            .peer_addr()
            .ok()
            .and_then(|address| address.as_socket())
            .is_some_and(|address| address.port() == port);
        if to_port {
            each(socket);
        }
    }
}

/// What a storage failure means to the caller, whichever backend raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The store is unreachable, restarting, out of connections or busy:
    /// the same call may succeed later (UNAVAILABLE, retry).
    Transient,
    /// A value cannot be stored as sent (PostgreSQL refuses NUL in text and
    /// `\u0000` in JSON): the caller's input, not the store, is at fault.
    UnstorableText,
    /// Anything else: a bug or an unexpected state (INTERNAL).
    Permanent,
}

/// Classifies a storage failure, so that an outage is answered "retry"
/// rather than reported as a bug.
pub fn classify(error: &sqlx::Error) -> FailureClass {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            FailureClass::Transient
        }
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => FailureClass::Transient,
        sqlx::Error::Database(database_error) => {
            let code = database_error.code().unwrap_or_default();
            if database_error
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                classify_sqlstate(&code)
            } else {
                classify_sqlite_code(&code)
            }
        }
        _ => FailureClass::Permanent,
    }
}

/// Classifies an SQLite (extended) result code: BUSY (5) and LOCKED (6),
/// with their extended codes, are transient.
fn classify_sqlite_code(code: &str) -> FailureClass {
    match code.parse::<u32>().map(|code| code & 0xff) {
        Ok(5 | 6) => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// Classifies a PostgreSQL SQLSTATE.
fn classify_sqlstate(code: &str) -> FailureClass {
    match code {
        // character_not_in_repertoire (NUL in text), untranslatable_character
        // (\u0000 in JSON).
        "22021" | "22P05" => FailureClass::UnstorableText,
        // Connection exceptions, shutdowns, "cannot connect now", too many
        // connections, serialization failures and deadlocks.
        "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03" => FailureClass::Transient,
        _ if code.starts_with("08") => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// Whether an error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database_error) if database_error.is_unique_violation())
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_backend() {
        assert_eq!(
            DatabaseKind::from_url("postgres://root@127.0.0.1/test"),
            Ok(DatabaseKind::Postgres)
        );
        assert_eq!(
            DatabaseKind::from_url("postgresql://root@127.0.0.1/test"),
            Ok(DatabaseKind::Postgres)
        );
        assert_eq!(
            DatabaseKind::from_url("sqlite://.metrix/auth.db"),
            Ok(DatabaseKind::Sqlite)
        );
        assert!(DatabaseKind::from_url("mysql://127.0.0.1/test").is_err());
    }

    #[test]
    fn outages_are_transient_and_nul_text_is_the_callers() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), FailureClass::Transient);
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            FailureClass::Transient
        );
        assert_eq!(classify(&sqlx::Error::RowNotFound), FailureClass::Permanent);
        for code in ["57P01", "57P03", "08006", "08001", "53300"] {
            assert_eq!(classify_sqlstate(code), FailureClass::Transient, "{code}");
        }
        for code in ["22021", "22P05"] {
            assert_eq!(classify_sqlstate(code), FailureClass::UnstorableText, "{code}");
        }
        for code in ["23505", "42P01", "22003"] {
            assert_eq!(classify_sqlstate(code), FailureClass::Permanent, "{code}");
        }
        for code in ["5", "517", "6", "262"] {
            assert_eq!(classify_sqlite_code(code), FailureClass::Transient, "{code}");
        }
        // A SQLSTATE must never be read as an SQLite code: 22021 (NUL in
        // text) would read as BUSY (22021 & 0xff == 5), which is why
        // `classify` asks which backend raised the error first.
        assert_eq!(classify_sqlite_code("22021"), FailureClass::Transient);
        for code in ["1", "19", "2067"] {
            assert_eq!(classify_sqlite_code(code), FailureClass::Permanent, "{code}");
        }
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://metrix:hunter2@db:5432/metrix"),
            "postgres://metrix:***@db:5432/metrix"
        );
    }

    #[tokio::test]
    async fn an_sqlite_file_is_created_with_its_folder() {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = folder.path().join("nested/metrix.db");
        let database = Database::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connects");
        database.ping().await.expect("answers");
        assert!(path.exists());
    }
}
