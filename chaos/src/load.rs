//! The load: grid workers filing cases and adding notes to the cases they
//! filed, against either intake (a failed call is sent again, unchanged, to
//! the other one, as a mobile client with an address list would), each
//! operation identified by the client (case id, command id) so a retry can
//! never make a second one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gridcase_proto::cases::v1 as cases;
use gridcase_proto::cases::v1::case_service_client::CaseServiceClient;
use gridcase_proto::intake::v1 as intake;
use gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient;
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::Channel;

/// Grids of the demo reference data the workers walk (one worker per grid slot).
pub const GRIDS: [&str; 4] = ["990101001001001", "990101001002001", "990101101001001", "990101201001002"];
/// Categories the demo policy routes to a unit at once (registered and
/// dispatched by the dispatcher, no manual registration).
pub const CATEGORIES: [&str; 5] = ["0101", "0201", "0203", "0301", "0501"];

/// One operation the load asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    File { case_id: String },
    Note { case_id: String, command_id: String },
}

/// What an acknowledgement named: where the event is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub stream_sequence: u64,
    /// The case version of the event (1 for a filing).
    pub version: u64,
    pub event_hash: String,
    /// The answer was to a retry of something already stored.
    pub replayed: bool,
}

/// What became of an operation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub operation: Operation,
    /// The worker that ran it (each runs one operation at a time).
    pub worker: usize,
    /// When its first attempt began, since the load began.
    pub started_at: Duration,
    /// What the acknowledgement named.
    pub receipt: Option<Receipt>,
    /// Acknowledged (the service said it is stored) after this long,
    /// counting every retry; `None`: never acknowledged (gave up or refused).
    pub acknowledged_after: Option<Duration>,
    /// When it was acknowledged, since the load began.
    pub acknowledged_at: Option<Duration>,
    /// Refused for good (not a fault: e.g. the case is in a state that takes no note).
    pub refused: Option<String>,
}

/// Every call attempt's time and whether it succeeded (for the longest
/// window in which filings failed).
#[derive(Debug, Default)]
pub struct Attempts {
    pub filings: Vec<(Duration, bool)>,
}

pub struct Load {
    /// Operations to run at least (more while `faults_pending` says so).
    pub operations: usize,
    pub concurrency: usize,
    /// Operations started per second across all workers (`None`: as fast as they go).
    pub rate: Option<f64>,
    pub seed: u64,
    /// How long one operation is retried before the client gives up on it.
    pub give_up_after: Duration,
    /// The highest stream sequence acknowledged so far (kept up to date by the load).
    pub acknowledged_up_to: Arc<std::sync::atomic::AtomicU64>,
}

pub struct LoadResult {
    /// When the load began, by the wall clock (the services' clock).
    pub began: std::time::SystemTime,
    pub outcomes: Vec<Outcome>,
    pub attempts: Attempts,
    pub elapsed: Duration,
}

struct Shared {
    started: Instant,
    next: AtomicUsize,
    done: Arc<AtomicUsize>,
    outcomes: Mutex<Vec<Outcome>>,
    attempts: Mutex<Attempts>,
}

/// The intake endpoints, one channel each (reconnecting by itself).
pub fn channels(intake: &[String]) -> anyhow::Result<Vec<Channel>> {
    intake
        .iter()
        .map(|addr| {
            Ok(tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30))
                .connect_lazy())
        })
        .collect()
}

/// A development token for `worker`'s grid, from whichever intake answers.
pub async fn token(channels: &[Channel], worker: usize) -> anyhow::Result<String> {
    let grid = GRIDS[worker % GRIDS.len()];
    dev_token(channels, &format!("chaos-gw-{worker}"), "grid_worker", &format!("cc-{}", &grid[..9]), grid).await
}

/// A development token for anyone, from whichever intake answers.
pub async fn dev_token(
    channels: &[Channel],
    subject: &str,
    role: &str,
    organisation: &str,
    territory: &str,
) -> anyhow::Result<String> {
    use gridcase_proto::auth::v1 as auth;
    let request = auth::IssueDevTokenRequest {
        subject: subject.into(),
        role: role.into(),
        organisation: organisation.into(),
        territory: territory.into(),
        lifetime_seconds: 8 * 3600,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for channel in channels {
            let mut client = auth::auth_service_client::AuthServiceClient::new(channel.clone());
            match client.issue_dev_token(request.clone()).await {
                Ok(response) => return Ok(response.into_inner().token),
                Err(status) if Instant::now() > deadline => anyhow::bail!("no token for {subject}: {status}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Load {
    /// Run the load; `done` counts finished operations as they finish (the
    /// fault injector paces itself by it).
    /// The load goes on past `operations` while `faults_pending` is true, so
    /// that every fault happens under load.
    pub async fn run(
        &self,
        channels: Vec<Channel>,
        done: Arc<AtomicUsize>,
        faults_pending: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<LoadResult> {
        let mut tokens = Vec::with_capacity(self.concurrency);
        for worker in 0..self.concurrency {
            tokens.push(token(&channels, worker).await?);
        }
        let began = std::time::SystemTime::now();
        let shared = Arc::new(Shared {
            started: Instant::now(),
            next: AtomicUsize::new(0),
            done,
            outcomes: Mutex::new(Vec::with_capacity(self.operations)),
            attempts: Mutex::new(Attempts::default()),
        });
        let workers = tokens.into_iter().enumerate().map(|(worker, token)| {
            let (shared, channels, faults_pending) = (shared.clone(), channels.clone(), faults_pending.clone());
            let acknowledged_up_to = self.acknowledged_up_to.clone();
            let (operations, seed, give_up_after, rate) = (self.operations, self.seed, self.give_up_after, self.rate);
            tokio::spawn(async move {
                let mut mine: Vec<String> = Vec::new();
                loop {
                    let index = shared.next.fetch_add(1, Ordering::Relaxed);
                    if index >= operations && !*faults_pending.borrow() {
                        return;
                    }
                    if let Some(rate) = rate {
                        let start = shared.started + Duration::from_secs_f64(index as f64 / rate);
                        tokio::time::sleep_until(start.into()).await;
                    }
                    // Each operation's choices follow from the seed and its index.
                    let mut rng = fastrand::Rng::with_seed(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let outcome = if mine.is_empty() || rng.u8(..100) < 60 {
                        let case_id = gridcase_domain::CaseId::new_v7().to_string();
                        let grid = GRIDS[worker % GRIDS.len()];
                        let category = CATEGORIES[rng.usize(..CATEGORIES.len())];
                        let outcome = file(
                            &shared,
                            &channels,
                            &token,
                            Filed { worker, case_id: &case_id, grid, category },
                            give_up_after,
                        )
                        .await;
                        if outcome.acknowledged_after.is_some() {
                            mine.push(case_id);
                        }
                        outcome
                    } else {
                        let case_id = mine[rng.usize(..mine.len())].clone();
                        let command_id = uuid::Uuid::new_v4().to_string();
                        note(&shared, &channels, &token, worker, &case_id, &command_id, give_up_after).await
                    };
                    if let Some(receipt) = &outcome.receipt {
                        acknowledged_up_to.fetch_max(receipt.stream_sequence, Ordering::Relaxed);
                    }
                    shared.outcomes.lock().await.push(outcome);
                    shared.done.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        for worker in futures::future::join_all(workers).await {
            worker?;
        }
        let elapsed = shared.started.elapsed();
        let shared = Arc::into_inner(shared).expect("the workers are done");
        Ok(LoadResult {
            began,
            outcomes: shared.outcomes.into_inner(),
            attempts: shared.attempts.into_inner(),
            elapsed,
        })
    }
}

/// Whether a failed call may be sent again (the same request): the service
/// was unreachable, unavailable, or did not answer in time.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled | Code::Aborted | Code::Internal
    )
}

fn authorised<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    request
}

/// What one filing files: which worker, under which id, where, what.
struct Filed<'a> {
    worker: usize,
    case_id: &'a str,
    grid: &'a str,
    category: &'a str,
}

async fn file(
    shared: &Shared,
    channels: &[Channel],
    token: &str,
    Filed { worker, case_id, grid, category }: Filed<'_>,
    give_up_after: Duration,
) -> Outcome {
    let reported = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    let request = intake::FileCaseRequest {
        case_id: case_id.to_owned(),
        grid_code: grid.to_owned(),
        category_code: category.to_owned(),
        description: "chaos: 巡查发现的问题".into(),
        location: Some(gridcase_proto::common::v1::Location {
            latitude: 30.27,
            longitude: 120.15,
            address: "东门路".into(),
        }),
        reported_at: Some(prost_timestamp(reported.as_secs() as i64 - 1)),
        severity_hint: None,
        resident_contact: None,
        attachments: vec![],
        ..Default::default()
    };
    let operation = Operation::File { case_id: case_id.to_owned() };
    until_acknowledged(shared, channels, worker, give_up_after, operation, |channel| {
        let request = authorised(token, request.clone());
        async move {
            let answer = IntakeServiceClient::new(channel).file_case(request).await?.into_inner();
            Ok(Receipt {
                stream_sequence: answer.stream_sequence,
                version: 1,
                event_hash: answer.event_hash,
                replayed: answer.replayed,
            })
        }
    })
    .await
}

async fn note(
    shared: &Shared,
    channels: &[Channel],
    token: &str,
    worker: usize,
    case_id: &str,
    command_id: &str,
    give_up_after: Duration,
) -> Outcome {
    let request = cases::AddProgressRequest {
        context: Some(cases::CommandContext {
            case_id: case_id.to_owned(),
            command_id: command_id.to_owned(),
            expected_version: None,
        }),
        note: "chaos: 复查情况".into(),
        attachments: vec![],
    };
    let operation = Operation::Note { case_id: case_id.to_owned(), command_id: command_id.to_owned() };
    until_acknowledged(shared, channels, worker, give_up_after, operation, |channel| {
        let request = authorised(token, request.clone());
        async move {
            let answer = CaseServiceClient::new(channel).add_progress(request).await?.into_inner();
            Ok(Receipt {
                stream_sequence: answer.stream_sequence,
                version: answer.version,
                event_hash: answer.event_hash,
                replayed: answer.replayed,
            })
        }
    })
    .await
}

/// Send a request (made by `call` for an intake's channel) until it is
/// acknowledged, refused for good, or `give_up_after` has passed; each
/// attempt goes to the next intake. Filing attempts are recorded.
async fn until_acknowledged<F, Fut>(
    shared: &Shared,
    channels: &[Channel],
    worker: usize,
    give_up_after: Duration,
    operation: Operation,
    call: F,
) -> Outcome
where
    F: Fn(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<Receipt, tonic::Status>>,
{
    let began = Instant::now();
    let started_at = shared.started.elapsed();
    let mut attempt = 0usize;
    loop {
        let answer = call(channels[(worker + attempt) % channels.len()].clone()).await;
        let at = shared.started.elapsed();
        if matches!(operation, Operation::File { .. }) {
            shared.attempts.lock().await.filings.push((at, answer.is_ok()));
        }
        let status = match answer {
            Ok(receipt) => {
                return Outcome {
                    operation,
                    worker,
                    started_at,
                    receipt: Some(receipt),
                    acknowledged_after: Some(began.elapsed()),
                    acknowledged_at: Some(at),
                    refused: None,
                };
            }
            Err(status) => status,
        };
        if !retryable(status.code()) || began.elapsed() >= give_up_after {
            return Outcome {
                operation,
                worker,
                started_at,
                receipt: None,
                acknowledged_after: None,
                acknowledged_at: None,
                refused: Some(format!("{:?}: {}", status.code(), status.message())),
            };
        }
        attempt += 1;
        backoff(attempt).await;
    }
}

async fn backoff(attempt: usize) {
    let millis = (50u64 << attempt.min(5)).min(1_000);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

fn prost_timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}
