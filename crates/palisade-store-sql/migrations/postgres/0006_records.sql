-- Records of declared resources, PostgreSQL dialect. Keep in step with ../sqlite/0006_records.sql:
-- same tables, columns and constraint names. Conventions as in 0001: ids are TEXT COLLATE "C",
-- timestamps BIGINT microseconds (UTC).
--
-- `records` holds every declared resource's documents as JSON text (`data`), validated against the
-- declaration before any write. `record_fields` indexes the values of filterable fields (text or
-- number) so list filters are plain comparisons with bound parameters on both backends.
-- `record_unique` claims the values of unique fields within a tenant (hashed: SHA-256 of the value's
-- key, so long values fit the index and no plain value sits in it); a clash names the field.
-- `idempotency_keys` stores the response of a POST per tenant, principal and key for 24 hours; the row
-- is reserved (status NULL) before the create runs, so two concurrent requests cannot both run it.
CREATE TABLE records (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    resource    TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    owner_id    TEXT COLLATE "C" NOT NULL,
    data        TEXT             NOT NULL,
    version     BIGINT           NOT NULL,
    created_at  BIGINT           NOT NULL,
    updated_at  BIGINT           NOT NULL,
    deleted_at  BIGINT,
    CONSTRAINT "records.tenant_id_resource_id" PRIMARY KEY (tenant_id, resource, id),
    CONSTRAINT records_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id)
);

CREATE INDEX records_tenant_id_resource_owner_id_idx ON records (tenant_id, resource, owner_id, id);

CREATE TABLE record_fields (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    resource    TEXT COLLATE "C" NOT NULL,
    record_id   TEXT COLLATE "C" NOT NULL,
    field       TEXT COLLATE "C" NOT NULL,
    text_value  TEXT COLLATE "C",
    num_value   DOUBLE PRECISION,
    CONSTRAINT "record_fields.tenant_id_resource_record_id_field" PRIMARY KEY (tenant_id, resource, record_id, field),
    CONSTRAINT record_fields_record_fkey FOREIGN KEY (tenant_id, resource, record_id)
        REFERENCES records (tenant_id, resource, id)
);

CREATE INDEX record_fields_text_idx ON record_fields (tenant_id, resource, field, text_value);
CREATE INDEX record_fields_num_idx ON record_fields (tenant_id, resource, field, num_value);

CREATE TABLE record_unique (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    resource    TEXT COLLATE "C" NOT NULL,
    field       TEXT COLLATE "C" NOT NULL,
    value_hash  TEXT COLLATE "C" NOT NULL,
    record_id   TEXT COLLATE "C" NOT NULL,
    CONSTRAINT "record_unique.tenant_id_resource_field_value_hash" PRIMARY KEY (tenant_id, resource, field, value_hash),
    CONSTRAINT record_unique_record_fkey FOREIGN KEY (tenant_id, resource, record_id)
        REFERENCES records (tenant_id, resource, id)
);

CREATE INDEX record_unique_record_idx ON record_unique (tenant_id, resource, record_id);

CREATE TABLE idempotency_keys (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    principal   TEXT COLLATE "C" NOT NULL,
    idem_key    TEXT COLLATE "C" NOT NULL,
    body_hash   TEXT             NOT NULL,
    status      BIGINT,
    headers     TEXT,
    body        TEXT,
    created_at  BIGINT           NOT NULL,
    CONSTRAINT "idempotency_keys.tenant_id_principal_idem_key" PRIMARY KEY (tenant_id, principal, idem_key),
    CONSTRAINT idempotency_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id)
);
