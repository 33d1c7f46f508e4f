//! `city-year rebuild`: the projection's rebuild on the city-year stream,
//! beside two raw baselines measured in the same run: reading the whole
//! stream with an ordered consumer (nothing decoded), and a raw COPY of the
//! very rows the rebuild produced into plain tables (no index, no fold).
//!
//! The queries (`city-year queries`) are measured on the rebuilt read
//! models in the same run. The raw COPY needs room for a second copy of the
//! rows, so the read models are dropped for it; `--no-baseline` keeps them
//! (database `gridcase_cityyear`, schema `read`) for `city-year queries`.

use std::io::{BufWriter, Read as _, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use gridcase_envelope::CaseSubject;
use gridcase_eventlog::{EventLog, ReadFrom, StreamSettings};
use gridcase_projection::{rebuild, store};
use gridcase_tests::NatsServer;
use sqlx::{Connection as _, PgConnection};

use crate::city_year::{self, DATABASE, Measure, database_url, peak_rss_mib};

pub async fn run(options: Measure, admin_url: &str, baseline: bool, raw_read: bool) -> anyhow::Result<()> {
    let data = city_year::load_manifest(&options.dir)?;
    let nats = NatsServer::start_with_store(&city_year::store(&options.dir));
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    println!("data set: {} cases, {} events of {}", data.cases, data.events, data.year);

    let cpu = |nats: &NatsServer| {
        (
            crate::cpu::process_seconds(std::process::id()),
            nats.pid().map_or(0.0, crate::cpu::process_seconds),
            crate::cpu::postgres_seconds(),
        )
    };
    let used = |before: (f64, f64, f64), after: (f64, f64, f64), seconds: f64| {
        format!(
            "CPU: benchmark process {:.0} s, nats-server {:.0} s, PostgreSQL {:.0} s ({:.2} of 2 cores busy)",
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2,
            (after.0 - before.0 + after.1 - before.1 + after.2 - before.2) / seconds
        )
    };

    // Baseline 1: the stream read as it is, nothing decoded.
    let mut raw_read_time = None;
    if raw_read {
        let before = cpu(&nats);
        let started = Instant::now();
        let mut records = log.read(CaseSubject::all_filter(), ReadFrom::Sequence(1)).await?;
        let (mut read, mut bytes) = (0u64, 0u64);
        while let Some(record) = records.next().await {
            let record = record?;
            read += 1;
            bytes += record.payload.len() as u64;
            if record.sequence >= data.events {
                break;
            }
        }
        drop(records);
        let raw_read = started.elapsed();
        println!(
            "raw read of the stream: {read} messages, {:.1} GiB of payload in {:.1} s ({:.0} messages/s)",
            bytes as f64 / (1u64 << 30) as f64,
            raw_read.as_secs_f64(),
            read as f64 / raw_read.as_secs_f64()
        );
        println!("  {}", used(before, cpu(&nats), raw_read.as_secs_f64()));
        raw_read_time = Some(raw_read);
    }

    // The rebuild, into a database of its own.
    let admin = store::connect(admin_url, "public", 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")))
        .execute(&admin)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}"))).execute(&admin).await?;
    admin.close().await;
    let url = database_url(admin_url)?;
    let rss_before = peak_rss_mib();
    let before = cpu(&nats);
    let started = Instant::now();
    let built = rebuild::build(&url, "read_rebuild", &log, &rebuild::Options::default()).await?;
    built.pool.close().await;
    rebuild::swap(&url, "read_rebuild", "read").await?;
    let rebuild_time = started.elapsed();
    let rss = peak_rss_mib();
    let rebuild_cpu = used(before, cpu(&nats), rebuild_time.as_secs_f64());
    let f = &built.figures;
    println!(
        "\nrebuild of {} events: {:.1} s ({:.0} events/s): read, fold and load {:.1} s, ledger {:.1} s, indexes and analyse {:.1} s",
        f.messages,
        rebuild_time.as_secs_f64(),
        f.messages as f64 / rebuild_time.as_secs_f64(),
        f.load.as_secs_f64(),
        f.ledger.as_secs_f64(),
        f.index.as_secs_f64()
    );
    println!(
        "  {} case rows, {} ledger rows, {} skipped; cases let go while idle {}, read back {}; at most {} cases in memory",
        f.cases, f.ledger_rows, f.skipped, f.let_go, f.read_back, f.most_in_memory
    );
    println!("  peak RSS of the benchmark process: {rss:.0} MiB (before the rebuild: {rss_before:.0} MiB)");
    println!("  {rebuild_cpu}");

    let mut connection = PgConnection::connect(&url).await?;
    let mut sizes = Vec::new();
    for table in ["case_events", "cases", "ledger_daily"] {
        let size: String = sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size($1::regclass))")
            .bind(format!("read.{table}"))
            .fetch_one(&mut connection)
            .await?;
        sizes.push(format!("{table} {size}"));
    }
    println!("  tables: {}", sizes.join(", "));

    println!();
    crate::city_queries::measure(&nats, &url, &data).await?;
    if !baseline {
        println!(
            "
(no raw COPY baseline: the read models stay in {DATABASE} for `city-year queries`)"
        );
        return Ok(());
    }

    // Baseline 2: a raw COPY of the same rows into plain tables (no index),
    // from files written beforehand (lz4-compressed), once the read models
    // are dropped: the disk holds the stream and one copy of the rows.
    let dir = options.dir.join("copy-baseline");
    std::fs::create_dir_all(&dir)?;
    let tables = ["case_events", "cases", "ledger_daily"];
    for table in tables {
        dump(&mut connection, table, &dir.join(format!("{table}.tsv.lz4"))).await?;
    }
    for table in tables {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE public.raw_{table} (LIKE read.{table})")))
            .execute(&mut connection)
            .await?;
    }
    sqlx::raw_sql("DROP SCHEMA read CASCADE").execute(&mut connection).await?;
    let mut copied = 0u64;
    let before = cpu(&nats);
    let started = Instant::now();
    for table in tables {
        copied += raw_copy(&mut connection, table, &dir.join(format!("{table}.tsv.lz4"))).await?;
    }
    let copy_time = started.elapsed();
    let copy_cpu = used(before, cpu(&nats), copy_time.as_secs_f64());
    for table in tables {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE public.raw_{table}"))).execute(&mut connection).await?;
        std::fs::remove_file(dir.join(format!("{table}.tsv.lz4")))?;
    }
    connection.close().await?;
    println!(
        "\nraw COPY of the same {copied} rows into tables without indexes: {:.1} s ({:.0} rows/s)",
        copy_time.as_secs_f64(),
        copied as f64 / copy_time.as_secs_f64()
    );
    println!("  {copy_cpu}");
    println!("\n{:<44} {:>10} {:>14}", "", "seconds", "vs rebuild");
    if let Some(raw_read) = raw_read_time {
        println!(
            "{:<44} {:>10.1} {:>14.2}",
            "raw read of the stream (ordered consumer)",
            raw_read.as_secs_f64(),
            raw_read.as_secs_f64() / rebuild_time.as_secs_f64()
        );
    }
    println!(
        "{:<44} {:>10.1} {:>14.2}",
        "raw COPY of the rebuilt rows",
        copy_time.as_secs_f64(),
        copy_time.as_secs_f64() / rebuild_time.as_secs_f64()
    );
    println!("{:<44} {:>10.1} {:>14.2}", "rebuild (read, fold, COPY, index, swap)", rebuild_time.as_secs_f64(), 1.0);
    println!(
        "\n'vs rebuild' is the baseline's time over the rebuild's: the rebuild runs at that fraction of the baseline's speed."
    );
    Ok(())
}

async fn dump(connection: &mut PgConnection, table: &str, file: &Path) -> anyhow::Result<()> {
    let out = std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut out = lz4_flex::frame::FrameEncoder::new(BufWriter::with_capacity(1 << 20, out));
    let mut stream = connection.copy_out_raw(&format!("COPY read.{table} TO STDOUT")).await?;
    while let Some(chunk) = stream.try_next().await? {
        out.write_all(&chunk)?;
    }
    out.finish()?.flush()?;
    Ok(())
}

/// COPY a file into the empty table `public.raw_<table>`, emptied in the
/// same transaction so that the rows are written frozen, as the rebuild
/// writes the history.
async fn raw_copy(connection: &mut PgConnection, table: &str, file: &Path) -> anyhow::Result<u64> {
    let mut input =
        lz4_flex::frame::FrameDecoder::new(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?));
    let mut tx = connection.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("TRUNCATE public.raw_{table}; SET LOCAL synchronous_commit = off")))
        .execute(&mut *tx)
        .await?;
    let mut copy = tx.copy_in_raw(&format!("COPY public.raw_{table} FROM STDIN WITH (FREEZE)")).await?;
    let mut buffer = vec![0u8; 4 << 20];
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        copy.send(&buffer[..n]).await?;
    }
    let rows = copy.finish().await?;
    tx.commit().await?;
    Ok(rows)
}
