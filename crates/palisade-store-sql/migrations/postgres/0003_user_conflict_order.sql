-- Conflict naming, PostgreSQL only in effect. Keep in step with ../sqlite/0003_user_conflict_order.sql.
--
-- A new user that repeats both the e-mail and the phone of a user of its tenant violates two unique
-- constraints, `users.tenant_id_email` (0001) and `users.tenant_id_phone` (0002). SQLite checks the
-- newest index first and reports the phone; PostgreSQL checks unique indexes in creation order and
-- would report the e-mail. Re-creating the e-mail constraint after the phone index makes PostgreSQL
-- report the phone too, so both backends name the same constraint (the conformance case
-- `phone_lookup_is_scoped_and_unique` pins this). The constraint keeps its name and definition.
ALTER TABLE users
    DROP CONSTRAINT "users.tenant_id_email",
    ADD CONSTRAINT "users.tenant_id_email" UNIQUE (tenant_id, email);
