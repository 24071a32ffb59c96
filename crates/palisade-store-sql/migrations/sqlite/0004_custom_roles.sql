-- Custom roles per tenant, SQLite dialect. Keep in step with ../postgres/0004_custom_roles.sql: same
-- table, columns and (derived) constraint names. Conventions as in 0001: ids are TEXT, timestamps are
-- INTEGER microseconds since the Unix epoch (UTC), tables are STRICT.
--
-- `inherits` and `capabilities` are JSON arrays of names, read whole. The API validates every name
-- (role names against the tenant's roles, capabilities against the registry) and refuses cycles,
-- excess depth and escalation before writing; resolution fails closed on anything stored otherwise.
-- A duplicate name in a tenant is reported as `custom_roles.tenant_id_name`; the primary key is also
-- the tenant-first index.
CREATE TABLE custom_roles (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    name          TEXT    NOT NULL,
    inherits      TEXT    NOT NULL,
    capabilities  TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;

-- "Does any user of the tenant hold this role?" (refusing to delete a role in use).
CREATE INDEX user_roles_tenant_id_role_idx ON user_roles (tenant_id, role);
