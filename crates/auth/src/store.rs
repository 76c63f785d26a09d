//! Every query of the auth service, written once in SQL that PostgreSQL and
//! SQLite both accept, and run through [`with_pool!`] on either.

use metrix_core::storage::{BeginWrite as _, Database, is_unique_violation};
use metrix_core::time::now_micros;
use metrix_core::with_pool;

use crate::error::AuthError;

/// A user as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// The user's id (a UUID v7).
    pub user_id: String,
    /// The organisation the user belongs to.
    pub organization_id: String,
    /// The email address, trimmed and lower-cased; unique across organisations.
    pub email: String,
    /// The name shown in the console.
    pub display_name: String,
    /// The role within the organisation: `company_user`, `analyst` or `admin`.
    pub role: String,
    /// The Argon2id hash of the password as a PHC string; `None` for an account without a password
    /// (one that signs in with Google).
    pub password_hash: Option<String>,
    /// When the account was created, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// When the user last signed in, in microseconds since the Unix epoch; `None` before the first sign-in.
    pub last_sign_in_at: Option<i64>,
    /// Whether a Google identity is linked to the account.
    pub has_google: bool,
    /// Raised whenever the role or standing changes; copied into tokens.
    pub authz_version: i64,
    /// When the user was deactivated, in microseconds since the Unix epoch; `None` while active.
    pub deactivated_at: Option<i64>,
}

macro_rules! user_query {
    ($condition:literal) => {
        concat!(
            "SELECT u.user_id, u.organization_id, u.email, u.display_name, u.role, u.password_hash, u.created_at, u.last_sign_in_at, u.authz_version, u.deactivated_at, ",
            "EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.user_id AND i.provider = 'google') AS has_google ",
            "FROM users u ",
            $condition
        )
    };
}

/// An organisation as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    /// The organisation's id: a UUID v7, or `platform` for the organisation of the platform's own
    /// service accounts.
    pub organization_id: String,
    /// The organisation's name.
    pub display_name: String,
    /// When the organisation was created, in microseconds since the Unix epoch.
    pub created_at: i64,
}

/// A new account's details.
pub struct NewUser<'a> {
    /// The email address, trimmed and lower-cased.
    pub email: &'a str,
    /// The name shown in the console.
    pub display_name: &'a str,
    /// The Argon2id hash of the password as a PHC string; `None` for an account without a password.
    pub password_hash: Option<&'a str>,
    /// An external identity to link: (provider, subject).
    pub identity: Option<(&'a str, &'a str)>,
}

/// A refresh token with its family, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    /// The hex SHA-256 digest of the refresh token; the token itself is never stored.
    pub token_hash: String,
    /// The refresh family, that is the session, the token belongs to.
    pub family_id: String,
    /// When the token was exchanged, in microseconds since the Unix epoch; `None` while it is unspent.
    pub used_at: Option<i64>,
    /// The answer the token was exchanged for, sealed (see
    /// `tokens::seal_answer`); set when it was spent.
    pub successor_answer: Option<Vec<u8>>,
    /// When the successor in that answer was spent itself.
    pub successor_used_at: Option<i64>,
    /// The user whose session it is.
    pub user_id: String,
    /// The organisation of that user.
    pub organization_id: String,
    /// When the session ends, in microseconds since the Unix epoch.
    pub family_expires_at: i64,
    /// When the session was revoked, in microseconds since the Unix epoch; `None` while it stands.
    pub revoked_at: Option<i64>,
}

/// An API key as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    /// The key's id (a UUID v7).
    pub api_key_id: String,
    /// The organisation that owns the key.
    pub organization_id: String,
    /// A name to recognise the key by.
    pub display_name: String,
    /// The first eleven characters of the key (`mx_` and eight more), to recognise it in logs and lists.
    pub prefix: String,
    /// What the key may do, as scopes separated by spaces, such as `events:write read`.
    pub scopes: String,
    /// When the key was created, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// When the key stops working, in microseconds since the Unix epoch; `None` for never.
    pub expires_at: Option<i64>,
    /// When the key was last used, in microseconds since the Unix epoch; updated at most once a minute, `None` before
    /// the key is first used.
    pub last_used_at: Option<i64>,
    /// When the key was revoked, in microseconds since the Unix epoch; `None` while it is active.
    pub revoked_at: Option<i64>,
}

/// A service account as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceAccountRow {
    /// The client id used with IssueServiceToken: `svc_` followed by a UUID in hex.
    pub client_id: String,
    /// The organisation that owns the account.
    pub organization_id: String,
    /// A name to recognise the account by.
    pub display_name: String,
    /// The hex SHA-256 digest of the client secret; the secret itself is never stored.
    pub secret_hash: String,
    /// What the account's tokens may do, as scopes separated by spaces.
    pub scopes: String,
    /// When the account was created, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// Raised by every rotation and by the revocation; copied into tokens.
    pub authz_version: i64,
    /// When the account was revoked, in microseconds since the Unix epoch; `None` while it is active.
    pub revoked_at: Option<i64>,
    /// When the secret was last rotated, in microseconds since the Unix epoch; `None` if never.
    pub secret_rotated_at: Option<i64>,
}

/// The columns of a [`ServiceAccountRow`], for `SELECT` and `RETURNING`.
macro_rules! service_account_columns {
    () => {
        "client_id, organization_id, display_name, secret_hash, scopes, created_at, authz_version, revoked_at, secret_rotated_at"
    };
}

/// A revocation as stored: what verifiers refuse until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevocationRow {
    /// The revocation's id (a UUID v7).
    pub revocation_id: String,
    /// `session`, `subject` or `api_key`.
    pub kind: String,
    /// The session id, subject (user id or client id) or API key id.
    pub target: String,
    /// For a subject, the lowest authorization version still accepted.
    pub min_version: i64,
    /// When the revocation was made, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// When verifiers may forget the revocation, in microseconds since the Unix epoch: by then no token it concerns
    /// can still verify.
    pub expires_at: i64,
}

impl RevocationRow {
    fn new(kind: &str, target: &str, min_version: i64, expires_at: i64) -> Self {
        Self {
            revocation_id: new_id(),
            kind: kind.to_owned(),
            target: target.to_owned(),
            min_version,
            created_at: now_micros(),
            expires_at,
        }
    }

    /// Every access token of the session `family_id`.
    pub fn session(family_id: &str, expires_at: i64) -> Self {
        Self::new("session", family_id, 0, expires_at)
    }

    /// The access tokens of `subject` below `min_version`.
    pub fn subject(subject: &str, min_version: i64, expires_at: i64) -> Self {
        Self::new("subject", subject, min_version, expires_at)
    }

    /// The API key `api_key_id`.
    pub fn api_key(api_key_id: &str, expires_at: i64) -> Self {
        Self::new("api_key", api_key_id, 0, expires_at)
    }
}

/// Records a revocation inside the transaction that makes it.
macro_rules! insert_revocation {
    ($executor:expr, $row:expr) => {
        sqlx::query(
            "INSERT INTO revocations (revocation_id, kind, target, min_version, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&$row.revocation_id)
        .bind(&$row.kind)
        .bind(&$row.target)
        .bind($row.min_version)
        .bind($row.created_at)
        .bind($row.expires_at)
        .execute($executor)
    };
}

/// The active admins of an organisation (`$1`), their rows locked on
/// PostgreSQL so that concurrent demotions and deactivations serialise
/// (SQLite's write transactions already are); `fetch_all` them.
macro_rules! active_admins {
    ($postgres:expr) => {
        sqlx::query_as::<_, (String,)>(if $postgres {
            "SELECT user_id FROM users WHERE organization_id = $1 AND role = 'admin' AND deactivated_at IS NULL FOR UPDATE"
        } else {
            "SELECT user_id FROM users WHERE organization_id = $1 AND role = 'admin' AND deactivated_at IS NULL"
        })
    };
}

/// What a role change did.
#[derive(Debug, Clone)]
pub struct RoleChange {
    /// The role before.
    pub old_role: String,
    /// The revocation of the user's earlier tokens; none when the role
    /// did not change.
    pub revocation: Option<RevocationRow>,
}

/// What a deactivation did.
#[derive(Debug, Clone, Default)]
pub struct Deactivation {
    /// The sessions it ended.
    pub revoked_sessions: Vec<String>,
    /// The API keys it revoked (those the user created).
    pub revoked_api_keys: Vec<ApiKeyRow>,
    /// What verifiers must now refuse; empty when the user was already
    /// deactivated.
    pub revocations: Vec<RevocationRow>,
}

/// An invitation accepted at sign-up.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AcceptedInvitation {
    /// The inviting organisation, which the new user joins.
    pub organization_id: String,
    /// The email address the invitation was sent to; the new account must use it.
    pub email: String,
    /// The role the invitation gives the new user.
    pub role: String,
}

/// An audit event as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    /// The event's id (a UUID v7).
    pub audit_event_id: String,
    /// The organisation it happened in; empty when the account is unknown.
    pub organization_id: String,
    /// What happened: the contract's `AuditEventKind` name without its `AUDIT_EVENT_KIND_` prefix,
    /// such as `SIGN_IN_FAILED`.
    pub kind: String,
    /// Who acted: a user id or a client id; empty for anonymous callers.
    pub actor_id: String,
    /// What it was done to: a user, key, service account or session id.
    pub subject_id: String,
    /// The caller's IP address, as seen at the edge; empty when unknown.
    pub ip_address: String,
    /// The caller's user agent.
    pub user_agent: String,
    /// Further facts as a JSON object of strings, such as `old_role` and `new_role`.
    pub details: String,
    /// When it happened, in microseconds since the Unix epoch.
    pub created_at: i64,
}

/// A position in a list ordered by creation time then id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// When the last item of the previous page was created, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// The id of that item, which orders items created in the same microsecond.
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

    /// Changes a user's role and raises their authorization version, so
    /// their earlier tokens are refused; refuses to demote an organisation's
    /// last active admin, and to change a deactivated user.
    pub async fn update_role(
        &self,
        organization_id: &str,
        user_id: &str,
        role: &str,
        revocation_expires_at: i64,
    ) -> Result<RoleChange, AuthError> {
        let postgres = matches!(self.database, Database::Postgres(_));
        with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let current: Option<(String, Option<i64>)> = sqlx::query_as("SELECT role, deactivated_at FROM users WHERE user_id = $1 AND organization_id = $2")
                .bind(user_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
            let Some((old_role, deactivated_at)) = current else { return Err(AuthError::NotFound("user")) };
            if deactivated_at.is_some() {
                return Err(AuthError::FailedPrecondition("the user is deactivated"));
            }
            if old_role == role {
                return Ok(RoleChange { old_role, revocation: None });
            }
            if old_role == "admin" && active_admins!(postgres).bind(organization_id).fetch_all(&mut *transaction).await?.len() <= 1 {
                return Err(AuthError::FailedPrecondition("the last admin of an organisation cannot be demoted"));
            }
            let (version,): (i64,) = sqlx::query_as("UPDATE users SET role = $1, authz_version = authz_version + 1 WHERE user_id = $2 RETURNING authz_version")
                .bind(role).bind(user_id).fetch_one(&mut *transaction).await?;
            let revocation = RevocationRow::subject(user_id, version, revocation_expires_at);
            insert_revocation!(&mut *transaction, revocation).await?;
            transaction.commit().await?;
            Ok::<_, AuthError>(RoleChange { old_role, revocation: Some(revocation) })
        })
    }

    /// Deactivates a user of `organization_id`: raises their authorization
    /// version, ends their open sessions and revokes the API keys they
    /// created, in one transaction. Refuses to deactivate the last active
    /// admin; a deactivated user is left as is.
    pub async fn deactivate_user(
        &self,
        organization_id: &str,
        user_id: &str,
        revocation_expires_at: i64,
    ) -> Result<Deactivation, AuthError> {
        let postgres = matches!(self.database, Database::Postgres(_));
        let now = now_micros();
        with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let current: Option<(String, Option<i64>)> = sqlx::query_as("SELECT role, deactivated_at FROM users WHERE user_id = $1 AND organization_id = $2")
                .bind(user_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
            let Some((role, deactivated_at)) = current else { return Err(AuthError::NotFound("user")) };
            if deactivated_at.is_some() {
                return Ok(Deactivation::default());
            }
            if role == "admin" && active_admins!(postgres).bind(organization_id).fetch_all(&mut *transaction).await?.len() <= 1 {
                return Err(AuthError::FailedPrecondition("the last admin of an organisation cannot be deactivated"));
            }
            let (version,): (i64,) = sqlx::query_as("UPDATE users SET deactivated_at = $1, authz_version = authz_version + 1 WHERE user_id = $2 RETURNING authz_version")
                .bind(now).bind(user_id).fetch_one(&mut *transaction).await?;
            let sessions: Vec<(String,)> = sqlx::query_as("UPDATE refresh_families SET revoked_at = $1, revoke_reason = 'user deactivated' WHERE user_id = $2 AND revoked_at IS NULL RETURNING family_id")
                .bind(now).bind(user_id).fetch_all(&mut *transaction).await?;
            let keys: Vec<ApiKeyRow> = sqlx::query_as("UPDATE api_keys SET revoked_at = $1 WHERE created_by = $2 AND organization_id = $3 AND revoked_at IS NULL \
                                                       RETURNING api_key_id, organization_id, display_name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at")
                .bind(now).bind(user_id).bind(organization_id).fetch_all(&mut *transaction).await?;
            let mut revocations = vec![RevocationRow::subject(user_id, version, revocation_expires_at)];
            revocations.extend(keys.iter().map(|key| RevocationRow::api_key(&key.api_key_id, revocation_expires_at)));
            for revocation in &revocations {
                insert_revocation!(&mut *transaction, revocation).await?;
            }
            transaction.commit().await?;
            Ok::<_, AuthError>(Deactivation {
                revoked_sessions: sessions.into_iter().map(|(family_id,)| family_id).collect(),
                revoked_api_keys: keys,
                revocations,
            })
        })
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
            sqlx::query_as("SELECT t.token_hash, t.family_id, t.used_at, t.successor_answer, s.used_at AS successor_used_at, \
                            f.user_id, f.organization_id, f.expires_at AS family_expires_at, f.revoked_at \
                            FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
                            LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash WHERE t.token_hash = $1")
                .bind(token_hash).fetch_optional(pool).await
        })?)
    }

    /// Spends an unspent refresh token of an open family: adds its
    /// successor to the family and keeps `sealed_answer`, the pair it was
    /// exchanged for, for retries. Whether this call spent it (of two
    /// racing refreshes of one token, only one does).
    pub async fn spend_refresh_token(
        &self,
        spent_hash: &str,
        family_id: &str,
        successor_hash: &str,
        sealed_answer: &[u8],
    ) -> Result<bool, AuthError> {
        let now = now_micros();
        Ok(with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let spent = sqlx::query("UPDATE refresh_tokens SET used_at = $1, successor_hash = $2, successor_answer = $3 WHERE token_hash = $4 AND used_at IS NULL")
                .bind(now).bind(successor_hash).bind(sealed_answer).bind(spent_hash).execute(&mut *transaction).await?;
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

    /// Revokes a family (a session) and records the revocation of its
    /// access tokens; the revocation, if the family was open.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        reason: &str,
        revocation_expires_at: i64,
    ) -> Result<Option<RevocationRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let revoked = sqlx::query("UPDATE refresh_families SET revoked_at = $1, revoke_reason = $2 WHERE family_id = $3 AND revoked_at IS NULL")
                .bind(now_micros()).bind(reason).bind(family_id).execute(&mut *transaction).await?;
            if revoked.rows_affected() != 1 {
                return Ok(None);
            }
            let revocation = RevocationRow::session(family_id, revocation_expires_at);
            insert_revocation!(&mut *transaction, revocation).await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(Some(revocation))
        })?)
    }

    /// The revocations still in force at `now`.
    pub async fn revocations_in_force(&self, now: i64) -> Result<Vec<RevocationRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT revocation_id, kind, target, min_version, created_at, expires_at FROM revocations WHERE expires_at > $1")
                .bind(now).fetch_all(pool).await
        })?)
    }

    /// The revocations recorded after `since` (still in force at `now`).
    pub async fn revocations_since(&self, since: i64, now: i64) -> Result<Vec<RevocationRow>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as("SELECT revocation_id, kind, target, min_version, created_at, expires_at FROM revocations WHERE created_at > $1 AND expires_at > $2")
                .bind(since).bind(now).fetch_all(pool).await
        })?)
    }

    /// Forgets revocations that expired before `before`; how many.
    pub async fn delete_expired_revocations(&self, before: i64) -> Result<u64, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            sqlx::query("DELETE FROM revocations WHERE expires_at < $1").bind(before).execute(pool).await.map(|done| done.rows_affected())
        })?)
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

    /// Revokes an organisation's API key and records the revocation; the
    /// key's record afterwards and the revocation, if it was active.
    pub async fn revoke_api_key(
        &self,
        organization_id: &str,
        api_key_id: &str,
        revocation_expires_at: i64,
    ) -> Result<Option<(ApiKeyRow, Option<RevocationRow>)>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let revoked: Option<ApiKeyRow> = sqlx::query_as("UPDATE api_keys SET revoked_at = $1 WHERE api_key_id = $2 AND organization_id = $3 AND revoked_at IS NULL \
                            RETURNING api_key_id, organization_id, display_name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at")
                .bind(now_micros()).bind(api_key_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
            let answer = match revoked {
                Some(row) => {
                    let revocation = RevocationRow::api_key(api_key_id, revocation_expires_at);
                    insert_revocation!(&mut *transaction, revocation).await?;
                    Some((row, Some(revocation)))
                }
                None => {
                    let existing: Option<ApiKeyRow> = sqlx::query_as("SELECT api_key_id, organization_id, display_name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at \
                                    FROM api_keys WHERE api_key_id = $1 AND organization_id = $2")
                        .bind(api_key_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
                    existing.map(|row| (row, None))
                }
            };
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(answer)
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
            sqlx::query_as(concat!("SELECT ", service_account_columns!(), " FROM service_accounts WHERE client_id = $1"))
                .bind(client_id).fetch_optional(pool).await
        })?)
    }

    /// A page of an organisation's service accounts, newest first, after `cursor`.
    pub async fn list_service_accounts(
        &self,
        organization_id: &str,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<ServiceAccountRow>, AuthError> {
        let (created_at, id) = after.map_or((i64::MAX, String::new()), |cursor| {
            (cursor.created_at, cursor.id.clone())
        });
        let unbounded = after.is_none();
        Ok(with_pool!(&self.database, pool => {
            sqlx::query_as(concat!(
                "SELECT ", service_account_columns!(), " FROM service_accounts ",
                "WHERE organization_id = $1 AND ($5 OR created_at < $2 OR (created_at = $2 AND client_id < $3)) ORDER BY created_at DESC, client_id DESC LIMIT $4"
            ))
                .bind(organization_id).bind(created_at).bind(id).bind(i64::from(limit)).bind(unbounded).fetch_all(pool).await
        })?)
    }

    /// Replaces an active service account's secret and raises its
    /// authorization version, so the tokens issued with the old secret are
    /// refused; the account afterwards and the revocation.
    pub async fn rotate_service_account_secret(
        &self,
        organization_id: &str,
        client_id: &str,
        secret_hash: &str,
        revocation_expires_at: i64,
    ) -> Result<(ServiceAccountRow, RevocationRow), AuthError> {
        with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let rotated: Option<ServiceAccountRow> = sqlx::query_as(concat!(
                "UPDATE service_accounts SET secret_hash = $1, secret_rotated_at = $2, authz_version = authz_version + 1 ",
                "WHERE client_id = $3 AND organization_id = $4 AND revoked_at IS NULL RETURNING ", service_account_columns!()
            ))
                .bind(secret_hash).bind(now_micros()).bind(client_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
            let Some(account) = rotated else {
                let existing: Option<ServiceAccountRow> = sqlx::query_as(concat!("SELECT ", service_account_columns!(), " FROM service_accounts WHERE client_id = $1 AND organization_id = $2"))
                    .bind(client_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
                return Err(match existing {
                    Some(_) => AuthError::FailedPrecondition("the service account is revoked"),
                    None => AuthError::NotFound("service account"),
                });
            };
            let revocation = RevocationRow::subject(client_id, account.authz_version, revocation_expires_at);
            insert_revocation!(&mut *transaction, revocation).await?;
            transaction.commit().await?;
            Ok::<_, AuthError>((account, revocation))
        })
    }

    /// Revokes a service account and raises its authorization version, so
    /// its tokens are refused; the account afterwards and the revocation,
    /// if it was active.
    pub async fn revoke_service_account(
        &self,
        organization_id: &str,
        client_id: &str,
        revocation_expires_at: i64,
    ) -> Result<Option<(ServiceAccountRow, Option<RevocationRow>)>, AuthError> {
        Ok(with_pool!(&self.database, pool => {
            let mut transaction = pool.begin_write().await?;
            let revoked: Option<ServiceAccountRow> = sqlx::query_as(concat!(
                "UPDATE service_accounts SET revoked_at = $1, authz_version = authz_version + 1 ",
                "WHERE client_id = $2 AND organization_id = $3 AND revoked_at IS NULL RETURNING ", service_account_columns!()
            ))
                .bind(now_micros()).bind(client_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
            let answer = match revoked {
                Some(account) => {
                    let revocation = RevocationRow::subject(client_id, account.authz_version, revocation_expires_at);
                    insert_revocation!(&mut *transaction, revocation).await?;
                    Some((account, Some(revocation)))
                }
                None => {
                    let existing: Option<ServiceAccountRow> = sqlx::query_as(concat!("SELECT ", service_account_columns!(), " FROM service_accounts WHERE client_id = $1 AND organization_id = $2"))
                        .bind(client_id).bind(organization_id).fetch_optional(&mut *transaction).await?;
                    existing.map(|account| (account, None))
                }
            };
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(answer)
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
