-- The audit trail, SQLite dialect. Keep in step with ../postgres/0005_audit.sql: same tables, columns
-- and constraint names. Conventions as in 0001: ids are TEXT, timestamps INTEGER microseconds (UTC),
-- tables STRICT.
--
-- One hash chain per tenant: `audit_log` holds the entries (`old`/`new` are JSON text), `audit_heads`
-- the newest sequence and hash of each chain and the retention checkpoint (the last pruned entry's
-- sequence and hash, signed by the server). Appends lock the head row in the mutation's own write
-- transaction (SQLite: `BEGIN IMMEDIATE` already serialises writers).
--
-- Append-only, enforced by the database as well as by the store API: entries can never be updated,
-- and deleted only at or below the tenant's checkpoint, which retention moves forward first.
-- (An attacker with DDL rights can drop the triggers; the hash chain is what detects that.)
CREATE TABLE audit_log (
    tenant_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    record_id   TEXT,
    ip          TEXT,
    request_id  TEXT,
    old         TEXT,
    new         TEXT,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) STRICT;

CREATE INDEX audit_log_tenant_id_at_idx ON audit_log (tenant_id, at);
CREATE INDEX audit_log_tenant_id_record_id_idx ON audit_log (tenant_id, record_id);

CREATE TABLE audit_heads (
    tenant_id             TEXT    NOT NULL PRIMARY KEY,
    seq                   INTEGER NOT NULL,
    hash                  TEXT    NOT NULL,
    checkpoint_seq        INTEGER,
    checkpoint_hash       TEXT,
    checkpoint_signature  TEXT
) STRICT;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_delete_only_pruned BEFORE DELETE ON audit_log
WHEN OLD.seq > COALESCE((SELECT checkpoint_seq FROM audit_heads WHERE tenant_id = OLD.tenant_id), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit_log entries are deleted only by retention');
END;
