//! `inventory`: the cost of one steady-state inventory run at a given catalogue size, either
//! the scheduled change-driven poll (`--mode poll`) or the full sweep, the hourly
//! reconciliation (`--mode sweep`).
//!
//! Three processes, so each number belongs to what it names:
//! - the sandbox runs in a child (`pearlsync-bench sandbox-child`) driven over stdin/stdout, so
//!   its catalogue does not count in the poll's memory;
//! - every poll runs in a fresh child (`pearlsync-bench poll-child`) over one embedded state
//!   file, like a Lambda invocation; it reports its CPU (getrusage around the poll) and its
//!   peak RSS (VmHWM, the whole process: runtime, clients, state store and the poll);
//! - this process orchestrates: cold sweep (builds mapping and state), for `sweep` one quiet
//!   change-driven poll (as deployed, polls keep the mapping fresh between sweeps), change P% of
//!   stock (each change a stock correction, so a goods movement, as in Brightpearl), the
//!   measured run, and reads the sandbox's request counters after each.
//!
//! Minimums: Brightpearl `ceil(N/200)` availability reads (its ID-set cap); per channel
//! `ceil(changed/batch)` writes, batch being the channel's largest inventory write (Shopify 250
//! quantities, BigCommerce 2000 adjustments, WooCommerce 100 products).

use crate::measure::{self, progress, round};
use pearlsync::app::App;
use pearlsync::backends::Backends;
use pearlsync::brightpearl::{AuthConfig, BrightpearlConfig};
use pearlsync::channels::{StoreConfig, bigcommerce, shopify, woocommerce};
use pearlsync::config::Config;
use pearlsync::inventory::PollTrigger;
use pearlsync::queue::{ChannelKind, InProcessQueue};
use pearlsync::secret::Secret;
use pearlsync::state::EmbeddedStore;
use pearlsync_sandbox::brightpearl::{BrightpearlSandboxConfig, SeedSpec};
use pearlsync_sandbox::channels::{Channel, ChannelSandboxConfig};
use pearlsync_sandbox::{Sandbox, SandboxConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Brightpearl's real limit: 200 requests per 60 s.
const REAL_REQUESTS_PER_SECOND: f64 = 200.0 / 60.0;
/// The sandbox's and the client's window during the run: fast, the run is not about the limit.
const FAST_RATE: (u32, Duration) = (100_000, Duration::from_secs(60));
/// Brightpearl's ID-set cap: products per availability read.
const AVAILABILITY_IDS_PER_READ: u64 = 200;
const CHANNELS: [ChannelKind; 3] = [ChannelKind::Shopify, ChannelKind::Bigcommerce, ChannelKind::Woocommerce];

#[derive(Debug, Clone, clap::Args)]
pub struct InventoryArgs {
    /// Products in Brightpearl, every one listed on each store.
    #[arg(long, default_value_t = 1_000)]
    pub skus: u32,
    #[arg(long, default_value_t = 2)]
    pub warehouses: u32,
    /// Stores, taken in the order Shopify, BigCommerce, WooCommerce (1..=3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub channels: u8,
    /// Percentage of products whose stock changes between the two runs.
    #[arg(long, default_value_t = 5.0)]
    pub change_rate: f64,
    /// The measured run: the change-driven `poll` or the full `sweep`.
    #[arg(long, value_enum, default_value_t = Mode::Sweep)]
    pub mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Poll,
    Sweep,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Poll => "poll",
            Mode::Sweep => "sweep",
        }
    }
}

/// The arguments of `poll-child`.
#[derive(Debug, Clone, clap::Args)]
pub struct PollChildArgs {
    #[arg(long)]
    pub base_url: String,
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long)]
    pub channels: u8,
    #[arg(long, value_enum)]
    pub mode: Mode,
}

/// The arguments of `sandbox-child`.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxChildArgs {
    #[arg(long)]
    pub skus: u32,
    #[arg(long)]
    pub warehouses: u32,
    #[arg(long)]
    pub channels: u8,
}

/// What a poll child prints (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct PollMeasurement {
    report: Value,
    cpu_ms: f64,
    wall_ms: f64,
    peak_rss_mb: f64,
}

/// The sandbox child's counters between two `reset`s.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counters {
    brightpearl: u64,
    availability: u64,
    brightpearl_by_endpoint: std::collections::BTreeMap<String, u64>,
    /// Requests per store, in `CHANNELS` order.
    channels: Vec<u64>,
}

fn sandbox_channel(kind: ChannelKind) -> Channel {
    match kind {
        ChannelKind::Shopify => Channel::Shopify,
        ChannelKind::Bigcommerce => Channel::Bigcommerce,
        ChannelKind::Woocommerce => Channel::Woocommerce,
    }
}

/// The largest inventory write each channel takes in one request.
fn write_batch(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Shopify => shopify::MAX_QUANTITIES_PER_CALL,
        ChannelKind::Bigcommerce => bigcommerce::MAX_ADJUSTMENTS_PER_CALL,
        ChannelKind::Woocommerce => woocommerce::MAX_BATCH_ITEMS,
    }
}

pub async fn run(args: &InventoryArgs, out: &Path, print_json: bool) -> Result<(), String> {
    let started = Instant::now();
    progress(&format!(
        "inventory {}: {} SKUs, {} warehouses, {} channels, {}% change; starting the sandbox child",
        args.mode.name(),
        args.skus,
        args.warehouses,
        args.channels,
        args.change_rate
    ));
    let mut sandbox = SandboxChild::spawn(args)?;
    progress(&format!("sandbox at {} ({:.1}s)", sandbox.base_url, started.elapsed().as_secs_f64()));
    let state_dir = std::env::temp_dir().join(format!("pearlsync-bench-inventory-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("state dir: {e}"))?;
    let state = state_dir.join("state.redb");

    progress("cold sweep (builds the mapping and the state)…");
    sandbox.command("reset")?;
    let cold = poll_child(&sandbox.base_url, &state, args.channels, Mode::Sweep)?;
    let cold_counters: Counters =
        serde_json::from_str(&sandbox.command("counters")?).map_err(|e| e.to_string())?;
    progress(&format!("cold poll done in {:.1}s", cold.wall_ms / 1000.0));

    if args.mode == Mode::Sweep {
        // Deployed, a change-driven poll runs every 5 minutes and keeps the mapping fresh, so
        // the hourly sweep reads availability only; one quiet poll stands for those here.
        poll_child(&sandbox.base_url, &state, args.channels, Mode::Poll)?;
    }
    let changed: u64 =
        sandbox.command(&format!("change {}", args.change_rate))?.trim().parse().map_err(|_| "bad answer")?;
    progress(&format!("changed stock of {changed} products; steady {} (measured)…", args.mode.name()));
    sandbox.command("reset")?;
    let steady = poll_child(&sandbox.base_url, &state, args.channels, args.mode)?;
    let steady_counters: Counters =
        serde_json::from_str(&sandbox.command("counters")?).map_err(|e| e.to_string())?;
    progress(&format!("steady poll done in {:.1}s", steady.wall_ms / 1000.0));
    drop(sandbox);
    let _ = std::fs::remove_dir_all(&state_dir);

    let catalogue_min = u64::from(args.skus).div_ceil(AVAILABILITY_IDS_PER_READ);
    let steady_min = match args.mode {
        Mode::Sweep => catalogue_min,
        Mode::Poll => changed.div_ceil(AVAILABILITY_IDS_PER_READ),
    };
    let mut report = figures(args, &steady, &steady_counters, steady_min);
    let cold_figures = figures(args, &cold, &cold_counters, catalogue_min);
    if let Some(map) = report.as_object_mut() {
        map.insert("mode".into(), json!(args.mode.name()));
        map.insert("changed_products".into(), json!(changed));
        map.insert(
            "cold_peak_rss_mb".into(),
            cold_figures.get("peak_rss_mb").cloned().unwrap_or(json!(null)),
        );
        // The poll's target: ceil(changed / 200) availability reads plus at most 4 searches.
        if args.mode == Mode::Poll {
            map.insert(
                "brightpearl_requests_target".into(),
                json!(changed.div_ceil(AVAILABILITY_IDS_PER_READ) + 4),
            );
        }
        map.insert("cold".into(), cold_figures);
        map.insert(
            "params".into(),
            json!({"skus": args.skus, "warehouses": args.warehouses, "channels": args.channels,
                   "change_rate_percent": args.change_rate, "mode": args.mode.name()}),
        );
        map.insert(
            "method".into(),
            json!(
                "sandbox in a child process; each poll in a fresh child process over one embedded \
                   state file; cpu_ms = getrusage(RUSAGE_SELF) around the poll; peak_rss_mb = the poll \
                   process's VmHWM"
            ),
        );
        map.insert("machine".into(), measure::machine());
    }
    let name = format!("inventory-{}-{}", args.mode.name(), args.skus);
    let title = format!("inventory {}, {} SKUs, {}% change", args.mode.name(), args.skus, args.change_rate);
    measure::write_report(out, &name, &title, &report, print_json)
        .map_err(|e| format!("writing the report: {e}"))?;
    // Every sweep size reported in `out` so far, in one chart.
    crate::chart::inventory_from_reports(out).map(|path| progress(&format!("wrote {}", path.display())))
}

/// The comparable figures of one poll, from its own report and the sandbox's counters.
/// `brightpearl_requests_min`: the availability reads the run cannot do without (the whole
/// catalogue for a sweep, the changed products for the poll), 200 products each.
fn figures(
    args: &InventoryArgs,
    poll: &PollMeasurement,
    counters: &Counters,
    brightpearl_requests_min: u64,
) -> Value {
    let report = &poll.report;
    let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
    let list_len = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    let channels: &[Value] = report.get("channels").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let mut channel_requests_min = 0u64;
    let mut per_channel = serde_json::Map::new();
    for (n, kind) in CHANNELS.iter().take(usize::from(args.channels)).enumerate() {
        let name = store_name(*kind);
        let channel = channels.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()));
        let changed = channel.map_or(0, |c| number(c, "changed"));
        let min = changed.div_ceil(write_batch(*kind) as u64);
        channel_requests_min += min;
        per_channel.insert(
            name,
            json!({
                "changed": changed,
                "pushed": channel.map_or(0, |c| number(c, "pushed")),
                "requests": counters.channels.get(n).copied().unwrap_or(0),
                "requests_min": min,
                "failures": channel.map_or(0, |c| list_len(c, "failures")),
                "conflicts": channel.map_or(0, |c| list_len(c, "conflicts")),
            }),
        );
    }
    let channel_requests: u64 = counters.channels.iter().sum();
    let ratio = |actual: u64, min: u64| {
        if min == 0 { json!(null) } else { json!(round(actual as f64 / min as f64, 3)) }
    };
    json!({
        "brightpearl_requests": counters.brightpearl,
        "brightpearl_requests_min": brightpearl_requests_min,
        "brightpearl_ratio": ratio(counters.brightpearl, brightpearl_requests_min),
        "availability_reads": counters.availability,
        "brightpearl_by_endpoint": counters.brightpearl_by_endpoint,
        "channel_requests": channel_requests,
        "channel_requests_min": channel_requests_min,
        "channel_ratio": ratio(channel_requests, channel_requests_min),
        "state_reads": number(report, "state_reads"),
        "state_writes": number(report, "state_writes"),
        "cpu_ms": round(poll.cpu_ms, 1),
        "peak_rss_mb": round(poll.peak_rss_mb, 1),
        "wall_s_at_real_limit": round(counters.brightpearl as f64 / REAL_REQUESTS_PER_SECOND, 1),
        "wall_ms_measured": round(poll.wall_ms, 0),
        "products_read": number(report, "products_read"),
        "chunks_changed": number(report, "chunks_changed"),
        "channels": per_channel,
    })
}

fn store_name(kind: ChannelKind) -> String {
    format!("bench-{kind}")
}

/// Runs one poll in a fresh `poll-child` and returns its measurement.
fn poll_child(base_url: &str, state: &Path, channels: u8, mode: Mode) -> Result<PollMeasurement, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .args(["poll-child", "--base-url", base_url, "--channels", &channels.to_string()])
        .args(["--mode", mode.name(), "--state"])
        .arg(state)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("poll child: {e}"))?;
    if !output.status.success() {
        return Err(format!("poll child failed: {}", output.status));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).map_err(|e| format!("poll child output: {e}: {line}"))
}

/// Stores pointing at the sandbox, all warehouses, no buffer: every stock change is a change
/// on every store.
fn config(base_url: &str, state: &Path, channels: u8) -> Config {
    let d = BrightpearlSandboxConfig::default();
    let c = ChannelSandboxConfig::default();
    let stores = CHANNELS
        .iter()
        .take(usize::from(channels))
        .map(|kind| StoreConfig {
            name: store_name(*kind),
            kind: *kind,
            base_url: base_url.to_string(),
            access_token: Secret::literal("bench-token"),
            store_hash: c.bigcommerce_store_hash.clone(),
            consumer_key: Secret::literal("ck_bench"),
            consumer_secret: Secret::literal("cs_bench"),
            location_id: Some(match kind {
                ChannelKind::Bigcommerce => c.bigcommerce_location_id.to_string(),
                _ => c.shopify_location_id.to_string(),
            }),
            ..StoreConfig::default()
        })
        .collect();
    let mut config = Config {
        brightpearl: BrightpearlConfig {
            base_url: Some(base_url.to_string()),
            account: d.account,
            auth: AuthConfig {
                app_ref: d.app_ref,
                staff_token: Secret::literal(d.staff_token),
                ..Default::default()
            },
            rate_limit_requests: FAST_RATE.0,
            rate_limit_window_ms: FAST_RATE.1.as_millis() as u64,
            ..Default::default()
        },
        stores,
        ..Config::default()
    };
    config.state.path = state.to_path_buf();
    config
}

/// `poll-child`: one run (the sweep or the change-driven poll), measured, printed as one JSON line.
pub async fn poll_child_main(args: &PollChildArgs) -> Result<(), String> {
    let config = config(&args.base_url, &args.state, args.channels);
    let store = EmbeddedStore::open(&config.state.path).map_err(|e| format!("state: {e}"))?;
    let backends = Backends { state: Arc::new(store), queue: Arc::new(InProcessQueue::default()) };
    let app = App::with_backends(config, backends, "inventory-poll").map_err(|e| format!("app: {e}"))?;
    let poll = app.inventory_poll();
    let cpu_before = measure::process_cpu();
    let started = Instant::now();
    let trigger = match args.mode {
        Mode::Sweep => PollTrigger::Full { reconcile: false },
        Mode::Poll => PollTrigger::Changes,
    };
    let report = poll.run(trigger).await.map_err(|e| format!("poll: {e}"))?;
    let wall = started.elapsed();
    let cpu = measure::process_cpu().saturating_sub(cpu_before);
    let measurement = PollMeasurement {
        report: serde_json::to_value(&report).map_err(|e| e.to_string())?,
        cpu_ms: cpu.as_secs_f64() * 1000.0,
        wall_ms: wall.as_secs_f64() * 1000.0,
        peak_rss_mb: measure::peak_rss_mb("self").unwrap_or(0.0),
    };
    println!("{}", serde_json::to_string(&measurement).map_err(|e| e.to_string())?);
    Ok(())
}

/// The sandbox child as seen from the orchestrator: a line protocol over its stdin/stdout.
struct SandboxChild {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    base_url: String,
}

impl SandboxChild {
    fn spawn(args: &InventoryArgs) -> Result<SandboxChild, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["sandbox-child", "--skus", &args.skus.to_string()])
            .args(["--warehouses", &args.warehouses.to_string(), "--channels", &args.channels.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("sandbox child: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut sandbox = SandboxChild { child, stdin, stdout, base_url: String::new() };
        sandbox.base_url = sandbox.read_line()?;
        Ok(sandbox)
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the sandbox child exited".into());
        }
        Ok(line.trim().to_string())
    }

    fn command(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.stdin, "{command}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        self.read_line()
    }
}

impl Drop for SandboxChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sandbox-child`: the seeded sandbox, then commands on stdin, one answer line each:
/// `reset` → `ok`; `counters` → JSON `Counters`; `change P` → how many products changed.
pub async fn sandbox_child_main(args: &SandboxChildArgs) -> Result<(), String> {
    let sandbox = pearlsync_sandbox::start(SandboxConfig {
        brightpearl: BrightpearlSandboxConfig {
            rate_limit: FAST_RATE.0,
            rate_window: FAST_RATE.1,
            seed: Some(SeedSpec { products: args.skus, warehouses: args.warehouses, suppliers: 3, seed: 9 }),
            ..Default::default()
        },
        channels: ChannelSandboxConfig {
            // The channels' own limits are not what this measures.
            shopify_bucket: 1e9,
            shopify_restore_rate: 1e9,
            bigcommerce_quota: 1_000_000_000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .map_err(|e| format!("sandbox: {e}"))?;
    let skus: Vec<(String, i64)> =
        sandbox.brightpearl.with_state(|s| s.products.values().map(|p| (p.sku.clone(), 0)).collect());
    for kind in CHANNELS.iter().take(usize::from(args.channels)) {
        sandbox.channels.seed_products(sandbox_channel(*kind), &skus);
    }
    println!("{}", sandbox.base_url);
    // Commands are answered as they arrive: a plain thread reads stdin line by line.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let answer = answer(&sandbox, args, line.trim());
        println!("{answer}");
    }
    Ok(())
}

fn answer(sandbox: &Sandbox, args: &SandboxChildArgs, command: &str) -> String {
    let mut words = command.split_whitespace();
    match words.next() {
        Some("reset") => {
            sandbox.brightpearl.reset_counters();
            for kind in CHANNELS {
                sandbox.channels.reset_counters(sandbox_channel(kind));
            }
            "ok".into()
        }
        Some("counters") => {
            let bp = sandbox.brightpearl.counters();
            let counters = Counters {
                brightpearl: bp.requests,
                availability: bp.endpoint("GET /warehouse-service/product-availability/{ids}"),
                brightpearl_by_endpoint: bp.per_endpoint.clone(),
                channels: CHANNELS
                    .iter()
                    .take(usize::from(args.channels))
                    .map(|k| sandbox.channels.counters(sandbox_channel(*k)).total_requests())
                    .collect(),
            };
            serde_json::to_string(&counters).unwrap_or_default()
        }
        Some("change") => {
            let percent: f64 = words.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
            change_stock(sandbox, percent).to_string()
        }
        _ => "unknown command".into(),
    }
}

/// Moves the first warehouse's on-hand of `percent`% of products (picked with a fixed seed) by
/// 1..=5 up, so every store's desired quantity moves too.
fn change_stock(sandbox: &Sandbox, percent: f64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(42);
    let targets: Vec<(u64, i64)> = sandbox.brightpearl.with_state(|s| {
        s.products
            .keys()
            .filter(|_| rng.f64() * 100.0 < percent)
            .map(|id| {
                let on_hand = s.stock.get(id).and_then(|w| w.get(&1)).map_or(0, |l| l.on_hand);
                (*id, on_hand)
            })
            .collect()
    });
    for (id, on_hand) in &targets {
        sandbox.brightpearl.set_stock(*id, 1, on_hand + rng.i64(1..=5));
    }
    targets.len() as u64
}
