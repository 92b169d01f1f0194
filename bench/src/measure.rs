//! Process measurements (CPU from getrusage or /proc, peak RSS from VmHWM), percentiles, the
//! machine description, and writing a scenario's JSON and Markdown report.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// User + system CPU of this whole process (every thread) so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// CPU (user + system) of this process's threads whose name is `thread_name`, from
/// /proc/self/task (clock-tick resolution). Lets one runtime's work be measured while other
/// runtimes (the sandbox, the ingress) share the process.
pub fn threads_cpu(thread_name: &str) -> Duration {
    let ticks_per_second = clock_ticks();
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // `pid (comm) state ...`: comm may hold spaces, so split around the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != thread_name {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // After comm: state is field 3, utime 14 and stime 15 (1-based) → indexes 11 and 12.
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Peak resident set size (VmHWM) of a process, in MiB.
pub fn peak_rss_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The `p`-th percentile (0..=100) by nearest rank; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0).unwrap_or(0.0)
}

pub fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// CPUs, memory, kernel, rustc and the date, recorded with every report.
pub fn machine() -> Value {
    let memory_gb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let kb: f64 =
            m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(round(kb / 1024.0 / 1024.0, 1))
    });
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu_model,
        "memory_gb": memory_gb,
        "rustc": command_output("rustc", &["--version"]),
        "kernel": command_output("uname", &["-r"]),
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where reports go unless `--out` says otherwise: `bench/reports/` of this checkout.
pub fn default_report_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reports")
}

/// Writes `<dir>/<name>.json` and `<dir>/<name>.md` (a table of the report's top-level
/// numbers, then each nested section), and prints the JSON to stdout when `print_json`.
pub fn write_report(
    dir: &Path,
    name: &str,
    title: &str,
    report: &Value,
    print_json: bool,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pretty = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("{name}.json")), format!("{pretty}\n"))?;
    std::fs::write(dir.join(format!("{name}.md")), markdown(title, report))?;
    if print_json {
        println!("{pretty}");
    }
    progress(&format!("wrote {}/{name}.{{json,md}}", dir.display()));
    Ok(())
}

fn markdown(title: &str, report: &Value) -> String {
    let mut out = format!("# {title}\n");
    section(&mut out, "", report);
    out
}

fn section(out: &mut String, heading: &str, value: &Value) {
    let Some(map) = value.as_object() else { return };
    if !heading.is_empty() {
        out.push_str(&format!("\n## {heading}\n"));
    }
    let scalars: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_object()).collect();
    if !scalars.is_empty() {
        out.push_str("\n| key | value |\n|---|---|\n");
        for (k, v) in scalars {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("| {k} | {shown} |\n"));
        }
    }
    for (k, v) in map.iter().filter(|(_, v)| v.is_object()) {
        let name = if heading.is_empty() { k.clone() } else { format!("{heading}.{k}") };
        section(out, &name, v);
    }
}

/// One progress line on stderr (stdout is kept for `--json`).
pub fn progress(message: &str) {
    eprintln!("[bench] {message}");
}
