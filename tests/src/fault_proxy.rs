//! A fault-injecting HTTP proxy between pinpipe (the AWS SDK, delta-rs) and moto, on loopback.
//!
//! It forwards every request to moto, except that a seeded random share of the requests that
//! match a filter gets a fault instead: a 500, a 503 `SlowDown`, a dropped connection before
//! forwarding, or — the nastiest — a dropped connection *after* moto applied the request, so
//! the client cannot know its write (a Delta commit, say) landed. It also serialises
//! conditional PUTs, because moto's conditional PUT is not atomic under concurrency and the
//! tests are about pinpipe's behaviour, not moto's.
//!
//! For benchmarks it can also add a fixed latency to every request ([`FaultProxy::set_latency`],
//! none by default), as a real S3 round trip has, and it counts requests by kind
//! ([`FaultStats::requests_by_kind`]). Its thread is named `fault-proxy`, so a benchmark can
//! tell the proxy's CPU time from its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

/// What the proxy does to a request it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    InternalError,
    SlowDown,
    DropBeforeForwarding,
    DropAfterForwarding,
    /// Kinesis `PutRecords` only: each entry is throttled with the plan's probability
    /// (`ProvisionedThroughputExceededException` in its result), the others are forwarded, as a
    /// hot shard does it. Requests of other kinds pass untouched.
    ThrottleEntries,
}

/// Which requests may be faulted, and how often.
#[derive(Clone)]
pub struct FaultPlan {
    /// Chance in [0, 1] that a matching request is faulted.
    pub probability: f64,
    /// The faults to choose from, uniformly.
    pub faults: Vec<Fault>,
    /// Only requests for which this returns true may be faulted (method, path).
    pub matches: fn(&str, &str) -> bool,
}

impl FaultPlan {
    pub fn none() -> Self {
        Self { probability: 0.0, faults: vec![], matches: |_, _| false }
    }
}

/// How many requests went through and how many of each fault were injected.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub requests: AtomicU64,
    pub internal_errors: AtomicU64,
    pub slow_downs: AtomicU64,
    pub dropped_before: AtomicU64,
    pub dropped_after: AtomicU64,
    pub throttled_entries: AtomicU64,
    /// Requests by kind: the HTTP method, with S3 listings (`GET ?list-type=`) as `LIST`.
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests by kind and the Delta object they are for (see [`object_of`]).
    by_object: Mutex<BTreeMap<String, u64>>,
}

impl FaultStats {
    pub fn faults(&self) -> u64 {
        self.internal_errors.load(Ordering::Relaxed)
            + self.slow_downs.load(Ordering::Relaxed)
            + self.dropped_before.load(Ordering::Relaxed)
            + self.dropped_after.load(Ordering::Relaxed)
            + self.throttled_entries.load(Ordering::Relaxed)
    }

    /// How many requests of each kind went through: `PUT`, `GET`, `LIST`, `HEAD`, `POST`, ...
    pub fn requests_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.by_kind.lock().unwrap().clone()
    }

    /// How many requests of each kind went to each kind of object: `GET commit`,
    /// `PUT data`, `LIST intents`, ...
    pub fn requests_by_object(&self) -> BTreeMap<String, u64> {
        self.by_object.lock().unwrap().clone()
    }

    fn count(&self, method: &hyper::Method, query: Option<&str>, path: &str) {
        let kind = match *method {
            hyper::Method::GET if query.is_some_and(|q| q.split('&').any(|p| p.starts_with("list-type="))) => "LIST",
            hyper::Method::GET => "GET",
            hyper::Method::PUT => "PUT",
            hyper::Method::HEAD => "HEAD",
            hyper::Method::POST => "POST",
            hyper::Method::DELETE => "DELETE",
            _ => "other",
        };
        *self.by_kind.lock().unwrap().entry(kind).or_default() += 1;
        let listed = query.and_then(|q| q.split('&').find_map(|p| p.strip_prefix("prefix=")));
        let object = object_of(listed.unwrap_or(path));
        *self.by_object.lock().unwrap().entry(format!("{kind} {object}")).or_default() += 1;
    }
}

/// What a request's path (or a listing's prefix, URL-encoded) is in a Delta table.
fn object_of(path: &str) -> &'static str {
    let path = path.replace("%2F", "/");
    if path.contains("_pinpipe_intents") {
        "intents"
    } else if path.contains("_delta_log") && path.contains(".checkpoint") {
        "checkpoint"
    } else if path.contains("_delta_log/0") && path.ends_with(".json") {
        "commit"
    } else if path.contains("_delta_log") {
        "log"
    } else if path.ends_with(".parquet") {
        "data"
    } else {
        "other"
    }
}

struct State {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    plan: Mutex<FaultPlan>,
    rng: Mutex<StdRng>,
    conditional_puts: tokio::sync::Mutex<()>,
    /// Added to every request before it is forwarded, in microseconds.
    latency_us: AtomicU64,
    stats: Arc<FaultStats>,
}

/// A running proxy; it stops when dropped. It runs on a thread and runtime of its own, so it
/// keeps serving even while the code under test blocks its own runtime's thread.
pub struct FaultProxy {
    pub endpoint: String,
    pub stats: Arc<FaultStats>,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (moto's endpoint) on a free loopback port.
    pub async fn start(upstream: &str, plan: FaultPlan, seed: u64) -> FaultProxy {
        let stats = Arc::new(FaultStats::default());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            plan: Mutex::new(plan),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            conditional_puts: tokio::sync::Mutex::new(()),
            latency_us: AtomicU64::new(0),
            stats: stats.clone(),
        });
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let serving = state.clone();
        // Named, so that a benchmark can tell the proxy's CPU time from its own.
        let spawned = std::thread::Builder::new().name("fault-proxy".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind loopback");
                bound.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let accepted = tokio::select! {
                        _ = &mut stop => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((stream, _)) = accepted else { return };
                    let state = serving.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| forward(state.clone(), req));
                        // A service error closes the connection: that is how faults drop it.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        spawned.expect("proxy thread");
        let endpoint = format!("http://{}", address.recv().expect("proxy started"));
        FaultProxy { endpoint, stats, state, shutdown: Some(shutdown) }
    }

    /// Replaces the fault plan, e.g. to stop faulting before reading results back.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.state.plan.lock().unwrap() = plan;
    }

    /// Delays every request by `latency` before forwarding it (a network round trip; none by
    /// default). The delay comes before the serialisation of conditional PUTs, so concurrent
    /// requests wait in parallel, as they would for S3.
    pub fn set_latency(&self, latency: Duration) {
        self.state.latency_us.store(latency.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

fn pick_fault(state: &State, method: &str, path: &str) -> Option<Fault> {
    let plan = state.plan.lock().unwrap();
    if plan.faults.is_empty() || !(plan.matches)(method, path) {
        return None;
    }
    if plan.faults.contains(&Fault::ThrottleEntries) {
        // Throttling is decided per entry of every matching request, with the plan's probability.
        return Some(Fault::ThrottleEntries);
    }
    let mut rng = state.rng.lock().unwrap();
    (rng.random::<f64>() < plan.probability).then(|| plan.faults[rng.random_range(0..plan.faults.len())])
}

fn error_response(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the pinpipe fault proxy</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn forward(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    state.stats.count(req.method(), req.uri().query(), req.uri().path());
    let latency = state.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let fault = pick_fault(&state, &method, &path);
    match fault {
        Some(Fault::InternalError) => {
            state.stats.internal_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(error_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"));
        }
        Some(Fault::SlowDown) => {
            state.stats.slow_downs.fetch_add(1, Ordering::Relaxed);
            return Ok(error_response(StatusCode::SERVICE_UNAVAILABLE, "SlowDown"));
        }
        Some(Fault::DropBeforeForwarding) => {
            state.stats.dropped_before.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped);
        }
        _ => {}
    }
    let conditional = req.headers().contains_key("if-none-match") || req.headers().contains_key("if-match");
    let put_records = req.headers().get("x-amz-target").is_some_and(|t| t == "Kinesis_20131202.PutRecords");
    let (mut parts, body) = req.into_parts();
    let mut body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let mut throttled = Vec::new();
    if fault == Some(Fault::ThrottleEntries) && put_records {
        (body, throttled) = throttle_entries(&state, &body).ok_or(Dropped)?;
        // The body changed: let the client compute its length (moto does not check signatures).
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
    }
    let uri = format!("{}{}", state.upstream, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut upstream = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream.body(Full::new(body)).map_err(|_| Dropped)?;
    let _serialised = if conditional { Some(state.conditional_puts.lock().await) } else { None };
    let response = state.client.request(upstream).await.map_err(|_| Dropped)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    if fault == Some(Fault::DropAfterForwarding) {
        state.stats.dropped_after.fetch_add(1, Ordering::Relaxed);
        return Err(Dropped);
    }
    if throttled.is_empty() {
        // Passed through as it came: a HEAD answer's Content-Length is the object's, not the body's.
        return Ok(Response::from_parts(parts, Full::new(body)));
    }
    let body = merge_throttled(&body, &throttled).ok_or(Dropped)?;
    let mut parts = parts;
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// Picks the entries of a `PutRecords` body to throttle; returns the body with the others and,
/// per original entry, whether it was throttled.
fn throttle_entries(state: &State, body: &[u8]) -> Option<(Bytes, Vec<bool>)> {
    let mut request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let entries = request.get_mut("Records")?.as_array_mut()?;
    let probability = state.plan.lock().unwrap().probability;
    let throttled: Vec<bool> = {
        let mut rng = state.rng.lock().unwrap();
        entries.iter().map(|_| rng.random::<f64>() < probability).collect()
    };
    let mut keep = throttled.iter().map(|t| !t);
    entries.retain(|_| keep.next().unwrap_or(true));
    let n = throttled.iter().filter(|t| **t).count() as u64;
    state.stats.throttled_entries.fetch_add(n, Ordering::Relaxed);
    Some((Bytes::from(serde_json::to_vec(&request).ok()?), throttled))
}

/// Kinesis' answer for the forwarded entries, widened back to every original entry with the
/// throttled ones failed in place.
fn merge_throttled(body: &[u8], throttled: &[bool]) -> Option<Bytes> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut forwarded = answer.get("Records")?.as_array()?.iter();
    let mut failed = answer.get("FailedRecordCount").and_then(|n| n.as_u64()).unwrap_or(0);
    let mut records = Vec::with_capacity(throttled.len());
    for &was_throttled in throttled {
        if was_throttled {
            failed += 1;
            records.push(serde_json::json!({
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard shardId-000000000000 (injected by the pinpipe fault proxy)"
            }));
        } else {
            records.push(forwarded.next()?.clone());
        }
    }
    let merged = serde_json::json!({"FailedRecordCount": failed, "Records": records});
    Some(Bytes::from(serde_json::to_vec(&merged).ok()?))
}
