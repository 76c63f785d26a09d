//! Every query of the auth service, written once in SQL that PostgreSQL and
//! SQLite both accept, and run through [`with_pool!`] on either.

use metrix_core::storage::{Database, is_unique_violation};
use metrix_core::time::now_micros;
use metrix_core::with_pool;

use crate::error::AuthError;

/// A user as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub organization_id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub has_google: bool,
}

macro_rules! user_query {
    ($condition:literal) => {
        concat!(
            "SELECT u.user_id, u.organization_id, u.email, u.display_name, u.role, u.password_hash, u.created_at, u.last_sign_in_at, ",
            "EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.user_id AND i.provider = 'google') AS has_google ",
            "FROM users u ",
            $condition
        )
    };
}

/// An organisation as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub organization_id: String,
    pub display_name: String,
    pub created_at: i64,
}

/// A new account's details.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    /// An external identity to link: (provider, subject).
    pub identity: Option<(&'a str, &'a str)>,
}

/// A refresh token with its family, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    pub token_hash: String,
    pub family_id: String,
    pub used_at: Option<i64>,
    pub user_id: String,
    pub organization_id: String,
    pub family_expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// An API key as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub api_key_id: String,
    pub organization_id: String,
    pub display_name: String,
    pub prefix: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A service account as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceAccountRow {
    pub client_id: String,
    pub organization_id: String,
    pub display_name: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_at: i64,
}

/// An invitation accepted at sign-up.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AcceptedInvitation {
    pub organization_id: String,
    pub email: String,
    pub role: String,
}

/// An audit event as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub audit_event_id: String,
    pub organization_id: String,
    pub kind: String,
    pub actor_id: String,
    pub subject_id: String,
    pub ip_address: String,
    pub user_agent: String,
    pub details: String,
    pub created_at: i64,
}

/// A position in a list ordered by creation time then id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

/// The organisation of the platform's own service accounts.
pub const PLATFORM_ORGANIZATION_ID: &str = "platform";

/// The auth service's store.
#[derive(Clone)]
pub struct AuthStore {
    database: Database,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl AuthStore {
    /// A store over `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates the organisation that owns the platform's own service
    /// accounts (those of the services), unless it exists.
    pub async fn ensure_platform_organization(&self) -> Result<(), AuthError> {
        with_pool!(&self.database, pool => sqlx::query(
            "INSERT INTO organizations (organization_id, display_name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (organization_id) DO NOTHING",
        )
        .bind(PLATFORM_ORGANIZATION_ID)
        .bind("Metrix platform")
        .bind(now_micros())
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Creates an organisation named `organization_name` with `user` as its ADMIN.
    pub async fn create_organization_with_admin(
        &self,
        organization_name: &str,
        user: NewUser<'_>,
    ) -> Result<UserRow, AuthError> {
        let organization_id = new_id();
        let user_id = new_id();
        let now = now_micros();
        // The body is an async block so that `?` stays inside it and a
        // unique violation reaches the match below.
        let result = with_pool!(&self.database, pool => async {
            let mut transaction = pool.begin().await?;
            sqlx::query("INSERT INTO organizations (organization_id, display_name, created_at) VALUES ($1, $2, $3)")
                .bind(&organization_id).bind(organization_name).bind(now).execute(&mut *transaction).await?;
            sqlx::query("INSERT INTO users (user_id, organization_id, email, display_name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, 'admin', $5, $6)")
                .bind(&user_id).bind(&organization_id).bind(user.email).bind(user.display_name).bind(user.password_hash).bind(now)
                .execute(&mut *transaction).await?;
            if let Some((provider, subject)) = user.identity {
                sqlx::query("INSERT INTO user_identities (provider, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(provider).bind(subject).bind(&user_id).bind(user.email).bind(now).execute(&mut *transaction).await?;
            }
            transaction.commit().await
        }.await);
        match result {
            Ok(()) => self.user_by_id(&user_id).await?.ok_or(AuthError::NotFound("user")),
            Err(error) if is_unique_violation(&error) => {
                Err(AuthError::AlreadyExists("an account with this email exists"))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Accepts the invitation with `token_hash` for `user.email` and creates
    /// the user in the inviting organisation, atomically.
    pub async fn create_invited_user(&self, token_hash: &str, user: NewUser<'_>) -> Result<UserRow, AuthError> {
        let user_id = new_id();
        let now = now_micros();
        let result = with_pool!(&self.database, pool => async {
            let mut transaction = pool.begin().await?;
            let accepted: Option<AcceptedInvitation> = sqlx::query_as(
                "UPDATE invitations SET accepted_at = $1 WHERE token_hash = $2 AND accepted_at IS NULL AND expires_at > $1 RETURNING organization_id, email, role")
                .bind(now).bind(token_hash).fetch_optional(&mut *transaction).await?;
            match accepted {
                Some(invitation) if invitation.email == user.email => {
                    sqlx::query("INSERT INTO users (user_id, organization_id, email, display_name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(&user_id).bind(&invitation.organization_id).bind(user.email).bind(user.display_name).bind(&invitation.role).bind(user.password_hash).bind(now)
                        .execute(&mut *transaction).await?;
                    transaction.commit().await?;
                    Ok(true)
                }
                _ => Ok::<bool, sqlx::Error>(false),
            }
        }.await);
        match result {
            Ok(true) => self.user_by_id(&user_id).await?.ok_or(AuthError::NotFound("user")),
            Ok(false) => Err(AuthError::invalid(metrix_core::error::FieldViolation::new(
                "invitation_token",
                "is unknown, used, expired, or for another email address",
            ))),
            Err(error) if is_unique_violation(&error) => {
                Err(AuthError::AlreadyExists("an account with this email exists"))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The user with `user_id`.
    pub async fn user_by_id(&self, user_id: &str) -> Result<Option<UserRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as(user_query!("WHERE u.user_id = $1")).bind(user_id).fetch_optional(pool).await
        })?)
    }

    /// The user with `email`.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as(user_query!("WHERE u.email = $1")).bind(email).fetch_optional(pool).await
        })?)
    }

    /// The user linked to an external identity.
    pub async fn user_by_identity(&self, provider: &str, subject: &str) -> Result<Option<UserRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as(user_query!("JOIN user_identities l ON l.user_id = u.user_id WHERE l.provider = $1 AND l.subject = $2"))
                .bind(provider).bind(subject).fetch_optional(pool).await
        })?)
    }

    /// Links an external identity to a user.
    pub async fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user_id: &str,
        email: &str,
    ) -> Result<(), AuthError> {
        with_pool!(&self.database, pool => {
            sqlx::query("INSERT INTO user_identities (provider, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(provider).bind(subject).bind(user_id).bind(email).bind(now_micros()).execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// Notes a successful sign-in.
    pub async fn record_sign_in(&self, user_id: &str) -> Result<(), AuthError> {
        with_pool!(&self.database, pool => {
            sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE user_id = $2").bind(now_micros()).bind(user_id).execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// The organisation with `organization_id`.
    pub async fn organization(&self, organization_id: &str) -> Result<Option<OrganizationRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT organization_id, display_name, created_at FROM organizations WHERE organization_id = $1")
                .bind(organization_id).fetch_optional(pool).await
        })?)
    }

    /// A page of an organisation's users, oldest first, after `cursor`.
    pub async fn list_users(
        &self,
        organization_id: &str,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<UserRow>, AuthError> {
        let (created_at, id) = after.map_or((i64::MIN, String::new()), |cursor| {
            (cursor.created_at, cursor.id.clone())
        });
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as(user_query!("WHERE u.organization_id = $1 AND (u.created_at > $2 OR (u.created_at = $2 AND u.user_id > $3)) ORDER BY u.created_at, u.user_id LIMIT $4"))
                .bind(organization_id).bind(created_at).bind(id).bind(i64::from(limit)).fetch_all(pool).await
        })?)
    }

    /// Changes a user's role; refuses to demote an organisation's last admin.
    pub async fn update_role(&self, organization_id: &str, user_id: &str, role: &str) -> Result<String, AuthError> {
        let outcome = with_pool!(&self.database, pool => {
            let mut transaction = pool.begin().await?;
            let current: Option<(String,)> = sqlx::query_as("SELECT role FROM users WHERE user_id = $1 AND organization_id = $2")
                .bind(user_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
            let Some((old_role,)) = current else { return Err(AuthError::NotFound("user")) };
            if old_role == "admin" && role != "admin" {
                // Serialises concurrent demotions on PostgreSQL; SQLite
                // transactions are already serial.
                let admins: Vec<(String,)> = sqlx::query_as(if matches!(self.database, Database::Postgres(_)) {
                    "SELECT user_id FROM users WHERE organization_id = $1 AND role = 'admin' FOR UPDATE"
                } else {
                    "SELECT user_id FROM users WHERE organization_id = $1 AND role = 'admin'"
                }).bind(organization_id).fetch_all(&mut *transaction).await?;
                if admins.len() <= 1 {
                    return Err(AuthError::FailedPrecondition("the last admin of an organisation cannot be demoted"));
                }
            }
            sqlx::query("UPDATE users SET role = $1 WHERE user_id = $2").bind(role).bind(user_id).execute(&mut *transaction).await?;
            transaction.commit().await?;
            Ok::<_, AuthError>(old_role)
        })?;
        Ok(outcome)
    }

    /// Stores an invitation.
    pub async fn create_invitation(
        &self,
        organization_id: &str,
        email: &str,
        role: &str,
        token_hash: &str,
        invited_by: &str,
        expires_at: i64,
    ) -> Result<String, AuthError> {
        let invitation_id = new_id();
        with_pool!(&self.database, pool => {
            sqlx::query("INSERT INTO invitations (invitation_id, organization_id, email, role, token_hash, invited_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&invitation_id).bind(organization_id).bind(email).bind(role).bind(token_hash).bind(invited_by).bind(now_micros()).bind(expires_at)
                .execute(pool).await.map(|_| ())
        })?;
        Ok(invitation_id)
    }

    /// Starts a session: a refresh family and its first token.
    pub async fn create_family(
        &self,
        user_id: &str,
        organization_id: &str,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<String, AuthError> {
        let family_id = new_id();
        let now = now_micros();
        with_pool!(&self.database, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query("INSERT INTO refresh_families (family_id, user_id, organization_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&family_id).bind(user_id).bind(organization_id).bind(now).bind(expires_at).execute(&mut *transaction).await?;
            sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES ($1, $2, $3)")
                .bind(token_hash).bind(&family_id).bind(now).execute(&mut *transaction).await?;
            transaction.commit().await
        })?;
        Ok(family_id)
    }

    /// The refresh token with `token_hash` and its family.
    pub async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT t.token_hash, t.family_id, t.used_at, f.user_id, f.organization_id, f.expires_at AS family_expires_at, f.revoked_at \
                            FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id WHERE t.token_hash = $1")
                .bind(token_hash).fetch_optional(pool).await
        })?)
    }

    /// Spends a refresh token and adds its successor to the family. With
    /// `first_use` the token must be unspent (two racing refreshes cannot
    /// both spend it); otherwise it is a retry within the grace window.
    /// Whether the successor was added.
    pub async fn rotate_refresh_token(
        &self,
        spent_hash: &str,
        family_id: &str,
        successor_hash: &str,
        first_use: FirstUse,
    ) -> Result<bool, AuthError> {
        let now = now_micros();
        Ok(with_pool!(&self.database, pool => {
            let mut transaction = pool.begin().await?;
            let spent = match first_use {
                FirstUse::Required => sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL").bind(now).bind(spent_hash).execute(&mut *transaction).await?,
                FirstUse::GraceRetry => sqlx::query("UPDATE refresh_tokens SET used_at = used_at WHERE token_hash = $1").bind(spent_hash).execute(&mut *transaction).await?,
            };
            let open = sqlx::query("UPDATE refresh_families SET revoked_at = revoked_at WHERE family_id = $1 AND revoked_at IS NULL").bind(family_id).execute(&mut *transaction).await?;
            if spent.rows_affected() != 1 || open.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES ($1, $2, $3)")
                .bind(successor_hash).bind(family_id).bind(now).execute(&mut *transaction).await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })?)
    }

    /// Revokes a family (a session); whether it was open.
    pub async fn revoke_family(&self, family_id: &str, reason: &str) -> Result<bool, AuthError> {
        let revoked = with_pool!(&self.database, pool => {
            sqlx::query("UPDATE refresh_families SET revoked_at = $1, revoke_reason = $2 WHERE family_id = $3 AND revoked_at IS NULL")
                .bind(now_micros()).bind(reason).bind(family_id).execute(pool).await.map(|done| done.rows_affected())
        })?;
        Ok(revoked == 1)
    }

    /// Whether a session is open (not revoked, not expired).
    pub async fn family_is_open(&self, family_id: &str) -> Result<bool, AuthError> {
        let row: Option<(String,)> = with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT family_id FROM refresh_families WHERE family_id = $1 AND revoked_at IS NULL AND expires_at > $2")
                .bind(family_id).bind(now_micros()).fetch_optional(pool).await
        })?;
        Ok(row.is_some())
    }

    /// Stores a new API key.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_api_key(
        &self,
        organization_id: &str,
        display_name: &str,
        prefix: &str,
        key_hash: &str,
        scopes: &str,
        created_by: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiKeyRow, AuthError> {
        let api_key_id = new_id();
        let now = now_micros();
        with_pool!(&self.database, pool => {
            sqlx::query("INSERT INTO api_keys (api_key_id, organization_id, display_name, prefix, key_hash, scopes, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&api_key_id).bind(organization_id).bind(display_name).bind(prefix).bind(key_hash).bind(scopes).bind(created_by).bind(now).bind(expires_at)
                .execute(pool).await.map(|_| ())
        })?;
        Ok(ApiKeyRow {
            api_key_id,
            organization_id: organization_id.to_owned(),
            display_name: display_name.to_owned(),
            prefix: prefix.to_owned(),
            scopes: scopes.to_owned(),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        })
    }

    /// A page of an organisation's API keys, newest first, after `cursor`.
    pub async fn list_api_keys(
        &self,
        organization_id: &str,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRow>, AuthError> {
        let (created_at, id) = after.map_or((i64::MAX, String::new()), |cursor| {
            (cursor.created_at, cursor.id.clone())
        });
        let unbounded = after.is_none();
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT api_key_id, organization_id, display_name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at FROM api_keys \
                            WHERE organization_id = $1 AND ($5 OR created_at < $2 OR (created_at = $2 AND api_key_id < $3)) ORDER BY created_at DESC, api_key_id DESC LIMIT $4")
                .bind(organization_id).bind(created_at).bind(id).bind(i64::from(limit)).bind(unbounded).fetch_all(pool).await
        })?)
    }

    /// Revokes an organisation's API key; the key's record afterwards.
    pub async fn revoke_api_key(
        &self,
        organization_id: &str,
        api_key_id: &str,
    ) -> Result<Option<ApiKeyRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE api_key_id = $2 AND organization_id = $3 \
                            RETURNING api_key_id, organization_id, display_name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at")
                .bind(now_micros()).bind(api_key_id).bind(organization_id).fetch_optional(pool).await
        })?)
    }

    /// The API key with `key_hash`.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT api_key_id, organization_id, display_name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at FROM api_keys WHERE key_hash = $1")
                .bind(key_hash).fetch_optional(pool).await
        })?)
    }

    /// Notes that a key was used.
    pub async fn touch_api_key(&self, api_key_id: &str, now: i64) -> Result<(), AuthError> {
        with_pool!(&self.database, pool => {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE api_key_id = $2").bind(now).bind(api_key_id).execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// Stores a service account.
    pub async fn create_service_account(&self, row: &ServiceAccountRow) -> Result<(), AuthError> {
        with_pool!(&self.database, pool => {
            sqlx::query("INSERT INTO service_accounts (client_id, organization_id, display_name, secret_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&row.client_id).bind(&row.organization_id).bind(&row.display_name).bind(&row.secret_hash).bind(&row.scopes).bind(row.created_at)
                .execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// The service account with `client_id`.
    pub async fn service_account(&self, client_id: &str) -> Result<Option<ServiceAccountRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT client_id, organization_id, display_name, secret_hash, scopes, created_at FROM service_accounts WHERE client_id = $1")
                .bind(client_id).fetch_optional(pool).await
        })?)
    }

    /// Appends to the audit trail.
    pub async fn insert_audit(&self, row: &AuditRow) -> Result<(), AuthError> {
        with_pool!(&self.database, pool => {
            sqlx::query("INSERT INTO audit_events (audit_event_id, organization_id, kind, actor_id, subject_id, ip_address, user_agent, details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&row.audit_event_id).bind(&row.organization_id).bind(&row.kind).bind(&row.actor_id).bind(&row.subject_id)
                .bind(&row.ip_address).bind(&row.user_agent).bind(&row.details).bind(row.created_at)
                .execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }

    /// A page of an organisation's audit trail, newest first, optionally of one kind.
    pub async fn list_audit(
        &self,
        organization_id: &str,
        kind: Option<&str>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, AuthError> {
        let (created_at, id) = after.map_or((i64::MAX, String::new()), |cursor| {
            (cursor.created_at, cursor.id.clone())
        });
        let unbounded = after.is_none();
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT audit_event_id, organization_id, kind, actor_id, subject_id, ip_address, user_agent, details, created_at FROM audit_events \
                            WHERE organization_id = $1 AND ($2 IS NULL OR kind = $2) AND ($6 OR created_at < $3 OR (created_at = $3 AND audit_event_id < $4)) \
                            ORDER BY created_at DESC, audit_event_id DESC LIMIT $5")
                .bind(organization_id).bind(kind).bind(created_at).bind(id).bind(i64::from(limit)).bind(unbounded).fetch_all(pool).await
        })?)
    }
}

/// Whether spending a refresh token requires that it is unspent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// A normal refresh: the token must be unspent.
    Required,
    /// A retry within the grace window: the token is already spent.
    GraceRetry,
}
