//! Conformance cases for browser sessions: created with their refresh family and one audit entry in
//! one transaction (nothing written when the user is outside the scope or the cookie hash is taken),
//! found by the cookie's hash with the family's state, touched forward only, and ended by whatever ends
//! the family (logout, logout-all) or the user.

use palisade_domain::TenantKind;
use time::{Duration, OffsetDateTime};

use super::{assert_conflict, assert_not_found, audit_meta, child, scope, system_tenant, user};
use crate::{
    BrowserSession, NewBrowserSession, NewRefreshFamily, NewRefreshToken, RotateOutcome,
    StoreResult, Stores, Tenant, User,
};

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("the current time is representable")
}

async fn start(
    stores: &Stores,
    tenant: &Tenant,
    user: &User,
    family_id: &str,
    cookie_hash: &str,
    at: OffsetDateTime,
) -> StoreResult<BrowserSession> {
    stores
        .sessions
        .create_session(
            &scope(tenant),
            NewRefreshFamily {
                id: family_id.to_owned(),
                user_id: user.id,
                amr: vec!["otp".to_owned(), "totp".to_owned()],
                auth_time: at,
            },
            NewRefreshToken {
                token_hash: format!("refresh-{family_id}"),
                expires_at: at + Duration::days(1),
            },
            NewBrowserSession {
                token_hash: cookie_hash.to_owned(),
                token_version: user.token_version,
                expires_at: at + Duration::hours(12),
            },
            audit_meta(),
        )
        .await
}

async fn audit_seq(stores: &Stores, tenant: &Tenant) -> i64 {
    stores
        .audit
        .head(&scope(tenant))
        .await
        .expect("audit head")
        .seq
}

async fn find(stores: &Stores, hash: &str) -> Option<BrowserSession> {
    stores.sessions.find_session(hash).await.expect("find")
}

/// Browser sessions: atomic creation with their family and audit entry, lookup by cookie hash, forward
/// touches, and revocation through the family and the user.
pub async fn browser_sessions_follow_their_family(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "sessions-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "sessions-b", TenantKind::Tenant).await;
    let alice = user(stores, &a, "alice@a.test", &[]).await;
    let carol = user(stores, &a, "carol@a.test", &[]).await;
    let bob = user(stores, &b, "bob@b.test", &[]).await;
    let t = t0();

    // Created with its family and exactly one audit entry; read back exactly.
    let before = audit_seq(stores, &a).await;
    let made = start(stores, &a, &alice, "fam-alice", "cookie-alice", t)
        .await
        .expect("create a session");
    assert_eq!(audit_seq(stores, &a).await, before + 1, "one audit entry");
    let found = find(stores, "cookie-alice").await.expect("found by hash");
    assert_eq!(found, made);
    assert_eq!(found.family_id, "fam-alice");
    assert_eq!(found.tenant_id, a.id);
    assert_eq!(found.user_id, alice.id);
    assert_eq!(found.token_version, alice.token_version);
    assert_eq!(found.amr, vec!["otp".to_owned(), "totp".to_owned()]);
    assert_eq!(found.auth_time, t);
    assert_eq!(found.expires_at, t + Duration::hours(12));
    assert_eq!(found.last_seen_at, found.created_at);
    assert_eq!(found.revoked_at, None);
    assert!(find(stores, "cookie-unknown").await.is_none());

    // SECURITY: a user outside the scope's tenant gets nothing: no family, no session, no entry.
    let before_b = audit_seq(stores, &b).await;
    assert_not_found(start(stores, &a, &bob, "fam-bob", "cookie-bob", t).await);
    assert!(find(stores, "cookie-bob").await.is_none());
    assert_eq!(audit_seq(stores, &a).await, before + 1);
    assert_eq!(audit_seq(stores, &b).await, before_b);
    assert_eq!(
        stores
            .refresh
            .family_of("refresh-fam-bob")
            .await
            .expect("family_of"),
        None,
        "the family was rolled back"
    );

    // A taken cookie hash is a conflict, and the family of the refused attempt is rolled back too.
    assert_conflict(
        start(stores, &a, &carol, "fam-dup", "cookie-alice", t).await,
        "browser_sessions.token_hash",
    );
    assert_eq!(
        stores
            .refresh
            .family_of("refresh-fam-dup")
            .await
            .expect("family_of"),
        None
    );
    assert_eq!(audit_seq(stores, &a).await, before + 1);

    // Touches move `last_seen_at` forward only.
    let later = t + Duration::minutes(5);
    stores
        .sessions
        .touch_session("fam-alice", later)
        .await
        .expect("touch");
    stores
        .sessions
        .touch_session("fam-alice", t - Duration::minutes(5))
        .await
        .expect("an older touch is accepted and ignored");
    assert_eq!(
        find(stores, "cookie-alice")
            .await
            .expect("found")
            .last_seen_at,
        later
    );
    assert_not_found(stores.sessions.touch_session("fam-unknown", later).await);

    // Ended by revoking the family (logout) ...
    stores
        .refresh
        .revoke_family("fam-alice", later)
        .await
        .expect("revoke");
    assert_eq!(
        find(stores, "cookie-alice")
            .await
            .expect("still found")
            .revoked_at,
        Some(later)
    );
    assert_eq!(
        stores
            .refresh
            .rotate(
                "refresh-fam-alice",
                NewRefreshToken {
                    token_hash: "refresh-next".to_owned(),
                    expires_at: later + Duration::days(1),
                },
                later,
            )
            .await
            .expect("rotate"),
        RotateOutcome::FamilyRevoked
    );

    // ... by revoking every family of the user (logout-all), scoped ...
    start(stores, &a, &carol, "fam-carol", "cookie-carol", t)
        .await
        .expect("create a session");
    stores
        .refresh
        .revoke_user_families(&scope(&b), carol.id, later)
        .await
        .expect("revoke");
    assert_eq!(
        find(stores, "cookie-carol")
            .await
            .expect("found")
            .revoked_at,
        None
    );
    stores
        .refresh
        .revoke_user_families(&scope(&a), carol.id, later)
        .await
        .expect("revoke");
    assert!(
        find(stores, "cookie-carol")
            .await
            .expect("found")
            .revoked_at
            .is_some()
    );

    // ... and by deleting the user.
    start(stores, &b, &bob, "fam-bob", "cookie-bob", t)
        .await
        .expect("create a session");
    stores
        .users
        .delete_user(&scope(&b), bob.id, audit_meta())
        .await
        .expect("delete");
    assert!(find(stores, "cookie-bob").await.is_none());
}
