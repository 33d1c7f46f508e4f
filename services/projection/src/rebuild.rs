//! Rebuild: replay the whole stream into a fresh schema at the speed of the
//! store, then swap it in for the live one in one transaction. The live
//! projector keeps serving the old tables meanwhile; after the swap it
//! notices that the stored position moved and carries on from the rebuilt
//! tables.
//!
//! The rebuild folds in memory and writes with COPY:
//!
//! ```text
//! reader ─chunks─▶ decoders (N, in parallel, order kept) ─▶ folds (M, by case id) ─┬─▶ events writer: one COPY … FREEZE of case_events
//!                                                                                     └─▶ side writer: COPY segments of cases and ledger deltas
//! ```
//!
//! - Each fold holds its own share of the cases (by case id) and sees their
//!   events in stream order, through the same `projector::fold` as the live
//!   projector, so the rebuilt tables equal the live ones row for row. Cases
//!   do not touch each other's rows; ledger counts are sums, in any order.
//! - Indexes and keys are dropped before loading and built afterwards (the
//!   migrations stay their only definition); only `cases`' key stays, for
//!   reading a let-go case back.
//! - Memory is bounded by the cases with recent events, not by the history:
//!   a case without an event for `idle` (stream time) is written out and let
//!   go (only its id is remembered); a later event reads it back from the
//!   rebuild's own `cases` table, which is rare.
//! - Ledger counts are summed in memory up to a bound, written as deltas to
//!   a staging table, and added up once at the end.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use gridcase_domain::Event;
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, ReadFrom};
use jiff::{SignedDuration, Timestamp};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use crate::case_table;
use crate::copy::{self, Rows};
use crate::project::{CaseRow, LedgerKey, Measure};
use crate::projector;
use crate::store::{self, quote};

mod indexes;
mod writers;

use indexes::Deferred;
use writers::{Side, bulk_connection, events_writer, side_writer};

/// How a rebuild divides its work.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunks of messages decoded at once, on blocking threads.
    pub decoders: usize,
    /// Folds running at once, each over its own share of the cases (by id).
    pub folds: usize,
    /// Messages per decoded chunk.
    pub chunk: usize,
    /// A case with no event for this long (in stream time) is written out
    /// and let go.
    pub idle: SignedDuration,
    /// Events folded between two looks for idle cases.
    pub sweep_every: u64,
    /// Ledger rows summed in memory before they are written out as deltas.
    pub ledger_rows: usize,
    /// Bytes of COPY text sent at once.
    pub segment_bytes: usize,
    /// `maintenance_work_mem` of the sessions that build the indexes.
    pub index_memory: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            decoders: 2,
            folds: 2,
            chunk: 1000,
            idle: SignedDuration::from_hours(24 * 30),
            sweep_every: 100_000,
            ledger_rows: 50_000,
            segment_bytes: 4 << 20,
            index_memory: "512MB".to_owned(),
        }
    }
}

/// What a rebuild did, and where its time went.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Stream messages read.
    pub messages: u64,
    /// Messages not kept or not projected (unreadable, unknown type, not chained).
    pub skipped: u64,
    /// Case rows written.
    pub cases: u64,
    /// Ledger rows in the end.
    pub ledger_rows: u64,
    /// Cases let go while idle, and read back because an event came later.
    pub let_go: u64,
    pub read_back: u64,
    /// The most cases held in memory at once (summed over the folds'
    /// highs, so at most this many).
    pub most_in_memory: usize,
    /// Reading, folding and loading the rows (all at once, in a pipeline).
    pub load: Duration,
    /// Adding up the ledger deltas.
    pub ledger: Duration,
    /// Building the indexes and keys, and analysing the tables.
    pub index: Duration,
    pub total: Duration,
}

impl Figures {
    /// Add one fold's counts (the most in memory: at once, at most).
    fn add(&mut self, part: &Figures) {
        self.messages += part.messages;
        self.skipped += part.skipped;
        self.cases += part.cases;
        self.let_go += part.let_go;
        self.read_back += part.read_back;
        self.most_in_memory += part.most_in_memory;
    }
}

/// A rebuilt schema, not yet swapped in.
pub struct Built {
    pub pool: PgPool,
    /// The stream sequence the rebuilt tables reflect.
    pub position: u64,
    pub figures: Figures,
}

/// Project the whole stream into `schema` (dropped and created afresh).
pub async fn build(database_url: &str, schema: &str, log: &EventLog, options: &Options) -> anyhow::Result<Built> {
    let started = Instant::now();
    let admin = store::connect(database_url, "public", 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema))))
        .execute(&admin)
        .await?;
    admin.close().await;
    let pool = store::connect(database_url, schema, 4).await?;
    store::migrate(&pool, schema).await?;
    let deferred = Deferred::take(&pool, schema).await?;
    sqlx::raw_sql("CREATE UNLOGGED TABLE ledger_delta (LIKE ledger_daily)").execute(&pool).await?;

    let mut figures = Figures::default();
    let last = log.last_sequence().await.context("reading the stream's end")?;
    if last > 0 {
        load(&pool, log, last, options, &mut figures).await?;
    }
    let load_done = Instant::now();
    figures.load = load_done - started;
    let columns: Vec<&str> = Measure::ALL.iter().map(|m| m.column()).collect();
    let sums: Vec<String> = columns.iter().map(|c| format!("sum({c})")).collect();
    figures.ledger_rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ledger_daily (org_kind, org, township, day, {}) SELECT org_kind, org, township, day, {} \
         FROM ledger_delta GROUP BY org_kind, org, township, day",
        columns.join(", "),
        sums.join(", ")
    )))
    .execute(&pool)
    .await
    .context("adding up the ledger")?
    .rows_affected();
    sqlx::raw_sql("DROP TABLE ledger_delta").execute(&pool).await?;
    if last > 0 {
        sqlx::query(
            "INSERT INTO projection_position (projection, stream_sequence, skipped_events) VALUES ($1, $2, $3)",
        )
        .bind(store::PROJECTION)
        .bind(last as i64)
        .bind(figures.skipped as i64)
        .execute(&pool)
        .await?;
    }
    let ledger_done = Instant::now();
    figures.ledger = ledger_done - load_done;
    deferred.restore(&pool, &options.index_memory).await?;
    sqlx::raw_sql("ANALYZE case_events; ANALYZE cases; ANALYZE ledger_daily").execute(&pool).await?;
    figures.index = ledger_done.elapsed();
    figures.total = started.elapsed();
    info!(schema, position = last, ?figures, "rebuilt the read models from the stream");
    Ok(Built { pool, position: last, figures })
}

/// One decoded message of a chunk: its COPY line lies in the chunk's bytes.
struct Decoded {
    sequence: u64,
    event: Option<(StoredEvent, Option<Event>)>,
    line: Range<usize>,
}

struct DecodedChunk {
    items: Vec<Decoded>,
    bytes: Vec<u8>,
}

/// Decode a chunk into one chunk per fold (a case's events all go to the
/// same fold; messages that are not events at all, to the first).
fn decode_chunk(records: Vec<(u64, bytes::Bytes)>, folds: usize) -> Vec<DecodedChunk> {
    let mut rows: Vec<Rows> = (0..folds).map(|_| Rows::default()).collect();
    let mut items: Vec<Vec<Decoded>> = (0..folds).map(|_| Vec::with_capacity(records.len() / folds + 1)).collect();
    for (sequence, payload) in records {
        let event = projector::decode(sequence, &payload);
        let fold = event.as_ref().map_or(0, |(stored, _)| fold_of(stored.case_id.as_uuid(), folds));
        let rows = &mut rows[fold];
        let start = rows.bytes.len();
        if let Some((stored, event)) = &event {
            copy::event(rows, &projector::event_row(sequence, stored, event.as_ref()));
        }
        items[fold].push(Decoded { sequence, event, line: start..rows.bytes.len() });
    }
    items.into_iter().zip(rows).map(|(items, rows)| DecodedChunk { items, bytes: rows.bytes }).collect()
}

/// Which fold a case belongs to.
fn fold_of(case: &Uuid, folds: usize) -> usize {
    (case.as_u128() % folds as u128) as usize
}

/// A case in memory: its row (none for events of a case never filed), the
/// hash its next event must chain to, and the time of its last event.
struct Held {
    row: Option<CaseRow>,
    hash: String,
    at: Timestamp,
}

/// The folds' maps hash with foldhash: every event goes through two or
/// three of them, and their keys come from the log, not from a caller.
type Fast = foldhash::fast::RandomState;

struct Fold {
    options: Options,
    held: HashMap<Uuid, Held, Fast>,
    let_go: HashSet<Uuid, Fast>,
    ledger: HashMap<LedgerKey, [i64; Measure::ALL.len()], Fast>,
    events: Rows,
    now: Timestamp,
    since_sweep: u64,
    figures: Figures,
    to_history: mpsc::Sender<Vec<u8>>,
    to_side: mpsc::Sender<Side>,
}

impl Fold {
    async fn chunk(&mut self, chunk: DecodedChunk) -> anyhow::Result<()> {
        let DecodedChunk { items, bytes } = chunk;
        // The decoded events, once folded, are freed on a blocking thread:
        // the folds are the busiest stage.
        let mut spent = Vec::with_capacity(items.len());
        let mut refused = Vec::new();
        for item in items {
            self.figures.messages += 1;
            let Some((mut stored, event)) = item.event else {
                self.figures.skipped += 1;
                continue;
            };
            if event.is_none() {
                self.figures.skipped += 1;
            }
            let key = *stored.case_id.as_uuid();
            if !self.held.contains_key(&key) && self.let_go.remove(&key) {
                let (answer, row) = oneshot::channel();
                self.side(Side::ReadBack(key, answer)).await?;
                let row = row.await.context("the side writer stopped")??.context("a case let go is in its table")?;
                self.figures.read_back += 1;
                self.figures.cases -= 1;
                self.held.insert(key, Held { hash: row.last_hash.clone(), at: self.now, row: Some(row) });
            }
            let held = self.held.remove(&key);
            let (row, hash, at) = match held {
                Some(Held { row, hash, at }) => (row, Some(hash), at),
                None => (None, None, stored.occurred_at),
            };
            self.now = self.now.max(stored.occurred_at);
            self.since_sweep += 1;
            match projector::fold(row, hash.as_ref(), &stored, event.as_ref(), item.sequence) {
                Err(row) => {
                    self.figures.skipped += 1;
                    refused.push(item.line);
                    if let Some(hash) = hash {
                        self.held.insert(key, Held { row, hash, at });
                    }
                }
                Ok((row, changes)) => {
                    let hash = std::mem::take(&mut stored.hash);
                    self.held.insert(key, Held { row, hash, at: stored.occurred_at });
                    for (key, measure, amount) in changes {
                        let index = Measure::ALL.iter().position(|m| *m == measure).expect("known measure");
                        self.ledger.entry(key).or_insert([0; Measure::ALL.len()])[index] += amount;
                    }
                }
            }
            spent.push((stored, event));
        }
        tokio::task::spawn_blocking(move || drop(spent));
        // The chunk's audit rows go to the history as they are, unless the
        // fold refused one (rare): then the rest are copied around it.
        if refused.is_empty() {
            self.to_history.send(bytes).await.map_err(|_| anyhow::anyhow!("the history writer stopped"))?;
        } else {
            let mut start = 0;
            for line in refused {
                self.events.bytes.extend_from_slice(&bytes[start..line.start]);
                start = line.end;
            }
            self.events.bytes.extend_from_slice(&bytes[start..]);
        }
        self.figures.most_in_memory = self.figures.most_in_memory.max(self.held.len());
        if self.events.bytes.len() >= self.options.segment_bytes {
            self.flush_history().await?;
        }
        if self.ledger.len() >= self.options.ledger_rows {
            self.flush_ledger().await?;
        }
        if self.since_sweep >= self.options.sweep_every {
            self.since_sweep = 0;
            self.let_idle_go().await?;
        }
        Ok(())
    }

    async fn side(&self, command: Side) -> anyhow::Result<()> {
        self.to_side.send(command).await.map_err(|_| anyhow::anyhow!("the side writer stopped"))
    }

    async fn flush_history(&mut self) -> anyhow::Result<()> {
        let segment = std::mem::take(&mut self.events.bytes);
        self.events.clear();
        self.to_history.send(segment).await.map_err(|_| anyhow::anyhow!("the history writer stopped"))
    }

    async fn flush_ledger(&mut self) -> anyhow::Result<()> {
        let mut rows = Rows::default();
        for (key, counts) in self.ledger.drain() {
            copy::ledger(&mut rows, &key, &counts);
        }
        self.side(Side::Ledger(rows.bytes)).await
    }

    /// Write out and let go the cases quiet for `idle`.
    async fn let_idle_go(&mut self) -> anyhow::Result<()> {
        let cutoff = self.now - self.options.idle;
        let mut rows = Rows::default();
        let idle = self.held.extract_if(|_, held| held.row.is_some() && held.at <= cutoff);
        for (key, held) in idle {
            case_table::copy_row(&mut rows, held.row.as_ref().expect("only held rows"));
            self.let_go.insert(key);
        }
        self.figures.let_go += rows.count as u64;
        self.figures.cases += rows.count as u64;
        self.side(Side::Cases(rows.bytes)).await
    }

    /// Fold what comes until the sender is done, then write out everything
    /// still held.
    async fn run(mut self, mut chunks: mpsc::Receiver<DecodedChunk>) -> anyhow::Result<Figures> {
        while let Some(chunk) = chunks.recv().await {
            self.chunk(chunk).await?;
        }
        self.finish().await?;
        Ok(self.figures)
    }

    /// Write out everything still held.
    async fn finish(&mut self) -> anyhow::Result<()> {
        self.flush_history().await?;
        self.flush_ledger().await?;
        let mut rows = Rows::default();
        for held in self.held.values() {
            if let Some(row) = &held.row {
                case_table::copy_row(&mut rows, row);
                if rows.bytes.len() >= self.options.segment_bytes {
                    self.figures.cases += rows.count as u64;
                    self.side(Side::Cases(std::mem::take(&mut rows).bytes)).await?;
                }
            }
        }
        self.figures.cases += rows.count as u64;
        self.side(Side::Cases(rows.bytes)).await
    }
}

/// Read the stream up to `last`, fold it and load the rows.
async fn load(
    pool: &PgPool,
    log: &EventLog,
    last: u64,
    options: &Options,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let (to_history, history_segments) = mpsc::channel(4);
    let (to_side, side_commands) = mpsc::channel(16);
    let history = tokio::spawn(events_writer(bulk_connection(pool).await?, history_segments));
    let side = tokio::spawn(side_writer(bulk_connection(pool).await?, side_commands));

    let chunks = read(log, last, options).await?;
    let folds = options.folds.max(1);
    let mut decoded = tokio_stream::wrappers::ReceiverStream::new(chunks)
        .map(|chunk| tokio::task::spawn_blocking(move || decode_chunk(chunk, folds)))
        .buffered(options.decoders.max(1));
    // The folds own the writers' senders: when they end, however they end,
    // the senders are dropped and the writers finish.
    let mut to_folds = Vec::new();
    let mut running = Vec::new();
    for _ in 0..folds {
        let (to_fold, chunks) = mpsc::channel(4);
        to_folds.push(to_fold);
        let fold = Fold {
            options: options.clone(),
            held: HashMap::default(),
            let_go: HashSet::default(),
            ledger: HashMap::default(),
            events: Rows::default(),
            now: Timestamp::UNIX_EPOCH,
            since_sweep: 0,
            figures: Figures::default(),
            to_history: to_history.clone(),
            to_side: to_side.clone(),
        };
        running.push(tokio::spawn(fold.run(chunks)));
    }
    drop((to_history, to_side));
    let mut progress = crate::metrics::RebuildProgress::new(last);
    let handed = async {
        let mut position = 0;
        while let Some(chunks) = decoded.next().await {
            let chunks = chunks.context("a decoder panicked")?;
            for (to_fold, chunk) in to_folds.iter().zip(chunks) {
                position = position.max(chunk.items.last().map_or(0, |item| item.sequence));
                if to_fold.send(chunk).await.is_err() {
                    // That fold failed: its error is reported below.
                    return Ok(());
                }
            }
            progress.at(position);
        }
        anyhow::ensure!(position == last, "the stream ended at sequence {position}, before {last}");
        Ok(())
    }
    .await;
    drop(to_folds);
    let mut folded = handed;
    for fold in running {
        match fold.await.context("a fold panicked").and_then(|result| result) {
            Ok(part) => figures.add(&part),
            Err(error) => folded = folded.and(Err(error)),
        }
    }
    // Every sender is gone now (dropped with the folds), so the writers finish.
    let written = async {
        history.await.context("the history writer panicked")??;
        side.await.context("the side writer panicked")?
    }
    .await;
    // A writer's own error says more than the folds' "the writer stopped".
    written.and(folded)
}

type Chunk = Vec<(u64, bytes::Bytes)>;

/// Read stream sequences `1..=last` in order, in chunks, with one ordered
/// consumer. Transient read errors are logged (the ordered consumer
/// recreates itself); if the stream ends early, so do the chunks (the fold
/// notices).
///
/// One consumer, not several over ranges of sequences: measured on the
/// city-year stream, two readers each starting an ordered consumer per range
/// of 50 000 sequences cost nats-server 3.6 times the CPU of one reader (and
/// consumer creations timed out), and the rebuild took 726 s instead of 524.
async fn read(log: &EventLog, last: u64, options: &Options) -> anyhow::Result<mpsc::Receiver<Chunk>> {
    let chunk_size = options.chunk.max(1);
    let (to_decoders, chunks) = mpsc::channel::<Chunk>(options.decoders.max(1) * 2);
    let mut records =
        log.read(CaseSubject::all_filter(), ReadFrom::Sequence(1)).await.context("reading the case stream")?;
    tokio::spawn(async move {
        let mut chunk = Vec::with_capacity(chunk_size);
        while let Some(record) = records.next().await {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    warn!(%error, "reading the case stream failed; the rebuild reads on");
                    continue;
                }
            };
            if record.sequence > last {
                break;
            }
            let done = record.sequence == last;
            chunk.push((record.sequence, record.payload));
            if done || chunk.len() >= chunk_size {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size));
                if to_decoders.send(full).await.is_err() || done {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            to_decoders.send(chunk).await.ok();
        }
    });
    Ok(chunks)
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
