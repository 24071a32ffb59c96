//! [`StoreHealth`] for every dialect: a `SELECT 1` round trip and the backend's name.
//!
//! Invariant: a failed ping is `Unavailable` when the database cannot be reached or the pool timed out
//! (see [`crate::dialect::translate`]), so readiness probes can tell an outage from a bug.

use async_trait::async_trait;
use palisade_store::{StoreHealth, StoreResult};
use sea_query::{Expr, Query};

use crate::dialect::{Dialect, Exec, acquire};

/// Health over one dialect's pool.
pub(crate) struct SqlHealth<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlHealth<D> {
    /// Health of `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl<D: Exec> StoreHealth for SqlHealth<D> {
    async fn ping(&self) -> StoreResult<()> {
        let stmt = Query::select().expr(Expr::cust("1")).take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_optional(&mut conn, D::render(&stmt))
            .await
            .map(|_| ())
    }

    fn backend(&self) -> &'static str {
        D::NAME
    }
}
