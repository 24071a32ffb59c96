-- Secondary indexes of records that cannot be mistaken for the primary key. SQLite dialect; keep in
-- step with ../postgres/0013_record_index_order.sql.
--
-- The primary key is (tenant_id, resource, id). Two secondary indexes began with the same two columns:
-- (tenant_id, resource, owner_id, id) for owner-scoped lists and (tenant_id, resource, created_at) for
-- the retention purge. Before a table's first ANALYZE (a fresh table, or a server running without
-- autovacuum), PostgreSQL's planner could not tell them apart from the key and served a look-up by id,
-- and the foreign-key check of every indexed value a create writes, from one of them: a scan of every
-- record of the resource. Led by (tenant_id, owner_id) and (tenant_id, created_at), each matches one
-- column of such a look-up, so the primary key always wins it; owner-scoped lists (tenant, owner,
-- resource, then id order) and the purge (one tenant's records older than a cutoff) are served as before.
DROP INDEX records_tenant_id_resource_owner_id_idx;
CREATE INDEX records_tenant_id_owner_id_resource_id_idx ON records (tenant_id, owner_id, resource, id);

DROP INDEX records_tenant_id_resource_created_at_idx;
CREATE INDEX records_tenant_id_created_at_idx ON records (tenant_id, created_at);
