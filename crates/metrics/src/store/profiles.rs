//! User profiles, aliases and group memberships: written in the transaction
//! that stores the tracking messages' events (only for the events that were
//! new, so a re-sent message changes nothing), read by GetUserProfile,
//! ListUserProfiles and ListUserProfileEvents.
//!
//! Each write first upserts the row it changes, which locks it for the
//! transaction on PostgreSQL (SQLite's write transaction excludes every
//! other writer), then merges traits in Rust, so both backends merge alike.

use std::collections::{BTreeMap, HashMap};

use metrix_core::with_pool;
use serde::{Deserialize, Serialize};

use super::events::{EVENT_COLUMNS, EventCursor, EventRow};
use super::{Bind, DynamicQuery, MetricsStore};
use crate::error::MetricsError;
use crate::events::NewEvent;
use crate::profiles::{ProfileWrites, TraitFilter, Traits, merge_traits, traits_of};

/// Ids per `IN (…)` list.
const ID_CHUNK: usize = 500;
/// Profiles read per round while a trait filter looks for a page.
const SCAN_CHUNK: u32 = 500;

/// Upserts a profile's first and last seen; answers its stored traits.
const TOUCH_PROFILE: &str = "INSERT INTO user_profiles (organization_id, user_id, traits, first_seen, last_seen) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, user_id) DO UPDATE SET \
     first_seen = CASE WHEN excluded.first_seen < user_profiles.first_seen \
     THEN excluded.first_seen ELSE user_profiles.first_seen END, \
     last_seen = CASE WHEN excluded.last_seen > user_profiles.last_seen \
     THEN excluded.last_seen ELSE user_profiles.last_seen END \
     RETURNING traits";

const SET_PROFILE_TRAITS: &str = "UPDATE user_profiles SET traits = $3 WHERE organization_id = $1 AND user_id = $2";

/// Upserts a membership (locking it); answers its stored traits.
const TOUCH_GROUP: &str = "INSERT INTO user_groups (organization_id, user_id, group_id, traits) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, user_id, group_id) \
     DO UPDATE SET traits = user_groups.traits RETURNING traits";

const SET_GROUP_TRAITS: &str =
    "UPDATE user_groups SET traits = $4 WHERE organization_id = $1 AND user_id = $2 AND group_id = $3";

/// Writes `$writes` of `$organization_id` through `$connection` (a
/// `&mut PgConnection` or `&mut SqliteConnection` inside the transaction
/// that stored the events): the same statements on both backends.
macro_rules! write_profiles {
    ($connection:expr, $organization_id:expr, $writes:expr) => {{
        let connection = $connection;
        let organization_id: &str = $organization_id;
        let writes: &ProfileWrites = $writes;
        for (user_id, user) in &writes.users {
            let stored: String = sqlx::query_scalar(TOUCH_PROFILE)
                .bind(organization_id)
                .bind(user_id)
                .bind(serde_json::Value::Object(user.traits.clone()).to_string())
                .bind(user.first_seen)
                .bind(user.last_seen)
                .fetch_one(&mut *connection)
                .await?;
            let stored = traits_of(&stored);
            let mut merged = stored.clone();
            merge_traits(&mut merged, &user.traits);
            if merged != stored {
                sqlx::query(SET_PROFILE_TRAITS)
                    .bind(organization_id)
                    .bind(user_id)
                    .bind(serde_json::Value::Object(merged).to_string())
                    .execute(&mut *connection)
                    .await?;
            }
        }
        for ((user_id, group_id), traits) in &writes.groups {
            let stored: String = sqlx::query_scalar(TOUCH_GROUP)
                .bind(organization_id)
                .bind(user_id)
                .bind(group_id)
                .bind(serde_json::Value::Object(traits.clone()).to_string())
                .fetch_one(&mut *connection)
                .await?;
            let stored = traits_of(&stored);
            let mut merged = stored.clone();
            merge_traits(&mut merged, traits);
            if merged != stored {
                sqlx::query(SET_GROUP_TRAITS)
                    .bind(organization_id)
                    .bind(user_id)
                    .bind(group_id)
                    .bind(serde_json::Value::Object(merged).to_string())
                    .execute(&mut *connection)
                    .await?;
            }
        }
        for (previous_id, user_id) in &writes.aliases {
            // The link, and the ids linked to the previous id follow it.
            sqlx::query(
                "INSERT INTO user_aliases (organization_id, alias_id, user_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (organization_id, alias_id) DO UPDATE SET user_id = excluded.user_id",
            )
            .bind(organization_id)
            .bind(previous_id)
            .bind(user_id)
            .execute(&mut *connection)
            .await?;
            sqlx::query("UPDATE user_aliases SET user_id = $3 WHERE organization_id = $1 AND user_id = $2")
                .bind(organization_id)
                .bind(previous_id)
                .bind(user_id)
                .execute(&mut *connection)
                .await?;
            sqlx::query("DELETE FROM user_aliases WHERE organization_id = $1 AND alias_id = user_id")
                .bind(organization_id)
                .execute(&mut *connection)
                .await?;
            // The previous id's profile folds into the user's, whose own
            // traits win; its memberships move.
            let previous: Option<(String, i64, i64)> = sqlx::query_as(
                "DELETE FROM user_profiles WHERE organization_id = $1 AND user_id = $2 \
                 RETURNING traits, first_seen, last_seen",
            )
            .bind(organization_id)
            .bind(previous_id)
            .fetch_optional(&mut *connection)
            .await?;
            if let Some((previous_traits, first_seen, last_seen)) = previous {
                let stored: String = sqlx::query_scalar(TOUCH_PROFILE)
                    .bind(organization_id)
                    .bind(user_id)
                    .bind(&previous_traits)
                    .bind(first_seen)
                    .bind(last_seen)
                    .fetch_one(&mut *connection)
                    .await?;
                let stored = traits_of(&stored);
                let mut merged = traits_of(&previous_traits);
                merge_traits(&mut merged, &stored);
                if merged != stored {
                    sqlx::query(SET_PROFILE_TRAITS)
                        .bind(organization_id)
                        .bind(user_id)
                        .bind(serde_json::Value::Object(merged).to_string())
                        .execute(&mut *connection)
                        .await?;
                }
            }
            sqlx::query(
                "INSERT INTO user_groups (organization_id, user_id, group_id, traits) \
                 SELECT organization_id, $3, group_id, traits FROM user_groups \
                 WHERE organization_id = $1 AND user_id = $2 \
                 ON CONFLICT (organization_id, user_id, group_id) DO NOTHING",
            )
            .bind(organization_id)
            .bind(previous_id)
            .bind(user_id)
            .execute(&mut *connection)
            .await?;
            sqlx::query("DELETE FROM user_groups WHERE organization_id = $1 AND user_id = $2")
                .bind(organization_id)
                .bind(previous_id)
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }};
}

/// Writes a call's profile changes (PostgreSQL, in the caller's
/// transaction).
pub(super) async fn write_profiles_postgres(
    connection: &mut sqlx::PgConnection,
    organization_id: &str,
    writes: &ProfileWrites,
) -> Result<(), sqlx::Error> {
    write_profiles!(connection, organization_id, writes)
}

/// Writes a call's profile changes (SQLite, in the caller's write
/// transaction).
pub(super) async fn write_profiles_sqlite(
    connection: &mut sqlx::SqliteConnection,
    organization_id: &str,
    writes: &ProfileWrites,
) -> Result<(), sqlx::Error> {
    write_profiles!(connection, organization_id, writes)
}

/// A stored profile as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    /// The user.
    pub user_id: String,
    /// The merged traits.
    pub traits: Traits,
    /// The earliest corrected time of the user's stored messages, in microseconds.
    pub first_seen: i64,
    /// The latest.
    pub last_seen: i64,
    /// The ids aliased to the user, sorted.
    pub aliases: Vec<String>,
    /// The user's groups with their traits, by group id.
    pub groups: Vec<(String, Traits)>,
}

/// Where the next page of profiles starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileCursor {
    /// The user id of the last profile of the previous page.
    pub user_id: String,
}

/// Where the next page of a profile's events starts.
pub type ProfileEventCursor = EventCursor;

impl MetricsStore {
    /// The users that `ids` are aliased to, for those that are aliases.
    pub async fn aliased_users(
        &self,
        organization_id: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, MetricsError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(ID_CHUNK) {
            let mut query = DynamicQuery::default();
            let organization = query.text(organization_id);
            query.condition(format!("organization_id = {organization}"));
            let list = query.text_list(chunk);
            query.condition(format!("alias_id IN ({list})"));
            let sql = format!("SELECT alias_id, user_id FROM user_aliases {}", query.where_clause());
            let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (String, String), &sql, query))?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// The user `id` stands for: the user it is aliased to, else itself.
    pub async fn resolved_user(&self, organization_id: &str, id: &str) -> Result<String, MetricsError> {
        let aliased = self.aliased_users(organization_id, &[id.to_owned()]).await?;
        Ok(aliased.get(id).cloned().unwrap_or_else(|| id.to_owned()))
    }

    /// The profile of `user_id` (or of the user it is aliased to).
    pub async fn user_profile(&self, organization_id: &str, user_id: &str) -> Result<Option<ProfileRow>, MetricsError> {
        let user_id = self.resolved_user(organization_id, user_id).await?;
        let row: Option<(String, String, i64, i64)> = with_pool!(&self.database, pool => sqlx::query_as(
            "SELECT user_id, traits, first_seen, last_seen FROM user_profiles \
             WHERE organization_id = $1 AND user_id = $2",
        )
        .bind(organization_id)
        .bind(&user_id)
        .fetch_optional(pool)
        .await)?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(self.completed(organization_id, vec![row]).await?.pop())
    }

    /// Up to `limit` profiles passing `filter` after `cursor`, by user id.
    pub async fn list_user_profiles(
        &self,
        organization_id: &str,
        filter: &TraitFilter,
        cursor: Option<&ProfileCursor>,
        limit: u32,
    ) -> Result<Vec<ProfileRow>, MetricsError> {
        // Traits are JSON text on both backends, so the filter runs here,
        // over chunks in user id order, until the page is full.
        let mut after = cursor.map(|cursor| cursor.user_id.clone());
        let mut rows = Vec::new();
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let chunk = if filter.key.is_empty() {
            limit
        } else {
            SCAN_CHUNK.max(limit)
        };
        loop {
            let mut query = DynamicQuery::default();
            let organization = query.text(organization_id);
            query.condition(format!("organization_id = {organization}"));
            if let Some(after) = &after {
                let after = query.text(after);
                query.condition(format!("user_id > {after}"));
            }
            let limit_placeholder = query.integer(i64::from(chunk));
            let sql = format!(
                "SELECT user_id, traits, first_seen, last_seen FROM user_profiles {} \
                 ORDER BY user_id LIMIT {limit_placeholder}",
                query.where_clause()
            );
            let read =
                with_pool!(&self.database, pool => fetch_dynamic!(pool, (String, String, i64, i64), &sql, query))?;
            let exhausted = read.len() < usize::try_from(chunk).unwrap_or(usize::MAX);
            after = read.last().map(|row| row.0.clone());
            rows.extend(read.into_iter().filter(|row| filter.matches(&traits_of(&row.1))));
            if rows.len() >= wanted || exhausted {
                break;
            }
        }
        rows.truncate(wanted);
        self.completed(organization_id, rows).await
    }

    /// Profiles of `rows` (user id, traits, first and last seen) with their
    /// aliases and groups.
    async fn completed(
        &self,
        organization_id: &str,
        rows: Vec<(String, String, i64, i64)>,
    ) -> Result<Vec<ProfileRow>, MetricsError> {
        let user_ids: Vec<String> = rows.iter().map(|row| row.0.clone()).collect();
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut groups: BTreeMap<String, Vec<(String, Traits)>> = BTreeMap::new();
        let of_users = |chunk: &[String]| {
            let mut query = DynamicQuery::default();
            let organization = query.text(organization_id);
            query.condition(format!("organization_id = {organization}"));
            let list = query.text_list(chunk);
            query.condition(format!("user_id IN ({list})"));
            query
        };
        for chunk in user_ids.chunks(ID_CHUNK) {
            let query = of_users(chunk);
            let sql = format!(
                "SELECT user_id, alias_id FROM user_aliases {} ORDER BY user_id, alias_id",
                query.where_clause()
            );
            let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (String, String), &sql, query))?;
            for (user_id, alias_id) in rows {
                aliases.entry(user_id).or_default().push(alias_id);
            }
            let query = of_users(chunk);
            let sql = format!(
                "SELECT user_id, group_id, traits FROM user_groups {} ORDER BY user_id, group_id",
                query.where_clause()
            );
            let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, (String, String, String), &sql, query))?;
            for (user_id, group_id, traits) in rows {
                groups.entry(user_id).or_default().push((group_id, traits_of(&traits)));
            }
        }
        Ok(rows
            .into_iter()
            .map(|(user_id, traits, first_seen, last_seen)| ProfileRow {
                aliases: aliases.remove(&user_id).unwrap_or_default(),
                groups: groups.remove(&user_id).unwrap_or_default(),
                traits: traits_of(&traits),
                user_id,
                first_seen,
                last_seen,
            })
            .collect())
    }

    /// Up to `limit` events of any of `user_ids` after `cursor`, newest
    /// first.
    pub async fn list_user_events(
        &self,
        organization_id: &str,
        user_ids: &[String],
        cursor: Option<&ProfileEventCursor>,
        limit: u32,
    ) -> Result<Vec<NewEvent>, MetricsError> {
        let mut query = DynamicQuery::default();
        let organization = query.text(organization_id);
        query.condition(format!("organization_id = {organization}"));
        let list = query.text_list(user_ids);
        query.condition(format!("user_id IN ({list})"));
        if let Some(cursor) = cursor {
            let time = query.integer(cursor.occurred_at);
            let same_time = query.integer(cursor.occurred_at);
            let id = query.text(&cursor.event_id);
            query.condition(format!(
                "(occurred_at < {time} OR (occurred_at = {same_time} AND event_id < {id}))"
            ));
        }
        let limit_placeholder = query.integer(i64::from(limit));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events {} ORDER BY occurred_at DESC, event_id DESC \
             LIMIT {limit_placeholder}",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, EventRow, &sql, query))?;
        Ok(rows.into_iter().map(NewEvent::from).collect())
    }
}
