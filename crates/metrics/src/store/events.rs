//! Product events and their rollups: raw events (exactly once per
//! organisation and event id), and per bucket at three widths the event
//! counts and a sketch of the distinct users.

use std::collections::{BTreeMap, BTreeSet};

use metrix_core::storage::{BeginWrite as _, Database, is_unique_violation};
use metrix_core::with_pool;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use super::profiles::{write_profiles_postgres, write_profiles_sqlite};
use super::{Bind, DynamicQuery, MetricsStore};
use crate::error::MetricsError;
use crate::events::{EventSelection, NewEvent};
use crate::profiles::{ProfileChange, ProfileWrites};
use crate::sketch::{UserSketch, user_hash};

/// The widths of the rollups, in seconds: minute, hour, day.
pub const ROLLUP_WIDTHS: [i64; 3] = [60, 3_600, 86_400];
/// Events per SQLite INSERT statement (14 parameters each; under its limit).
const INSERT_CHUNK: usize = 500;
/// Rollup rows per upsert statement.
const ROLLUP_CHUNK: usize = 1_000;

pub(super) const EVENT_COLUMNS: &str = "event_id, app_id, user_id, event_type, event_name, properties, session_id, \
     client_timestamp, sent_at, received_at, occurred_at, user_agent, ip";

/// A stored event as read back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct EventRow {
    event_id: String,
    app_id: String,
    user_id: String,
    event_type: String,
    event_name: String,
    properties: String,
    session_id: String,
    client_timestamp: Option<i64>,
    sent_at: Option<i64>,
    received_at: i64,
    occurred_at: i64,
    user_agent: String,
    ip: String,
}

impl From<EventRow> for NewEvent {
    fn from(row: EventRow) -> Self {
        NewEvent {
            event_id: row.event_id,
            app_id: row.app_id,
            user_id: row.user_id,
            event_type: row.event_type,
            event_name: row.event_name,
            properties_json: row.properties,
            session_id: row.session_id,
            client_timestamp: row.client_timestamp,
            sent_at: row.sent_at,
            received_at: row.received_at,
            occurred_at: row.occurred_at,
            user_agent: row.user_agent,
            ip: row.ip,
        }
    }
}

/// Where the next page of events starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventCursor {
    /// When the last event of the previous page occurred, corrected for clock skew, in microseconds
    /// since the Unix epoch.
    pub occurred_at: i64,
    /// The id of that event, which orders events that occurred in the same microsecond.
    pub event_id: String,
}

/// The order events are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrder {
    /// Newest first (ListEvents).
    NewestFirst,
    /// Oldest first (ExportEvents).
    OldestFirst,
}

/// The start of the bucket of `width_seconds` holding `micros`.
pub fn bucket_start(micros: i64, width_seconds: i64) -> i64 {
    let width = width_seconds * 1_000_000;
    micros.div_euclid(width) * width
}

fn selection_conditions(query: &mut DynamicQuery, organization_id: &str, selection: &EventSelection) {
    let organization = query.text(organization_id);
    query.condition(format!("organization_id = {organization}"));
    if !selection.app_id.is_empty() {
        let app = query.text(&selection.app_id);
        query.condition(format!("app_id = {app}"));
    }
    if !selection.event_types.is_empty() {
        let list = query.text_list(&selection.event_types);
        query.condition(format!("event_type IN ({list})"));
    }
    if !selection.event_name.is_empty() {
        let name = query.text(&selection.event_name);
        query.condition(format!("event_name = {name}"));
    }
    if !selection.user_id.is_empty() {
        let user = query.text(&selection.user_id);
        query.condition(format!("user_id = {user}"));
    }
    if !selection.session_id.is_empty() {
        let session = query.text(&selection.session_id);
        query.condition(format!("session_id = {session}"));
    }
    if let Some(start) = selection.start {
        let start = query.integer(start);
        query.condition(format!("occurred_at >= {start}"));
    }
    if let Some(end) = selection.end {
        let end = query.integer(end);
        query.condition(format!("occurred_at < {end}"));
    }
}

/// Adds `app_id = …` when an app is chosen.
fn app_condition(query: &mut DynamicQuery, app_id: &str) {
    if !app_id.is_empty() {
        let app = query.text(app_id);
        query.condition(format!("app_id = {app}"));
    }
}

/// Chooses an organisation's rollup buckets of `width_seconds` that start
/// in `[start, end)`, of one app (all apps when `app_id` is empty).
fn bucket_conditions(organization_id: &str, app_id: &str, width_seconds: i64, start: i64, end: i64) -> DynamicQuery {
    let mut query = DynamicQuery::default();
    let organization = query.text(organization_id);
    query.condition(format!("organization_id = {organization}"));
    let width = query.integer(width_seconds);
    query.condition(format!("width_seconds = {width}"));
    let start = query.integer(start);
    query.condition(format!("bucket_start >= {start}"));
    let end = query.integer(end);
    query.condition(format!("bucket_start < {end}"));
    app_condition(&mut query, app_id);
    query
}

/// One count rollup bucket: (width in seconds, bucket start, app, event
/// type).
type BucketKey<'events> = (i64, i64, &'events str, &'events str);

/// One activity sketch: (width in seconds, bucket start, app).
type SketchKey = (i64, i64, String);

/// Event counts of `new_events` (the events that were new), per (width,
/// bucket, app, type), keys sorted so concurrent batches lock rows in the
/// same order.
fn count_rollups<'events>(new_events: impl Iterator<Item = &'events NewEvent>) -> Vec<(BucketKey<'events>, i64)> {
    let mut counts: BTreeMap<BucketKey<'_>, i64> = BTreeMap::new();
    for event in new_events {
        for width in ROLLUP_WIDTHS {
            let key = (
                width,
                bucket_start(event.occurred_at, width),
                event.app_id.as_str(),
                event.event_type.as_str(),
            );
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

/// A sketch of the users of `events` per (width, bucket, app), keys sorted
/// so concurrent batches lock rows in the same order. Adding a user to a
/// sketch twice changes nothing, so events already stored (a re-sent batch)
/// may be included: their users are in the sketches already.
fn activity_rollups(events: &[NewEvent]) -> BTreeMap<SketchKey, UserSketch> {
    let mut users: BTreeMap<(i64, i64, &str), Vec<u64>> = BTreeMap::new();
    for event in events.iter().filter(|event| !event.user_id.is_empty()) {
        let hash = user_hash(&event.user_id);
        for width in ROLLUP_WIDTHS {
            users
                .entry((width, bucket_start(event.occurred_at, width), event.app_id.as_str()))
                .or_default()
                .push(hash);
        }
    }
    users
        .into_iter()
        .map(|((width, bucket, app_id), hashes)| ((width, bucket, app_id.to_owned()), UserSketch::of_hashes(hashes)))
        .collect()
}

fn malformed(error: crate::sketch::MalformedSketch) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}

/// The sketch columns of `activity` as arrays: widths, bucket starts, apps
/// and encoded sketches.
type SketchColumns = (Vec<i32>, Vec<i64>, Vec<String>, Vec<Vec<u8>>);

/// The columns of the encoded sketches of `activity`.
fn activity_columns(activity: &BTreeMap<SketchKey, UserSketch>) -> SketchColumns {
    sketch_columns(activity.iter().map(|(key, sketch)| (key, sketch.encode())))
}

fn sketch_columns<K: std::borrow::Borrow<SketchKey>>(rows: impl Iterator<Item = (K, Vec<u8>)>) -> SketchColumns {
    let mut columns = SketchColumns::default();
    for (key, sketch) in rows {
        let (width, bucket, app_id) = key.borrow();
        columns.0.push(*width as i32);
        columns.1.push(*bucket);
        columns.2.push(app_id.clone());
        columns.3.push(sketch);
    }
    columns
}

/// Inserts the sketches of new buckets as they are and locks the existing
/// ones (a no-op update waits for, then sees, any concurrent writer's
/// committed sketch), returning each existing bucket with its stored sketch
/// (NULL for the inserted ones). Parameters from `$first`: widths, bucket
/// starts, apps, sketches; `$1` is the organisation.
fn lock_sketches_sql(first: usize) -> String {
    let [widths, buckets, apps, sketches] = [first, first + 1, first + 2, first + 3];
    format!(
        "INSERT INTO user_sketches (organization_id, width_seconds, bucket_start, app_id, sketch) \
         SELECT $1, * FROM UNNEST(${widths}::int4[], ${buckets}::int8[], ${apps}::text[], ${sketches}::bytea[]) \
         ON CONFLICT (organization_id, width_seconds, bucket_start, app_id) \
         DO UPDATE SET sketch = user_sketches.sketch \
         RETURNING width_seconds, bucket_start, app_id, CASE WHEN xmax = 0 THEN NULL ELSE sketch END AS stored"
    )
}

/// A row of [`lock_sketches_sql`]: width, bucket start, app and the stored
/// sketch (NULL when the statement inserted it).
type LockedRow = (i32, i64, String, Option<Vec<u8>>);

/// The existing sketches among `rows`, by key.
fn existing_sketches(rows: Vec<LockedRow>) -> Vec<(SketchKey, Vec<u8>)> {
    rows.into_iter()
        .filter_map(|(width, bucket, app_id, stored)| stored.map(|bytes| ((i64::from(width), bucket, app_id), bytes)))
        .collect()
}

/// Merges `activity` into the stored sketches `locked` returned (existing
/// buckets, locked by this transaction) and writes back those that changed
/// (a returning user changes nothing).
async fn write_merged_sketches(
    connection: &mut sqlx::PgConnection,
    organization_id: &str,
    activity: &BTreeMap<SketchKey, UserSketch>,
    locked: Vec<(SketchKey, Vec<u8>)>,
) -> Result<(), sqlx::Error> {
    let mut changed: Vec<(SketchKey, Vec<u8>)> = Vec::new();
    for (key, bytes) in locked {
        let Some(new) = activity.get(&key) else {
            continue;
        };
        let mut sketch = UserSketch::decode(&bytes).map_err(malformed)?;
        if sketch.merge(new) {
            let encoded = sketch.encode();
            changed.push((key, encoded));
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let (widths, buckets, apps, sketches) = sketch_columns(changed.into_iter());
    sqlx::query(
        "UPDATE user_sketches AS stored SET sketch = changed.sketch \
         FROM UNNEST($2::int4[], $3::int8[], $4::text[], $5::bytea[]) \
         AS changed (width_seconds, bucket_start, app_id, sketch) \
         WHERE stored.organization_id = $1 AND stored.width_seconds = changed.width_seconds \
         AND stored.bucket_start = changed.bucket_start AND stored.app_id = changed.app_id",
    )
    .bind(organization_id)
    .bind(widths)
    .bind(buckets)
    .bind(apps)
    .bind(sketches)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Adds `activity` to the stored sketches of `organization_id` (PostgreSQL,
/// in the caller's transaction).
async fn merge_sketches_postgres(
    connection: &mut sqlx::PgConnection,
    organization_id: &str,
    activity: &BTreeMap<SketchKey, UserSketch>,
) -> Result<(), sqlx::Error> {
    if activity.is_empty() {
        return Ok(());
    }
    let (widths, buckets, apps, sketches) = activity_columns(activity);
    let locked: Vec<LockedRow> = sqlx::query_as(AssertSqlSafe(lock_sketches_sql(2)))
        .bind(organization_id)
        .bind(widths)
        .bind(buckets)
        .bind(apps)
        .bind(sketches)
        .fetch_all(&mut *connection)
        .await?;
    let locked = existing_sketches(locked);
    write_merged_sketches(connection, organization_id, activity, locked).await
}

/// Adds `activity` to the stored sketches of `organization_id` (SQLite,
/// whose write transaction already excludes every other writer).
async fn merge_sketches_portable(
    connection: &mut sqlx::SqliteConnection,
    organization_id: &str,
    activity: &BTreeMap<SketchKey, UserSketch>,
) -> Result<(), sqlx::Error> {
    for ((width, bucket, app_id), new) in activity {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT sketch FROM user_sketches WHERE organization_id = $1 AND width_seconds = $2 \
             AND bucket_start = $3 AND app_id = $4",
        )
        .bind(organization_id)
        .bind(*width as i32)
        .bind(*bucket)
        .bind(app_id)
        .fetch_optional(&mut *connection)
        .await?;
        let merged = match stored {
            None => new.clone(),
            Some(bytes) => {
                let mut sketch = UserSketch::decode(&bytes).map_err(malformed)?;
                if !sketch.merge(new) {
                    continue;
                }
                sketch
            }
        };
        sqlx::query(
            "INSERT INTO user_sketches (organization_id, width_seconds, bucket_start, app_id, sketch) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, width_seconds, bucket_start, app_id) \
             DO UPDATE SET sketch = excluded.sketch",
        )
        .bind(organization_id)
        .bind(*width as i32)
        .bind(*bucket)
        .bind(app_id)
        .bind(merged.encode())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// A row of the ingestion statement: a new event's id, or a user sketch's
/// key with its stored sketch (NULL when the statement inserted it).
type IngestedRow = (
    Option<String>,
    Option<i32>,
    Option<i64>,
    Option<String>,
    Option<Vec<u8>>,
);

/// Appends `text` to a row of `COPY … FROM STDIN` (text format), escaping
/// what the format reads specially.
fn copy_text(row: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '\\' => row.push_str("\\\\"),
            '\t' => row.push_str("\\t"),
            '\n' => row.push_str("\\n"),
            '\r' => row.push_str("\\r"),
            other => row.push(other),
        }
    }
}

/// The rows of `events` of `organization_id` as `COPY` text, in the column
/// order of [`COPY_EVENTS`].
#[allow(clippy::expect_used, reason = "writing to a String cannot fail")]
fn copy_rows(organization_id: &str, events: &[NewEvent]) -> String {
    use std::fmt::Write as _;
    let mut rows = String::with_capacity(events.len() * 256);
    for event in events {
        for text in [
            organization_id,
            &event.event_id,
            &event.app_id,
            &event.user_id,
            &event.event_type,
            &event.event_name,
            &event.properties_json,
            &event.session_id,
        ] {
            copy_text(&mut rows, text);
            rows.push('\t');
        }
        for time in [
            event.client_timestamp,
            event.sent_at,
            Some(event.received_at),
            Some(event.occurred_at),
        ] {
            match time {
                Some(micros) => write!(rows, "{micros}\t").expect("writing to a String cannot fail"),
                None => rows.push_str("\\N\t"),
            }
        }
        copy_text(&mut rows, &event.user_agent);
        rows.push('\t');
        copy_text(&mut rows, &event.ip);
        rows.push('\n');
    }
    rows
}

const COPY_EVENTS: &str = "COPY events (organization_id, event_id, app_id, user_id, event_type, event_name, \
     properties, session_id, client_timestamp, sent_at, received_at, occurred_at, user_agent, ip) FROM STDIN";

/// PostgreSQL. A batch of new events (the usual case) is streamed with
/// `COPY`, the cheapest way into the table; counting them and locking the
/// user sketches is one more statement, then the sketches that gained users
/// are written back and the transaction commits. When any event is already
/// stored (a re-sent batch) or two batches race with the same id, `COPY`
/// refuses it with a unique violation: the transaction is rolled back and
/// the batch goes through [`upsert_events_postgres`], which stores only the
/// new ones.
async fn insert_events_postgres(
    pool: &sqlx::PgPool,
    organization_id: &str,
    events: &[NewEvent],
    changes: &[ProfileChange],
) -> Result<BTreeSet<String>, sqlx::Error> {
    let ids: BTreeSet<String> = events.iter().map(|event| event.event_id.clone()).collect();
    if ids.len() < events.len() {
        return upsert_events_postgres(pool, organization_id, events, changes).await;
    }
    let mut transaction = pool.begin().await?;
    let mut copy = transaction.copy_in_raw(COPY_EVENTS).await?;
    let copied = match copy.send(copy_rows(organization_id, events).into_bytes()).await {
        Ok(_) => copy.finish().await,
        Err(error) => {
            let _ = copy.abort("the batch could not be sent").await;
            Err(error)
        }
    };
    match copied {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) => {
            drop(transaction);
            return upsert_events_postgres(pool, organization_id, events, changes).await;
        }
        Err(error) => return Err(error),
    }
    let counts = count_rollups(events.iter());
    let activity = activity_rollups(events);
    let (sketch_widths, sketch_buckets, sketch_apps, sketches) = activity_columns(&activity);
    let sql = format!(
        "WITH counted AS ( \
             INSERT INTO event_counts (organization_id, width_seconds, bucket_start, app_id, event_type, event_count) \
             SELECT $1, * FROM UNNEST($2::int4[], $3::int8[], $4::text[], $5::text[], $6::int8[]) \
             ON CONFLICT (organization_id, width_seconds, bucket_start, app_id, event_type) \
             DO UPDATE SET event_count = event_counts.event_count + excluded.event_count \
         ), locked AS ({}) \
         SELECT width_seconds, bucket_start, app_id, stored FROM locked",
        lock_sketches_sql(7)
    );
    let locked: Vec<LockedRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(organization_id)
        .bind(counts.iter().map(|((width, ..), _)| *width as i32).collect::<Vec<_>>())
        .bind(counts.iter().map(|((_, bucket, ..), _)| *bucket).collect::<Vec<_>>())
        .bind(counts.iter().map(|((_, _, app_id, _), _)| *app_id).collect::<Vec<_>>())
        .bind(
            counts
                .iter()
                .map(|((.., event_type), _)| *event_type)
                .collect::<Vec<_>>(),
        )
        .bind(counts.iter().map(|(_, count)| *count).collect::<Vec<_>>())
        .bind(sketch_widths)
        .bind(sketch_buckets)
        .bind(sketch_apps)
        .bind(sketches)
        .fetch_all(&mut *transaction)
        .await?;
    let locked = existing_sketches(locked);
    write_merged_sketches(&mut transaction, organization_id, &activity, locked).await?;
    write_profiles_postgres(&mut transaction, organization_id, &ProfileWrites::of(changes)).await?;
    transaction.commit().await?;
    Ok(ids)
}

/// PostgreSQL, for batches that may hold stored events, in three round
/// trips inside the transaction: one statement takes whole columns as
/// arrays (`UNNEST`), stores the events that are new, adds them to the event
/// counts (in key order, so concurrent batches lock count rows in the same
/// order) and inserts or locks the user sketches of the batch; the sketches
/// that gained users are written back; commit.
async fn upsert_events_postgres(
    pool: &sqlx::PgPool,
    organization_id: &str,
    events: &[NewEvent],
    changes: &[ProfileChange],
) -> Result<BTreeSet<String>, sqlx::Error> {
    let activity = activity_rollups(events);
    let (sketch_widths, sketch_buckets, sketch_apps, sketches) = activity_columns(&activity);
    let text = |value: fn(&NewEvent) -> &str| events.iter().map(value).collect::<Vec<&str>>();
    let integer = |value: fn(&NewEvent) -> Option<i64>| events.iter().map(value).collect::<Vec<Option<i64>>>();
    let sql = format!(
        "WITH new AS ( \
             INSERT INTO events (organization_id, event_id, app_id, user_id, event_type, event_name, properties, \
             session_id, client_timestamp, sent_at, received_at, occurred_at, user_agent, ip) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::text[], $14::text[]) \
             ON CONFLICT (organization_id, event_id) DO NOTHING \
             RETURNING event_id, app_id, event_type, occurred_at \
         ), counted AS ( \
             INSERT INTO event_counts (organization_id, width_seconds, bucket_start, app_id, event_type, event_count) \
             SELECT $1, width, occurred_at - mod(mod(occurred_at, width * 1000000::int8) + width * 1000000::int8, \
             width * 1000000::int8) AS bucket, app_id, event_type, COUNT(*) \
             FROM new CROSS JOIN UNNEST($15::int4[]) AS width \
             GROUP BY width, bucket, app_id, event_type ORDER BY width, bucket, app_id, event_type \
             ON CONFLICT (organization_id, width_seconds, bucket_start, app_id, event_type) \
             DO UPDATE SET event_count = event_counts.event_count + excluded.event_count \
         ), locked AS ({}) \
         SELECT event_id, NULL::int4, NULL::int8, NULL::text, NULL::bytea FROM new \
         UNION ALL SELECT NULL, width_seconds, bucket_start, app_id, stored FROM locked",
        lock_sketches_sql(16)
    );
    let mut transaction = pool.begin().await?;
    let rows: Vec<IngestedRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(organization_id)
        .bind(text(|event| &event.event_id))
        .bind(text(|event| &event.app_id))
        .bind(text(|event| &event.user_id))
        .bind(text(|event| &event.event_type))
        .bind(text(|event| &event.event_name))
        .bind(text(|event| &event.properties_json))
        .bind(text(|event| &event.session_id))
        .bind(integer(|event| event.client_timestamp))
        .bind(integer(|event| event.sent_at))
        .bind(integer(|event| Some(event.received_at)))
        .bind(integer(|event| Some(event.occurred_at)))
        .bind(text(|event| &event.user_agent))
        .bind(text(|event| &event.ip))
        .bind(ROLLUP_WIDTHS.map(|width| width as i32).to_vec())
        .bind(sketch_widths)
        .bind(sketch_buckets)
        .bind(sketch_apps)
        .bind(sketches)
        .fetch_all(&mut *transaction)
        .await?;
    let mut inserted = BTreeSet::new();
    let mut locked = Vec::new();
    for row in rows {
        match row {
            (Some(event_id), ..) => {
                inserted.insert(event_id);
            }
            (None, Some(width), Some(bucket), Some(app_id), Some(stored)) => {
                locked.push(((i64::from(width), bucket, app_id), stored));
            }
            // A sketch this statement inserted: nothing to merge.
            _ => {}
        }
    }
    write_merged_sketches(&mut transaction, organization_id, &activity, locked).await?;
    write_profiles_postgres(&mut transaction, organization_id, &new_changes(changes, &inserted)).await?;
    transaction.commit().await?;
    Ok(inserted)
}

/// SQLite: multi-row `VALUES` statements in chunks under its parameter limit.
async fn insert_events_portable(
    pool: &sqlx::SqlitePool,
    organization_id: &str,
    events: &[NewEvent],
    changes: &[ProfileChange],
) -> Result<BTreeSet<String>, sqlx::Error> {
    let mut transaction = pool.begin_write().await?;
    let mut inserted = BTreeSet::new();
    for chunk in events.chunks(INSERT_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len())
            .map(|index| {
                let base = index * 14;
                let row: Vec<String> = (1..=14).map(|column| format!("${}", base + column)).collect();
                format!("({})", row.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (organization_id, {EVENT_COLUMNS}) VALUES {} \
             ON CONFLICT (organization_id, event_id) DO NOTHING RETURNING event_id",
            placeholders.join(", ")
        );
        let mut statement = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for event in chunk {
            statement = statement
                .bind(organization_id)
                .bind(&event.event_id)
                .bind(&event.app_id)
                .bind(&event.user_id)
                .bind(&event.event_type)
                .bind(&event.event_name)
                .bind(&event.properties_json)
                .bind(&event.session_id)
                .bind(event.client_timestamp)
                .bind(event.sent_at)
                .bind(event.received_at)
                .bind(event.occurred_at)
                .bind(&event.user_agent)
                .bind(&event.ip);
        }
        inserted.extend(statement.fetch_all(&mut *transaction).await?);
    }
    let counts = count_rollups(events.iter().filter(|event| inserted.contains(&event.event_id)));
    for chunk in counts.chunks(ROLLUP_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|index| {
                let base = index * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4,
                    base + 5,
                    base + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO event_counts (organization_id, width_seconds, bucket_start, app_id, event_type, event_count) \
             VALUES {} ON CONFLICT (organization_id, width_seconds, bucket_start, app_id, event_type) \
             DO UPDATE SET event_count = event_counts.event_count + excluded.event_count",
            rows.join(", ")
        );
        let mut statement = sqlx::query(AssertSqlSafe(sql));
        for ((width, bucket, app_id, event_type), count) in chunk {
            statement = statement
                .bind(organization_id)
                .bind(*width as i32)
                .bind(*bucket)
                .bind(*app_id)
                .bind(*event_type)
                .bind(*count);
        }
        statement.execute(&mut *transaction).await?;
    }
    merge_sketches_portable(&mut transaction, organization_id, &activity_rollups(events)).await?;
    write_profiles_sqlite(&mut transaction, organization_id, &new_changes(changes, &inserted)).await?;
    transaction.commit().await?;
    Ok(inserted)
}

/// The profile writes of the changes whose events were new.
fn new_changes(changes: &[ProfileChange], inserted: &BTreeSet<String>) -> ProfileWrites {
    ProfileWrites::of(changes.iter().filter(|change| inserted.contains(&change.event_id)))
}

/// The users of the retired `user_activity` rollup (hours and days) and of
/// the kept raw events (minutes): organisation, app, width, bucket, user.
const RETIRED_ACTIVITY: &str = "SELECT organization_id, app_id, width_seconds, bucket_start, user_id FROM user_activity \
     UNION ALL SELECT organization_id, app_id, 60, \
     occurred_at - (((occurred_at % 60000000) + 60000000) % 60000000), user_id FROM events WHERE user_id <> ''";

/// Sketches of `RETIRED_ACTIVITY`'s rows, per organisation.
fn retired_sketches(
    rows: Vec<(String, String, i32, i64, String)>,
) -> BTreeMap<String, BTreeMap<SketchKey, UserSketch>> {
    let mut users: BTreeMap<String, BTreeMap<SketchKey, Vec<u64>>> = BTreeMap::new();
    for (organization_id, app_id, width, bucket, user_id) in rows {
        users
            .entry(organization_id)
            .or_default()
            .entry((i64::from(width), bucket, app_id))
            .or_default()
            .push(user_hash(&user_id));
    }
    users
        .into_iter()
        .map(|(organization_id, buckets)| {
            let sketches = buckets
                .into_iter()
                .map(|(key, hashes)| (key, UserSketch::of_hashes(hashes)))
                .collect();
            (organization_id, sketches)
        })
        .collect()
}

/// Folds the retired `user_activity` table (users per hour and day) into
/// `user_sketches`, with minute sketches built from the raw events still
/// kept, and drops it, in the caller's transaction (PostgreSQL); nothing to
/// do once it is gone. The data migration
/// [`FOLD_USER_ACTIVITY`](super::data_migrations::FOLD_USER_ACTIVITY).
pub(super) async fn fold_retired_activity_postgres(connection: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('user_activity') IS NOT NULL")
        .fetch_one(&mut *connection)
        .await?;
    if exists {
        let rows = sqlx::query_as(RETIRED_ACTIVITY).fetch_all(&mut *connection).await?;
        for (organization_id, activity) in retired_sketches(rows) {
            merge_sketches_postgres(connection, &organization_id, &activity).await?;
        }
        sqlx::query("DROP TABLE user_activity")
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// [`fold_retired_activity_postgres`] for SQLite, in the caller's write
/// transaction.
pub(super) async fn fold_retired_activity_sqlite(connection: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'user_activity')",
    )
    .fetch_one(&mut *connection)
    .await?;
    if exists {
        let rows = sqlx::query_as(RETIRED_ACTIVITY).fetch_all(&mut *connection).await?;
        for (organization_id, activity) in retired_sketches(rows) {
            merge_sketches_portable(connection, &organization_id, &activity).await?;
        }
        sqlx::query("DROP TABLE user_activity")
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

impl MetricsStore {
    /// Stores the events that are new and updates the rollups with them, in
    /// one transaction; returns the ids that were new. Events already stored
    /// (same organisation and id) are left as they are.
    pub async fn insert_events(
        &self,
        organization_id: &str,
        events: &[NewEvent],
    ) -> Result<BTreeSet<String>, MetricsError> {
        self.insert_tracked_events(organization_id, events, &[]).await
    }

    /// [`insert_events`](Self::insert_events), and in the same transaction
    /// the profile changes of the tracking messages whose events were new
    /// (`changes`, in message order; a re-sent message changes nothing).
    pub async fn insert_tracked_events(
        &self,
        organization_id: &str,
        events: &[NewEvent],
        changes: &[ProfileChange],
    ) -> Result<BTreeSet<String>, MetricsError> {
        if events.is_empty() {
            return Ok(BTreeSet::new());
        }
        let outcome = match &self.database {
            Database::Postgres(pool) => insert_events_postgres(pool, organization_id, events, changes).await,
            Database::Sqlite(pool) => insert_events_portable(pool, organization_id, events, changes).await,
        };
        Ok(outcome?)
    }

    /// One stored event.
    pub async fn event(&self, organization_id: &str, event_id: &str) -> Result<Option<NewEvent>, MetricsError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE organization_id = $1 AND event_id = $2");
        let row = with_pool!(&self.database, pool => sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql))
            .bind(organization_id)
            .bind(event_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(NewEvent::from))
    }

    /// The stored events among `event_ids`, in the order of `event_ids`.
    pub async fn events_by_ids(
        &self,
        organization_id: &str,
        event_ids: &[String],
    ) -> Result<Vec<NewEvent>, MetricsError> {
        let mut found: std::collections::HashMap<String, NewEvent> = std::collections::HashMap::new();
        for chunk in event_ids.chunks(INSERT_CHUNK) {
            let mut query = DynamicQuery::default();
            let organization = query.text(organization_id);
            query.condition(format!("organization_id = {organization}"));
            let list = query.text_list(chunk);
            query.condition(format!("event_id IN ({list})"));
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events {}", query.where_clause());
            let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, EventRow, &sql, query))?;
            found.extend(rows.into_iter().map(|row| (row.event_id.clone(), NewEvent::from(row))));
        }
        Ok(event_ids.iter().filter_map(|event_id| found.remove(event_id)).collect())
    }

    /// Up to `limit` events matching `selection` after `cursor`, in `order`.
    pub async fn list_events(
        &self,
        organization_id: &str,
        selection: &EventSelection,
        cursor: Option<&EventCursor>,
        limit: u32,
        order: EventOrder,
    ) -> Result<Vec<NewEvent>, MetricsError> {
        let mut query = DynamicQuery::default();
        selection_conditions(&mut query, organization_id, selection);
        let (comparison, direction) = match order {
            EventOrder::NewestFirst => ("<", "DESC"),
            EventOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(cursor) = cursor {
            let time = query.integer(cursor.occurred_at);
            let same_time = query.integer(cursor.occurred_at);
            let id = query.text(&cursor.event_id);
            query.condition(format!(
                "(occurred_at {comparison} {time} OR (occurred_at = {same_time} AND event_id {comparison} {id}))"
            ));
        }
        let limit_placeholder = query.integer(i64::from(limit));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events {} ORDER BY occurred_at {direction}, event_id {direction} \
             LIMIT {limit_placeholder}",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, EventRow, &sql, query))?;
        Ok(rows.into_iter().map(NewEvent::from).collect())
    }

    /// The number of events matching `selection` per type, largest first.
    pub async fn count_events(
        &self,
        organization_id: &str,
        selection: &EventSelection,
    ) -> Result<Vec<(String, i64)>, MetricsError> {
        let mut query = DynamicQuery::default();
        selection_conditions(&mut query, organization_id, selection);
        let sql = format!(
            "SELECT event_type, COUNT(*) FROM events {} GROUP BY event_type ORDER BY COUNT(*) DESC, event_type",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (String, i64), &sql, query))?;
        Ok(rows)
    }

    /// Event counts per bucket of `width_seconds` in `[start, end)`, from the rollups.
    pub async fn event_series(
        &self,
        organization_id: &str,
        app_id: &str,
        width_seconds: i64,
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, i64)>, MetricsError> {
        let query = bucket_conditions(organization_id, app_id, width_seconds, start, end);
        let sql = format!(
            "SELECT bucket_start, CAST(SUM(event_count) AS BIGINT) FROM event_counts {} \
             GROUP BY bucket_start ORDER BY bucket_start",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (i64, i64), &sql, query))?;
        Ok(rows)
    }

    /// Event counts per type in `[start, end)` from the rollups of
    /// `width_seconds`, largest first, then by type.
    pub async fn event_type_counts(
        &self,
        organization_id: &str,
        app_id: &str,
        width_seconds: i64,
        start: i64,
        end: i64,
    ) -> Result<Vec<(String, i64)>, MetricsError> {
        let query = bucket_conditions(organization_id, app_id, width_seconds, start, end);
        let sql = format!(
            "SELECT event_type, CAST(SUM(event_count) AS BIGINT) AS total FROM event_counts {} \
             GROUP BY event_type ORDER BY total DESC, event_type",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (String, i64), &sql, query))?;
        Ok(rows)
    }

    /// The number of raw events in `[start, end)`.
    pub async fn raw_event_count(
        &self,
        organization_id: &str,
        app_id: &str,
        start: i64,
        end: i64,
    ) -> Result<i64, MetricsError> {
        let selection = EventSelection {
            app_id: app_id.to_owned(),
            start: Some(start),
            end: Some(end),
            ..EventSelection::default()
        };
        let mut query = DynamicQuery::default();
        selection_conditions(&mut query, organization_id, &selection);
        let sql = format!("SELECT COUNT(*) FROM events {}", query.where_clause());
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (i64,), &sql, query))?;
        Ok(rows.first().map_or(0, |row| row.0))
    }

    /// The user sketches of the buckets of `width_seconds` in `[start,
    /// end)`, per bucket start (one per app; all apps when `app_id` is empty).
    pub async fn activity_sketches(
        &self,
        organization_id: &str,
        app_id: &str,
        width_seconds: i64,
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, UserSketch)>, MetricsError> {
        let query = bucket_conditions(organization_id, app_id, width_seconds, start, end);
        let sql = format!(
            "SELECT bucket_start, sketch FROM user_sketches {} ORDER BY bucket_start",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (i64, Vec<u8>), &sql, query))?;
        let sketches = rows
            .into_iter()
            .map(|(bucket, bytes)| UserSketch::decode(&bytes).map(|sketch| (bucket, sketch)))
            .collect::<Result<_, _>>()
            .map_err(malformed)?;
        Ok(sketches)
    }

    /// Deletes up to `limit` raw events that happened before `cutoff`
    /// (rollups stay); returns how many went.
    pub async fn delete_events_before(&self, cutoff: i64, limit: i64) -> Result<u64, MetricsError> {
        let deleted = with_pool!(&self.database, pool => sqlx::query(
            "DELETE FROM events WHERE (organization_id, event_id) IN \
             (SELECT organization_id, event_id FROM events WHERE occurred_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_the_epoch() {
        let minute = 60_000_000;
        assert_eq!(bucket_start(0, 60), 0);
        assert_eq!(bucket_start(minute + 5, 60), minute);
        assert_eq!(bucket_start(-1, 60), -minute);
        assert_eq!(bucket_start(86_400_000_000 * 3 + 7, 86_400), 86_400_000_000 * 3);
    }
}
