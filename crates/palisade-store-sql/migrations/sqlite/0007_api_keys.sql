-- API keys, SQLite dialect. Keep in step with ../postgres/0007_api_keys.sql: same table, columns and
-- (derived) constraint names. Conventions as in 0001: ids are TEXT, timestamps are INTEGER microseconds
-- since the Unix epoch (UTC), tables are STRICT.
--
-- A key is `pal_<env>_<prefix>_<secret><checksum>`; only `prefix` (public, unique, the lookup handle) and
-- `secret_hash` (hex HMAC-SHA-256 of the whole key under a key derived from the master key) are stored,
-- never the key. `capabilities` and `allowed_ips` (CIDRs) are JSON arrays read whole. `created_by` is the
-- creating user; it is deliberately not a foreign key, so deleting the user leaves the row and the key is
-- then refused at authentication (the creator no longer resolves). A rotated key names its predecessor
-- in `rotated_from`; the predecessor keeps working until its `grace_until`.
CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    created_by    TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    prefix        TEXT    NOT NULL UNIQUE,
    secret_hash   TEXT    NOT NULL,
    capabilities  TEXT    NOT NULL,
    allowed_ips   TEXT    NOT NULL,
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    rotated_from  TEXT,
    grace_until   INTEGER
) STRICT;

-- Tenant-scoped listing, newest id last (UUIDv7 ids sort by creation time).
CREATE INDEX api_keys_tenant_id_id_idx ON api_keys (tenant_id, id);
