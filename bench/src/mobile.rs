//! The grid worker's day on a weak connection, in one run on one
//! nats-server (fsync always):
//!
//! * `SyncCases` with a day's 200 items (40 filings, 160 notes) per call
//!   beside the same items sent one by one (`FileCase`, `AddProgress`;
//!   each case's items in order, cases side by side, group commit as
//!   deployed), phases alternated so drift hits both;
//! * the bytes on the wire of a 10 MB photo: the one-shot stream on an
//!   unbroken connection (the baseline), resumable parts on an unbroken
//!   connection, and resumable parts through a gate cutting every 1 MB.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use gridcase_domain::CaseId;
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::intake::v1 as intake;
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
use gridcase_tests::fixtures::{filing, jpeg, worker};
use gridcase_tests::gate::Gate;
use gridcase_tests::{NatsServer, TestIntake};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::{Figures, nats_version};

const CASES_PER_DAY: usize = 40;
const NOTES_PER_CASE: usize = 4;

/// One worker's day: each case's filing then its notes.
fn day() -> Vec<(CaseId, Vec<intake::SyncItem>)> {
    let seen = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(3);
    (0..CASES_PER_DAY)
        .map(|_| {
            let id = CaseId::new_v7();
            let mut items = vec![intake::SyncItem {
                item: Some(intake::sync_item::Item::File(intake::FileCaseRequest {
                    reported_at: Some(gridcase_proto::convert::timestamp_to_proto(seen)),
                    ..filing(id)
                })),
            }];
            items.extend((0..NOTES_PER_CASE).map(|n| intake::SyncItem {
                item: Some(intake::sync_item::Item::Note(cases::AddProgressRequest {
                    context: Some(cases::CommandContext {
                        case_id: id.to_string(),
                        command_id: format!("n{n}"),
                        expected_version: None,
                    }),
                    note: format!("第{n}次跟进"),
                    attachments: vec![],
                })),
            }));
            (id, items)
        })
        .collect()
}

fn request<T>(message: T) -> tonic::Request<T> {
    static TOKEN: std::sync::OnceLock<gridcase_tests::identity::Bearer> = std::sync::OnceLock::new();
    let mut request = tonic::Request::new(message);
    TOKEN.get_or_init(|| worker().bearer()).attach(&mut request);
    request
}

async fn sync_days(client: &IntakeServiceClient<Channel>, days: usize, workers: usize) -> anyhow::Result<Figures> {
    use futures::StreamExt as _;
    let plans: Vec<Vec<intake::SyncItem>> =
        (0..days).map(|_| day().into_iter().flat_map(|(_, items)| items).collect()).collect();
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<Duration>> = futures::stream::iter(plans)
        .map(|items| {
            let mut client = client.clone();
            async move {
                let started = Instant::now();
                let answer = client.sync_cases(request(intake::SyncCasesRequest { items })).await?.into_inner();
                let stored = answer.results.iter().filter(|r| r.outcome == intake::SyncOutcome::Stored as i32).count();
                anyhow::ensure!(stored == answer.results.len(), "{} of {} items stored", stored, answer.results.len());
                Ok(started.elapsed())
            }
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    let elapsed = started.elapsed();
    Ok(Figures {
        label: "SyncCases (200 items per call)",
        count: days * CASES_PER_DAY * (1 + NOTES_PER_CASE),
        elapsed,
        latencies: latencies.into_iter().collect::<anyhow::Result<_>>()?,
    })
}

async fn one_by_one(channel: Channel, days: usize, workers: usize) -> anyhow::Result<Figures> {
    use futures::StreamExt as _;
    let intake_client = IntakeServiceClient::new(channel.clone());
    let cases_client = CaseServiceClient::new(channel);
    // Every worker's cases side by side (as SyncCases runs them), each case's items in order.
    let chains: Vec<Vec<intake::SyncItem>> =
        (0..days).flat_map(|_| day().into_iter().map(|(_, items)| items)).collect();
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<Vec<Duration>>> = futures::stream::iter(chains)
        .map(|items| {
            let mut intake_client = intake_client.clone();
            let mut cases_client = cases_client.clone();
            async move {
                let mut latencies = Vec::new();
                for item in items {
                    let started = Instant::now();
                    match item.item.context("an item")? {
                        intake::sync_item::Item::File(file) => {
                            intake_client.file_case(request(file)).await?;
                        }
                        intake::sync_item::Item::Note(note) => {
                            cases_client.add_progress(request(note)).await?;
                        }
                    }
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            }
        })
        .buffer_unordered(workers * 64)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let latencies: Vec<Duration> = latencies.into_iter().collect::<anyhow::Result<Vec<_>>>()?.concat();
    Ok(Figures { label: "one by one (FileCase, AddProgress)", count: latencies.len(), elapsed, latencies })
}

/// The resumable client's loop, as gridctl's: on a break, connect again,
/// ask where the upload stands, go on.
async fn resumable(endpoint: &str, content: &[u8], part: usize) -> anyhow::Result<u32> {
    let start = intake::StartUploadRequest {
        content_type: "image/jpeg".into(),
        size: content.len() as u64,
        sha256: hex::encode(Sha256::digest(content)),
        file_name: "bench.jpg".into(),
    };
    let mut reconnects = 0;
    loop {
        let Ok(mut client) = IntakeServiceClient::connect(endpoint.to_owned()).await else {
            reconnects += 1;
            continue;
        };
        let Ok(status) = client.start_upload(request(start.clone())).await else {
            reconnects += 1;
            continue;
        };
        let mut status = status.into_inner();
        loop {
            if status.attachment.is_some() {
                return Ok(reconnects);
            }
            let offset = status.received as usize;
            let end = (offset + part).min(content.len());
            let put = intake::PutUploadPartRequest {
                upload_id: status.upload_id.clone(),
                offset: offset as u64,
                content: content[offset..end].to_vec(),
            };
            match client.put_upload_part(request(put)).await {
                Ok(next) => status = next.into_inner(),
                Err(_) => {
                    reconnects += 1;
                    break;
                }
            }
        }
        anyhow::ensure!(reconnects < 1000, "the upload does not get through");
    }
}

async fn uploads(intake: &TestIntake) -> anyhow::Result<()> {
    let size = 10_000_000;
    println!("\nbytes on the wire for a {size}-byte photo (client to server, through a TCP gate):");
    println!("{:<52} {:>12} {:>8} {:>10} {:>10}", "upload", "bytes", "× file", "breaks", "seconds");
    let row = |label: &str, gate: &Gate, breaks: u64, elapsed: Duration| {
        let bytes = gate.client_bytes();
        println!(
            "{label:<52} {bytes:>12} {:>8.3} {breaks:>10} {:>10.2}",
            bytes as f64 / size as f64,
            elapsed.as_secs_f64()
        );
    };
    // Three different files: the store keeps content once, and a known one is complete at once.
    let photo = |seed: u8| {
        let mut bytes = jpeg(size);
        bytes[size - 1] = seed;
        bytes
    };

    let gate = Gate::start(intake.addr).await;
    let content = photo(1);
    let started = Instant::now();
    let mut client = IntakeServiceClient::connect(gate.http_url()).await?;
    let parts = gridcase_tests::fixtures::upload_parts("image/jpeg", &content, 64 * 1024);
    client.upload_attachment(request(tokio_stream::iter(parts))).await.context("one-shot upload")?;
    row("one-shot UploadAttachment, unbroken (baseline)", &gate, 0, started.elapsed());

    let gate = Gate::start(intake.addr).await;
    let started = Instant::now();
    resumable(&gate.http_url(), &photo(2), 128 * 1024).await?;
    row("resumable, 128 KiB parts, unbroken", &gate, gate.budget_cuts(), started.elapsed());

    let gate = Gate::start(intake.addr).await;
    gate.cut_every(1_000_000);
    let started = Instant::now();
    resumable(&gate.http_url(), &photo(3), 128 * 1024).await?;
    row("resumable, 128 KiB parts, cut every 1 MB", &gate, gate.budget_cuts(), started.elapsed());
    Ok(())
}

pub async fn run(days: usize, workers: usize, rounds: usize) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    println!(
        "nats-server {} (file storage, sync_interval: always), store {}",
        nats_version(),
        nats.store_dir().display()
    );
    let mut config = TestIntake::config(&nats.url());
    config.sync_max_items = 1000;
    config.common.publish_timeout = Duration::from_secs(30);
    let intake = TestIntake::spawn_with(config, std::sync::Arc::new(gridcase_process::SystemTimeSource)).await;
    println!(
        "{days} workers' days per phase ({CASES_PER_DAY} filings and {} notes each), {workers} workers at once, {rounds} rounds\n",
        CASES_PER_DAY * NOTES_PER_CASE
    );
    let channel = Channel::from_shared(intake.endpoint())?.connect().await?;
    let client = IntakeServiceClient::new(channel.clone());
    sync_days(&client, workers, workers).await?;
    one_by_one(channel.clone(), workers, workers).await?;
    let mut all = Vec::new();
    for _ in 0..rounds {
        all.push(sync_days(&client, days, workers).await?);
        all.push(one_by_one(channel.clone(), days, workers).await?);
    }
    println!(
        "{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "phase (items)", "count", "per sec", "p50 ms", "p99 ms", "max ms"
    );
    for row in &all {
        row.print();
    }
    let merged = |label: &'static str| {
        let rows: Vec<&Figures> = all.iter().filter(|f| f.label == label).collect();
        Figures {
            label,
            count: rows.iter().map(|f| f.count).sum(),
            elapsed: rows.iter().map(|f| f.elapsed).sum(),
            latencies: rows.iter().flat_map(|f| f.latencies.iter().copied()).collect(),
        }
    };
    let (sync, single) = (merged("SyncCases (200 items per call)"), merged("one by one (FileCase, AddProgress)"));
    println!("\nall rounds (latency: per call; a SyncCases call carries 200 items):");
    sync.print();
    single.print();
    println!("SyncCases / one by one throughput: {:.2} (goal >= 0.8)", sync.rate() / single.rate());
    uploads(&intake).await?;
    intake.stop().await?;
    Ok(())
}
