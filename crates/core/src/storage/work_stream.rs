//! Work streams kept in the relational store, for deployments without
//! Redis (`metrix dev` on SQLite): an entry answered as appended is
//! committed, so it survives a crash or a restart of the process exactly as
//! a Redis entry survives with AOF.
//!
//! Each stream has one consumer group (the `group` arguments name it for
//! the logs only): an entry row is waiting while `consumer` is null, in
//! flight once a consumer took it, and deleted when acknowledged, so the
//! table holds only what is still to do.

use std::time::Duration;

use async_trait::async_trait;

use crate::cache::{Appended, CacheError, DeadLetter, StreamEntry, StreamStats, WorkStream};
use crate::storage::{Database, Migrations};
use crate::time::{duration_micros, now_micros};

/// The migrations of the work-stream tables, recorded in their own table so
/// any service can keep its queue beside its own schema.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/work_streams/postgres"),
        sqlite: sqlx::migrate!("./migrations/work_streams/sqlite"),
        table: "_work_stream_migrations",
    }
}

/// How often a reader waiting for new entries looks again when no append
/// of this process woke it (another instance may append on PostgreSQL).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Work streams in the relational store.
pub struct SqlWorkStream {
    database: Database,
    appended: tokio::sync::Notify,
}

impl SqlWorkStream {
    /// A work stream on `database`, whose [`migrations`] have run.
    pub fn new(database: Database) -> Self {
        Self {
            database,
            appended: tokio::sync::Notify::new(),
        }
    }

    /// Hands up to `count` entries matching `condition` to `consumer`.
    async fn deliver(
        &self,
        stream: &str,
        consumer: &str,
        count: usize,
        condition: &str,
        stale_before: i64,
    ) -> Result<Vec<StreamEntry>, CacheError> {
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        // PostgreSQL instances share the table: SKIP LOCKED keeps two from
        // taking the same rows, and the outer condition is checked again on
        // each locked row. SQLite has one writer at a time.
        let lock = match self.database {
            Database::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Database::Sqlite(_) => "",
        };
        // The chosen ids are materialised once: as a plain `IN (subquery)`
        // PostgreSQL may run the limited subquery more than once.
        let sql = format!(
            "WITH taken AS MATERIALIZED (\
                 SELECT id FROM work_stream_entries WHERE stream = $3 AND ({condition}) ORDER BY id LIMIT $5{lock}) \
             UPDATE work_stream_entries SET consumer = $1, delivered_at = $2, deliveries = deliveries + 1 \
             WHERE stream = $3 AND ({condition}) AND id IN (SELECT id FROM taken) \
             RETURNING id, payload, deliveries"
        );
        let now = now_micros();
        let mut rows: Vec<(i64, Vec<u8>, i64)> = crate::with_pool!(&self.database, pool => {
            // Audited: `condition` and `lock` are constants of this module;
            // every value is bound.
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(consumer)
                .bind(now)
                .bind(stream)
                .bind(stale_before)
                .bind(limit)
                .fetch_all(pool)
                .await
        })?;
        rows.sort_by_key(|(id, _, _)| *id);
        Ok(rows
            .into_iter()
            .map(|(id, payload, deliveries)| StreamEntry {
                id: id.to_string(),
                payload,
                deliveries: u64::try_from(deliveries).unwrap_or(0),
            })
            .collect())
    }
}

fn parse_ids(ids: &[String]) -> Vec<i64> {
    ids.iter().filter_map(|id| id.parse().ok()).collect()
}

#[async_trait]
impl WorkStream for SqlWorkStream {
    async fn append(&self, stream: &str, _group: &str, payload: &[u8], max_depth: u64) -> Result<Appended, CacheError> {
        let (depth,): (i64,) = crate::with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT count(*) FROM work_stream_entries WHERE stream = $1")
                .bind(stream)
                .fetch_one(pool)
                .await
        })?;
        let depth = u64::try_from(depth).unwrap_or(0);
        if depth >= max_depth {
            return Ok(Appended::Full { depth });
        }
        let (id,): (i64,) = crate::with_pool!(&self.database, pool => {
            sqlx::query_as("INSERT INTO work_stream_entries (stream, payload, appended_at) VALUES ($1, $2, $3) RETURNING id")
                .bind(stream)
                .bind(payload)
                .bind(now_micros())
                .fetch_one(pool)
                .await
        })?;
        self.appended.notify_waiters();
        Ok(Appended::Queued(id.to_string()))
    }

    async fn read_new(
        &self,
        stream: &str,
        _group: &str,
        consumer: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<StreamEntry>, CacheError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an append in between is not missed.
            let appended = self.appended.notified();
            // `$4` (the stale cut-off) plays no part in taking new entries,
            // but every statement binds it.
            let entries = self
                .deliver(stream, consumer, count, "consumer IS NULL AND $4 = $4", 0)
                .await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL_INTERVAL), appended).await;
        }
    }

    async fn claim_stale(
        &self,
        stream: &str,
        _group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, CacheError> {
        let stale_before = now_micros() - duration_micros(min_idle);
        self.deliver(
            stream,
            consumer,
            count,
            "consumer IS NOT NULL AND delivered_at <= $4",
            stale_before,
        )
        .await
    }

    async fn acknowledge(&self, stream: &str, _group: &str, ids: &[String]) -> Result<(), CacheError> {
        for id in parse_ids(ids) {
            crate::with_pool!(&self.database, pool => {
                sqlx::query("DELETE FROM work_stream_entries WHERE stream = $1 AND id = $2")
                    .bind(stream)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|_| ())
            })?;
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        stream: &str,
        _group: &str,
        entry: &StreamEntry,
        reason: &str,
    ) -> Result<(), CacheError> {
        let Some(id) = parse_ids(std::slice::from_ref(&entry.id)).pop() else {
            return Err(CacheError::Corrupt(format!("not an entry id: {}", entry.id)));
        };
        // One transaction: the entry is in exactly one of the two tables.
        crate::with_pool!(&self.database, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query(
                "INSERT INTO work_stream_dead_letters (stream, entry_id, reason, payload, failed_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(stream)
            .bind(&entry.id)
            .bind(reason)
            .bind(&entry.payload)
            .bind(now_micros())
            .execute(&mut *transaction)
            .await?;
            sqlx::query("DELETE FROM work_stream_entries WHERE stream = $1 AND id = $2")
                .bind(stream)
                .bind(id)
                .execute(&mut *transaction)
                .await?;
            // Each arm has its own backend's types; only the outcome is shared.
            transaction.commit().await
        })?;
        Ok(())
    }

    async fn maintain(&self, stream: &str) -> Result<StreamStats, CacheError> {
        // Acknowledged entries are deleted at once: nothing to trim.
        let (depth, oldest): (i64, Option<i64>) = crate::with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT count(*), min(appended_at) FROM work_stream_entries WHERE stream = $1")
                .bind(stream)
                .fetch_one(pool)
                .await
        })?;
        let (dead_letters,): (i64,) = crate::with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT count(*) FROM work_stream_dead_letters WHERE stream = $1")
                .bind(stream)
                .fetch_one(pool)
                .await
        })?;
        let lag = oldest
            .map(|appended_at| Duration::from_micros(u64::try_from(now_micros() - appended_at).unwrap_or(0)))
            .unwrap_or_default();
        Ok(StreamStats {
            depth: u64::try_from(depth).unwrap_or(0),
            lag,
            dead_letters: u64::try_from(dead_letters).unwrap_or(0),
        })
    }

    async fn dead_letters(&self, stream: &str, count: usize) -> Result<Vec<DeadLetter>, CacheError> {
        let rows: Vec<(i64, String, String, Vec<u8>)> = crate::with_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT id, entry_id, reason, payload FROM work_stream_dead_letters \
                 WHERE stream = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(stream)
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, entry_id, reason, payload)| DeadLetter {
                id: id.to_string(),
                entry_id,
                reason,
                payload,
            })
            .collect())
    }
}
