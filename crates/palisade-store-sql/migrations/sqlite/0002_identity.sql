-- Sign-in storage, SQLite dialect. Keep in step with ../postgres/0002_identity.sql: same tables, columns,
-- checks and (derived) constraint names. Conventions as in 0001: ids and hashes are TEXT, timestamps are
-- INTEGER microseconds since the Unix epoch (UTC), booleans are INTEGER 0/1, tables are STRICT.
--
-- SECURITY: nothing here holds a secret in the clear. Codes, destinations and tokens are stored as
-- hashes; private signing keys and TOTP secrets as sealed AEAD envelopes (opaque text).

-- A phone number signs a user in, so it must name one user per tenant (NULLs do not collide).
-- Reported as `users.tenant_id_phone`; also the index of the phone lookup.
CREATE UNIQUE INDEX users_tenant_id_phone ON users (tenant_id, phone);

-- The deployment's token-signing keys. Not tenant-owned: one key set signs every tenant's tokens.
CREATE TABLE signing_keys (
    kid             TEXT    NOT NULL PRIMARY KEY,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'retiring', 'retired')),
    public_jwk      TEXT    NOT NULL,
    private_sealed  TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    retire_at       INTEGER,
    retired_at      INTEGER,
    -- A retiring key knows when it stops verifying; only a retired key has a retirement time.
    CHECK (status <> 'retiring' OR retire_at IS NOT NULL),
    CHECK ((status = 'retired') = (retired_at IS NOT NULL)),
    -- SECURITY: a retired key holds no private part, and a live key always holds one.
    CHECK ((status = 'retired') = (private_sealed = ''))
) STRICT;

-- At most one active key (reported as `signing_keys.status`).
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (status) WHERE status = 'active';

-- OTP sign-in challenges. `tenant_id` is NULL when the requested tenant slug was unknown, `user_id` when
-- no account matched: such challenges are stored all the same, so unknown and known accounts behave
-- identically. The composite key ties a challenge's user to its tenant (it is not checked while
-- `user_id` is NULL) and removes the challenge with the user.
CREATE TABLE otp_challenges (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant_id         TEXT    REFERENCES tenants (id),
    channel           TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    destination_hash  TEXT    NOT NULL,
    user_id           TEXT,
    code_hash         TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    expires_at        INTEGER NOT NULL,
    consumed_at       INTEGER,
    created_at        INTEGER NOT NULL,
    CHECK (user_id IS NULL OR tenant_id IS NOT NULL),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- Recent challenges per destination (rate limits).
CREATE INDEX otp_challenges_destination_hash_created_at_idx
    ON otp_challenges (destination_hash, created_at);
-- Tenant-first, and the lookup the cascade from users needs.
CREATE INDEX otp_challenges_tenant_id_user_id_idx ON otp_challenges (tenant_id, user_id);
-- `purge_expired`.
CREATE INDEX otp_challenges_expires_at_idx ON otp_challenges (expires_at);

-- A refresh-token family: one sign-in, whose tokens replace each other on every refresh. `amr` is a JSON
-- array of RFC 8176 method names. The primary key is the only unique constraint, so a taken id is
-- always reported as `refresh_families.id`.
CREATE TABLE refresh_families (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    user_id     TEXT    NOT NULL,
    amr         TEXT    NOT NULL CHECK (json_valid(amr) AND json_type(amr) = 'array'),
    auth_time   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- Tenant-first; `revoke_user_families` and the cascade from users.
CREATE INDEX refresh_families_tenant_id_user_id_idx ON refresh_families (tenant_id, user_id);

-- Refresh tokens by hash. A spent token is kept (with `spent_at`) so that presenting it again is
-- recognised as reuse. Deleting the family (or, through it, the user) deletes its tokens. The store
-- copies `tenant_id` and `user_id` from the family row when it inserts a token, and the composite key
-- keeps the pair consistent with users.
CREATE TABLE refresh_tokens (
    token_hash  TEXT    NOT NULL PRIMARY KEY,
    family_id   TEXT    NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    user_id     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    spent_at    INTEGER,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- Tenant-first, and the cascade from users.
CREATE INDEX refresh_tokens_tenant_id_user_id_idx ON refresh_tokens (tenant_id, user_id);
-- The cascade from refresh_families.
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

-- A user's TOTP state (RFC 6238). `totp_enabled` is INTEGER 0/1 on both backends (one decoder) and
-- agrees with `totp_sealed`; `pending_sealed` is a secret whose enrolment is not confirmed yet;
-- `last_totp_step` is the last accepted time step, so a code is accepted at most once.
CREATE TABLE user_mfa (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    user_id         TEXT    NOT NULL PRIMARY KEY,
    totp_sealed     TEXT,
    totp_enabled    INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
    pending_sealed  TEXT,
    last_totp_step  INTEGER,
    updated_at      INTEGER NOT NULL,
    CHECK ((totp_enabled = 1) = (totp_sealed IS NOT NULL)),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX user_mfa_tenant_id_user_id_idx ON user_mfa (tenant_id, user_id);

-- Recovery codes, by hash; each is usable once (`used_at`).
CREATE TABLE recovery_codes (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    user_id    TEXT    NOT NULL,
    code_hash  TEXT    NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX recovery_codes_tenant_id_user_id_idx ON recovery_codes (tenant_id, user_id);
