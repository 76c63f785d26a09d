//! Verification by event id, read straight from the metrics database
//! (`events`, keyed by organisation and event id): what was answered
//! ACCEPTED or QUEUED must be there exactly once, what was REJECTED must not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Connection as _;

use crate::client::{EventStatus, Outcome};
use crate::load::{Call, Ledger};

/// How long queued events may take to be stored once the fault is over.
pub const STORE_DEADLINE: Duration = Duration::from_secs(20);

/// Where the metrics service keeps events.
#[derive(Debug, Clone)]
pub enum EventStore {
    /// A PostgreSQL database, by URL.
    Postgres(String),
    /// The SQLite file of the embedded mode.
    Sqlite(PathBuf),
}

/// Stored event ids, each with its number of rows.
pub type Stored = BTreeMap<String, i64>;

impl EventStore {
    /// Every stored event id of the organisation, with its number of rows.
    pub async fn stored(&self, organization_id: &str) -> Result<Stored, String> {
        const QUERY_PG: &str = "SELECT event_id, COUNT(*) FROM events WHERE organization_id = $1 GROUP BY event_id";
        const QUERY_SQLITE: &str = "SELECT event_id, COUNT(*) FROM events WHERE organization_id = ?1 GROUP BY event_id";
        let rows: Vec<(String, i64)> = match self {
            EventStore::Postgres(url) => {
                let mut connection = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|error| error.to_string())?;
                let rows = sqlx::query_as(QUERY_PG)
                    .bind(organization_id)
                    .fetch_all(&mut connection)
                    .await
                    .map_err(|error| error.to_string());
                let _ = connection.close().await;
                rows?
            }
            EventStore::Sqlite(path) => {
                let mut connection = sqlx::SqliteConnection::connect_with(&sqlite_options(path))
                    .await
                    .map_err(|error| error.to_string())?;
                let rows = sqlx::query_as(QUERY_SQLITE)
                    .bind(organization_id)
                    .fetch_all(&mut connection)
                    .await
                    .map_err(|error| error.to_string());
                let _ = connection.close().await;
                rows?
            }
        };
        Ok(rows.into_iter().collect())
    }

    /// How many events of the organisation are stored.
    pub async fn count(&self, organization_id: &str) -> Result<usize, String> {
        const QUERY_PG: &str = "SELECT COUNT(*) FROM events WHERE organization_id = $1";
        const QUERY_SQLITE: &str = "SELECT COUNT(*) FROM events WHERE organization_id = ?1";
        let count: i64 = match self {
            EventStore::Postgres(url) => {
                let mut connection = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|error| error.to_string())?;
                let count = sqlx::query_scalar(QUERY_PG)
                    .bind(organization_id)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(|error| error.to_string());
                let _ = connection.close().await;
                count?
            }
            EventStore::Sqlite(path) => {
                let mut connection = sqlx::SqliteConnection::connect_with(&sqlite_options(path))
                    .await
                    .map_err(|error| error.to_string())?;
                let count = sqlx::query_scalar(QUERY_SQLITE)
                    .bind(organization_id)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(|error| error.to_string());
                let _ = connection.close().await;
                count?
            }
        };
        Ok(usize::try_from(count).unwrap_or_default())
    }

    /// Polls until every id of `expected` is stored, at most
    /// [`STORE_DEADLINE`]; returns what is stored then, or what is missing.
    /// `what` says how the ids were answered, for the message.
    pub async fn wait_until_stored(
        &self,
        organization_id: &str,
        expected: &BTreeSet<String>,
        what: &str,
    ) -> Result<Stored, String> {
        let deadline = Instant::now() + STORE_DEADLINE;
        loop {
            let attempt = self.stored(organization_id).await;
            if let Ok(stored) = &attempt
                && expected.iter().all(|id| stored.contains_key(id))
            {
                return attempt;
            }
            if Instant::now() >= deadline {
                let stored = attempt.map_err(|error| format!("cannot read the stored events: {error}"))?;
                let missing: Vec<&String> = expected.iter().filter(|id| !stored.contains_key(*id)).collect();
                return Err(format!(
                    "{} of {} events answered {what} were not stored within {STORE_DEADLINE:?} \
                     ({} events of the organisation are stored); missing, e.g.: {}",
                    missing.len(),
                    expected.len(),
                    stored.len(),
                    sample(missing)
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The metrics database of the embedded mode, opened beside the running
/// process (it is in WAL mode, so reading does not block its writers).
fn sqlite_options(path: &Path) -> sqlx::sqlite::SqliteConnectOptions {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5))
}

/// The problems a test found; it fails once, at the end, listing them all,
/// so one run shows every defect a fault exposes.
#[derive(Debug, Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// Records `problem` unless `holds`.
    pub fn expect(&mut self, holds: bool, problem: impl FnOnce() -> String) {
        if !holds {
            self.0.push(problem());
        }
    }

    /// Records a problem.
    pub fn add(&mut self, problem: String) {
        self.0.push(problem);
    }

    /// Records the error of `result`, if any, and passes its value on.
    pub fn keep<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|problem| self.0.push(problem)).ok()
    }

    /// Fails the test when anything was found.
    pub fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n{}",
            self.0.len(),
            self.0
                .iter()
                .enumerate()
                .map(|(index, problem)| format!("  {}. {problem}", index + 1))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Every stored id has exactly one row.
pub fn stored_once(stored: &Stored) -> Result<(), String> {
    let repeated: Vec<String> = stored
        .iter()
        .filter(|(_, rows)| **rows != 1)
        .map(|(id, rows)| format!("{id} ({rows} rows)"))
        .collect();
    if repeated.is_empty() {
        Ok(())
    } else {
        Err(format!("events stored more than once: {}", sample(&repeated)))
    }
}

/// None of `ids` is stored.
pub fn none_stored(stored: &Stored, ids: &BTreeSet<String>, what: &str) -> Result<(), String> {
    let found: Vec<&String> = ids.iter().filter(|id| stored.contains_key(*id)).collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} events answered {what} are stored: {}",
            found.len(),
            sample(found)
        ))
    }
}

/// The promise of every answer, for the calls `selected` keeps: each event
/// answered ACCEPTED or QUEUED is stored exactly once (queued ones within
/// [`STORE_DEADLINE`]), and no event answered REJECTED is stored. Returns
/// what is stored.
pub async fn check_answers_kept(
    findings: &mut Findings,
    store: &EventStore,
    organization_id: &str,
    ledger: &Ledger,
    selected: impl Fn(&Call) -> bool,
) -> Stored {
    let mut kept = ledger.ids_answered(&EventStatus::Accepted, &selected);
    kept.extend(ledger.ids_answered(&EventStatus::Queued, &selected));
    let rejected = ledger.ids_answered(&EventStatus::Rejected, &selected);
    findings.expect(!kept.is_empty(), || {
        format!(
            "no event was answered ACCEPTED or QUEUED, so nothing was checked (calls: {})",
            ledger.summary()
        )
    });
    let stored = match store
        .wait_until_stored(organization_id, &kept, "ACCEPTED or QUEUED")
        .await
    {
        Ok(stored) => stored,
        Err(problem) => {
            findings.add(problem);
            store.stored(organization_id).await.unwrap_or_default()
        }
    };
    findings.keep(stored_once(&stored));
    findings.keep(none_stored(&stored, &rejected, "REJECTED"));
    stored
}

/// Every call `selected` keeps that failed did so with 503 and a
/// `Retry-After` header: a dependency outage is "retry later", never 500,
/// a gateway error or a hang.
pub fn check_failures_are_503(
    findings: &mut Findings,
    ledger: &Ledger,
    selected: impl Fn(&Call) -> bool,
    during: &str,
) {
    let wrong: Vec<String> = ledger
        .calls()
        .iter()
        .filter(|call| selected(call))
        .filter(|call| {
            !matches!(
                &call.outcome,
                Outcome::Answered(_)
                    | Outcome::Refused {
                        http_status: 503,
                        retry_after: Some(_),
                        ..
                    }
            )
        })
        .map(|call| call.outcome.describe())
        .collect();
    findings.expect(wrong.is_empty(), || {
        format!(
            "{} calls {during} failed otherwise than 503 with Retry-After (calls: {}); e.g.: {}",
            wrong.len(),
            ledger.summary(),
            sample(&wrong)
        )
    });
}

/// At most ten items, for failure messages.
pub fn sample<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<T> = items.into_iter().collect();
    let shown: Vec<String> = items.iter().take(10).map(|item| format!("{item:?}")).collect();
    if items.len() > shown.len() {
        format!("{} … ({} in all)", shown.join(", "), items.len())
    } else {
        shown.join(", ")
    }
}
