//! Records of declared resources, and the idempotency keys of their creates.
//!
//! The store is schema-agnostic: the caller validates a document against its declaration and passes
//! the derived keys along ([`RecordKeys`]: the values of unique fields, and the values of filterable
//! fields, which the store indexes for bound-parameter filters).
//!
//! Invariants:
//! - Every method takes a [`TenantScope`] and filters by `tenant_id = scope.tenant_id()`, plus the
//!   resource name; an `owner` argument (owner-scoped resources read by a caller without `read_all`)
//!   narrows further to that owner's records. Outside the filter a record does not exist.
//! - Every mutation (create, update, delete, restore) appends exactly one audit entry in its own write
//!   transaction (`{resource}.create|update|delete|restore`, old and new as full records; the full
//!   snapshot in `old` on delete). A failed append rolls the mutation back.
//! - Updates and deletes apply only at the expected version; of two writers holding the same version
//!   exactly one wins, the other gets `Conflict { constraint: RECORD_VERSION }`.
//! - A unique value is claimed in the same transaction; a clash is `Conflict { constraint:
//!   "<resource>.<field>" }` naming the field, never the value. Soft-deleted records release their
//!   claims; restoring reclaims them (and can clash).

use async_trait::async_trait;
use palisade_authz::TenantScope;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{AuditMeta, Page, PageRequest, StoreResult};

/// The constraint a stale `expected_version` reports.
pub const RECORD_VERSION: &str = "records.version";

/// One record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// UUIDv7.
    pub id: String,
    /// The resource it belongs to.
    pub resource: String,
    /// The creating principal (`user:<id>`) for owner scoping.
    pub owner_id: String,
    /// The declared fields.
    pub data: Map<String, Value>,
    /// From 1, incremented by every change.
    pub version: i64,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
    /// Soft-deleted at.
    pub deleted_at: Option<OffsetDateTime>,
}

impl Record {
    /// The record as the API and the audit trail show it:
    /// `{"id", ...fields, "created_at", "updated_at", "version"}` (RFC 3339 timestamps).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut m = self.data.clone();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("created_at".into(), Value::String(rfc3339(self.created_at)));
        m.insert("updated_at".into(), Value::String(rfc3339(self.updated_at)));
        m.insert("version".into(), Value::from(self.version));
        Value::Object(m)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A filterable value as indexed: compared as text or as a number.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexedValue {
    /// Bytewise text.
    Text(String),
    /// A number.
    Num(f64),
}

/// What the store maintains beside a record's data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordKeys {
    /// `(field, value key)` of each unique field present.
    pub unique: Vec<(String, String)>,
    /// `(field, value)` of each filterable field present.
    pub indexed: Vec<(String, IndexedValue)>,
}

/// A record to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// The resource.
    pub resource: String,
    /// The creating principal.
    pub owner_id: String,
    /// Validated data.
    pub data: Map<String, Value>,
    /// Derived keys.
    pub keys: RecordKeys,
}

/// A comparison in a list filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// One of several values.
    In,
}

/// One filter: `field op values` (one value except for `In`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFilter {
    /// A filterable field.
    pub field: String,
    /// The comparison.
    pub op: FilterOp,
    /// The operands.
    pub values: Vec<IndexedValue>,
}

/// Which records a list returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordQuery {
    /// Only this owner's records.
    pub owner: Option<String>,
    /// All must hold.
    pub filters: Vec<RecordFilter>,
}

/// A stored response of an idempotent create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to replay, `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// Body bytes (JSON text).
    pub body: String,
    /// The record the request created, so that purging the record takes the stored response (which
    /// holds the record) with it.
    pub record_id: Option<String>,
}

/// The outcome of reserving an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key is new and now reserved for this request: go ahead, then complete or release it.
    Reserved,
    /// The same key and body completed before: replay this response.
    Replay(StoredResponse),
    /// The same key with another body.
    KeyReused,
    /// The same key and body is being processed by another request right now.
    InProgress,
}

/// Records of declared resources.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Creates a record (version 1) and its audit entry.
    async fn create_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        new: NewRecord,
    ) -> StoreResult<Record>;

    /// A live (not deleted) record.
    async fn get_record(
        &self,
        scope: &TenantScope,
        resource: &str,
        id: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<Record>>;

    /// Live records ordered by id, filtered.
    async fn list_records(
        &self,
        scope: &TenantScope,
        resource: &str,
        query: &RecordQuery,
        page: &PageRequest,
    ) -> StoreResult<Page<Record>>;

    /// Replaces a live record's data at `expected_version`. `NotFound`, or `Conflict` on
    /// [`RECORD_VERSION`] when stale or `<resource>.<field>` on a unique clash.
    #[expect(clippy::too_many_arguments, reason = "one write, every part named")]
    async fn update_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        id: &str,
        owner: Option<&str>,
        expected_version: i64,
        data: Map<String, Value>,
        keys: RecordKeys,
    ) -> StoreResult<Record>;

    /// Soft-deletes a live record at `expected_version`; the audit entry carries the full snapshot.
    async fn delete_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        id: &str,
        owner: Option<&str>,
        expected_version: i64,
    ) -> StoreResult<Record>;

    /// Restores a soft-deleted record, reclaiming its unique values. `NotFound` when it is not deleted.
    async fn restore_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        id: &str,
        owner: Option<&str>,
        keys_of: &(dyn for<'m> Fn(&'m Map<String, Value>) -> RecordKeys + Send + Sync),
    ) -> StoreResult<Record>;

    /// How many records of the resource the tenant holds, deleted ones included when asked (tests and
    /// the Trust Center).
    async fn count_records(
        &self,
        scope: &TenantScope,
        resource: &str,
        include_deleted: bool,
    ) -> StoreResult<u64>;

    /// Retention: permanently removes up to `limit` records of `resource` in the scope's tenant that
    /// were created before `created_before`, soft-deleted ones included, in one transaction. Their
    /// indexed values, unique claims and stored idempotent responses go with them, and each record
    /// writes one `<resource>.purge` audit entry carrying its full snapshot. Returns how many were
    /// purged; fewer than `limit` means none are left.
    async fn purge_records(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        created_before: time::OffsetDateTime,
        limit: u32,
    ) -> StoreResult<u64>;

    /// Reserves `key` of `principal` in the scope's tenant for a request whose body hashes to
    /// `body_hash`. An expired reservation (older than `ttl`) is replaced.
    async fn reserve_idempotency(
        &self,
        scope: &TenantScope,
        principal: &str,
        key: &str,
        body_hash: &str,
        ttl: time::Duration,
    ) -> StoreResult<Reservation>;

    /// Stores the response of a reserved key.
    async fn complete_idempotency(
        &self,
        scope: &TenantScope,
        principal: &str,
        key: &str,
        response: &StoredResponse,
    ) -> StoreResult<()>;

    /// Releases a reserved key whose request failed, so a retry can run.
    async fn release_idempotency(
        &self,
        scope: &TenantScope,
        principal: &str,
        key: &str,
    ) -> StoreResult<()>;
}
