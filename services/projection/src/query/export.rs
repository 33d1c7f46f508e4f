//! Exports: CSV chunks as rows arrive, or an XLSX workbook written in
//! constant memory on a blocking thread and then streamed from disk.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use gridcase_grpc::{Violations, status};
use gridcase_proto::query::v1 as api;
use tonic::Status;

pub(super) type ExportStream = Pin<Box<dyn Stream<Item = Result<api::ExportChunk, Status>> + Send>>;

/// Buffer CSV rows and hand them out in chunks of about 64 KiB.
pub(super) fn csv_chunks<S>(header: Vec<String>, rows: S) -> ExportStream
where
    S: Stream<Item = Result<Vec<String>, Status>> + Send + 'static,
{
    const CHUNK: usize = 64 * 1024;
    let stream = async_stream_chunks(header, rows, CHUNK);
    Box::pin(stream)
}

pub(super) fn async_stream_chunks<S>(
    header: Vec<String>,
    rows: S,
    chunk: usize,
) -> impl Stream<Item = Result<api::ExportChunk, Status>> + Send
where
    S: Stream<Item = Result<Vec<String>, Status>> + Send + 'static,
{
    let mut buffer = Vec::with_capacity(chunk + 1024);
    append_record(&mut buffer, &header);
    futures::stream::unfold((Box::pin(rows), buffer, false), move |(mut rows, mut buffer, done)| async move {
        if done {
            return None;
        }
        loop {
            match rows.next().await {
                Some(Ok(record)) => {
                    append_record(&mut buffer, &record);
                    if buffer.len() >= chunk {
                        let data = std::mem::take(&mut buffer);
                        return Some((Ok(api::ExportChunk { data, ..Default::default() }), (rows, buffer, false)));
                    }
                }
                Some(Err(status)) => return Some((Err(status), (rows, buffer, true))),
                None => {
                    let data = std::mem::take(&mut buffer);
                    return Some((Ok(api::ExportChunk { data, ..Default::default() }), (rows, buffer, true)));
                }
            }
        }
    })
}

/// One CSV record (quoted as needed by the csv crate) appended to `buffer`.
pub(super) fn append_record(buffer: &mut Vec<u8>, record: &[String]) {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer.write_record(record).expect("writing to memory");
    buffer.extend(writer.into_inner().expect("flushing to memory"));
}

pub(super) fn f64_text(value: f64) -> String {
    format!("{value:.4}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Csv,
    Xlsx,
}

pub(super) fn export_format(format: i32) -> Result<Format, Status> {
    match api::ExportFormat::try_from(format) {
        Ok(api::ExportFormat::Csv) => Ok(Format::Csv),
        Ok(api::ExportFormat::Xlsx) => Ok(Format::Xlsx),
        _ => {
            let mut v = Violations::new();
            v.add("format", "UNSUPPORTED", "must be EXPORT_FORMAT_CSV or EXPORT_FORMAT_XLSX");
            Err(v.into_status())
        }
    }
}

/// Export rows in the asked format: CSV chunks as rows arrive, or an XLSX
/// workbook written in constant memory (rows spill to a temporary file) and
/// then streamed from disk. Either way memory stays bounded.
pub(super) fn export<S>(format: Format, header: Vec<String>, numeric: Vec<bool>, rows: S) -> ExportStream
where
    S: Stream<Item = Result<Vec<String>, Status>> + Send + 'static,
{
    match format {
        Format::Csv => csv_chunks(header, rows),
        Format::Xlsx => xlsx_chunks(header, numeric, rows),
    }
}

pub(super) fn xlsx_chunks<S>(header: Vec<String>, numeric: Vec<bool>, rows: S) -> ExportStream
where
    S: Stream<Item = Result<Vec<String>, Status>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<api::ExportChunk, Status>>(4);
    tokio::spawn(async move {
        // Rows cross to the blocking writer over a tokio channel: the async
        // side awaits room, the writer thread blocks on its own receiving end,
        // and no runtime thread ever blocks.
        let (row_tx, mut row_rx) = tokio::sync::mpsc::channel::<Vec<String>>(256);
        let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<tempfile::NamedTempFile> {
            let mut workbook = rust_xlsxwriter::Workbook::new();
            let sheet = workbook.add_worksheet_with_constant_memory()?;
            for (column, name) in header.iter().enumerate() {
                sheet.write_string(0, column as u16, name)?;
            }
            let mut line = 0u32;
            while let Some(row) = row_rx.blocking_recv() {
                line += 1;
                for (column, value) in row.iter().enumerate() {
                    let number =
                        numeric.get(column).copied().unwrap_or(false).then(|| value.parse::<f64>().ok()).flatten();
                    match number {
                        Some(number) => sheet.write_number(line, column as u16, number)?,
                        None => sheet.write_string(line, column as u16, value)?,
                    };
                }
            }
            let file = tempfile::NamedTempFile::new()?;
            workbook.save(file.path())?;
            Ok(file)
        });
        let mut rows = Box::pin(rows);
        while let Some(row) = rows.next().await {
            match row {
                Ok(row) => {
                    if row_tx.send(row).await.is_err() {
                        break;
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        drop(row_tx);
        let file = match writer.await {
            Ok(Ok(file)) => file,
            Ok(Err(error)) => return drop(tx.send(Err(status::internal(&error))).await),
            Err(error) => return drop(tx.send(Err(status::internal(&error))).await),
        };
        let mut source = match tokio::fs::File::open(file.path()).await {
            Ok(source) => source,
            Err(error) => return drop(tx.send(Err(status::internal(&error))).await),
        };
        loop {
            let mut data = vec![0u8; 64 * 1024];
            match tokio::io::AsyncReadExt::read(&mut source, &mut data).await {
                Ok(0) => return,
                Ok(read) => {
                    data.truncate(read);
                    if tx.send(Ok(api::ExportChunk { data, ..Default::default() })).await.is_err() {
                        return;
                    }
                }
                Err(error) => return drop(tx.send(Err(status::internal(&error))).await),
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Progress of a long export, in the log every few seconds: rows written of
/// the total, the rate, and the time left at that rate.
pub(super) struct Progress {
    what: &'static str,
    total: u64,
    started: std::time::Instant,
    last_report: std::time::Instant,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    pub(super) fn new(what: &'static str, total: u64) -> Self {
        let now = std::time::Instant::now();
        Self { what, total, started: now, last_report: now }
    }

    /// One more row written (counted in `done`).
    pub(super) fn row(&mut self, done: &std::sync::atomic::AtomicU64) {
        let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        metrics::counter!(crate::metrics::EXPORT_ROWS, "export" => self.what).increment(1);
        if self.last_report.elapsed() >= Self::EVERY {
            self.last_report = std::time::Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64();
            let left = self.total.saturating_sub(done) as f64 / rate.max(f64::MIN_POSITIVE);
            tracing::info!(
                export = self.what,
                done,
                total = self.total,
                rows_per_second = rate.round(),
                seconds_left = left.round(),
                "export progress"
            );
        }
    }
}
