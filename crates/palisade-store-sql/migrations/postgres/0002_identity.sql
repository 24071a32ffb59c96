-- Sign-in storage, PostgreSQL dialect. Keep in step with ../sqlite/0002_identity.sql: same tables,
-- columns and checks; unique constraints and indexes are named `<table>.<col>[_<col>...]`, the names the
-- SQLite store derives from SQLite's messages. Conventions as in 0001: ids and hashes are TEXT COLLATE
-- "C", timestamps are BIGINT microseconds since the Unix epoch (UTC), booleans are BIGINT 0/1 (the one
-- integer type both drivers decode as i64).
--
-- SECURITY: nothing here holds a secret in the clear. Codes, destinations and tokens are stored as
-- hashes; private signing keys and TOTP secrets as sealed AEAD envelopes (opaque text).

-- A phone number signs a user in, so it must name one user per tenant (NULLs do not collide).
-- Reported as `users.tenant_id_phone`; also the index of the phone lookup.
CREATE UNIQUE INDEX "users.tenant_id_phone" ON users (tenant_id, phone);

-- The deployment's token-signing keys. Not tenant-owned: one key set signs every tenant's tokens.
CREATE TABLE signing_keys (
    kid             TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    public_jwk      TEXT             NOT NULL,
    private_sealed  TEXT             NOT NULL,
    created_at      BIGINT           NOT NULL,
    retire_at       BIGINT,
    retired_at      BIGINT,
    CONSTRAINT "signing_keys.kid" PRIMARY KEY (kid),
    CONSTRAINT signing_keys_status_check CHECK (status IN ('active', 'retiring', 'retired')),
    -- A retiring key knows when it stops verifying; only a retired key has a retirement time.
    CONSTRAINT signing_keys_retire_at_check CHECK (status <> 'retiring' OR retire_at IS NOT NULL),
    CONSTRAINT signing_keys_retired_at_check CHECK ((status = 'retired') = (retired_at IS NOT NULL)),
    -- SECURITY: a retired key holds no private part, and a live key always holds one.
    CONSTRAINT signing_keys_private_check CHECK ((status = 'retired') = (private_sealed = ''))
);

-- At most one active key (reported as `signing_keys.status`, as SQLite does).
CREATE UNIQUE INDEX "signing_keys.status" ON signing_keys (status) WHERE status = 'active';

-- OTP sign-in challenges. `tenant_id` is NULL when the requested tenant slug was unknown, `user_id` when
-- no account matched: such challenges are stored all the same, so unknown and known accounts behave
-- identically. The composite key ties a challenge's user to its tenant (MATCH SIMPLE: it is not checked
-- while `user_id` is NULL) and removes the challenge with the user.
CREATE TABLE otp_challenges (
    id                TEXT COLLATE "C" NOT NULL,
    tenant_id         TEXT COLLATE "C",
    channel           TEXT             NOT NULL,
    destination_hash  TEXT COLLATE "C" NOT NULL,
    user_id           TEXT COLLATE "C",
    code_hash         TEXT COLLATE "C" NOT NULL,
    attempts          BIGINT           NOT NULL DEFAULT 0,
    expires_at        BIGINT           NOT NULL,
    consumed_at       BIGINT,
    created_at        BIGINT           NOT NULL,
    CONSTRAINT "otp_challenges.id" PRIMARY KEY (id),
    CONSTRAINT otp_challenges_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT otp_challenges_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT otp_challenges_channel_check CHECK (channel IN ('email', 'sms')),
    CONSTRAINT otp_challenges_attempts_check CHECK (attempts >= 0),
    CONSTRAINT otp_challenges_user_tenant_check CHECK (user_id IS NULL OR tenant_id IS NOT NULL)
);

-- Recent challenges per destination (rate limits).
CREATE INDEX otp_challenges_destination_hash_created_at_idx
    ON otp_challenges (destination_hash, created_at);
-- Tenant-first, and the lookup the cascade from users needs.
CREATE INDEX otp_challenges_tenant_id_user_id_idx ON otp_challenges (tenant_id, user_id);
-- `purge_expired`.
CREATE INDEX otp_challenges_expires_at_idx ON otp_challenges (expires_at);

-- A refresh-token family: one sign-in, whose tokens replace each other on every refresh. `amr` is a JSON
-- array of RFC 8176 method names (text, as on SQLite). The primary key is the only unique constraint,
-- so a taken id is always reported as `refresh_families.id`.
CREATE TABLE refresh_families (
    id          TEXT COLLATE "C" NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    amr         TEXT             NOT NULL,
    auth_time   BIGINT           NOT NULL,
    created_at  BIGINT           NOT NULL,
    revoked_at  BIGINT,
    CONSTRAINT "refresh_families.id" PRIMARY KEY (id),
    CONSTRAINT refresh_families_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT refresh_families_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT refresh_families_amr_check CHECK (jsonb_typeof(amr::jsonb) = 'array')
);

-- Tenant-first; `revoke_user_families` and the cascade from users.
CREATE INDEX refresh_families_tenant_id_user_id_idx ON refresh_families (tenant_id, user_id);

-- Refresh tokens by hash. A spent token is kept (with `spent_at`) so that presenting it again is
-- recognised as reuse. Deleting the family (or, through it, the user) deletes its tokens. The store
-- copies `tenant_id` and `user_id` from the family row when it inserts a token, and the composite key
-- keeps the pair consistent with users.
CREATE TABLE refresh_tokens (
    token_hash  TEXT COLLATE "C" NOT NULL,
    family_id   TEXT COLLATE "C" NOT NULL,
    tenant_id   TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT           NOT NULL,
    expires_at  BIGINT           NOT NULL,
    spent_at    BIGINT,
    CONSTRAINT "refresh_tokens.token_hash" PRIMARY KEY (token_hash),
    CONSTRAINT refresh_tokens_family_id_fkey FOREIGN KEY (family_id)
        REFERENCES refresh_families (id) ON DELETE CASCADE,
    CONSTRAINT refresh_tokens_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT refresh_tokens_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Tenant-first, and the cascade from users.
CREATE INDEX refresh_tokens_tenant_id_user_id_idx ON refresh_tokens (tenant_id, user_id);
-- The cascade from refresh_families.
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

-- A user's TOTP state (RFC 6238). `totp_enabled` is 0/1 on both backends (one decoder) and agrees with
-- `totp_sealed`; `pending_sealed` is a secret whose enrolment is not confirmed yet; `last_totp_step` is
-- the last accepted time step, so a code is accepted at most once.
CREATE TABLE user_mfa (
    tenant_id       TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    totp_sealed     TEXT,
    totp_enabled    BIGINT           NOT NULL DEFAULT 0,
    pending_sealed  TEXT,
    last_totp_step  BIGINT,
    updated_at      BIGINT           NOT NULL,
    CONSTRAINT "user_mfa.user_id" PRIMARY KEY (user_id),
    CONSTRAINT user_mfa_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT user_mfa_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT user_mfa_totp_enabled_check CHECK (totp_enabled IN (0, 1)),
    CONSTRAINT user_mfa_totp_check CHECK ((totp_enabled = 1) = (totp_sealed IS NOT NULL))
);

CREATE INDEX user_mfa_tenant_id_user_id_idx ON user_mfa (tenant_id, user_id);

-- Recovery codes, by hash; each is usable once (`used_at`).
CREATE TABLE recovery_codes (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    code_hash  TEXT COLLATE "C" NOT NULL,
    used_at    BIGINT,
    CONSTRAINT "recovery_codes.user_id_code_hash" PRIMARY KEY (user_id, code_hash),
    CONSTRAINT recovery_codes_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id),
    CONSTRAINT recovery_codes_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX recovery_codes_tenant_id_user_id_idx ON recovery_codes (tenant_id, user_id);
