-- Conflict naming. Keep in step with ../postgres/0003_user_conflict_order.sql.
--
-- A new user that repeats both the e-mail and the phone of a user of its tenant violates two unique
-- constraints. SQLite checks the newest index first, so it already reports `users.tenant_id_phone`
-- (0002); the PostgreSQL migration of the same number re-orders its indexes to match. Nothing to change
-- here: the statement below is a no-op that keeps the migration numbers of both backends aligned.
SELECT 1;
