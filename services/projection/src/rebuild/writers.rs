//! The rebuild's two writers, each on a connection of its own: the history
//! in one frozen COPY, and the side writer's COPY segments of case rows and
//! ledger deltas (and the odd let-go case read back).

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::case_table;
use crate::copy;
use crate::project::CaseRow;

/// What the side writer does, in order.
pub(super) enum Side {
    Cases(Vec<u8>),
    Ledger(Vec<u8>),
    /// Read a case back (and remove its row: it is written again later).
    ReadBack(Uuid, oneshot::Sender<anyhow::Result<Option<CaseRow>>>),
}

pub(super) async fn side_writer(
    mut connection: PgConnection,
    mut commands: mpsc::Receiver<Side>,
) -> anyhow::Result<()> {
    let cases = format!("COPY cases ({}) FROM STDIN", case_table::copy_columns());
    let ledger = format!("COPY ledger_delta ({}) FROM STDIN", copy::ledger_columns());
    while let Some(command) = commands.recv().await {
        match command {
            Side::Cases(bytes) | Side::Ledger(bytes) if bytes.is_empty() => {}
            Side::Cases(bytes) => copy_segment(&mut connection, &cases, bytes).await.context("loading case rows")?,
            Side::Ledger(bytes) => {
                copy_segment(&mut connection, &ledger, bytes).await.context("loading ledger deltas")?
            }
            Side::ReadBack(id, answer) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM cases WHERE case_id = $1 RETURNING {}",
                    *case_table::SELECT
                )))
                .bind(id)
                .fetch_optional(&mut connection)
                .await
                .map_err(anyhow::Error::from)
                .and_then(|row| row.as_ref().map(case_table::read).transpose());
                answer.send(row).ok();
            }
        }
    }
    connection.close().await.ok();
    Ok(())
}

async fn copy_segment(connection: &mut PgConnection, statement: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    let mut copy = connection.copy_in_raw(statement).await?;
    copy.send(bytes).await?;
    copy.finish().await?;
    Ok(())
}

/// The history in one COPY, in the transaction that emptied the table, so
/// its rows are written frozen (no later rewrite to set hint bits).
pub(super) async fn events_writer(
    mut connection: PgConnection,
    mut segments: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut tx = connection.begin().await?;
    sqlx::raw_sql("TRUNCATE case_events").execute(&mut *tx).await?;
    let mut copy =
        tx.copy_in_raw(&format!("COPY case_events ({}) FROM STDIN WITH (FREEZE)", copy::EVENT_COLUMNS)).await?;
    while let Some(segment) = segments.recv().await {
        copy.send(segment).await.context("loading the history")?;
    }
    copy.finish().await.context("loading the history")?;
    tx.commit().await?;
    connection.close().await.ok();
    Ok(())
}

/// A connection for loading: its commits do not wait for the disk.
pub(super) async fn bulk_connection(pool: &PgPool) -> anyhow::Result<PgConnection> {
    let mut connection = pool.acquire().await?.detach();
    // A rebuild that dies is started again from scratch: its commits need
    // not wait for the disk.
    sqlx::raw_sql("SET synchronous_commit = off").execute(&mut connection).await?;
    Ok(connection)
}
