-- Browser sessions, SQLite dialect. Keep in step with ../postgres/0009_sessions.sql: same table, columns
-- and (derived) constraint names. Conventions as in 0001: ids and hashes are TEXT, timestamps are
-- INTEGER microseconds since the Unix epoch (UTC), tables are STRICT.
--
-- A browser session is one sign-in that chose a cookie instead of tokens. It *is* a refresh family
-- (`family_id`, the primary key): revoking the family (logout, logout-all, refresh-token reuse) ends the
-- session, and deleting the family or its user deletes the row. Only `token_hash` (hex HMAC-SHA-256 of
-- the cookie value under a key derived from the master key) is stored, never the cookie. `token_version`
-- is the user's token version at sign-in: logout-all bumps the user's and so refuses the session.
-- `last_seen_at` drives the idle timeout; `expires_at` is the absolute end.
CREATE TABLE browser_sessions (
    family_id      TEXT    NOT NULL PRIMARY KEY REFERENCES refresh_families (id) ON DELETE CASCADE,
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    user_id        TEXT    NOT NULL,
    token_hash     TEXT    NOT NULL UNIQUE,
    token_version  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- Tenant-first, and the cascade from users.
CREATE INDEX browser_sessions_tenant_id_user_id_idx ON browser_sessions (tenant_id, user_id);
