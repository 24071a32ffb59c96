-- Record retention, SQLite dialect. Keep in step with ../postgres/0012_record_retention.sql.
--
-- A stored idempotent response holds the created record (its body is the record as returned), so a
-- record purged by retention must take that response with it. `record_id` names the record a completed
-- key created (NULL while reserved, and for keys stored before this migration, which expire within a
-- day); the retention purge deletes by it.
ALTER TABLE idempotency_keys ADD COLUMN record_id TEXT;

CREATE INDEX idempotency_keys_record_idx ON idempotency_keys (tenant_id, record_id);

-- The retention purge finds a resource's records by age.
CREATE INDEX records_tenant_id_resource_created_at_idx ON records (tenant_id, resource, created_at);
