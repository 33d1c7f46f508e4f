//! Rebuild: replay the whole stream into a fresh schema, then swap it in
//! for the live one in one transaction. The live projector notices that the
//! stored position moved and carries on from the rebuilt tables.

use anyhow::Context as _;
use gridcase_eventlog::EventLog;
use gridcase_runtime::Shutdown;
use sqlx::PgPool;
use tracing::info;

use crate::projector;
use crate::store::{self, quote};

/// Project the whole stream into `schema` (dropped and created afresh).
pub async fn build(
    database_url: &str,
    schema: &str,
    log: &EventLog,
    batch_size: usize,
) -> anyhow::Result<(PgPool, u64)> {
    let admin = store::connect(database_url, "public", 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema))))
        .execute(&admin)
        .await?;
    admin.close().await;
    let pool = store::connect(database_url, schema, 4).await?;
    store::migrate(&pool, schema).await?;
    let (_, shutdown) = Shutdown::new();
    let position = projector::run(&mut *pool.acquire().await?, log, batch_size, shutdown, true).await?;
    info!(schema, position, "rebuilt the read models from the stream");
    Ok((pool, position))
}

/// Make `rebuilt` the live schema `live` (the old one, if there is one, is
/// dropped: a rebuild on an empty database simply puts the schema in place).
pub async fn swap(database_url: &str, rebuilt: &str, live: &str) -> anyhow::Result<()> {
    let admin = store::connect(database_url, "public", 1).await?;
    let old = format!("{live}_replaced");
    let mut tx = admin.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&old))))
        .execute(&mut *tx)
        .await?;
    let live_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(live)
        .fetch_one(&mut *tx)
        .await?;
    if live_exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SCHEMA {} RENAME TO {}", quote(live), quote(&old))))
            .execute(&mut *tx)
            .await
            .context("renaming the live schema")?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SCHEMA {} RENAME TO {}", quote(rebuilt), quote(live))))
        .execute(&mut *tx)
        .await
        .context("renaming the rebuilt schema")?;
    if live_exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", quote(&old)))).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    info!(live, "rebuilt read models swapped in");
    Ok(())
}
