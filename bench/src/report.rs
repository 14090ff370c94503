//! The summary table of a benchmark run, from the JSON lines the other subcommands printed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::Error;

/// Lambda arm64 prices (us-east-1): compute per GB-second, requests per million.
const GB_SECOND: f64 = 0.000_013_333_4;
const PER_REQUEST: f64 = 0.20 / 1e6;
/// Firehose Direct PUT: $0.029 per GB ingested, each record rounded up to 5 KB.
const FIREHOSE_PER_GB: f64 = 0.029;
/// S3 Standard requests (us-east-1): PUT, COPY, POST, LIST per request; GET (and HEAD, billed as
/// GET) per request. DELETE is free.
const S3_PUT_LIST: f64 = 0.005 / 1e3;
const S3_GET: f64 = 0.0004 / 1e3;

const MB: f64 = 1024.0 * 1024.0;

pub(crate) struct Row {
    pub figure: String,
    pub measured: String,
    pub target: &'static str,
    pub result: String,
}

pub(crate) fn verdict(pass: bool) -> String {
    if pass { "PASS".into() } else { "**FAIL**".into() }
}

/// S3 request cost of `by_kind` request counts (the fault proxy's kinds), in dollars.
pub(crate) fn s3_request_cost(by_kind: &serde_json::Map<String, Value>) -> f64 {
    by_kind
        .iter()
        .map(|(kind, n)| {
            let n = n.as_f64().unwrap_or(0.0);
            match kind.as_str() {
                "GET" | "HEAD" => n * S3_GET,
                "DELETE" => 0.0,
                _ => n * S3_PUT_LIST,
            }
        })
        .sum()
}

pub(crate) fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The Lambda memory size for a peak RSS: 50% headroom, a multiple of 64 MB, at least 128 MB.
pub fn memory_mb(peak_rss: f64) -> f64 {
    ((peak_rss / MB * 1.5 / 64.0).ceil() * 64.0).max(128.0)
}

/// Compute cost per million records of batches of `records` taking `ms` at `memory_mb`.
pub fn cost_per_million(records: f64, ms: f64, memory_mb: f64) -> (f64, f64) {
    let batches = 1e6 / records;
    (batches * ms / 1e3 * memory_mb / 1024.0 * GB_SECOND, batches * PER_REQUEST)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    format!(
        "{}, {cores} cores visible, load average {load} at report time",
        model.unwrap_or_else(|| "unknown CPU".into())
    )
}

/// The stream consumer through the runtime API: its figures beside the in-process
/// handler's, against the floor, the Python peers (warm and cold) and the memory target.
fn runtime_rows(
    runs: &mut dyn Iterator<Item = &Value>,
    floors: &BTreeMap<String, &Value>,
    peers: &BTreeMap<String, &Value>,
    pandas_peers: &BTreeMap<String, &Value>,
    consumes: &BTreeMap<String, &Value>,
    peer_colds: &BTreeMap<(&str, String), &Value>,
    rows: &mut Vec<Row>,
) {
    for r in runs {
        let key = r["label"].as_str().unwrap_or("").to_string();
        let (table, records) = (r["table"].as_str().unwrap_or(""), f(r, "records"));
        let (warm, cold, rss) = (f(r, "warm_ms"), f(r, "cold_ms"), f(r, "peak_rss"));
        let consume = consumes.get(&key);
        let handler = consume.map_or(f64::NAN, |c| f(c, "warm_ms"));
        // The function through the runtime wrote what the in-process handler wrote.
        let same_rows =
            consume.is_some_and(|c| c["rows_in_table"] == r["rows_in_table"] && c["quarantined"] == r["quarantined"]);
        rows.push(Row {
            figure: format!(
                "stream-consumer via the runtime API, {table} {records} ({:.1} MB payload), local",
                f(r, "payload_bytes") / MB
            ),
            measured: format!(
                "{warm:.0} ms/batch warm, hand-out → answer (its handler after the payload's read: {:.0} ms; the \
                 handler in-process from the bytes: {handler:.0} ms) · cold {cold:.0} ms \
                 (spawn → first answer) · peak RSS {:.0} MB · {} rows, {} quarantined{}",
                f(r, "handler_warm_ms"),
                rss / MB,
                r["rows_in_table"],
                r["quarantined"],
                if same_rows { " (as in-process)" } else { " (**differs from in-process**)" }
            ),
            target: "—",
            result: "info".into(),
        });
        // Paired batch by batch with the floor (`runtime --floor-out`) when it was; else against
        // the floor's own run, minutes apart.
        let floor_row = match (r["ratio_to_floor"].as_f64(), floors.get(&key)) {
            (Some(ratio), _) => Some((
                ratio,
                format!(
                    "{ratio:.2}×, the median of {} paired batches (floor {:.0} ms in the same rounds)",
                    r["floor_ms"].as_array().map_or(0, Vec::len),
                    f(r, "floor_warm_ms")
                ),
            )),
            (None, Some(floor)) => {
                let ratio = warm / f(floor, "warm_ms");
                Some((ratio, format!("{ratio:.2}× (floor {:.0} ms)", f(floor, "warm_ms"))))
            }
            (None, None) => None,
        };
        if let Some((ratio, measured)) = floor_row {
            rows.push(Row {
                figure: format!("  runtime path ÷ floor, {table} {records}"),
                measured,
                target: "≤ 1.3×",
                result: verdict(ratio <= 1.3),
            });
        }
        for (name, peer) in [("polars", peers.get(&key)), ("pandas", pandas_peers.get(&key))] {
            let Some(peer) = peer else { continue };
            let ratio = f(peer, "warm_ms") / warm;
            rows.push(Row {
                figure: format!("  Python peer ({name} + deltalake) ÷ runtime path, {table} {records}"),
                measured: format!("{ratio:.1}× (peer {:.0} ms warm)", f(peer, "warm_ms")),
                target: "≥ 5×",
                result: verdict(ratio >= 5.0),
            });
            let (peer_cold, startup) = peer_cold_start(peer, "cold_ms");
            let ratio = peer_cold / cold;
            rows.push(Row {
                figure: format!(
                    "  Python peer ({name}) cold ÷ runtime path cold, first batch creates the table, {table} {records}"
                ),
                measured: format!(
                    "{ratio:.1}× (peer {peer_cold:.0} ms: interpreter {startup:.0} + imports {:.0} + first batch)",
                    f(peer, "import_ms")
                ),
                target: "≥ 20×",
                result: verdict(ratio >= 20.0),
            });
            // The cold start of a deployed consumer: a fresh process, its table made long ago.
            let (Some(ours), Some(peer_cold)) =
                (r["cold_existing_table_ms"].as_f64(), peer_colds.get(&(name, key.clone())))
            else {
                continue;
            };
            let (theirs, startup) = peer_cold_start(peer_cold, "first_batch_ms");
            let ratio = theirs / ours;
            rows.push(Row {
                figure: format!("  Python peer ({name}) cold ÷ runtime path cold, table exists, {table} {records}"),
                measured: format!(
                    "{ratio:.1}× (ours {ours:.0} ms; peer {theirs:.0} ms: interpreter {startup:.0} + imports {:.0} + first batch {:.0})",
                    f(peer_cold, "import_ms"),
                    f(peer_cold, "first_batch_ms")
                ),
                target: "≥ 20×",
                result: verdict(ratio >= 20.0),
            });
        }
        rows.push(Row {
            figure: format!("  peak RSS, runtime path, {table} {records}"),
            measured: format!("{:.0} MB", rss / MB),
            target: "≤ 128 MB",
            result: verdict(rss <= 128.0 * MB),
        });
    }
}

/// A Python peer's cold start as ours is counted, from process start, and the interpreter's part
/// of it: the interpreter's start, its imports, then its first batch (`first_batch`). A run that
/// did not measure the interpreter's start (`run.py` by hand, without `PINPIPE_BENCH_SPAWNED_NS`)
/// counts it as 0 in every row alike.
fn peer_cold_start(run: &Value, first_batch: &str) -> (f64, f64) {
    let startup = run["startup_ms"].as_f64().unwrap_or(0.0);
    (startup + f(run, "import_ms") + f(run, first_batch), startup)
}

pub fn print(results: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(results)?;
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let of = |kind: &'static str| lines.iter().filter(move |v| v["kind"] == kind);
    let mut rows = Vec::new();

    let floors: BTreeMap<String, &Value> =
        of("floor").map(|v| (v["label"].as_str().unwrap_or("").to_string(), v)).collect();
    // The polars peer (bench/peer/handler.py) keyed by label; the pandas one beside it.
    let peers: BTreeMap<String, &Value> = of("peer")
        .filter(|v| v["peer"].as_str().unwrap_or("polars") == "polars")
        .map(|v| (v["label"].as_str().unwrap_or("").to_string(), v))
        .collect();
    let pandas_peers: BTreeMap<String, &Value> = of("peer")
        .filter(|v| v["peer"] == "pandas")
        .map(|v| (v["label"].as_str().unwrap_or("").to_string(), v))
        .collect();
    let consumes: BTreeMap<String, &Value> = of("consume")
        .filter(|v| v["lake"] == "local" && v["sequential"] != true)
        .map(|v| (v["label"].as_str().unwrap_or("").trim_end_matches("-local").to_string(), v))
        .collect();
    let mut cost_basis: Option<(String, f64, f64, f64)> = None;
    for c in of("consume") {
        let (table, lake) = (c["table"].as_str().unwrap_or(""), c["lake"].as_str().unwrap_or(""));
        let label = c["label"].as_str().unwrap_or("").to_string();
        let (records, payload, warm, cold, rss) =
            (f(c, "records"), f(c, "payload_bytes"), f(c, "warm_ms"), f(c, "cold_ms"), f(c, "peak_rss"));
        rows.push(Row {
            figure: format!(
                "consumer {table}, {records} records ({:.1} MB payload), {lake}{}",
                payload / MB,
                if c["sequential"] == true { ", before: commits one after the other" } else { "" }
            ),
            measured: format!(
                "{warm:.0} ms/batch warm ({cold:.0} cold) · {:.0}k rec/s · {:.1} MB/s · peak RSS {:.0} MB · progress lookup {:.1} ms",
                records / warm,
                payload / MB / (warm / 1e3),
                rss / MB,
                f(c, "progress_lookup_ms")
            ),
            target: "—",
            result: "info".into(),
        });
        if lake != "local" || c["sequential"] == true {
            continue;
        }
        let key = label.trim_end_matches("-local").to_string();
        if let Some(floor) = floors.get(&key) {
            let ratio = warm / f(floor, "warm_ms");
            rows.push(Row {
                figure: format!("consumer ÷ floor, {table} {records}"),
                measured: format!(
                    "{ratio:.2}× (floor {:.0} ms, peak RSS {:.0} MB)",
                    f(floor, "warm_ms"),
                    f(floor, "peak_rss") / MB
                ),
                target: "≤ 2×",
                result: verdict(ratio <= 2.0),
            });
        }
        if let Some(peer) = peers.get(&key) {
            let ratio = f(peer, "warm_ms") / warm;
            rows.push(Row {
                figure: format!("Python peer ÷ consumer, {table} {records}"),
                measured: format!(
                    "{ratio:.1}× (peer {:.0} ms warm, {:.0} cold, peak RSS {:.0} MB)",
                    f(peer, "warm_ms"),
                    f(peer, "cold_ms"),
                    f(peer, "peak_rss") / MB
                ),
                target: "≥ 20×",
                result: verdict(ratio >= 20.0),
            });
        }
        // Cost from the pin table at the largest batch that fits a real invoke payload.
        if table == "pin" && payload <= crate::PAYLOAD_LIMIT as f64 * 1.01 {
            cost_basis = Some((format!("{table} {records}"), records, warm, rss));
        }
    }
    // Each peer's cold start against an existing table, keyed by (peer, label).
    let peer_colds: BTreeMap<(&str, String), &Value> = of("peer_cold")
        .map(|v| {
            let peer = if v["peer"] == "pandas" { "pandas" } else { "polars" };
            ((peer, v["label"].as_str().unwrap_or("").to_string()), v)
        })
        .collect();
    runtime_rows(&mut of("runtime"), &floors, &peers, &pandas_peers, &consumes, &peer_colds, &mut rows);
    for b in of("breakdown") {
        rows.push(Row {
            figure: format!("  steps before the write, {}", b["label"].as_str().unwrap_or("")),
            measured: format!(
                "payload → Box<RawValue> {:.1} ms (what lambda_runtime's parse of a raw payload costs; the function \
                 skips it) · → records {:.1} ms (→ a typed KinesisEvent: {:.1} ms) · \
                 cleaning {:.1} ms · Arrow batch {:.1} ms",
                f(b, "raw_value_ms"),
                f(b, "event_parse_ms"),
                f(b, "typed_event_ms"),
                f(b, "clean_ms"),
                f(b, "arrow_ms")
            ),
            target: "—",
            result: "info".into(),
        });
    }
    for c in of("coldstart") {
        let name = c["name"].as_str().unwrap_or("");
        let p50 = f(c, "p50_ms");
        rows.push(Row {
            figure: format!("cold start {name} (spawn → first /invocation/next)"),
            measured: format!(
                "p50 {p50:.1} ms (min {:.1}, p90 {:.1}, {} runs)",
                f(c, "min_ms"),
                f(c, "p90_ms"),
                c["runs"]
            ),
            target: "≤ 20 ms",
            result: verdict(p50 <= 20.0),
        });
        let size = f(c, "binary_bytes") / MB;
        rows.push(Row {
            figure: format!("binary size {name}"),
            measured: format!("{size:.1} MB"),
            target: "≤ 20 MB",
            result: verdict(size <= 20.0),
        });
    }
    for z in of("size") {
        let stripped = z["stripped"] == true;
        rows.push(Row {
            figure: format!(
                "{} as `{}` builds it",
                z["name"].as_str().unwrap_or(""),
                z["build"].as_str().unwrap_or("")
            ),
            measured: format!(
                "{:.1} MB binary, {:.1} MB zip, {}",
                f(z, "binary_bytes") / MB,
                f(z, "zip_bytes") / MB,
                if stripped { "stripped" } else { "not stripped" }
            ),
            target: "stripped",
            result: verdict(stripped),
        });
    }
    for p in of("producer") {
        let p99 = f(p, "overhead_p99_ms");
        rows.push(Row {
            figure: format!(
                "producer overhead, {} records/request ({:.0} KB)",
                p["records"],
                f(p, "body_bytes") / 1024.0
            ),
            measured: format!(
                "p50 {:.2} ms, p99 {p99:.2} ms (Kinesis call p50 {:.1} ms on moto)",
                f(p, "overhead_p50_ms"),
                f(p, "kinesis_p50_ms")
            ),
            target: "p99 ≤ 2 ms",
            result: verdict(p99 <= 2.0),
        });
    }
    if let Some((what, records, ms, rss)) = cost_basis {
        let memory = memory_mb(rss);
        let (compute, requests) = cost_per_million(records, ms, memory);
        rows.push(Row {
            figure: format!("cost per million records, Lambda arm64 ({what}/batch, {memory:.0} MB)"),
            measured: format!("${compute:.6} compute + ${requests:.6} requests"),
            target: "≤ $0.001 compute",
            result: verdict(compute <= 0.001),
        });
        // Below 1,769 MB a Lambda gets a fraction of a vCPU, so a CPU-bound batch takes longer
        // in proportion: the cost is that of the measured time at a full vCPU.
        let (scaled, _) = cost_per_million(records, ms, memory.max(1769.0));
        rows.push(Row {
            figure: "  same, if CPU-bound (duration × 1,769 MB ÷ memory)".into(),
            measured: format!("${scaled:.6} compute"),
            target: "—",
            result: "info".into(),
        });
        let firehose = 1e6 * 5.0 * 1024.0 / (1024.0 * MB) * FIREHOSE_PER_GB;
        rows.push(Row {
            figure: "Firehose billing floor (5 KB per record)".into(),
            measured: format!("${firehose:.3} per million records"),
            target: "—",
            result: "info".into(),
        });
    }

    crate::scale::report_rows(&lines, &mut rows);

    println!("Machine: {}", machine());
    println!();
    println!("| figure | measured | target | result |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} |", r.figure, r.measured, r.target, r.result);
    }
    Ok(())
}
