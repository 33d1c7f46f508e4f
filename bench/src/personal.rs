//! `gridcase-bench personal-data`: what sealing residents' contact details
//! costs. In one run, on one intake: filings without contact details beside
//! filings with them (each of those makes, wraps and stores a data key and
//! seals the details), GetCase of either kind (the second opens the details
//! with the case's key), the raw key store (key-value puts and gets, the
//! baseline of what sealing adds), and the erasure of the sealed cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use gridcase_domain::CaseId;
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::intake::v1 as intake_api;
use gridcase_tests::fixtures::{filing, intake_client, worker};
use gridcase_tests::lifecycle::{centre, context};
use gridcase_tests::{NatsServer, TestIntake};

use crate::{Figures, nats_version, run_phase};

pub struct Options {
    pub cases: usize,
    pub concurrency: usize,
    pub erase: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let Options { cases, concurrency, erase } = options;
    anyhow::ensure!(erase <= cases, "--erase {erase} is more than the {cases} cases filed with contact details");
    let nats = NatsServer::start();
    println!("nats-server {} (file storage, sync_interval: always)", nats_version());
    println!("{cases} filings of each kind, concurrency {concurrency}; {erase} erasures\n");
    // The first intake exports its metrics: where a filing's time goes.
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut config = TestIntake::config(&nats.url());
    config.no_metrics = false;
    config.metrics_addr = metrics_addr;
    let intake = TestIntake::spawn_with(config, Arc::new(gridcase_process::SystemTimeSource)).await;
    // A second intake that stores each new key alone (--key-batch-max 1):
    // what the keys' group commit gains, in the same run.
    let mut alone_config = TestIntake::config(&nats.url());
    alone_config.keys.key_batch_max = 1;
    let alone = TestIntake::spawn_with(alone_config, Arc::new(gridcase_process::SystemTimeSource)).await;
    let alone_client = intake_client(alone.endpoint()).await;
    let client = intake_client(intake.endpoint()).await;
    let cases_client = CaseServiceClient::connect(intake.endpoint()).await?;
    let filer = Arc::new(worker().bearer());
    let reader = Arc::new(centre().bearer());

    let file_on = |client: intake_api::intake_service_client::IntakeServiceClient<tonic::transport::Channel>,
                   contact: bool,
                   ids: Arc<std::sync::Mutex<Vec<CaseId>>>| {
        let filer = filer.clone();
        move |_| {
            let (mut client, filer, ids) = (client.clone(), filer.clone(), ids.clone());
            async move {
                let case_id = CaseId::new_v7();
                let mut message = filing(case_id);
                if contact {
                    message.resident_contact = Some(intake_api::ResidentContact {
                        name: "王秀英".into(),
                        phone: "13812345678".into(),
                        ..Default::default()
                    });
                }
                let mut request = tonic::Request::new(message);
                filer.attach(&mut request);
                let started = Instant::now();
                client.file_case(request).await.context("file case")?;
                let took = started.elapsed();
                ids.lock().unwrap().push(case_id);
                Ok::<Duration, anyhow::Error>(took)
            }
        }
    };
    let file = |contact: bool, ids: Arc<std::sync::Mutex<Vec<CaseId>>>| file_on(client.clone(), contact, ids);
    let (plain_ids, sealed_ids) = (Arc::default(), Arc::default());
    run_phase("warm-up", 1000.min(cases), concurrency, file(false, Arc::default())).await?;
    run_phase("warm-up", 1000.min(cases), concurrency, file(true, Arc::default())).await?;
    let before_plain = Means::scrape(metrics_addr).await?;
    let plain =
        run_phase("FileCase, no contact details", cases, concurrency, file(false, Arc::clone(&plain_ids))).await?;
    let before_sealed = Means::scrape(metrics_addr).await?;
    let sealed =
        run_phase("FileCase, contact details sealed", cases, concurrency, file(true, Arc::clone(&sealed_ids))).await?;
    let after_sealed = Means::scrape(metrics_addr).await?;
    run_phase("warm-up", 1000.min(cases), concurrency, file_on(alone_client.clone(), true, Arc::default())).await?;
    let before_alone = Means::scrape(metrics_addr).await?;
    let sealed_alone =
        run_phase("FileCase, sealed, keys one by one", cases, concurrency, file_on(alone_client, true, Arc::default()))
            .await?;
    let after_alone = Means::scrape(metrics_addr).await?;

    let get = |ids: Arc<std::sync::Mutex<Vec<CaseId>>>| {
        let (client, reader) = (cases_client.clone(), reader.clone());
        move |index: usize| {
            let (mut client, reader) = (client.clone(), reader.clone());
            let case_id = ids.lock().unwrap()[index];
            async move {
                let mut request = tonic::Request::new(cases_api::GetCaseRequest { case_id: case_id.to_string() });
                reader.attach(&mut request);
                let started = Instant::now();
                client.get_case(request).await.context("get case")?;
                Ok::<Duration, anyhow::Error>(started.elapsed())
            }
        }
    };
    let reads = 2000.min(cases);
    let get_plain = run_phase("GetCase, no contact details", reads, 1, get(plain_ids.clone())).await?;
    let get_sealed = run_phase("GetCase, contact details opened", reads, 1, get(sealed_ids.clone())).await?;

    // The raw key store: what a filing with contact details adds (a put
    // that must find the key absent, and a get).
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    let kv = log.context().get_key_value("gridcase-keys").await?;
    let value = Bytes::from(vec![b'x'; 130]);
    let raw_keys: Vec<String> = (0..cases).map(|_| CaseId::new_v7().to_string()).collect();
    let raw_put = run_phase("raw key-value create", cases, concurrency, |index| {
        let (kv, key, value) = (kv.clone(), raw_keys[index].clone(), value.clone());
        async move {
            let started = Instant::now();
            kv.update(key, value, 0).await.context("put")?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;
    // The key store's own path for new keys (made, wrapped, group-committed).
    let store = gridcase_eventlog::KeyStore::open(
        log.context(),
        "gridcase-keys",
        1,
        Some(gridcase_tests::identity::master_keys()),
    )
    .await?;
    let batched_put = run_phase("key store, new keys (batched)", cases, concurrency, |_| {
        let store = store.clone();
        async move {
            let started = Instant::now();
            store.key_for_new_case(&CaseId::new_v7()).await.context("new key")?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;
    let raw_get = run_phase("raw key-value get", reads, 1, |index| {
        let (kv, key) = (kv.clone(), raw_keys[index].clone());
        async move {
            let started = Instant::now();
            kv.entry(key).await.context("get")?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;

    // The raw parts of an erasure in the key store: the key message's
    // secure erase (the server overwrites it in its block), then a marker;
    // and, to show what the overwrite costs, a delete that does not erase.
    let stream = log.context().get_stream("KV_gridcase-keys").await?;
    let third = erase / 3;
    let revisions: Vec<u64> = {
        let mut revisions = Vec::with_capacity(erase);
        for key in &raw_keys[..erase] {
            revisions.push(kv.entry(key.clone()).await?.context("a key")?.revision);
        }
        revisions
    };
    let raw_erase = run_phase("raw secure erase (key message)", third, concurrency, |index| {
        let (stream, revision) = (stream.clone(), revisions[index]);
        async move {
            let started = Instant::now();
            stream.delete_message(revision).await.context("secure erase")?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;
    let js = log.context().clone();
    let raw_delete = run_phase("raw delete without erase", third, concurrency, |index| {
        let (js, revision) = (js.clone(), revisions[third + index]);
        async move {
            let started = Instant::now();
            let payload = serde_json::json!({ "seq": revision, "no_erase": true });
            let _: serde_json::Value =
                js.request("STREAM.MSG.DELETE.KV_gridcase-keys".to_owned(), &payload).await.context("delete")?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;
    // The erasure's marker: a delete (the bucket allows no purge, which is a roll-up).
    let raw_marker = run_phase("raw delete marker", third, concurrency, |index| {
        let (kv, key) = (kv.clone(), raw_keys[2 * third + index].clone());
        async move {
            let started = Instant::now();
            kv.delete(key).await.context("delete marker")?;
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    })
    .await?;

    let erase_one = {
        let ids = sealed_ids.clone();
        let (client, reader) = (cases_client.clone(), reader.clone());
        move |index: usize| {
            let (mut client, reader) = (client.clone(), reader.clone());
            let case_id = ids.lock().unwrap()[index];
            async move {
                let message = cases_api::EraseResidentDataRequest {
                    context: context(case_id),
                    reason: "居民申请删除".into(),
                };
                let mut request = tonic::Request::new(message);
                reader.attach(&mut request);
                let started = Instant::now();
                client.erase_resident_data(request).await.context("erase")?;
                Ok::<Duration, anyhow::Error>(started.elapsed())
            }
        }
    };
    let erased = run_phase("EraseResidentData", erase, concurrency, erase_one).await?;

    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "phase", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    for figures in [
        &plain,
        &sealed,
        &sealed_alone,
        &raw_put,
        &batched_put,
        &get_plain,
        &get_sealed,
        &raw_get,
        &erased,
        &raw_erase,
        &raw_delete,
        &raw_marker,
    ] {
        figures.print();
    }
    println!(
        "\nsealed filings: {:.1}% of the plain rate ({:.1}% with each key stored alone); GetCase p50 {:+.2} ms \
         with the details opened; {erase} erasures in {:.1} s",
        100.0 * sealed.rate() / plain.rate(),
        100.0 * sealed_alone.rate() / plain.rate(),
        ms(&get_sealed) - ms(&get_plain),
        erased.elapsed.as_secs_f64(),
    );
    println!("\nwhere a filing's time goes (means, from intake's metrics; FileCase as the server measured it):");
    // (The second intake records into the same process-wide recorder.)
    let phases = [
        ("no contact details", &before_plain, &before_sealed),
        ("sealed", &before_sealed, &after_sealed),
        ("sealed, keys alone", &before_alone, &after_alone),
    ];
    for (label, from, to) in phases {
        let mean =
            |series: &[&str]| to.mean_since(from, series).map_or("-".to_owned(), |s| format!("{:.2} ms", s * 1e3));
        let count = |series: &str| to.count_since(from, series).unwrap_or(0.0);
        let (batched, alone) = (
            count("gridcase_key_create_duration_seconds{stored=\"batch\"}"),
            count("gridcase_key_create_duration_seconds{stored=\"alone\"}"),
        );
        println!(
            "  {label:<20} FileCase {}   key made and stored {} ({:.0}% in batches)   event appended {}",
            mean(&["gridcase_grpc_request_duration_seconds{method=\"/gridcase.intake.v1.IntakeService/FileCase\"}"]),
            mean(&[
                "gridcase_key_create_duration_seconds{stored=\"batch\"}",
                "gridcase_key_create_duration_seconds{stored=\"alone\"}"
            ]),
            if batched + alone > 0.0 { 100.0 * batched / (batched + alone) } else { 0.0 },
            mean(&["gridcase_append_duration_seconds{outcome=\"stored\"}"]),
        );
    }
    intake.stop().await?;
    alone.stop().await?;
    Ok(())
}

/// Histogram sums and counts of a metrics page, by `name{labels}`.
struct Means(std::collections::BTreeMap<String, f64>);

impl Means {
    async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        gridcase_tests::scrape_metrics(addr).await.map(Self).context("scraping intake's metrics")
    }

    /// The mean of histogram series (`name{labels}`, together) over what
    /// was recorded between `earlier` and this scrape.
    fn count_since(&self, earlier: &Self, series: &str) -> Option<f64> {
        let (name, labels) = series.split_once('{')?;
        let key = format!("{name}_count{{{}}}", labels.trim_end_matches('}'));
        Some(self.0.get(&key)? - earlier.0.get(&key).copied().unwrap_or(0.0))
    }

    fn mean_since(&self, earlier: &Self, series: &[&str]) -> Option<f64> {
        let (mut sum, mut count) = (0.0, 0.0);
        for series in series {
            let (name, labels) = series.split_once('{').map_or((*series, ""), |(n, l)| (n, l.trim_end_matches('}')));
            let key = |suffix: &str| match labels {
                "" => format!("{name}_{suffix}"),
                labels => format!("{name}_{suffix}{{{labels}}}"),
            };
            let delta = |suffix: &str| {
                let key = key(suffix);
                Some(self.0.get(&key)? - earlier.0.get(&key).copied().unwrap_or(0.0))
            };
            sum += delta("sum")?;
            count += delta("count")?;
        }
        (count > 0.0).then(|| sum / count)
    }
}

fn ms(figures: &Figures) -> f64 {
    figures.percentile(0.5).as_secs_f64() * 1e3
}
