//! Table and column identifiers, shared by every statement so the schema is named in one place.
//!
//! Invariant: these match `migrations/*/0001_init.sql` (the migrations are the truth); the column names
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

/// The column name a decoder reads, from the same identifier the statement selected.
pub(crate) fn col<I: IdenStatic>(iden: I) -> &'static str {
    iden.as_str()
}
