-- The audit trail, PostgreSQL dialect. Keep in step with ../sqlite/0005_audit.sql: same tables,
-- columns and constraint names. Conventions as in 0001: ids are TEXT COLLATE "C", timestamps BIGINT
-- microseconds (UTC).
--
-- One hash chain per tenant: `audit_log` holds the entries (`old`/`new` are JSON text, hashed as
-- written), `audit_heads` the newest sequence and hash of each chain and the retention checkpoint.
-- Appends lock the head row (`SELECT … FOR UPDATE`) in the mutation's own transaction, so concurrent
-- writers to one tenant's chain queue on that row and the sequence has no gaps or forks.
--
-- Append-only, enforced by the database as well as by the store API: entries can never be updated,
-- and deleted only at or below the tenant's checkpoint, which retention moves forward first.
-- (An attacker with DDL rights can drop the triggers; the hash chain is what detects that.)
CREATE TABLE audit_log (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    seq         BIGINT           NOT NULL,
    at          BIGINT           NOT NULL,
    actor       TEXT             NOT NULL,
    action      TEXT             NOT NULL,
    resource    TEXT             NOT NULL,
    record_id   TEXT COLLATE "C",
    ip          TEXT,
    request_id  TEXT,
    old         TEXT,
    new         TEXT,
    prev_hash   TEXT             NOT NULL,
    hash        TEXT             NOT NULL,
    CONSTRAINT "audit_log.tenant_id_seq" PRIMARY KEY (tenant_id, seq)
);

CREATE INDEX audit_log_tenant_id_at_idx ON audit_log (tenant_id, at);
CREATE INDEX audit_log_tenant_id_record_id_idx ON audit_log (tenant_id, record_id);

CREATE TABLE audit_heads (
    tenant_id             TEXT COLLATE "C" NOT NULL,
    seq                   BIGINT           NOT NULL,
    hash                  TEXT             NOT NULL,
    checkpoint_seq        BIGINT,
    checkpoint_hash       TEXT,
    checkpoint_signature  TEXT,
    CONSTRAINT "audit_heads.tenant_id" PRIMARY KEY (tenant_id)
);

CREATE FUNCTION audit_log_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_no_update();

CREATE FUNCTION audit_log_delete_only_pruned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq > COALESCE((SELECT checkpoint_seq FROM audit_heads WHERE tenant_id = OLD.tenant_id), 0) THEN
        RAISE EXCEPTION 'audit_log entries are deleted only by retention';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER audit_log_delete_only_pruned BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_delete_only_pruned();
