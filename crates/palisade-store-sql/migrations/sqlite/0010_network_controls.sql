-- Network controls and API-key follow-ups (issue 7), SQLite dialect. Keep in step with
-- ../postgres/0010_network_controls.sql: same columns.
--
-- `tenants.allowed_ips`: a JSON array of canonical CIDRs every request acting on the tenant must come
-- from; `[]` (the default, so existing tenants are unchanged) allows any address.
-- `api_keys.rate_limit_per_second` / `rate_limit_burst`: the key's own GCRA quota, both set or both
-- NULL (NULL: the tenant's override or the default quota applies).
ALTER TABLE tenants ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN rate_limit_per_second INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_limit_burst INTEGER;
