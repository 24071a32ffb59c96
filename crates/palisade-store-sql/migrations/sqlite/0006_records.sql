-- Records of declared resources, SQLite dialect. Keep in step with ../postgres/0006_records.sql: same
-- tables, columns and constraint names. Conventions as in 0001: ids are TEXT, timestamps INTEGER
-- microseconds (UTC), tables STRICT.
--
-- `records` holds every declared resource's documents as JSON text (`data`), validated against the
-- declaration before any write. `record_fields` indexes the values of filterable fields (text or
-- number) so list filters are plain comparisons with bound parameters on both backends.
-- `record_unique` claims the values of unique fields within a tenant (hashed: SHA-256 of the value's
-- key, so long values fit the index and no plain value sits in it); a clash names the field.
-- `idempotency_keys` stores the response of a POST per tenant, principal and key for 24 hours; the row
-- is reserved (status NULL) before the create runs, so two concurrent requests cannot both run it.
CREATE TABLE records (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    resource    TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    owner_id    TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER,
    PRIMARY KEY (tenant_id, resource, id)
) STRICT;

CREATE INDEX records_tenant_id_resource_owner_id_idx ON records (tenant_id, resource, owner_id, id);

CREATE TABLE record_fields (
    tenant_id   TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    field       TEXT    NOT NULL,
    text_value  TEXT,
    num_value   REAL,
    PRIMARY KEY (tenant_id, resource, record_id, field),
    FOREIGN KEY (tenant_id, resource, record_id) REFERENCES records (tenant_id, resource, id)
) STRICT;

CREATE INDEX record_fields_text_idx ON record_fields (tenant_id, resource, field, text_value);
CREATE INDEX record_fields_num_idx ON record_fields (tenant_id, resource, field, num_value);

CREATE TABLE record_unique (
    tenant_id   TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    field       TEXT    NOT NULL,
    value_hash  TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, resource, field, value_hash),
    FOREIGN KEY (tenant_id, resource, record_id) REFERENCES records (tenant_id, resource, id)
) STRICT;

CREATE INDEX record_unique_record_idx ON record_unique (tenant_id, resource, record_id);

CREATE TABLE idempotency_keys (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    principal   TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    body_hash   TEXT    NOT NULL,
    status      INTEGER,
    headers     TEXT,
    body        TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, principal, idem_key)
) STRICT;
