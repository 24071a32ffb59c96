-- Tenant Cedar policy documents, SQLite dialect. Keep in step with ../postgres/0008_policies.sql: same
-- table, columns and constraint names. Conventions as in 0001: ids are TEXT, timestamps are INTEGER
-- microseconds since the Unix epoch (UTC), tables are STRICT.
--
-- One document per tenant (the primary key is the tenant id, which is also the index every lookup
-- uses). `policies` is the Cedar text as written, validated by the server before it is stored.
-- `etag` is a UUIDv7, fresh on every write and never reused (caches key compiled sets on
-- (tenant_id, etag)); `version` counts the writes since the document was created. `updated_by` is the
-- audit actor (`user:<id>`, `api_key:<id>`). A delete removes the row; the audit trail keeps the text.
CREATE TABLE tenant_policies (
    tenant_id   TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    policies    TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    etag        TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL
) STRICT;
