-- Custom roles per tenant, PostgreSQL dialect. Keep in step with ../sqlite/0004_custom_roles.sql: same
-- table, columns and constraint names (`<table>.<col>[_<col>...]`, the names the SQLite store derives
-- from SQLite's messages). Conventions as in 0001: ids are TEXT COLLATE "C", timestamps are BIGINT
-- microseconds since the Unix epoch (UTC).
--
-- `inherits` and `capabilities` are JSON arrays of names (text, read whole, as on SQLite). The API
-- validates every name and refuses cycles, excess depth and escalation before writing; resolution
-- fails closed on anything stored otherwise. `name` sorts bytewise ("C"), as on SQLite, for keyset
-- pagination. The primary key is also the tenant-first index.
CREATE TABLE custom_roles (
    tenant_id     TEXT COLLATE "C" NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    inherits      TEXT             NOT NULL,
    capabilities  TEXT             NOT NULL,
    created_at    BIGINT           NOT NULL,
    updated_at    BIGINT           NOT NULL,
    CONSTRAINT "custom_roles.tenant_id_name" PRIMARY KEY (tenant_id, name),
    CONSTRAINT custom_roles_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id)
);

-- "Does any user of the tenant hold this role?" (refusing to delete a role in use).
CREATE INDEX user_roles_tenant_id_role_idx ON user_roles (tenant_id, role);
