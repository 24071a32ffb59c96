//! `/v1/api-keys`: API keys of the selected tenant (format and checks in `auth::api_keys`).
//!
//! Invariants:
//! - SECURITY: a key is created in the caller's home tenant only, and its capabilities are registered,
//!   never system-only, and a subset of the creator's (403 `authz.key_escalation`). At every use the
//!   key holds only what its creator still holds (see `guard`).
//! - SECURITY: the key is in the response of create and rotate only; lists and reads show metadata
//!   (prefix, capabilities, times), never the key or its hash.
//! - Revocation is immediate on every instance: every request looks the key up in the shared database;
//!   nothing caches a key.
//! - Every change is audited in the store's transaction, actor `user:<id>` or `api_key:<id>`.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{Access, Capability, Principal, TenantScope, capability::platform};
use palisade_store::{ApiKey, KeyRateLimit, NewApiKey, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::auth::api_keys::{env_for, generate, hash};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Audited, Caller, Json, Path, Query, Scoped};
use crate::router::{SecureRouter, op};
use crate::routes::tenants::rfc3339;
use crate::routes::{ListParams, PageView, page_view};
use crate::state::AppState;

/// At most this many capabilities per key.
const MAX_CAPABILITIES: usize = 256;
/// The longest rotation grace period (30 days).
const MAX_GRACE_SECONDS: i64 = 30 * 24 * 3600;

/// An API key's metadata; never the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Id.
    pub id: String,
    /// Label.
    pub name: String,
    /// The public part of the key.
    pub prefix: String,
    /// Capabilities the key carries (the creator's current ones bound them at use).
    pub capabilities: Vec<String>,
    /// CIDRs the key may be used from; empty: anywhere.
    pub allowed_ips: Vec<String>,
    /// The creating user.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if the key expires.
    pub expires_at: Option<String>,
    /// RFC 3339, when recorded.
    pub last_used_at: Option<String>,
    /// RFC 3339, if revoked.
    pub revoked_at: Option<String>,
    /// The key this one replaced.
    pub rotated_from: Option<String>,
    /// RFC 3339: a rotated-away key works until then.
    pub grace_until: Option<String>,
    /// The key's own rate limit; null: the tenant's override or the default quota.
    pub rate_limit: Option<KeyRateLimitView>,
}

/// A key's own GCRA quota.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRateLimitView {
    /// Sustained requests per second, 1 to `rate_limit.api_key_max.per_second`.
    pub per_second: u32,
    /// Requests admitted at once, 1 to `rate_limit.api_key_max.burst`.
    pub burst: u32,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            capabilities: k.capabilities,
            allowed_ips: k.allowed_ips,
            created_by: k.created_by.to_string(),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            rotated_from: k.rotated_from,
            grace_until: k.grace_until.map(rfc3339),
            rate_limit: k.rate_limit.map(|r| KeyRateLimitView {
                per_second: r.per_second,
                burst: r.burst,
            }),
        }
    }
}

/// The one response that carries a key.
#[derive(Serialize, ToSchema)]
pub struct IssuedKeyView {
    /// Id.
    pub id: String,
    /// The public part.
    pub prefix: String,
    /// The key: shown this once.
    pub key: String,
}

/// `POST /v1/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label, 1 to 100 characters.
    pub name: String,
    /// Capabilities, a subset of the creator's.
    pub capabilities: Vec<String>,
    /// RFC 3339, in the future.
    pub expires_at: Option<String>,
    /// CIDRs (or single addresses) the key may be used from.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// The key's own rate limit (bounded by `rate_limit.api_key_max`); absent: the tenant's override
    /// or the default quota. Read as a JSON value first so that only an object is accepted (serde
    /// would otherwise take `[1, 2]` for a struct).
    #[schema(value_type = Option<KeyRateLimitView>)]
    pub rate_limit: Option<serde_json::Value>,
}

/// `POST /v1/api-keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKeyRequest {
    /// How long the old key keeps working, 0 to 30 days (default 0: it stops at once).
    pub grace_seconds: Option<i64>,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/api-keys",
        Access::cap(platform::API_KEYS_READ),
        op(
            "listApiKeys",
            "API keys of the selected tenant (metadata only)",
            "api-keys",
        )
        .ok::<PageView<ApiKeyView>>(200),
        list_keys,
    )
    .post(
        "/v1/api-keys",
        Access::cap(platform::API_KEYS_CREATE),
        op(
            "createApiKey",
            "Create an API key; the key is shown once",
            "api-keys",
        )
        .body::<CreateApiKeyRequest>()
        .ok::<IssuedKeyView>(201),
        create_key,
    )
    .get(
        "/v1/api-keys/{id}",
        Access::cap(platform::API_KEYS_READ),
        op("getApiKey", "An API key's metadata", "api-keys").ok::<ApiKeyView>(200),
        get_key,
    )
    .post(
        "/v1/api-keys/{id}/rotate",
        Access::cap(platform::API_KEYS_ROTATE),
        op(
            "rotateApiKey",
            "Replace an API key; the old one works for the grace period",
            "api-keys",
        )
        .body::<RotateApiKeyRequest>()
        .ok::<IssuedKeyView>(200),
        rotate_key,
    )
    .delete(
        "/v1/api-keys/{id}",
        Access::cap(platform::API_KEYS_DELETE),
        op("deleteApiKey", "Revoke an API key at once", "api-keys").empty(204),
        delete_key,
    )
}

fn key_not_found() -> ApiError {
    ApiError::NotFound {
        code: "api_key.not_found",
    }
}

/// Ids are UUIDs; anything else names no key.
fn check_id(id: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .map(|_| ())
        .ok_or_else(key_not_found)
}

/// Validates requested capabilities: registered, not system-only, held by the caller.
fn check_capabilities(
    app: &AppState,
    caller: &Principal,
    requested: &[String],
) -> ApiResult<Vec<String>> {
    if requested.len() > MAX_CAPABILITIES {
        return Err(ApiError::field(
            "capabilities",
            "too_many",
            "at most 256 capabilities",
        ));
    }
    let mut errors = Vec::new();
    let mut parsed = BTreeSet::new();
    for (i, cap) in requested.iter().enumerate() {
        let field = format!("capabilities[{i}]");
        match Capability::parse(cap)
            .ok()
            .and_then(|c| app.capabilities().get(&c).map(|d| (c, d.system_only)))
        {
            None => errors.push(FieldError::new(
                field,
                "unknown_capability",
                "is not a registered capability",
            )),
            Some((_, true)) => errors.push(FieldError::new(
                field,
                "system_only",
                "is reserved to system-scope principals and cannot be put in an API key",
            )),
            Some((c, false)) => {
                parsed.insert(c);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // SECURITY: a key never carries more than its creator holds.
    if let Some(missing) = parsed.iter().find(|c| !caller.capabilities.contains(*c)) {
        return Err(ApiError::Forbidden {
            code: "authz.key_escalation",
            detail: format!("You cannot give a key `{missing}`, which you do not hold."),
        });
    }
    Ok(parsed.into_iter().map(|c| c.to_string()).collect())
}

/// A key's own rate limit: each value from 1 to the configured maximum.
fn check_rate_limit(
    app: &AppState,
    requested: Option<serde_json::Value>,
) -> ApiResult<Option<KeyRateLimit>> {
    let Some(raw) = requested.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::field(
            "rate_limit",
            "invalid_rate_limit",
            "must be an object {\"per_second\", \"burst\"} of positive integers",
        )
    };
    if !raw.is_object() {
        return Err(invalid());
    }
    let r: KeyRateLimitView = serde_json::from_value(raw).map_err(|_| invalid())?;
    let max = app.settings().rate_limit.api_key_max;
    let mut errors = Vec::new();
    for (field, value, most) in [
        ("rate_limit.per_second", r.per_second, max.per_second),
        ("rate_limit.burst", r.burst, max.burst),
    ] {
        if !(1..=most).contains(&value) {
            errors.push(FieldError::new(
                field,
                "out_of_range",
                format!("must be between 1 and {most}"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Some(KeyRateLimit {
        per_second: r.per_second,
        burst: r.burst,
    }))
}

/// A new key row and the key itself, for the caller in the scope.
fn new_key(
    app: &AppState,
    caller: &Principal,
    name: String,
    capabilities: Vec<String>,
    allowed_ips: Vec<String>,
    expires_at: Option<OffsetDateTime>,
    rate_limit: Option<KeyRateLimit>,
) -> (NewApiKey, String) {
    let generated = generate(env_for(app.settings().mode));
    let new = NewApiKey {
        created_by: caller.subject,
        name,
        prefix: generated.prefix,
        secret_hash: hash(&app.auth().api_key_hasher, &generated.key),
        capabilities,
        allowed_ips,
        expires_at,
        rate_limit,
    };
    (new, generated.key)
}

/// SECURITY: keys belong to the creator's home tenant; a key made on another tenant would resolve a
/// creator that is not a user there.
fn ensure_home(caller: &Principal, scope: &TenantScope) -> ApiResult<()> {
    if caller.home.id != scope.tenant_id() {
        return Err(ApiError::Unprocessable {
            code: "api_key.home_tenant_only",
            detail: "API keys are created in your own tenant.".to_owned(),
        });
    }
    Ok(())
}

async fn create_key(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Json(body): Json<CreateApiKeyRequest>,
) -> ApiResult<Response> {
    ensure_home(&caller, &scope)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field(
            "name",
            "invalid_name",
            "must be 1 to 100 characters",
        ));
    }
    let expires_at = match body.expires_at.as_deref() {
        None => None,
        Some(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                ApiError::field("expires_at", "invalid_time", "must be an RFC 3339 time")
            })?;
            if t <= OffsetDateTime::now_utc() {
                return Err(ApiError::field(
                    "expires_at",
                    "in_the_past",
                    "must be in the future",
                ));
            }
            Some(t)
        }
    };
    let capabilities = check_capabilities(&app, &caller, &body.capabilities)?;
    let allowed_ips =
        crate::net::check_cidrs("allowed_ips", &body.allowed_ips).map_err(ApiError::Validation)?;
    let rate_limit = check_rate_limit(&app, body.rate_limit)?;
    let (new, key) = new_key(
        &app,
        &caller,
        name,
        capabilities,
        allowed_ips,
        expires_at,
        rate_limit,
    );
    let stored = app
        .stores()
        .api_keys
        .create_api_key(&scope, new, &audit)
        .await?;
    tracing::info!(target: "security", event = "api_key.created", key_id = %stored.id, tenant = %scope.tenant_id(), actor = %audit.actor, "API key created");
    let location = format!("/v1/api-keys/{}", stored.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(IssuedKeyView {
            id: stored.id,
            prefix: stored.prefix,
            key,
        }),
    )
        .into_response())
}

async fn list_keys(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<PageView<ApiKeyView>>> {
    let page = params.page_request(&app, &scope, "api_keys")?;
    let keys = app.stores().api_keys.list_api_keys(&scope, &page).await?;
    Ok(axum::Json(page_view(
        &app,
        &scope,
        "api_keys",
        keys,
        ApiKeyView::from,
    )?))
}

async fn get_key(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ApiKeyView>> {
    check_id(&id)?;
    let key = app
        .stores()
        .api_keys
        .get_api_key(&scope, &id)
        .await?
        .ok_or_else(key_not_found)?;
    Ok(axum::Json(key.into()))
}

async fn rotate_key(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
    Json(body): Json<RotateApiKeyRequest>,
) -> ApiResult<axum::Json<IssuedKeyView>> {
    check_id(&id)?;
    ensure_home(&caller, &scope)?;
    let grace = body.grace_seconds.unwrap_or(0);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::field(
            "grace_seconds",
            "out_of_range",
            "must be between 0 and 2592000",
        ));
    }
    let old = app
        .stores()
        .api_keys
        .get_api_key(&scope, &id)
        .await?
        .ok_or_else(key_not_found)?;
    // SECURITY: the successor carries what the old key did, but never more than the rotator holds.
    let capabilities = check_capabilities(&app, &caller, &old.capabilities)?;
    let (new, key) = new_key(
        &app,
        &caller,
        old.name,
        capabilities,
        old.allowed_ips,
        old.expires_at,
        old.rate_limit,
    );
    let grace_until = OffsetDateTime::now_utc() + time::Duration::seconds(grace);
    let stored = app
        .stores()
        .api_keys
        .rotate_api_key(&scope, &id, new, grace_until, &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => key_not_found(),
            other => other.into(),
        })?;
    tracing::info!(target: "security", event = "api_key.rotated", key_id = %id, new_key_id = %stored.id, tenant = %scope.tenant_id(), actor = %audit.actor, "API key rotated");
    Ok(axum::Json(IssuedKeyView {
        id: stored.id,
        prefix: stored.prefix,
        key,
    }))
}

async fn delete_key(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id(&id)?;
    app.stores()
        .api_keys
        .revoke_api_key(&scope, &id, &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => key_not_found(),
            other => other.into(),
        })?;
    tracing::info!(target: "security", event = "api_key.revoked", key_id = %id, tenant = %scope.tenant_id(), actor = %audit.actor, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
