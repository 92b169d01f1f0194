//! `crash`: the one-box mode under kill -9. `pearlsync serve` runs as a child process against
//! the in-process sandbox with its state (and its queue) in a redb file; signed orders arrive as
//! webhooks, and the child is killed with SIGKILL at random moments and started again. A sender
//! retries until it gets a 2xx, as the platforms do; an order acknowledged once is the child's
//! responsibility from then on. At the end the sandbox's own records say what happened:
//!
//! - `lost`: orders with no sales order once the queue is drained (or the drain timed out);
//! - `duplicates`: sales orders beyond one per order (by store-qualified `externalRef`);
//! - `kills`: SIGKILLs delivered; `parked`: jobs the child parked (with their codes).
//!
//! The target is 0 lost and 0 duplicates.

use crate::measure::{self, progress, round};
use pearlsync::failures;
use pearlsync::queue::ChannelKind;
use pearlsync::state::EmbeddedStore;
use pearlsync_cli::local;
use pearlsync_sandbox::channels::{Channel, DeliveryOptions, NewOrder, NewOrderLine};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A generous window: the child must not be throttled into looking like a crash victim.
const RATE: (u32, Duration) = (100_000, Duration::from_secs(60));
const PRODUCTS: u32 = 30;
/// Orders not written by then count as lost.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// A sender's pause between attempts while the child is down or answers 5xx.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, clap::Args)]
pub struct CrashArgs {
    #[arg(long, default_value_t = 100)]
    pub orders: u32,
    /// SIGKILLs delivered to `serve` over the run.
    #[arg(long, default_value_t = 5)]
    pub kills: u32,
    /// Webhook arrival rate.
    #[arg(long, default_value_t = 25.0)]
    pub orders_per_second: f64,
    /// Shortest and longest pause (ms) between a restart and the next kill.
    #[arg(long, default_value_t = 200)]
    pub min_uptime_ms: u64,
    #[arg(long, default_value_t = 1500)]
    pub max_uptime_ms: u64,
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
}

/// The `serve` child and how to start it again.
struct Server {
    binary: PathBuf,
    config: PathBuf,
    listen: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    async fn start(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("serve log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .args(["serve", "--listen", &self.listen.to_string()])
            .args([
                "--inventory-every-secs",
                "3600",
                "--reorder-every-secs",
                "3600",
                "--reconcile-every-secs",
                "3600",
            ])
            .env_remove("PEARLSYNC_CONFIG")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("serve exited at start ({status}); see {}", self.log.display()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("serve did not listen on {} within {START_TIMEOUT:?}", self.listen))
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: serve finishes its queued work and exits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn sandbox_channel(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

fn free_port() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

pub async fn run(args: &CrashArgs, out: &Path, print_json: bool) -> Result<(), String> {
    if args.min_uptime_ms > args.max_uptime_ms {
        return Err("--min-uptime-ms must not exceed --max-uptime-ms".into());
    }
    let started = Instant::now();
    let local = Arc::new(
        local::start(&local::LocalOptions {
            products: PRODUCTS,
            warehouses: 2,
            suppliers: 2,
            rate_limit: RATE,
        })
        .await
        .map_err(|e| format!("sandbox: {e}"))?,
    );
    let products: Vec<u64> = local.sandbox.brightpearl.with_state(|s| s.products.keys().copied().collect());
    for id in &products {
        local.sandbox.brightpearl.set_stock(*id, 1, 1_000_000);
    }
    let dir = std::env::temp_dir().join(format!("pearlsync-bench-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("work dir: {e}"))?;
    let state_path = dir.join("state.redb");
    let config_path = dir.join("pearlsync.toml");
    std::fs::write(&config_path, local::config_toml(&local.config, &state_path))
        .map_err(|e| e.to_string())?;
    let binary = local::pearlsync_binary().map_err(|e| format!("pearlsync binary: {e}"))?;
    let profile = if binary.components().any(|c| c.as_os_str() == "release") { "release" } else { "debug" };
    progress(&format!(
        "crash: {} orders, {} kills, serve = {} ({profile}), state in {}",
        args.orders,
        args.kills,
        binary.display(),
        state_path.display()
    ));
    let listen = free_port()?;
    let server = Arc::new(Mutex::new(Server {
        binary,
        config: config_path,
        listen,
        log: dir.join("serve.log"),
        child: None,
        starts: 0,
    }));
    server.lock().await.start().await?;

    let placed: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicU64::new(0));
    let bar = pearlsync_cli::progress::bar(u64::from(args.orders), "orders acknowledged");

    // The killer: random uptimes, SIGKILL, restart at once.
    let killer = {
        let server = Arc::clone(&server);
        let (kills, min, max, seed) = (args.kills, args.min_uptime_ms, args.max_uptime_ms, args.seed);
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut done = 0u32;
            while done < kills {
                tokio::time::sleep(Duration::from_millis(rng.u64(min..=max))).await;
                let mut server = server.lock().await;
                server.kill();
                done += 1;
                server.start().await?;
            }
            Ok::<u32, String>(done)
        })
    };

    // The senders: one task per order, arriving at the given rate, each retrying until a 2xx.
    let mut senders = Vec::new();
    let mut rng = fastrand::Rng::with_seed(args.seed.wrapping_add(1));
    let pause = Duration::from_secs_f64(1.0 / args.orders_per_second.max(0.1));
    for i in 0..args.orders as usize {
        let store = local.config.stores[i % local.config.stores.len()].clone();
        let channel = sandbox_channel(store.kind);
        let lines = (0..rng.usize(1..=2))
            .map(|_| {
                let n = rng.u32(1..=PRODUCTS);
                NewOrderLine {
                    sku: Some(format!("SKU-{n:05}")),
                    name: format!("Product {n}"),
                    quantity: 1,
                    price: 10.0,
                }
            })
            .collect();
        let customer = rng.u32(0..20);
        let (id, _) = local.sandbox.channels.create_order(
            channel,
            NewOrder {
                email: Some(format!("crash{customer}@example.test")),
                first_name: "Crash".into(),
                last_name: format!("Test {customer}"),
                currency: "GBP".into(),
                lines,
            },
        );
        placed.lock().await.push((store.name.clone(), id.clone()));
        let url = format!("http://{listen}/webhooks/{}/{}", store.kind, store.name);
        let secret = store.webhook_secret.expose().to_string();
        let (local, attempts, bar) = (Arc::clone(&local), Arc::clone(&attempts), bar.clone());
        senders.push(tokio::spawn(async move {
            loop {
                attempts.fetch_add(1, Ordering::Relaxed);
                let sent = local
                    .sandbox
                    .channels
                    .deliver_order_webhook(channel, &id, &url, &secret, &DeliveryOptions::default())
                    .await;
                if sent.iter().all(|s| (200..300).contains(&s.status)) && !sent.is_empty() {
                    bar.inc(1);
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }));
        tokio::time::sleep(pause).await;
    }
    for sender in senders {
        let _ = sender.await;
    }
    bar.finish_and_clear();
    let kills = killer.await.map_err(|e| e.to_string())??;
    progress(&format!("crash: every order acknowledged, {kills} kills done; waiting for the writes"));

    let placed = placed.lock().await.clone();
    let refs: Vec<String> =
        placed.iter().map(|(store, id)| pearlsync::orders::external_ref(store, id)).collect();
    let count_orders = |local: &local::LocalSandbox| -> BTreeMap<String, usize> {
        let state = local.sandbox.brightpearl.state();
        let mut counts: BTreeMap<String, usize> = refs.iter().map(|r| (r.clone(), 0)).collect();
        for order in state.orders.values().filter(|o| o.order_type == "SO") {
            if let Some(count) = order.external_ref.as_ref().and_then(|r| counts.get_mut(r)) {
                *count += 1;
            }
        }
        counts
    };
    let drain_started = Instant::now();
    let mut counts = count_orders(&local);
    while counts.values().any(|&c| c == 0) && drain_started.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        counts = count_orders(&local);
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let restarts = {
        let mut server = server.lock().await;
        server.stop();
        server.starts.saturating_sub(1)
    };
    // After serve has exited and finished its queue, the sandbox's final word.
    let counts = count_orders(&local);
    let lost: Vec<&String> = counts.iter().filter(|(_, c)| **c == 0).map(|(r, _)| r).collect();
    let duplicates: usize = counts.values().map(|c| c.saturating_sub(1)).sum();
    let parked = match EmbeddedStore::open(&state_path) {
        Ok(state) => failures::list(&state).await.map_err(|e| e.to_string())?,
        Err(e) => return Err(format!("reading the state after the run: {e}")),
    };
    let mut parked_codes: BTreeMap<String, usize> = BTreeMap::new();
    for p in &parked {
        *parked_codes.entry(p.code.as_str().to_string()).or_default() += 1;
    }
    let attempts = attempts.load(Ordering::Relaxed);
    let report = json!({
        "orders": args.orders,
        "lost": lost.len(),
        "duplicates": duplicates,
        "kills": kills,
        "restarts": restarts,
        "parked": parked.len(),
        "parked_codes": parked_codes,
        "delivery_attempts": attempts,
        "delivery_retries": attempts.saturating_sub(u64::from(args.orders)),
        "drain_seconds": round(drain_seconds, 2),
        "seconds": round(started.elapsed().as_secs_f64(), 2),
        "serve_build": profile,
        "lost_examples": lost.iter().take(5).collect::<Vec<_>>(),
        "parked_examples": parked.iter().take(5).map(|p| format!("{}: {}", p.code, p.text)).collect::<Vec<_>>(),
        "params": {"orders_per_second": args.orders_per_second, "min_uptime_ms": args.min_uptime_ms,
                   "max_uptime_ms": args.max_uptime_ms, "seed": args.seed},
        "machine": measure::machine(),
    });
    if std::env::var_os("PEARLSYNC_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let name = format!("crash-{}-k{}", args.orders, args.kills);
    let value: Value = report;
    measure::write_report(
        out,
        &name,
        &format!("crash: {} orders, {} SIGKILLs", args.orders, args.kills),
        &value,
        print_json,
    )
    .map_err(|e| e.to_string())
}
