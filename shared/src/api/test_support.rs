//! What the API's tests share: a deployment with its three streams, request builders, sample
//! bodies and an assertion on the error body every refusal must have.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::test_store::FaultyStreams;
use super::{ApiConfig, ApiRequest, ApiResponse, RetryPolicy, handle};
use crate::stream::PutEntry;

pub(super) const PREFIX: &str = "0a1b2c3d4e5f";
pub(super) const PIN: &str = "streaming-0a1b2c3d4e5f-pin";
pub(super) const GEO: &str = "streaming-0a1b2c3d4e5f-geo";
pub(super) const USER: &str = "streaming-0a1b2c3d4e5f-user";
pub(super) const THROTTLED: &str = "ProvisionedThroughputExceededException";

pub(super) fn config(stream_admin: bool) -> ApiConfig {
    ApiConfig::new(PREFIX, stream_admin, Duration::from_millis(500)).unwrap()
}

/// A fast policy so retry tests take milliseconds.
pub(super) fn quick_retry(budget_ms: u64) -> RetryPolicy {
    RetryPolicy {
        budget: Duration::from_millis(budget_ms),
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    }
}

/// The deployment's three streams, empty.
pub(super) fn ours() -> FaultyStreams {
    FaultyStreams::with_streams(&[PIN, GEO, USER])
}

pub(super) async fn call(store: &FaultyStreams, request: ApiRequest) -> ApiResponse {
    handle(&config(false), store, request).await
}

pub(super) async fn call_admin(store: &FaultyStreams, request: ApiRequest) -> ApiResponse {
    handle(&config(true), store, request).await
}

pub(super) fn get(path: &str) -> ApiRequest {
    ApiRequest::new(Method::GET, path)
}

pub(super) fn put_json(path: &str, body: &Value) -> ApiRequest {
    ApiRequest::new(Method::PUT, path).with_json(body)
}

pub(super) fn pin_record(ind: i64) -> Value {
    json!({"index": ind, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available",
        "follower_count": "211k", "downloaded": 0, "save_location": "Local save in /data/mens-fashion",
        "category": "mens-fashion"})
}

/// A PutRecords body of `n` records keyed `key-0`, `key-1`, ….
pub(super) fn batch(n: usize) -> Value {
    let records: Vec<Value> =
        (0..n).map(|i| json!({"data": pin_record(i as i64), "partition-key": format!("key-{i}")})).collect();
    json!({"records": records})
}

pub(super) fn entries(keys: &[&str]) -> Vec<PutEntry> {
    keys.iter()
        .map(|k| PutEntry { data: format!("{{\"k\":\"{k}\"}}").into_bytes(), partition_key: (*k).to_string() })
        .collect()
}

/// Asserts an error response: status, code and a message that mentions `needle`.
#[track_caller]
pub(super) fn assert_error(response: &ApiResponse, status: u16, code: &str, needle: &str) {
    assert_eq!(response.status.as_u16(), status, "{}", response.body);
    assert_eq!(response.error_code(), Some(code), "{}", response.body);
    let message = response.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "message {message:?} should mention {needle:?}");
    assert_eq!(
        response.body.as_object().map(serde_json::Map::len),
        Some(2),
        "error bodies hold error and message only"
    );
}

/// Sends each request to a fresh deployment's streams, checks each is refused as expected
/// (status, error code, a word of the message), and that nothing was written or changed.
pub(super) async fn assert_all_refused_before_any_write(cases: Vec<(ApiRequest, u16, &str, &str)>) {
    let store = ours();
    for (request, status, code, needle) in cases {
        let response = call(&store, request).await;
        assert_error(&response, status, code, needle);
    }
    assert!(store.nothing_changed());
}
