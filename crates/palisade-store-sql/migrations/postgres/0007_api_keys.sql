-- API keys, PostgreSQL dialect. Keep in step with ../sqlite/0007_api_keys.sql: same table, columns and
-- constraint names (`<table>.<col>`, the names the SQLite store derives from SQLite's messages).
-- Conventions as in 0001: ids are TEXT COLLATE "C", timestamps are BIGINT microseconds since the Unix
-- epoch (UTC).
--
-- A key is `pal_<env>_<prefix>_<secret><checksum>`; only `prefix` (public, unique, the lookup handle) and
-- `secret_hash` (hex HMAC-SHA-256 of the whole key under a key derived from the master key) are stored,
-- never the key. `capabilities` and `allowed_ips` (CIDRs) are JSON arrays read whole. `created_by` is the
-- creating user; it is deliberately not a foreign key, so deleting the user leaves the row and the key is
-- then refused at authentication (the creator no longer resolves). A rotated key names its predecessor
-- in `rotated_from`; the predecessor keeps working until its `grace_until`.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" NOT NULL,
    tenant_id     TEXT COLLATE "C" NOT NULL,
    created_by    TEXT COLLATE "C" NOT NULL,
    name          TEXT             NOT NULL,
    prefix        TEXT COLLATE "C" NOT NULL,
    secret_hash   TEXT             NOT NULL,
    capabilities  TEXT             NOT NULL,
    allowed_ips   TEXT             NOT NULL,
    expires_at    BIGINT,
    created_at    BIGINT           NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    rotated_from  TEXT COLLATE "C",
    grace_until   BIGINT,
    CONSTRAINT "api_keys.id" PRIMARY KEY (id),
    CONSTRAINT "api_keys.prefix" UNIQUE (prefix),
    CONSTRAINT api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id)
);

-- Tenant-scoped listing, newest id last (UUIDv7 ids sort by creation time).
CREATE INDEX api_keys_tenant_id_id_idx ON api_keys (tenant_id, id);
