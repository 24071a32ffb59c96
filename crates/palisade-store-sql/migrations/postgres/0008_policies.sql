-- Tenant Cedar policy documents, PostgreSQL dialect. Keep in step with ../sqlite/0008_policies.sql: same
-- table, columns and constraint names (`<table>.<col>`). Conventions as in 0001: ids are
-- TEXT COLLATE "C", timestamps are BIGINT microseconds since the Unix epoch (UTC).
--
-- One document per tenant (the primary key is the tenant id, which is also the index every lookup
-- uses). `policies` is the Cedar text as written, validated by the server before it is stored.
-- `etag` is a UUIDv7, fresh on every write and never reused (caches key compiled sets on
-- (tenant_id, etag)); `version` counts the writes since the document was created. `updated_by` is the
-- audit actor (`user:<id>`, `api_key:<id>`). A delete removes the row; the audit trail keeps the text.
CREATE TABLE tenant_policies (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    policies    TEXT             NOT NULL,
    version     BIGINT           NOT NULL,
    etag        TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT           NOT NULL,
    updated_by  TEXT             NOT NULL,
    CONSTRAINT "tenant_policies.tenant_id" PRIMARY KEY (tenant_id),
    CONSTRAINT tenant_policies_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id)
);
