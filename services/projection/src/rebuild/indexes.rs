//! The read models' keys and indexes while a rebuild loads: dropped before,
//! built again after, from the definitions the database holds.

use std::time::Instant;

use anyhow::Context as _;
use sqlx::PgPool;
use tracing::info;

use crate::store::quote;

/// The keys and indexes of the read models, dropped while loading and built
/// again afterwards from their own definitions (the migrations stay the one
/// place that defines them). `cases_pkey` stays: a case let go is read back
/// through it.
pub(super) struct Deferred {
    /// (table, the statement that builds it again)
    restore: Vec<(String, String)>,
}

impl Deferred {
    pub(super) async fn take(pool: &PgPool, schema: &str) -> anyhow::Result<Deferred> {
        let tables = ["case_events", "cases", "ledger_daily"].map(str::to_owned).to_vec();
        let constraints: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT t.relname::text, c.conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname = ANY($2) AND c.contype IN ('p', 'u') AND c.conname <> 'cases_pkey'",
        )
        .bind(schema)
        .bind(&tables)
        .fetch_all(pool)
        .await?;
        let indexes: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes i WHERE schemaname = $1 \
             AND tablename = ANY($2) AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
             JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.conname = i.indexname)",
        )
        .bind(schema)
        .bind(&tables)
        .fetch_all(pool)
        .await?;
        let mut restore = Vec::new();
        for (table, name, definition) in constraints {
            sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE {} DROP CONSTRAINT {}", quote(&table), quote(&name))))
                .execute(pool)
                .await?;
            restore.push((
                table.clone(),
                format!("ALTER TABLE {} ADD CONSTRAINT {} {definition}", quote(&table), quote(&name)),
            ));
        }
        for (table, name, definition) in indexes {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {}", quote(&name)))).execute(pool).await?;
            restore.push((table, definition));
        }
        Ok(Deferred { restore })
    }

    /// Build everything again: the history's key on one connection, the
    /// rest on another, at the same time.
    pub(super) async fn restore(self, pool: &PgPool, memory: &str) -> anyhow::Result<()> {
        let (history, rest): (Vec<_>, Vec<_>) = self.restore.into_iter().partition(|(table, _)| table == "case_events");
        let run = |statements: Vec<(String, String)>| {
            let pool = pool.clone();
            let memory = memory.to_owned();
            async move {
                let mut connection = pool.acquire().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("SET maintenance_work_mem = '{}'", memory.replace('\'', ""))))
                    .execute(&mut *connection)
                    .await?;
                for (_, statement) in statements {
                    let started = Instant::now();
                    sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                        .execute(&mut *connection)
                        .await
                        .with_context(|| statement.clone())?;
                    info!(statement, seconds = started.elapsed().as_secs_f64(), "rebuild: index built");
                }
                anyhow::Ok(())
            }
        };
        let (a, b) = tokio::join!(run(history), run(rest));
        a.and(b)
    }
}
