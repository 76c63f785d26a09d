-- User profiles kept from the tracking API's messages (identify, group,
-- alias), updated in the transaction that stores the messages' events, so a
-- re-sent message changes nothing. Traits are JSON objects as text, merged
-- by the service; times are Unix microseconds of the events' corrected
-- times.
CREATE TABLE user_profiles (
    organization_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    traits          TEXT NOT NULL,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);

-- An id linked to a user by `alias`: later messages of `alias_id` are
-- stored under `user_id`, which is never itself an alias.
CREATE TABLE user_aliases (
    organization_id TEXT NOT NULL,
    alias_id        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    PRIMARY KEY (organization_id, alias_id)
);

CREATE INDEX user_aliases_by_user ON user_aliases (organization_id, user_id);

-- The groups a user belongs to (`group`), with the group's traits.
CREATE TABLE user_groups (
    organization_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    group_id        TEXT NOT NULL,
    traits          TEXT NOT NULL,
    PRIMARY KEY (organization_id, user_id, group_id)
);
