-- Revocation before expiry. Every user and service account carries an
-- authorization version, raised whenever its role or standing changes and
-- copied into its access tokens (`ver`); `revocations` lists what every
-- verifier must refuse until it would have expired anyway: closed sessions,
-- superseded versions, revoked API keys. A spent refresh token keeps the
-- answer it was exchanged for, sealed under a key derived from the token
-- itself (which is stored only as a digest), so a retry within the grace
-- window gets the same pair back.

ALTER TABLE users ADD COLUMN authz_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;

ALTER TABLE service_accounts ADD COLUMN authz_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE service_accounts ADD COLUMN revoked_at BIGINT;
ALTER TABLE service_accounts ADD COLUMN secret_rotated_at BIGINT;
CREATE INDEX service_accounts_by_organization ON service_accounts (organization_id, created_at DESC, client_id DESC);

ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN successor_answer BLOB;

CREATE INDEX api_keys_by_creator ON api_keys (created_by);

CREATE TABLE revocations (
    revocation_id  TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('session', 'subject', 'api_key')),
    target         TEXT NOT NULL,
    min_version    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX revocations_by_expiry ON revocations (expires_at);
CREATE INDEX revocations_by_creation ON revocations (created_at);
