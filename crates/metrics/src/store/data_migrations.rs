//! Data migrations: rewrites of stored data that need the service's own code
//! (the sketch encoder, say) and so cannot be SQL migrations. They run after
//! the SQL migrations, once per database: each in one transaction with the
//! row of `_metrics_data_migrations` that records it, so a rewrite is either
//! done and recorded or neither, and a later start skips it without looking
//! at the data again. Instances starting together take turns.
//!
//! Adding one: a name that sorts after the last (the date it lands), a
//! function per backend that works in the given transaction, and a line in
//! [`MetricsStore::run_data_migrations`]. A data migration stays for as long
//! as a database from before it may still be upgraded.

use metrix_core::storage::{BeginWrite as _, Database};
use metrix_core::time::now_micros;

use super::MetricsStore;
use super::events::{fold_retired_activity_postgres, fold_retired_activity_sqlite};

/// Folds the retired `user_activity` table (users per hour and day, a row
/// per user) into the distinct-user sketches of `user_sketches`, with minute
/// sketches from the raw events still kept, and drops it. The SQL migration
/// `20261202000001_user_sketches` that made the sketches calls this step
/// `upgrade_activity`, the start-up step it was before it was recorded.
pub const FOLD_USER_ACTIVITY: &str = "20261202000001_fold_user_activity";

/// The PostgreSQL advisory lock the data migrations run under: the key the
/// unrecorded start-up step took, so an older instance starting beside a
/// newer one takes turns with it too.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('metrix.metrics.user_activity'))";

const RECORDED: &str = "SELECT EXISTS (SELECT 1 FROM _metrics_data_migrations WHERE name = $1)";

const RECORD: &str = "INSERT INTO _metrics_data_migrations (name, applied_at) VALUES ($1, $2)";

impl MetricsStore {
    /// Runs the data migrations this database has not recorded, each in one
    /// transaction with its record; the names of those that ran.
    pub async fn run_data_migrations(&self) -> Result<Vec<&'static str>, sqlx::Error> {
        let mut ran = Vec::new();
        let name = FOLD_USER_ACTIVITY;
        let done = match &self.database {
            Database::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                sqlx::query(LOCK).execute(&mut *transaction).await?;
                let recorded: bool = sqlx::query_scalar(RECORDED)
                    .bind(name)
                    .fetch_one(&mut *transaction)
                    .await?;
                if !recorded {
                    fold_retired_activity_postgres(&mut transaction).await?;
                    sqlx::query(RECORD)
                        .bind(name)
                        .bind(now_micros())
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                !recorded
            }
            Database::Sqlite(pool) => {
                let mut transaction = pool.begin_write().await?;
                let recorded: bool = sqlx::query_scalar(RECORDED)
                    .bind(name)
                    .fetch_one(&mut *transaction)
                    .await?;
                if !recorded {
                    fold_retired_activity_sqlite(&mut transaction).await?;
                    sqlx::query(RECORD)
                        .bind(name)
                        .bind(now_micros())
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                !recorded
            }
        };
        if done {
            tracing::info!(data_migration = name, "data migration applied");
            ran.push(name);
        }
        Ok(ran)
    }
}
