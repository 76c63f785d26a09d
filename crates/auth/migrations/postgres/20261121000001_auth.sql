-- The auth service's tables. Identifiers are TEXT (UUIDs), times are BIGINT
-- Unix microseconds, so the same queries run on PostgreSQL and SQLite.

CREATE TABLE organizations (
    organization_id TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE users (
    user_id          TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (organization_id),
    email            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('company_user', 'analyst', 'admin')),
    password_hash    TEXT,
    created_at       BIGINT NOT NULL,
    last_sign_in_at  BIGINT
);
CREATE INDEX users_by_organization ON users (organization_id, created_at, user_id);

CREATE TABLE user_identities (
    provider    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (user_id),
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_by_user ON user_identities (user_id);

CREATE TABLE invitations (
    invitation_id    TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (organization_id),
    email            TEXT NOT NULL,
    role             TEXT NOT NULL,
    token_hash       TEXT NOT NULL UNIQUE,
    invited_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    accepted_at      BIGINT
);

CREATE TABLE refresh_families (
    family_id        TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (user_id),
    organization_id  TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    revoke_reason    TEXT
);
CREATE INDEX refresh_families_by_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    family_id    TEXT NOT NULL REFERENCES refresh_families (family_id),
    created_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE api_keys (
    api_key_id       TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (organization_id),
    display_name     TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    key_hash         TEXT NOT NULL UNIQUE,
    scopes           TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT,
    last_used_at     BIGINT,
    revoked_at       BIGINT
);
CREATE INDEX api_keys_by_organization ON api_keys (organization_id, created_at DESC, api_key_id DESC);

CREATE TABLE service_accounts (
    client_id        TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (organization_id),
    display_name     TEXT NOT NULL,
    secret_hash      TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    key_id                 TEXT PRIMARY KEY,
    state                  TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    public_key             BYTEA NOT NULL,
    encrypted_private_key  BYTEA NOT NULL,
    created_at             BIGINT NOT NULL,
    activated_at           BIGINT,
    retired_at             BIGINT
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

CREATE TABLE audit_events (
    audit_event_id   TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    kind             TEXT NOT NULL,
    actor_id         TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    ip_address       TEXT NOT NULL,
    user_agent       TEXT NOT NULL,
    details          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX audit_events_by_organization ON audit_events (organization_id, created_at DESC, audit_event_id DESC);
