-- Palisade schema, SQLite dialect. Keep in step with ../postgres/0001_init.sql: same tables, columns,
-- checks and (derived) constraint names, so both backends report the same `Conflict { constraint }`.
--
-- Representation (see the crate docs): ids are canonical lowercase UUID text, timestamps are INTEGER
-- microseconds since the Unix epoch (UTC). Tables are STRICT so a value of the wrong type is refused.
-- SQLite names a unique violation by its columns ("UNIQUE constraint failed: tenants.slug"), which the
-- store turns into `tenants.slug`; the PostgreSQL migration names its constraints to match.

-- Tenants form one tree rooted at the single system tenant. `path` is the materialised path
-- `/<root-id>/.../<self-id>/`; subtree queries compare its prefix.
CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('system', 'partner', 'tenant')),
    parent_id   TEXT    REFERENCES tenants (id),
    path        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- The system tenant, and only it, is the root.
    CHECK ((kind = 'system') = (parent_id IS NULL))
) STRICT;

-- At most one system tenant (reported as `tenants.kind`).
CREATE UNIQUE INDEX tenants_one_system ON tenants (kind) WHERE kind = 'system';
-- `has_children` and the parent foreign key look tenants up by parent.
CREATE INDEX tenants_parent_id_idx ON tenants (parent_id);
-- The UNIQUE constraint on `path` already indexes it (`sqlite_autoindex_tenants_2`).

-- Users belong to one home tenant. UNIQUE (tenant_id, id) is the target of user_roles' composite
-- foreign key (a role row can only point at a user of the same tenant) and serves keyset pagination.
CREATE TABLE users (
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    email          TEXT    NOT NULL,
    phone          TEXT,
    status         TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    token_version  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (tenant_id, email),
    UNIQUE (tenant_id, id)
) STRICT;

-- Role names a user holds in their home tenant.
CREATE TABLE user_roles (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
