//! Table and column identifiers, shared by every statement so the schema is named in one place.
//!
//! Invariant: these match `migrations/*/*.sql` (the migrations are the truth); the column names
//! are also the names the row decoders read, through [`col`].

use sea_query::IdenStatic;

/// `tenants`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum Tenants {
    Table,
    Id,
    Slug,
    Name,
    Kind,
    ParentId,
    Path,
    CreatedAt,
    UpdatedAt,
    AllowedIps,
}

/// `users`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum Users {
    Table,
    Id,
    TenantId,
    Email,
    Phone,
    Status,
    TokenVersion,
    CreatedAt,
    UpdatedAt,
}

/// `user_roles`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum UserRoles {
    Table,
    TenantId,
    UserId,
    Role,
}

/// `custom_roles`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum CustomRoles {
    Table,
    TenantId,
    Name,
    Inherits,
    Capabilities,
    CreatedAt,
    UpdatedAt,
}

/// `signing_keys` (deployment-wide, not tenant-owned).
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum SigningKeys {
    Table,
    Kid,
    Status,
    PublicJwk,
    PrivateSealed,
    CreatedAt,
    RetireAt,
    RetiredAt,
}

/// `otp_challenges`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum OtpChallenges {
    Table,
    Id,
    TenantId,
    Channel,
    DestinationHash,
    UserId,
    CodeHash,
    Attempts,
    ExpiresAt,
    ConsumedAt,
    CreatedAt,
}

/// `refresh_families`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum RefreshFamilies {
    Table,
    Id,
    TenantId,
    UserId,
    Amr,
    AuthTime,
    CreatedAt,
    RevokedAt,
}

/// `refresh_tokens`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum RefreshTokens {
    Table,
    TokenHash,
    FamilyId,
    TenantId,
    UserId,
    CreatedAt,
    ExpiresAt,
    SpentAt,
}

/// `user_mfa`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum UserMfa {
    Table,
    TenantId,
    UserId,
    TotpSealed,
    TotpEnabled,
    PendingSealed,
    LastTotpStep,
    UpdatedAt,
}

/// `recovery_codes`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum RecoveryCodes {
    Table,
    TenantId,
    UserId,
    CodeHash,
    UsedAt,
}

/// The column name a decoder reads, from the same identifier the statement selected.
pub(crate) fn col<I: IdenStatic>(iden: I) -> &'static str {
    iden.as_str()
}

/// `audit_log`: the entries of every tenant's hash chain.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum AuditLog {
    Table,
    TenantId,
    Seq,
    At,
    Actor,
    Action,
    Resource,
    RecordId,
    Ip,
    RequestId,
    Old,
    New,
    PrevHash,
    Hash,
}

/// `audit_heads`: each chain's newest sequence and hash, and its retention checkpoint.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum AuditHeads {
    Table,
    TenantId,
    Seq,
    Hash,
    CheckpointSeq,
    CheckpointHash,
    CheckpointSignature,
}

/// `records`: the documents of every declared resource.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum Records {
    Table,
    TenantId,
    Resource,
    Id,
    OwnerId,
    Data,
    Version,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

/// `record_fields`: the indexed values of filterable fields.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum RecordFields {
    Table,
    TenantId,
    Resource,
    RecordId,
    Field,
    TextValue,
    NumValue,
}

/// `record_unique`: claimed values of unique fields.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum RecordUnique {
    Table,
    TenantId,
    Resource,
    Field,
    ValueHash,
    RecordId,
}

/// `idempotency_keys`: stored responses of idempotent creates.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum IdempotencyKeys {
    Table,
    TenantId,
    Principal,
    IdemKey,
    BodyHash,
    Status,
    Headers,
    Body,
    CreatedAt,
    RecordId,
}

/// `api_keys`.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum ApiKeys {
    Table,
    Id,
    TenantId,
    CreatedBy,
    Name,
    Prefix,
    SecretHash,
    Capabilities,
    AllowedIps,
    ExpiresAt,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
    RotatedFrom,
    GraceUntil,
    RateLimitPerSecond,
    RateLimitBurst,
}

/// `browser_sessions`: cookie sessions, one per refresh family.
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum BrowserSessions {
    Table,
    FamilyId,
    TenantId,
    UserId,
    TokenHash,
    TokenVersion,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
}

/// `tenant_policies` (one Cedar policy document per tenant).
#[derive(IdenStatic, Clone, Copy)]
pub(crate) enum TenantPolicies {
    Table,
    TenantId,
    Policies,
    Version,
    Etag,
    UpdatedAt,
    UpdatedBy,
}
