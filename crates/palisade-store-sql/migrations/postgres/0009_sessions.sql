-- Browser sessions, PostgreSQL dialect. Keep in step with ../sqlite/0009_sessions.sql: same table,
-- columns and constraint names (`<table>.<col>`, the names the SQLite store derives from SQLite's
-- messages). Conventions as in 0001: ids and hashes are TEXT COLLATE "C", timestamps are BIGINT
-- microseconds since the Unix epoch (UTC).
--
-- A browser session is one sign-in that chose a cookie instead of tokens. It *is* a refresh family
-- (`family_id`, the primary key): revoking the family (logout, logout-all, refresh-token reuse) ends the
-- session, and deleting the family or its user deletes the row. Only `token_hash` (hex HMAC-SHA-256 of
-- the cookie value under a key derived from the master key) is stored, never the cookie. `token_version`
-- is the user's token version at sign-in: logout-all bumps the user's and so refuses the session.
-- `last_seen_at` drives the idle timeout; `expires_at` is the absolute end.
CREATE TABLE browser_sessions (
    family_id      TEXT COLLATE "C" NOT NULL,
    tenant_id      TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL,
    token_hash     TEXT COLLATE "C" NOT NULL,
    token_version  BIGINT           NOT NULL,
    created_at     BIGINT           NOT NULL,
    last_seen_at   BIGINT           NOT NULL,
    expires_at     BIGINT           NOT NULL,
    CONSTRAINT "browser_sessions.family_id" PRIMARY KEY (family_id),
    CONSTRAINT "browser_sessions.token_hash" UNIQUE (token_hash),
    CONSTRAINT browser_sessions_family_fkey FOREIGN KEY (family_id)
        REFERENCES refresh_families (id) ON DELETE CASCADE,
    CONSTRAINT browser_sessions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT browser_sessions_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Tenant-first, and the cascade from users.
CREATE INDEX browser_sessions_tenant_id_user_id_idx ON browser_sessions (tenant_id, user_id);
