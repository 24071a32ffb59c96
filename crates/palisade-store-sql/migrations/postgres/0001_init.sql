-- Palisade schema, PostgreSQL dialect. Keep in step with ../sqlite/0001_init.sql: same tables, columns
-- and checks. Unique constraints and indexes are named the way the SQLite store derives names from
-- SQLite's messages (`<table>.<col>[_<col>...]`), so both backends report the same
-- `Conflict { constraint }`.
--
-- Representation (see the crate docs): ids are canonical lowercase UUID text, timestamps are BIGINT
-- microseconds since the Unix epoch (UTC). Id and path columns use the "C" collation so ordering and
-- prefix comparisons are bytewise, exactly as SQLite's BINARY collation (keyset pagination relies on it).

-- Tenants form one tree rooted at the single system tenant. `path` is the materialised path
-- `/<root-id>/.../<self-id>/`; subtree queries compare its prefix.
CREATE TABLE tenants (
    id          TEXT COLLATE "C" NOT NULL,
    slug        TEXT COLLATE "C" NOT NULL,
    name        TEXT             NOT NULL,
    kind        TEXT             NOT NULL,
    parent_id   TEXT COLLATE "C",
    path        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT           NOT NULL,
    updated_at  BIGINT           NOT NULL,
    CONSTRAINT "tenants.id" PRIMARY KEY (id),
    CONSTRAINT "tenants.slug" UNIQUE (slug),
    -- Also the index on path.
    CONSTRAINT "tenants.path" UNIQUE (path),
    CONSTRAINT tenants_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES tenants (id),
    CONSTRAINT tenants_kind_check CHECK (kind IN ('system', 'partner', 'tenant')),
    -- The system tenant, and only it, is the root.
    CONSTRAINT tenants_root_check CHECK ((kind = 'system') = (parent_id IS NULL))
);

-- At most one system tenant (reported as `tenants.kind`, as SQLite does).
CREATE UNIQUE INDEX "tenants.kind" ON tenants (kind) WHERE kind = 'system';
-- `has_children` and the parent foreign key look tenants up by parent.
CREATE INDEX tenants_parent_id_idx ON tenants (parent_id);

-- Users belong to one home tenant. UNIQUE (tenant_id, id) is the target of user_roles' composite
-- foreign key (a role row can only point at a user of the same tenant) and serves keyset pagination.
CREATE TABLE users (
    id             TEXT COLLATE "C" NOT NULL,
    tenant_id      TEXT COLLATE "C" NOT NULL,
    email          TEXT             NOT NULL,
    phone          TEXT,
    status         TEXT             NOT NULL,
    token_version  BIGINT           NOT NULL DEFAULT 0,
    created_at     BIGINT           NOT NULL,
    updated_at     BIGINT           NOT NULL,
    CONSTRAINT "users.id" PRIMARY KEY (id),
    CONSTRAINT "users.tenant_id_email" UNIQUE (tenant_id, email),
    CONSTRAINT "users.tenant_id_id" UNIQUE (tenant_id, id),
    CONSTRAINT users_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT users_status_check CHECK (status IN ('active', 'disabled'))
);

-- Role names a user holds in their home tenant.
CREATE TABLE user_roles (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    role       TEXT COLLATE "C" NOT NULL,
    CONSTRAINT "user_roles.tenant_id_user_id_role" PRIMARY KEY (tenant_id, user_id, role),
    CONSTRAINT user_roles_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT user_roles_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
