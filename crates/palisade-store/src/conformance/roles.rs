//! Conformance cases for custom roles: tenant scoping, name uniqueness per tenant, pagination by name,
//! and the refusal to delete a role in use. Registered in [`CASES`](super::CASES) and
//! [`conformance_tests!`](crate::conformance_tests) like every other case.

use palisade_domain::TenantKind;

use super::{
    assert_conflict, assert_not_found, audit_meta, child, join2, scope, system_tenant, user,
};
use crate::{
    CustomRole, NewRole, PageRequest, ROLE_IN_USE, RolePatch, StoreError, Stores, UserPatch,
};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn new_role(name: &str, inherits: &[&str], capabilities: &[&str]) -> NewRole {
    NewRole {
        name: name.to_owned(),
        inherits: strings(inherits),
        capabilities: strings(capabilities),
    }
}

/// SECURITY: a scope for tenant A never sees, changes or deletes a role of tenant B, not even when A
/// is B's parent. Also the create/read/update/delete cycle within one tenant, with sorted lists.
pub async fn custom_roles_are_scoped_to_the_tenant(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &a, "tenant-b", TenantKind::Tenant).await;
    let (s_a, s_b) = (scope(&a), scope(&b));

    let created = stores
        .roles
        .create_role(
            &s_b,
            new_role(
                "auditor",
                &["viewer", "member", "viewer"],
                &["platform.user.read", "customers.read", "customers.read"],
            ),
            audit_meta(),
        )
        .await
        .expect("create a role");
    assert_eq!(created.tenant_id, b.id);
    assert_eq!(created.name, "auditor");
    assert_eq!(created.inherits, strings(&["member", "viewer"]));
    assert_eq!(
        created.capabilities,
        strings(&["customers.read", "platform.user.read"])
    );
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(
        stores.roles.get_role(&s_b, "auditor").await.expect("get"),
        Some(created.clone())
    );

    for foreign in [&s_a, &scope(&root)] {
        assert_eq!(
            stores
                .roles
                .get_role(foreign, "auditor")
                .await
                .expect("get"),
            None
        );
        let listed = stores
            .roles
            .list_roles(
                foreign,
                &PageRequest {
                    limit: 50,
                    after: None,
                },
            )
            .await
            .expect("list");
        assert!(listed.items.is_empty());
        assert!(
            stores
                .roles
                .all_roles(foreign)
                .await
                .expect("all")
                .is_empty()
        );
        assert_not_found(
            stores
                .roles
                .update_role(
                    foreign,
                    "auditor",
                    RolePatch {
                        inherits: Some(Vec::new()),
                        capabilities: Some(strings(&["platform.user.delete"])),
                    },
                    audit_meta(),
                )
                .await,
        );
        assert_not_found(
            stores
                .roles
                .delete_role(foreign, "auditor", audit_meta())
                .await,
        );
        assert!(
            !stores
                .roles
                .roles_in_use(foreign, "auditor")
                .await
                .expect("in use")
        );
    }
    assert_eq!(
        stores.roles.get_role(&s_b, "auditor").await.expect("get"),
        Some(created.clone()),
        "refused writes changed nothing"
    );

    // Update one field; the other stays.
    let updated = stores
        .roles
        .update_role(
            &s_b,
            "auditor",
            RolePatch {
                inherits: None,
                capabilities: Some(strings(&["platform.user.read", "customers.list"])),
            },
            audit_meta(),
        )
        .await
        .expect("update");
    assert_eq!(updated.inherits, created.inherits);
    assert_eq!(
        updated.capabilities,
        strings(&["customers.list", "platform.user.read"])
    );
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        stores.roles.all_roles(&s_b).await.expect("all"),
        vec![updated.clone()]
    );

    stores
        .roles
        .delete_role(&s_b, "auditor", audit_meta())
        .await
        .expect("delete");
    assert_eq!(
        stores.roles.get_role(&s_b, "auditor").await.expect("get"),
        None
    );
    assert_not_found(
        stores
            .roles
            .delete_role(&s_b, "auditor", audit_meta())
            .await,
    );
    assert_not_found(
        stores
            .roles
            .update_role(&s_b, "auditor", RolePatch::default(), audit_meta())
            .await,
    );
}

/// A name is unique within a tenant (a `Conflict` naming `custom_roles.tenant_id_name`, also for two
/// racing writers) and free in every other tenant.
pub async fn custom_role_names_are_unique_per_tenant(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "tenant-b", TenantKind::Tenant).await;

    let in_a = stores
        .roles
        .create_role(
            &scope(&a),
            new_role("support", &["viewer"], &[]),
            audit_meta(),
        )
        .await
        .expect("create");
    assert_conflict(
        stores
            .roles
            .create_role(
                &scope(&a),
                new_role("support", &[], &["customers.read"]),
                audit_meta(),
            )
            .await,
        "custom_roles.tenant_id_name",
    );
    let in_b = stores
        .roles
        .create_role(
            &scope(&b),
            new_role("support", &[], &["customers.read"]),
            audit_meta(),
        )
        .await
        .expect("the same name in another tenant");
    assert_eq!(in_b.tenant_id, b.id);
    assert_eq!(
        stores
            .roles
            .get_role(&scope(&a), "support")
            .await
            .expect("get"),
        Some(in_a),
        "the refused insert changed nothing"
    );

    let s_a = scope(&a);
    let create = || {
        stores
            .roles
            .create_role(&s_a, new_role("contested", &[], &[]), audit_meta())
    };
    let (first, second) = join2(create(), create()).await;
    let lost = match (first, second) {
        (Ok(_), other) | (other, Ok(_)) => other,
        (x, y) => panic!("neither write won: {x:?} / {y:?}"),
    };
    assert_conflict(lost, "custom_roles.tenant_id_name");
}

/// Keyset pagination by name returns every role of the tenant once, in name order.
pub async fn custom_roles_page_by_name(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "tenant-b", TenantKind::Tenant).await;
    let mut expected = Vec::new();
    // Created out of order; `_` and digits sort bytewise on both backends.
    for i in (0..12).rev() {
        let name = format!("role_{i:02}");
        stores
            .roles
            .create_role(&scope(&a), new_role(&name, &[], &[]), audit_meta())
            .await
            .expect("create");
        expected.push(name);
    }
    stores
        .roles
        .create_role(&scope(&a), new_role("role0", &[], &[]), audit_meta())
        .await
        .expect("create");
    expected.push("role0".to_owned());
    stores
        .roles
        .create_role(&scope(&b), new_role("other", &[], &[]), audit_meta())
        .await
        .expect("create");
    expected.sort();

    let mut seen: Vec<CustomRole> = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .roles
            .list_roles(&scope(&a), &PageRequest { limit: 5, after })
            .await
            .expect("list");
        sizes.push(page.items.len());
        seen.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, vec![5, 5, 3]);
    assert_eq!(
        seen.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(seen.iter().all(|r| r.tenant_id == a.id));
    let all: Vec<String> = stores
        .roles
        .all_roles(&scope(&a))
        .await
        .expect("all")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(all, expected);
}

/// A role held by a user, or inherited by another role, of the same tenant cannot be deleted; usage in
/// another tenant does not count.
pub async fn a_custom_role_in_use_cannot_be_deleted(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "tenant-b", TenantKind::Tenant).await;
    let s_a = scope(&a);
    for name in ["base", "held"] {
        stores
            .roles
            .create_role(&s_a, new_role(name, &[], &[]), audit_meta())
            .await
            .expect("create");
    }
    stores
        .roles
        .create_role(
            &s_a,
            new_role("derived", &["base", "viewer"], &[]),
            audit_meta(),
        )
        .await
        .expect("create");
    let holder = user(stores, &a, "holder@example.com", &["held"]).await;
    // The same names used in tenant B do not pin A's roles.
    stores
        .roles
        .create_role(&scope(&b), new_role("x", &["held"], &[]), audit_meta())
        .await
        .expect("create");
    user(stores, &b, "other@example.com", &["base"]).await;

    for name in ["base", "held"] {
        assert!(stores.roles.roles_in_use(&s_a, name).await.expect("in use"));
        let refused = stores.roles.delete_role(&s_a, name, audit_meta()).await;
        assert!(
            matches!(&refused, Err(StoreError::Conflict { constraint }) if constraint == ROLE_IN_USE),
            "{name}: {refused:?}"
        );
    }
    assert!(
        !stores
            .roles
            .roles_in_use(&s_a, "derived")
            .await
            .expect("in use")
    );
    assert!(
        !stores
            .roles
            .roles_in_use(&s_a, "bas")
            .await
            .expect("in use"),
        "names match exactly"
    );

    // Once nothing uses them, they go.
    stores
        .roles
        .delete_role(&s_a, "derived", audit_meta())
        .await
        .expect("delete the inheritor");
    stores
        .roles
        .delete_role(&s_a, "base", audit_meta())
        .await
        .expect("delete the no longer inherited role");
    stores
        .users
        .update_user(
            &s_a,
            holder.id,
            UserPatch {
                status: None,
                roles: Some(Vec::new()),
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("take the role away");
    stores
        .roles
        .delete_role(&s_a, "held", audit_meta())
        .await
        .expect("delete the no longer held role");
    assert!(stores.roles.all_roles(&s_a).await.expect("all").is_empty());
}
