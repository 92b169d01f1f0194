//! `coldstart`: each function's release bootstrap started against a minimal Lambda Runtime API
//! served here, beside a hello-world `lambda_runtime` function built with the same profile.
//!
//! Init time is spawn → the first `GET /2018-06-01/runtime/invocation/next` (that request is
//! held open, so the function is idle at its first poll, as on Lambda before an event).
//! Peak RSS is the child's VmHWM read just before it is killed. Each repeat runs the baseline
//! and every function on every backend one after another, so they share the machine's state;
//! medians are reported.
//!
//! Backends: `embedded` (state in a temp redb file, the in-process queue) always; `dynamodb`
//! (DynamoDB state, SQS queues, as deployed) too when `AWS_ENDPOINT_URL` names a running
//! emulator (as `scripts/test.sh` sets it). Brightpearl and the stores point at a closed port
//! on 127.0.0.1, so nothing leaves the machine (init makes no network call). Writes
//! `coldstart.svg`: init against the baseline and the 1.5× limit.
//!
//! What init leaves out: the AWS SDK configuration and the DynamoDB/SQS clients are built by
//! the first call that needs them (issue 18), so that cost falls in the first invocation, which
//! this measure does not time. It is reported beside init (`aws_first_use_ms`): the load and
//! both client builds, timed in a fresh process with the same environment. Every function's
//! usual first event touches state, so on `dynamodb` a cold start's first answer still pays it.

use crate::measure::{self, progress, round};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const FUNCTIONS: [&str; 4] = ["inventory-poll", "order-writer", "webhook-ingress", "reorder-checker"];
const BASELINE: &str = "hello-lambda";
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// A function that has not polled by then failed to initialise.
const INIT_TIMEOUT: Duration = Duration::from_secs(20);
/// An address nothing listens on: any unexpected call fails fast, locally.
const CLOSED_ADDRESS: &str = "http://127.0.0.1:9";

#[derive(Debug, Clone, clap::Args)]
pub struct ColdstartArgs {
    /// Starts per function; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub repeats: usize,
    /// Use the release binaries already built instead of running `cargo build --release`.
    #[arg(long)]
    pub skip_build: bool,
}

/// One start: init time and peak RSS.
#[derive(Debug, Clone, Copy)]
struct Start {
    init_ms: f64,
    peak_rss_mb: f64,
}

pub async fn run(args: &ColdstartArgs, out: &Path, print_json: bool) -> Result<(), String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace")?.to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    if !args.skip_build {
        build(&workspace)?;
    }
    let binary = |name: &str| target.join("release").join(name);
    let mut names: Vec<&str> = vec![BASELINE];
    names.extend(FUNCTIONS);
    for name in &names {
        if !binary(name).is_file() {
            return Err(format!("{} is missing: build it (drop --skip-build)", binary(name).display()));
        }
    }

    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.trim().is_empty());
    let backends: Vec<Backend> = match &endpoint {
        Some(url) => vec![Backend::Embedded, Backend::Dynamodb(url.clone())],
        None => vec![Backend::Embedded],
    };
    let state_dir = std::env::temp_dir().join(format!("pearlsync-bench-coldstart-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("state dir: {e}"))?;
    // (function, backend) → its starts; the baseline is keyed (BASELINE, "none").
    let mut starts: BTreeMap<(&str, &str), Vec<Start>> = BTreeMap::new();
    for repeat in 0..args.repeats.max(1) {
        progress(&format!("coldstart: round {}/{}", repeat + 1, args.repeats.max(1)));
        let state = state_dir.join(format!("{BASELINE}-{repeat}.redb"));
        let start = start_once(&binary(BASELINE), BASELINE, &Backend::Embedded, &state).await?;
        starts.entry((BASELINE, "none")).or_default().push(start);
        for backend in &backends {
            for name in FUNCTIONS {
                let state = state_dir.join(format!("{name}-{}-{repeat}.redb", backend.name()));
                let start = start_once(&binary(name), name, backend, &state).await?;
                starts.entry((name, backend.name())).or_default().push(start);
            }
        }
    }
    let mut aws_first_use = Vec::new();
    if let Some(dynamodb) = backends.iter().find(|b| matches!(b, Backend::Dynamodb(_))) {
        for _ in 0..args.repeats.max(1) {
            aws_first_use.push(aws_first_use_once(dynamodb, &state_dir)?);
        }
    }
    let _ = std::fs::remove_dir_all(&state_dir);

    let summary = |name: &str, backend: &str| -> (f64, f64, u64) {
        let samples = starts.get(&(name, backend)).cloned().unwrap_or_default();
        let mut init: Vec<f64> = samples.iter().map(|s| s.init_ms).collect();
        let mut rss: Vec<f64> = samples.iter().map(|s| s.peak_rss_mb).collect();
        let bytes = std::fs::metadata(binary(name)).map(|m| m.len()).unwrap_or(0);
        (measure::median(&mut init), measure::median(&mut rss), bytes)
    };
    let (baseline_init, baseline_rss, baseline_bytes) = summary(BASELINE, "none");
    let mut functions = Vec::new();
    let mut bars = Vec::new();
    for backend in &backends {
        for name in FUNCTIONS {
            let (init, rss, bytes) = summary(name, backend.name());
            let samples: Vec<f64> = starts
                .get(&(name, backend.name()))
                .map_or(Vec::new(), |s| s.iter().map(|s| round(s.init_ms, 2)).collect());
            bars.push(crate::chart::InitBar { function: name, backend: backend.name(), init_ms: init });
            functions.push(json!({
                "name": name,
                "backend": backend.name(),
                "init_ms": round(init, 2),
                "baseline_init_ms": round(baseline_init, 2),
                "init_ratio": if baseline_init > 0.0 { json!(round(init / baseline_init, 2)) } else { json!(null) },
                "within_limit": baseline_init > 0.0 && init <= baseline_init * INIT_LIMIT_RATIO,
                "bootstrap_bytes": bytes,
                "bootstrap_mb": round(bytes as f64 / 1_048_576.0, 2),
                "bootstrap_within_limit": bytes <= BOOTSTRAP_LIMIT_BYTES,
                "peak_rss_mb": round(rss, 1),
                "init_ms_samples": samples,
            }));
        }
    }
    let report: Value = json!({
        "functions": functions,
        "baseline": {
            "name": BASELINE,
            "init_ms": round(baseline_init, 2),
            "bootstrap_bytes": baseline_bytes,
            "peak_rss_mb": round(baseline_rss, 1),
        },
        "aws_first_use_ms": if aws_first_use.is_empty() {
            json!(null)
        } else {
            json!(round(measure::median(&mut aws_first_use), 2))
        },
        "limits": {"init_ratio": INIT_LIMIT_RATIO, "bootstrap_bytes": BOOTSTRAP_LIMIT_BYTES},
        "backends": backends.iter().map(Backend::name).collect::<Vec<_>>(),
        "repeats": args.repeats.max(1),
        "method": "release binaries (LTO, opt-level s, strip, panic=abort), x86_64 native; init = spawn to \
                   first GET /runtime/invocation/next on a Runtime API served by the bench; peak RSS = \
                   the child's VmHWM at that moment; medians over the repeats; backend dynamodb = \
                   DynamoDB state and SQS queues against the emulator at AWS_ENDPOINT_URL, their \
                   clients built on first use; aws_first_use_ms = that first-use work (SDK \
                   configuration load + DynamoDB and SQS client builds) timed in a fresh process, \
                   paid by the first invocation, not in init_ms",
        "machine": measure::machine(),
    });
    measure::write_report(out, "coldstart", "Lambda cold start", &report, print_json)
        .map_err(|e| format!("writing the report: {e}"))?;
    let chart = out.join("coldstart.svg");
    crate::chart::init_against_baseline(&chart, &bars, baseline_init)?;
    progress(&format!("wrote {}", chart.display()));
    Ok(())
}

/// The limits: init within 1.5× the baseline, bootstraps at most 10 MB.
const INIT_LIMIT_RATIO: f64 = 1.5;
const BOOTSTRAP_LIMIT_BYTES: u64 = 10 * 1024 * 1024;

/// Where a function keeps its state and queues.
#[derive(Debug, Clone)]
enum Backend {
    Embedded,
    /// DynamoDB and SQS at this endpoint (the emulator).
    Dynamodb(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Dynamodb(_) => "dynamodb",
        }
    }
}

fn build(workspace: &Path) -> Result<(), String> {
    let mut functions = vec!["build", "--release"];
    for name in FUNCTIONS {
        functions.extend(["-p", name]);
    }
    let baseline = ["build", "--release", "-p", "pearlsync-bench", "--bin", BASELINE];
    for cargo_args in [functions.as_slice(), &baseline[..]] {
        progress(&format!("cargo {}", cargo_args.join(" ")));
        let status = Command::new("cargo")
            .args(cargo_args)
            .current_dir(workspace)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| format!("cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo {} failed: {status}", cargo_args.join(" ")));
        }
    }
    Ok(())
}

/// Starts `binary` once against a fresh Runtime API and measures it up to its first `/next`.
async fn start_once(binary: &Path, name: &str, backend: &Backend, state: &Path) -> Result<Start, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let api = listener.local_addr().map_err(|e| e.to_string())?;
    let (polled_tx, polled_rx) = tokio::sync::oneshot::channel::<Instant>();
    let polled_tx = Arc::new(Mutex::new(Some(polled_tx)));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let server = {
        let held = Arc::clone(&held);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (polled_tx, held) = (Arc::clone(&polled_tx), Arc::clone(&held));
                tokio::spawn(async move {
                    let (stream, is_next) = read_request(stream).await;
                    let at = Instant::now();
                    if is_next && let Some(tx) = polled_tx.lock().ok().and_then(|mut slot| slot.take()) {
                        let _ = tx.send(at);
                    }
                    // Never answered: the function waits for an event, as on Lambda.
                    if let (Some(stream), Ok(mut held)) = (stream, held.lock()) {
                        held.push(stream);
                    }
                });
            }
        })
    };

    let spawned_at = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(function_env(name, &api.to_string(), backend, state))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let polled = tokio::time::timeout(INIT_TIMEOUT, polled_rx).await;
    let peak_rss_mb = measure::peak_rss_mb(&child.id().to_string()).unwrap_or(0.0);
    let _ = child.kill();
    let output = child.wait_with_output();
    server.abort();
    match polled {
        Ok(Ok(at)) => {
            Ok(Start { init_ms: at.duration_since(spawned_at).as_secs_f64() * 1000.0, peak_rss_mb })
        }
        _ => {
            let stderr = output.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
            Err(format!("{name} did not reach /next within {INIT_TIMEOUT:?}: {stderr}"))
        }
    }
}

/// Runs `pearlsync-bench aws-first-use-child` with a function's `backend` environment; its
/// answer, in ms.
fn aws_first_use_once(backend: &Backend, state: &Path) -> Result<f64, String> {
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let output = Command::new(&me)
        .arg("aws-first-use-child")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(function_env("order-writer", CLOSED_ADDRESS, backend, state))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", me.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse().map_err(|e| format!("aws-first-use-child answered {text:?}: {e}"))
}

/// Internal (`aws-first-use-child`): the SDK configuration load and both client builds that
/// init no longer does, timed once in this fresh process; prints ms.
pub async fn aws_first_use_child_main() -> Result<(), String> {
    use pearlsync::aws::{LazyClient, SharedSdkConfig};
    let started = Instant::now();
    let sdk = SharedSdkConfig::new();
    let dynamodb: LazyClient<aws_sdk_dynamodb::Client> = LazyClient::on_first_use(sdk.clone());
    let sqs: LazyClient<aws_sdk_sqs::Client> = LazyClient::on_first_use(sdk);
    dynamodb.get().await;
    sqs.get().await;
    println!("{}", started.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

/// Reads one request head; says whether it is the `/next` poll.
async fn read_request(mut stream: TcpStream) -> (Option<TcpStream>, bool) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (None, false),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let first_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    (Some(stream), first_line.starts_with("GET ") && first_line.contains(NEXT_PATH))
}

/// What Lambda sets, plus what our functions need at init on `backend`.
fn function_env(name: &str, api: &str, backend: &Backend, state: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(&str, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API", api.into()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench/coldstart".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("BRIGHTPEARL_BASE_URL", CLOSED_ADDRESS.into()),
        ("BRIGHTPEARL_ACCOUNT", "bench".into()),
        ("BRIGHTPEARL_APP_REF", "bench".into()),
        ("BRIGHTPEARL_STAFF_TOKEN", "bench-token".into()),
    ];
    match backend {
        Backend::Embedded => env.extend([
            ("PEARLSYNC_STATE_BACKEND", "embedded".into()),
            ("PEARLSYNC_STATE_PATH", state.display().to_string()),
            ("PEARLSYNC_QUEUE_BACKEND", "local".into()),
        ]),
        Backend::Dynamodb(endpoint) => {
            // What the template sets (the names only: init builds no client and calls nothing).
            let queue = |q: &str| format!("{endpoint}/123456789012/pearlsync-bench-{q}");
            env.extend([
                ("PEARLSYNC_STATE_BACKEND", "dynamodb".into()),
                ("PEARLSYNC_TABLE", "pearlsync-bench-coldstart".into()),
                ("PEARLSYNC_QUEUE_BACKEND", "sqs".into()),
                ("ORDERS_QUEUE_URL", queue("orders.fifo")),
                ("STOCK_QUEUE_URL", queue("stock")),
                ("PURCHASING_QUEUE_URL", queue("purchasing")),
                ("AWS_ENDPOINT_URL", endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_SESSION_TOKEN", "test".into()),
                ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ]);
        }
    }
    env.push(("RUST_LOG", "warn".into()));
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
