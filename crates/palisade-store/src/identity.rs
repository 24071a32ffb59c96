//! Sign-in storage: token-signing keys, OTP challenges, refresh-token families and TOTP/recovery-code
//! state.
//!
//! Invariants:
//! - SECURITY: the store never sees a secret in the clear. OTP codes, destinations, refresh tokens and
//!   recovery codes arrive hashed; private signing keys and TOTP secrets arrive sealed (an AEAD envelope
//!   made by `palisade-crypto`) and are opaque here. Even so, none of these values appears in `Debug`
//!   output or in an error message: the `Debug` impls below print `[redacted]`.
//! - SECURITY: every single-use operation is decided by one conditional write whose rows-affected (or
//!   `RETURNING`) value is the answer, so it holds under concurrent callers on every backend: an OTP
//!   challenge is consumed once, a TOTP step and a recovery code are accepted once, a refresh token is
//!   rotated once, and at most one signing key is active (a rotation is a compare-and-set on the
//!   active key's `kid`).
//! - Three kinds of method are unscoped by design, because they run before any principal exists or
//!   act on deployment-wide data: signing keys (not tenant-owned; writes take a [`SystemScope`]), OTP
//!   challenges (created and checked during sign-in, looked up by an unguessable id), and the
//!   refresh-token operations keyed by a token hash or family id (the presented token is the
//!   credential). Everything keyed by a user takes a [`TenantScope`] and filters by it.

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantScope};
use palisade_domain::{TenantId, UserId};
use time::OffsetDateTime;

use crate::StoreResult;

/// How secret-bearing fields print in `Debug` output.
const REDACTED: &str = "[redacted]";

// ---------------------------------------------------------------------------------------------------
// Signing keys

/// Where a signing key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningKeyStatus {
    /// Signs new tokens and verifies. Exactly one key at a time (none before the first rotation).
    Active,
    /// Replaced by a newer key: still verifies tokens it signed until its `retire_at`.
    Retiring,
    /// No longer verifies; its private part has been wiped.
    Retired,
}

impl SigningKeyStatus {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
        }
    }

    /// Parses the stored spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "retiring" => Some(Self::Retiring),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A signing key to make active.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSigningKey {
    /// The key id (the JWK `kid`, e.g. its RFC 7638 thumbprint). Unique.
    pub kid: String,
    /// The public JWK as JSON text.
    pub public_jwk: String,
    /// The private key sealed by `palisade-crypto` (base64 of an AEAD envelope). Opaque to the store.
    pub private_sealed: String,
}

impl std::fmt::Debug for NewSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSigningKey")
            .field("kid", &self.kid)
            .field("private_sealed", &REDACTED)
            .finish_non_exhaustive()
    }
}

/// A stored signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The key id.
    pub kid: String,
    /// Where the key is in its life.
    pub status: SigningKeyStatus,
    /// The public JWK as JSON text.
    pub public_jwk: String,
    /// The sealed private key; empty once the key is retired.
    pub private_sealed: String,
    /// When the key was stored (and became active).
    pub created_at: OffsetDateTime,
    /// When a retiring key stops verifying; set when a newer key replaced it.
    pub retire_at: Option<OffsetDateTime>,
    /// When the key was retired.
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("status", &self.status)
            .field("private_sealed", &REDACTED)
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// The deployment's token-signing keys. Not tenant-owned: one key set signs every tenant's tokens.
///
/// Reads are unscoped (every request that verifies a token needs them, and the private part is
/// sealed); writes take a [`SystemScope`] naming the internal role that rotates or retires keys.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Makes `key` the active key, provided the active key is still `expected_active` (a
    /// compare-and-set on the current `kid`; `None` means "there is no active key yet"). In one
    /// transaction the expected active key becomes `retiring` with `retire_at = retire_previous_at`,
    /// and `key` is stored as `active`.
    ///
    /// SECURITY: at most one key is ever active, and two rotations that started from the same active
    /// key cannot both commit on any backend: the demotion is a conditional update on `kid` *and*
    /// `status = 'active'` whose rows-affected must be 1, and a partial unique index on the active
    /// status backs it up. The loser gets `Conflict { constraint: "signing_keys.status" }` and changes
    /// nothing (its transaction rolls back); it may re-read the active key and retry. A taken `kid`
    /// is `Conflict` on `signing_keys.kid`.
    async fn insert_active_key(
        &self,
        system: &SystemScope,
        expected_active: Option<&str>,
        key: NewSigningKey,
        retire_previous_at: OffsetDateTime,
    ) -> StoreResult<()>;

    /// The key that signs new tokens, if any.
    async fn active_key(&self) -> StoreResult<Option<SigningKey>>;

    /// The keys that verify tokens (what the JWKS publishes): the active key first, then the retiring
    /// ones, newest first.
    async fn verification_keys(&self) -> StoreResult<Vec<SigningKey>>;

    /// Every key, retired ones included, newest first: for operators (listing keys, checking that
    /// retired keys were wiped) and audits, never for verification.
    async fn list_keys(&self, system: &SystemScope) -> StoreResult<Vec<SigningKey>>;

    /// Retires every `retiring` key whose `retire_at <= now`: status `retired`, `retired_at = now`, and
    /// SECURITY: its `private_sealed` overwritten with the empty string, so retired private keys do not
    /// linger (the schema refuses a retired key that still holds one). Returns how many were retired.
    async fn retire_due(&self, system: &SystemScope, now: OffsetDateTime) -> StoreResult<u64>;
}

// ---------------------------------------------------------------------------------------------------
// OTP challenges

/// How a one-time code is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtpChannel {
    /// By e-mail.
    Email,
    /// By text message.
    Sms,
}

impl OtpChannel {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// Parses the stored spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

/// An OTP challenge to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewOtpChallenge {
    /// The challenge id handed to the client: random and unguessable. Unique.
    pub id: String,
    /// The tenant named by the sign-in request; `None` when the slug was unknown (the challenge is
    /// stored anyway so that unknown and known accounts behave identically).
    pub tenant_id: Option<TenantId>,
    /// How the code was sent.
    pub channel: OtpChannel,
    /// A keyed hash of the normalised destination (for per-destination limits); never the address.
    pub destination_hash: String,
    /// The user the code signs in; `None` when no account matched. Must belong to `tenant_id`.
    pub user_id: Option<UserId>,
    /// A hash of the code; never the code.
    pub code_hash: String,
    /// When the code stops being accepted.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for NewOtpChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewOtpChallenge")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("channel", &self.channel)
            .field("destination_hash", &REDACTED)
            .field("user_id", &self.user_id)
            .field("code_hash", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored OTP challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpChallenge {
    /// The challenge id.
    pub id: String,
    /// The tenant, `None` when the slug was unknown.
    pub tenant_id: Option<TenantId>,
    /// How the code was sent.
    pub channel: OtpChannel,
    /// A keyed hash of the destination.
    pub destination_hash: String,
    /// The user, `None` when no account matched.
    pub user_id: Option<UserId>,
    /// A hash of the code.
    pub code_hash: String,
    /// Verification attempts recorded so far.
    pub attempts: i64,
    /// When the code stops being accepted.
    pub expires_at: OffsetDateTime,
    /// When the challenge was used up, if it was.
    pub consumed_at: Option<OffsetDateTime>,
    /// When the challenge was stored.
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for OtpChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpChallenge")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("channel", &self.channel)
            .field("destination_hash", &REDACTED)
            .field("user_id", &self.user_id)
            .field("code_hash", &REDACTED)
            .field("attempts", &self.attempts)
            .field("expires_at", &self.expires_at)
            .field("consumed_at", &self.consumed_at)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// OTP sign-in challenges.
///
/// SECURITY: unscoped by design, the one exception to "every tenant-owned method takes a scope":
/// sign-in happens before any principal (and so any `TenantScope`) exists, and a challenge must be
/// stored even when the tenant or account is unknown. A challenge is reached only through its
/// random id, which only the client that started the sign-in knows; the schema ties its user to its
/// tenant (a composite foreign key), so a challenge can never name a user of another tenant.
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Stores a new challenge with `attempts = 0`. `Conflict` on `otp_challenges.id` for a taken id,
    /// on `foreign_key` when the tenant or the tenant's user does not exist.
    async fn create_challenge(&self, challenge: NewOtpChallenge) -> StoreResult<()>;

    /// The challenge with this id.
    async fn find_challenge(&self, id: &str) -> StoreResult<Option<OtpChallenge>>;

    /// Counts one verification attempt and returns the new count, atomically: concurrent callers each
    /// get a distinct count. `NotFound` for an unknown id.
    async fn record_attempt(&self, id: &str) -> StoreResult<i64>;

    /// Marks the challenge consumed at `now`. SECURITY: returns `true` exactly once per challenge, even
    /// under concurrent callers; `false` when it was already consumed, has expired (`expires_at <=
    /// now`) or does not exist.
    async fn consume_challenge(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;

    /// Deletes the challenges that expired before `before`; returns how many.
    async fn purge_expired(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

// ---------------------------------------------------------------------------------------------------
// Refresh tokens

/// A refresh-token family to start: one sign-in, whose tokens replace each other on every refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshFamily {
    /// The family id: random and unguessable. Unique.
    pub id: String,
    /// The signed-in user, of the scope's tenant.
    pub user_id: UserId,
    /// How the user authenticated (RFC 8176 `amr` values), carried into every refreshed token.
    pub amr: Vec<String>,
    /// When the user authenticated, carried into every refreshed token.
    pub auth_time: OffsetDateTime,
}

/// A refresh token to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// A hash of the token; never the token. Unique.
    pub token_hash: String,
    /// When the token stops being accepted.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for NewRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRefreshToken")
            .field("token_hash", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a successful refresh carries forward into the new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSession {
    /// The family the new token joined.
    pub family_id: String,
    /// The user's home tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// How the user authenticated at sign-in.
    pub amr: Vec<String>,
    /// When the user authenticated at sign-in.
    pub auth_time: OffsetDateTime,
}

/// The result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was valid: it is now spent and the new token is stored in its family.
    Rotated(RefreshSession),
    /// No token has this hash.
    NotFound,
    /// The token's family has been revoked (logout, reuse detection, or logout-all).
    FamilyRevoked,
    /// The token has expired. Nothing changed.
    Expired,
    /// SECURITY: the token had already been spent, so it has been replayed — by an attacker or by the
    /// client it was stolen from. The whole family was revoked in the same transaction (RFC 9700
    /// §4.14.2); the ids let the caller audit the event.
    Reused {
        /// The revoked family.
        family_id: String,
        /// Its user.
        user_id: UserId,
        /// The user's home tenant.
        tenant_id: TenantId,
    },
}

/// Refresh-token families with rotation and reuse detection (RFC 9700 §4.14.2).
///
/// SECURITY: [`rotate`](Self::rotate), [`revoke_family`](Self::revoke_family) and
/// [`family_of`](Self::family_of) are unscoped: the refresh and logout endpoints identify the family by
/// the presented token (the token is the credential), and family ids are unguessable. Per-user
/// operations take a [`TenantScope`].
#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Starts a family for a user of the scope's tenant with its first token, in one transaction.
    /// `NotFound` when the user is not in the scope's tenant; `Conflict` for a taken family id
    /// (`refresh_families.id`) or token hash (`refresh_tokens.token_hash`).
    async fn create_family(
        &self,
        scope: &TenantScope,
        family: NewRefreshFamily,
        first: NewRefreshToken,
    ) -> StoreResult<()>;

    /// Presents a token, in one transaction that locks it: unknown → [`RotateOutcome::NotFound`];
    /// family revoked → `FamilyRevoked`; already spent → `Reused` and the family is revoked; past
    /// `expires_at` → `Expired`; otherwise the token is marked spent, `next` joins the family and the
    /// session is returned as `Rotated`.
    ///
    /// SECURITY: two concurrent rotations of one token yield exactly one `Rotated`; the other sees a
    /// spent token, so it is `Reused` and the family ends revoked.
    async fn rotate(
        &self,
        presented_hash: &str,
        next: NewRefreshToken,
        now: OffsetDateTime,
    ) -> StoreResult<RotateOutcome>;

    /// Revokes a family at `now` (a family already revoked keeps its first revocation time).
    /// `NotFound` for an unknown family.
    async fn revoke_family(&self, family_id: &str, now: OffsetDateTime) -> StoreResult<()>;

    /// Revokes every live family of a user of the scope's tenant; returns how many were revoked (a user
    /// outside the scope has none).
    async fn revoke_user_families(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;

    /// The family a token belongs to, whatever its state.
    async fn family_of(&self, token_hash: &str) -> StoreResult<Option<String>>;
}

// ---------------------------------------------------------------------------------------------------
// MFA

/// A user's TOTP state.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MfaState {
    /// The confirmed TOTP secret, sealed; `None` unless TOTP is enabled.
    pub totp_sealed: Option<String>,
    /// Whether sign-in demands a TOTP (or recovery) code.
    pub totp_enabled: bool,
    /// A secret whose enrolment has not been confirmed yet, sealed.
    pub pending_sealed: Option<String>,
    /// The last TOTP time step accepted; codes of this step and earlier are refused.
    pub last_totp_step: Option<i64>,
}

impl std::fmt::Debug for MfaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| REDACTED);
        f.debug_struct("MfaState")
            .field("totp_sealed", &redact(&self.totp_sealed))
            .field("totp_enabled", &self.totp_enabled)
            .field("pending_sealed", &redact(&self.pending_sealed))
            .field("last_totp_step", &self.last_totp_step)
            .finish()
    }
}

/// TOTP secrets (RFC 6238) and recovery codes of users of a tenant.
///
/// SECURITY: every method filters by the scope's tenant; a user of another tenant has no state
/// (`None`, `false`, or `NotFound` on writes).
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// The user's TOTP state; `None` when the user never enrolled.
    async fn get_mfa(&self, scope: &TenantScope, user_id: UserId) -> StoreResult<Option<MfaState>>;

    /// Stores a sealed secret awaiting confirmation (replacing any earlier pending one; an enabled
    /// secret stays in force until [`enable_totp`](Self::enable_totp)). `NotFound` when the user is not
    /// in the scope's tenant.
    async fn set_pending_totp(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        sealed: String,
    ) -> StoreResult<()>;

    /// Confirms enrolment in one transaction: the pending secret becomes the enabled one, and the
    /// user's recovery codes are replaced by `recovery_hashes` (hashes, never codes). `NotFound` when
    /// nothing is pending.
    async fn enable_totp(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        recovery_hashes: Vec<String>,
        meta: &crate::AuditMeta,
    ) -> StoreResult<()>;

    /// Turns TOTP off: clears the enabled and pending secrets and deletes the recovery codes, in one
    /// transaction. The last accepted step is kept (it only ever moves forward). `NotFound` when the
    /// user has no TOTP state in the scope's tenant.
    async fn disable_totp(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        meta: &crate::AuditMeta,
    ) -> StoreResult<()>;

    /// Records that a code of time step `step` was accepted. SECURITY: succeeds (`true`) only when the
    /// stored step is unset or smaller, atomically, so a TOTP code is accepted at most once and never
    /// for a step older than one already used, even under concurrent callers. `false` otherwise,
    /// including when the user has no TOTP state.
    async fn advance_totp_step(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        step: i64,
    ) -> StoreResult<bool>;

    /// Uses up a recovery code by its hash. SECURITY: `true` exactly once per code, even under
    /// concurrent callers; `false` for a used or unknown code.
    async fn consume_recovery_code(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        code_hash: &str,
    ) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let outputs = [
            format!(
                "{:?}",
                NewSigningKey {
                    kid: "kid-1".to_owned(),
                    public_jwk: "{}".to_owned(),
                    private_sealed: "SECRET-sealed".to_owned(),
                }
            ),
            format!(
                "{:?}",
                SigningKey {
                    kid: "kid-1".to_owned(),
                    status: SigningKeyStatus::Active,
                    public_jwk: "{}".to_owned(),
                    private_sealed: "SECRET-sealed".to_owned(),
                    created_at: at,
                    retire_at: None,
                    retired_at: None,
                }
            ),
            format!(
                "{:?}",
                NewOtpChallenge {
                    id: "c-1".to_owned(),
                    tenant_id: None,
                    channel: OtpChannel::Sms,
                    destination_hash: "SECRET-dest".to_owned(),
                    user_id: None,
                    code_hash: "SECRET-code".to_owned(),
                    expires_at: at,
                }
            ),
            format!(
                "{:?}",
                OtpChallenge {
                    id: "c-1".to_owned(),
                    tenant_id: None,
                    channel: OtpChannel::Email,
                    destination_hash: "SECRET-dest".to_owned(),
                    user_id: None,
                    code_hash: "SECRET-code".to_owned(),
                    attempts: 0,
                    expires_at: at,
                    consumed_at: None,
                    created_at: at,
                }
            ),
            format!(
                "{:?}",
                NewRefreshToken {
                    token_hash: "SECRET-token".to_owned(),
                    expires_at: at,
                }
            ),
            format!(
                "{:?}",
                MfaState {
                    totp_sealed: Some("SECRET-totp".to_owned()),
                    totp_enabled: true,
                    pending_sealed: Some("SECRET-pending".to_owned()),
                    last_totp_step: Some(1),
                }
            ),
        ];
        for output in outputs {
            assert!(!output.contains("SECRET"), "{output}");
            assert!(output.contains(REDACTED), "{output}");
        }
    }

    #[test]
    fn stored_spellings_round_trip() {
        for status in [
            SigningKeyStatus::Active,
            SigningKeyStatus::Retiring,
            SigningKeyStatus::Retired,
        ] {
            assert_eq!(SigningKeyStatus::parse(status.as_str()), Some(status));
        }
        for channel in [OtpChannel::Email, OtpChannel::Sms] {
            assert_eq!(OtpChannel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(SigningKeyStatus::parse("Active"), None);
        assert_eq!(OtpChannel::parse("voice"), None);
    }
}
