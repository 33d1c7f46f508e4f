//! A TCP gate between a client and a server: it forwards bytes both ways
//! until told to hold the server's replies (the client's requests still
//! reach the server and take effect) and then to cut every connection,
//! losing what was held. That is how a test loses an acknowledgement: the
//! write happened, its answer never arrived.
//!
//! It can also cut each connection once the client has sent a given number
//! of bytes through it (a weak mobile link), and counts what the client sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

pub struct Gate {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    holding: AtomicBool,
    released: Notify,
    connections: Mutex<Vec<JoinHandle<()>>>,
    /// Client bytes after which a connection is cut (0: never).
    cut_after: AtomicU64,
    /// Client bytes forwarded, over every connection.
    client_bytes: AtomicU64,
    /// Connections cut for their byte budget.
    budget_cuts: AtomicU64,
}

impl Gate {
    /// Listen on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the gate");
        let addr = listener.local_addr().expect("gate address");
        let shared = Arc::new(Shared {
            holding: AtomicBool::new(false),
            released: Notify::new(),
            connections: Mutex::new(Vec::new()),
            cut_after: AtomicU64::new(0),
            client_bytes: AtomicU64::new(0),
            budget_cuts: AtomicU64::new(0),
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else { continue };
                    let task = tokio::spawn(forward(client, server, shared.clone()));
                    shared.connections.lock().await.push(task);
                }
            }
        });
        Self { addr, shared, accept }
    }

    /// The gate's address as an HTTP URL (a gRPC endpoint).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, cut each connection once its client has sent `bytes`
    /// through it (the bytes up to the budget still reach the server).
    pub fn cut_every(&self, bytes: u64) {
        self.shared.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Bytes the clients sent through the gate, over every connection.
    pub fn client_bytes(&self) -> u64 {
        self.shared.client_bytes.load(Ordering::SeqCst)
    }

    /// Connections cut because their client reached the byte budget.
    pub fn budget_cuts(&self) -> u64 {
        self.shared.budget_cuts.load(Ordering::SeqCst)
    }

    /// The gate's address as a NATS URL.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// From now on the server's bytes are held back (the client hears nothing).
    pub fn hold_replies(&self) {
        self.shared.holding.store(true, Ordering::SeqCst);
    }

    /// Close every connection through the gate, dropping what it held; new
    /// connections pass freely.
    pub async fn cut(&self) {
        for task in self.shared.connections.lock().await.drain(..) {
            task.abort();
            let _ = task.await;
        }
        self.shared.holding.store(false, Ordering::SeqCst);
        self.shared.released.notify_waiters();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump_client(client_read, server_write, &shared) => {}
        () = pump(server_read, client_write, Some(&shared)) => {}
    }
}

/// Copy the client's bytes to the server, counting them, until either side
/// closes or the connection's budget is spent.
async fn pump_client(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: &Shared) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let budget = shared.cut_after.load(Ordering::SeqCst);
        let take = if budget == 0 { n } else { n.min(budget.saturating_sub(sent) as usize) };
        if take > 0 && to.write_all(&buffer[..take]).await.is_err() {
            return;
        }
        sent += take as u64;
        shared.client_bytes.fetch_add(take as u64, Ordering::SeqCst);
        if budget != 0 && sent >= budget {
            shared.budget_cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Copy bytes from `from` to `to` until either side closes; with a gate,
/// waiting while it holds.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, gate: Option<&Shared>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while let Some(shared) = gate.filter(|shared| shared.holding.load(Ordering::SeqCst)) {
            let released = shared.released.notified();
            if !shared.holding.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
